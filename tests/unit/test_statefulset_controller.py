"""The StatefulSet controller's pure core (skiff.controllers.statefulset): pod identities, ordered
and parallel creation and removal, rolling updates with a partition, and the status kubectl reads."""

from __future__ import annotations

from skiff.api.defaults import apply_defaults
from skiff.controllers.statefulset import HASH_LABEL, ordinal_of, plan, pod_for, update_revision

T0 = 1_800_000_000.0


def sts(replicas: int = 3, **spec) -> dict:
    s = {"apiVersion": "apps/v1", "kind": "StatefulSet",
         "metadata": {"name": "web", "namespace": "default", "uid": "s-1", "generation": 1},
         "spec": {"replicas": replicas, "serviceName": "nginx", "selector": {"matchLabels": {"app": "nginx"}},
                  "template": {"metadata": {"labels": {"app": "nginx"}},
                               "spec": {"containers": [{"name": "nginx", "image": "nginx:1.27"}]}}, **spec}}
    apply_defaults(s)
    return s


def pod(s: dict, i: int, ready: bool = True, phase: str = "Running", rev: str | None = None,
        deleting: bool = False) -> dict:
    p = {"metadata": {"name": f"web-{i}", "labels": {HASH_LABEL: rev or update_revision(s)}},
         "status": {"phase": phase, "conditions": [{"type": "Ready", "status": "True" if ready else "False",
                                                     "lastTransitionTime": "2020-01-01T00:00:00Z"}]}}
    if deleting:
        p["metadata"]["deletionTimestamp"] = "2020-01-01T00:00:00Z"
    return p


def test_a_pod_s_identity():
    s = sts(volumeClaimTemplates=[{"metadata": {"name": "www"}, "spec": {"accessModes": ["ReadWriteOnce"]}}])
    p = pod_for(s, 1)
    assert p["metadata"]["name"] == "web-1" and "generateName" not in p["metadata"]
    assert p["metadata"]["labels"] == {"app": "nginx", "statefulset.kubernetes.io/pod-name": "web-1",
                                       "apps.kubernetes.io/pod-index": "1", HASH_LABEL: update_revision(s)}
    assert (p["spec"]["hostname"], p["spec"]["subdomain"]) == ("web-1", "nginx")
    assert p["spec"]["volumes"] == [{"name": "www", "persistentVolumeClaim": {"claimName": "www-web-1"}}]
    assert update_revision(s).startswith("web-")
    assert [ordinal_of(s, {"metadata": {"name": n}}) for n in ("web-0", "web-12", "web-01", "web-x", "webs-1")] == \
        [0, 12, None, None, None]


def test_ordered_ready_creates_one_pod_at_a_time_and_removes_from_the_top():
    s = sts(3)
    assert plan(s, [], T0).create == [0]
    assert plan(s, [pod(s, 0, ready=False)], T0).create == []  # web-0 must be Running and Ready first
    assert plan(s, [pod(s, 0)], T0).create == [1]
    out = plan(s, [pod(s, 0), pod(s, 1), pod(s, 2)], T0)
    assert out.create == [] and out.delete == []
    assert (out.status["replicas"], out.status["readyReplicas"], out.status["availableReplicas"]) == (3, 3, 3)
    s["spec"]["replicas"] = 1
    out = plan(s, [pod(s, 0), pod(s, 1), pod(s, 2)], T0)
    assert out.delete == ["web-2"]  # the highest first, one at a time
    assert plan(s, [pod(s, 0), pod(s, 1), pod(s, 2, deleting=True)], T0).delete == []  # waits for it to go


def test_a_failed_pod_is_deleted_and_made_again():
    s = sts(2)
    out = plan(s, [pod(s, 0), pod(s, 1, phase="Failed", ready=False)], T0)
    assert out.delete == ["web-1"] and out.create == []
    assert plan(s, [pod(s, 0)], T0).create == [1]


def test_parallel_creates_and_removes_all_at_once():
    s = sts(3, podManagementPolicy="Parallel")
    assert plan(s, [], T0).create == [0, 1, 2]
    s["spec"]["replicas"] = 1
    assert sorted(plan(s, [pod(s, 0), pod(s, 1, ready=False), pod(s, 2)], T0).delete) == ["web-1", "web-2"]


def test_rolling_update_from_the_top_down_to_the_partition():
    s = sts(3)
    old = "web-old"
    pods = [pod(s, i, rev=old) for i in range(3)]
    s["status"] = {"currentRevision": old}
    out = plan(s, pods, T0)
    assert out.delete == ["web-2"]
    assert (out.status["currentRevision"], out.status["updateRevision"]) == (old, update_revision(s))
    assert out.status["currentReplicas"] == 3 and "updatedReplicas" not in out.status
    # while web-2 comes back, nothing else moves
    assert plan(s, [pods[0], pods[1]], T0).delete == [] and plan(s, [pods[0], pods[1]], T0).create == [2]
    updated = [pods[0], pods[1], pod(s, 2)]
    assert plan(s, updated, T0).delete == ["web-1"]
    s["spec"]["updateStrategy"]["rollingUpdate"]["partition"] = 2
    assert plan(s, updated, T0).delete == []  # web-0 and web-1 stay at the old revision
    s["spec"]["updateStrategy"]["rollingUpdate"]["partition"] = 0
    done = plan(s, [pod(s, i) for i in range(3)], T0)
    assert done.status["currentRevision"] == done.status["updateRevision"] and done.status["updatedReplicas"] == 3
    s["spec"]["updateStrategy"] = {"type": "OnDelete"}
    assert plan(s, pods, T0).delete == []
