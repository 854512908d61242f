"""Deployment revisions through the real kubectl: `set image` then `rollout undo` scales the old
ReplicaSet back up under the next revision instead of making a third one, and the Deployment carries
the revision of its current ReplicaSet.

The first test needs only a control plane (the ReplicaSets and their annotations are the controller's
work, pods need not run); the second runs the rollout for real in a cluster (root).
"""

from __future__ import annotations

import json
import os
import re

import pytest

from tests.support import Cluster, unique_name, wait_for

REVISION = "deployment.kubernetes.io/revision"
HISTORY = "deployment.kubernetes.io/revision-history"
V1 = "gcr.io/google-samples/hello-app:1.0"
V2 = "gcr.io/google-samples/hello-app:2.0"


def manifest(ns: str, replicas: int) -> str:
    # No creationTimestamp in the template, as people write it: the stored template then differs in
    # spelling from the one `rollout undo` sends back (`creationTimestamp: null`).
    return json.dumps({
        "apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": "web", "namespace": ns},
        "spec": {"replicas": replicas, "selector": {"matchLabels": {"app": "web"}},
                 "template": {"metadata": {"labels": {"app": "web"}},
                              "spec": {"containers": [{"name": "hello", "image": V1,
                                                       "ports": [{"containerPort": 8080}]}]}}}})


def replicasets(k, ns: str) -> list[dict]:
    return json.loads(k("get", "rs", "-n", ns, "-o", "json"))["items"]


def deployment_revision(k, ns: str) -> str | None:
    d = json.loads(k("get", "deploy", "web", "-n", ns, "-o", "json"))
    return (d["metadata"].get("annotations") or {}).get(REVISION)


def history(k, ns: str) -> list[int]:
    out = k("rollout", "history", "deploy/web", "-n", ns)
    return [int(m.group(1)) for m in re.finditer(r"^(\d+)\s", out, re.M)]


def live_pods(k, ns: str) -> list[dict]:
    return [p for p in json.loads(k("get", "pods", "-n", ns, "-o", "json"))["items"]
            if not p["metadata"].get("deletionTimestamp")]


def by_image(items: list[dict]) -> dict[str, dict]:
    return {rs["spec"]["template"]["spec"]["containers"][0]["image"]: rs for rs in items}


def rollout_and_undo(k, ns: str, created_by: str, replicas: int) -> tuple[dict, dict]:
    """Create (apply or create), set image, undo; returns the v1 ReplicaSet before and after the undo."""
    if created_by == "apply":
        k("apply", "-f", "-", input=manifest(ns, replicas))
        container = "hello"
    else:
        # `kubectl create` leaves the Deployment without any annotation of its own: rollout undo's JSON
        # patch replaces /metadata/annotations, which only works if the controller has set the revision.
        k("create", "deployment", "web", "-n", ns, f"--image={V1}", f"--replicas={replicas}")
        container = "hello-app"
    wait_for(lambda: deployment_revision(k, ns) == "1", 10)
    assert f"{REVISION}: 1" in k("describe", "deploy", "web", "-n", ns)
    first = replicasets(k, ns)
    assert len(first) == 1 and first[0]["metadata"]["annotations"][REVISION] == "1"
    k("set", "image", "deploy/web", "-n", ns, f"{container}={V2}")
    wait_for(lambda: deployment_revision(k, ns) == "2", 10)
    assert "rolled back" in k("rollout", "undo", "deploy/web", "-n", ns)
    wait_for(lambda: deployment_revision(k, ns) == "3", 10)
    return first[0], by_image(replicasets(k, ns))[V1]


@pytest.mark.parametrize("created_by", ["apply", "create"])
def test_undo_reuses_the_old_replicaset_and_renumbers_it(cp, created_by):
    k = cp.kubectl
    ns = unique_name("roll")
    k("create", "namespace", ns)
    before, after = rollout_and_undo(k, ns, created_by, 2)
    items = replicasets(k, ns)
    assert len(items) == 2, [rs["metadata"]["name"] for rs in items]
    assert after["metadata"]["name"] == before["metadata"]["name"]
    assert after["metadata"]["uid"] == before["metadata"]["uid"]
    assert after["metadata"]["annotations"][REVISION] == "3"
    assert after["metadata"]["annotations"][HISTORY] == "1"
    assert by_image(items)[V2]["metadata"]["annotations"][REVISION] == "2"
    assert history(k, ns) == [2, 3]
    dep = json.loads(k("get", "deploy", "web", "-n", ns, "-o", "json"))
    assert dep["spec"]["template"]["spec"]["containers"][0]["image"] == V1
    assert dep["metadata"]["generation"] == 3  # set image and undo; the annotation writes are not spec
    # Undo again: back to the 2.0 ReplicaSet, which becomes revision 4 and remembers it was 2.
    assert "rolled back" in k("rollout", "undo", "deploy/web", "-n", ns)
    wait_for(lambda: deployment_revision(k, ns) == "4", 10)
    items = by_image(replicasets(k, ns))
    assert len(items) == 2
    assert items[V2]["metadata"]["annotations"][REVISION] == "4"
    assert items[V2]["metadata"]["annotations"][HISTORY] == "2"
    assert history(k, ns) == [3, 4]
    # An undo to a revision that matches the current template changes nothing.
    out = k("rollout", "undo", "deploy/web", "-n", ns, "--to-revision=4")
    assert "skipped rollback" in out
    k("delete", "namespace", ns, "--wait=false")


@pytest.mark.skipif(os.geteuid() != 0, reason="needs root for network namespaces")
def test_set_image_and_undo_in_a_running_cluster():
    c = Cluster(nodes=2).up()
    try:
        k = c.kubectl
        ns = unique_name("roll")
        k("create", "namespace", ns)
        k("apply", "-f", "-", input=manifest(ns, 3))
        assert "successfully rolled out" in k("rollout", "status", "deploy/web", "-n", ns, "--timeout=60s")
        k("set", "image", "deploy/web", "-n", ns, f"hello={V2}")
        assert "successfully rolled out" in k("rollout", "status", "deploy/web", "-n", ns, "--timeout=60s")
        v1_before = by_image(replicasets(k, ns))[V1]
        assert "rolled back" in k("rollout", "undo", "deploy/web", "-n", ns)
        assert "successfully rolled out" in k("rollout", "status", "deploy/web", "-n", ns, "--timeout=60s")
        items = replicasets(k, ns)
        assert len(items) == 2, [rs["metadata"]["name"] for rs in items]
        v1, v2 = by_image(items)[V1], by_image(items)[V2]
        assert v1["metadata"]["name"] == v1_before["metadata"]["name"]
        assert v1["spec"]["replicas"] == 3 and v2["spec"]["replicas"] == 0
        wait_for(lambda: by_image(replicasets(k, ns))[V1].get("status", {}).get("readyReplicas") == 3, 10)
        assert v1["metadata"]["annotations"][REVISION] == "3"
        assert history(k, ns) == [2, 3]
        assert f"{REVISION}: 3" in k("describe", "deploy", "web", "-n", ns)
        # `get rs` as kubectl prints it: the old ReplicaSet is the one running, the 2.0 one is empty.
        table = k("get", "rs", "-n", ns)
        assert re.search(rf"^{v1['metadata']['name']}\s+3\s+3\s+3\s", table, re.M), table
        assert re.search(rf"^{v2['metadata']['name']}\s+0\s+0\s+0\s", table, re.M), table
        # Every pod left is one of the old ReplicaSet's (its pod-template-hash), once the 2.0 pods are gone.
        hash_label = v1["metadata"]["labels"]["pod-template-hash"]
        wait_for(lambda: [p["metadata"]["labels"]["pod-template-hash"] for p in live_pods(k, ns)]
                 == [hash_label] * 3, 30)
    finally:
        c.down()
