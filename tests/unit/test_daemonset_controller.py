"""The DaemonSet controller's pure core (skiff.controllers.daemonset): which nodes should run a
daemon pod, what a daemon pod looks like, and what a sync creates, deletes and reports."""

from __future__ import annotations

import time

from skiff.api.defaults import apply_defaults
from skiff.controllers.daemonset import HASH_LABEL, node_should_run, plan, pod_for
from skiff.controllers.deployment import template_hash
from skiff.scheduler import scheduler

T0 = 1_800_000_000.0


def ts(t: float) -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(t))


def daemonset(**pod_spec) -> dict:
    ds = {"apiVersion": "apps/v1", "kind": "DaemonSet",
          "metadata": {"name": "agent", "namespace": "kube-system", "uid": "ds-1", "generation": 1},
          "spec": {"selector": {"matchLabels": {"app": "agent"}},
                   "template": {"metadata": {"labels": {"app": "agent"}},
                                "spec": {"containers": [{"name": "c", "image": "busybox"}], **pod_spec}}}}
    apply_defaults(ds)
    return ds


def node(name: str, labels=None, taints=None, ready=True, unschedulable=False) -> dict:
    return {"metadata": {"name": name, "labels": labels or {}},
            "spec": {"taints": taints or [], **({"unschedulable": True} if unschedulable else {})},
            "status": {"conditions": [{"type": "Ready", "status": "True" if ready else "False"}]}}


_n = 0


def pod(ds: dict, node_name: str, ready=True, phase="Running", hash_=None, age=100) -> dict:
    global _n
    _n += 1
    return {"metadata": {"name": f"agent-{_n}", "uid": f"p{_n}", "creationTimestamp": ts(T0 - age + _n),
                         "labels": {HASH_LABEL: hash_ or template_hash(ds["spec"]["template"])}},
            "spec": {"nodeName": node_name},
            "status": {"phase": phase, "conditions": [{"type": "Ready", "status": "True" if ready else "False",
                                                       "lastTransitionTime": ts(T0 - 50)}]}}


def test_which_nodes_run_a_daemon_pod():
    ds = daemonset()
    assert node_should_run(ds, node("a")) == (True, True)
    # daemon pods tolerate the unschedulable and pressure taints, and a NotReady node keeps its pod
    assert node_should_run(ds, node("b", unschedulable=True)) == (True, True)
    assert node_should_run(ds, node("c", taints=[{"key": "node.kubernetes.io/disk-pressure",
                                                 "effect": "NoSchedule"}])) == (True, True)
    assert node_should_run(ds, node("d", ready=False)) == (False, True)
    # other taints: NoSchedule keeps a pod there from starting, NoExecute also ends it
    cp = {"key": "node-role.kubernetes.io/control-plane", "effect": "NoSchedule"}
    assert node_should_run(ds, node("e", taints=[cp])) == (False, True)
    assert node_should_run(ds, node("f", taints=[{**cp, "effect": "NoExecute"}])) == (False, False)
    tolerant = daemonset(tolerations=[{"key": "node-role.kubernetes.io/control-plane", "operator": "Exists"}])
    assert node_should_run(tolerant, node("e", taints=[cp])) == (True, True)
    picky = daemonset(nodeSelector={"role": "edge"})
    assert node_should_run(picky, node("g")) == (False, False)
    assert node_should_run(picky, node("h", labels={"role": "edge"})) == (True, True)


def test_a_daemon_pod_is_pinned_to_its_node_and_tolerates_what_daemons_do():
    ds = daemonset(hostNetwork=True)
    p = pod_for(ds, "worker")
    assert p["metadata"]["generateName"] == "agent-"
    assert p["metadata"]["labels"] == {"app": "agent", HASH_LABEL: template_hash(ds["spec"]["template"]),
                                       "pod-template-generation": "1"}
    assert p["spec"]["affinity"]["nodeAffinity"]["requiredDuringSchedulingIgnoredDuringExecution"] == {
        "nodeSelectorTerms": [{"matchFields": [{"key": "metadata.name", "operator": "In", "values": ["worker"]}]}]}
    keys = {(t["key"], t["effect"]) for t in p["spec"]["tolerations"]}
    assert ("node.kubernetes.io/not-ready", "NoExecute") in keys and \
        ("node.kubernetes.io/network-unavailable", "NoSchedule") in keys
    # the scheduler then has one node to choose
    nodes = [node("worker"), node("other")]
    assert [n["metadata"]["name"] for n in scheduler.filter_nodes(p, nodes)[0]] == ["worker"]


def test_one_pod_per_node_that_should_run_one():
    ds = daemonset(nodeSelector={"role": "edge"})
    nodes = [node("a", labels={"role": "edge"}), node("b", labels={"role": "edge"}), node("c")]
    first = plan(ds, nodes, [], T0)
    assert first.create == ["a", "b"] and first.delete == []
    assert first.status["desiredNumberScheduled"] == 2 and first.status["currentNumberScheduled"] == 0
    a1, a2, c1, gone = pod(ds, "a"), pod(ds, "a"), pod(ds, "c"), pod(ds, "removed-node")
    failed = pod(ds, "b", phase="Failed")
    out = plan(ds, nodes, [a1, a2, c1, gone, failed], T0)
    # the extra pod on a, the pod on a node that should not run one, a node that is gone, a failed pod
    assert sorted(out.delete) == sorted(p["metadata"]["name"] for p in (a2, c1, gone, failed))
    assert out.create == ["b"]
    assert out.status["currentNumberScheduled"] == 1 and out.status["numberMisscheduled"] == 1
    assert out.status["numberReady"] == 1 and out.status["numberUnavailable"] == 1


def test_a_rolling_update_replaces_at_most_max_unavailable_pods_at_a_time():
    ds = daemonset()
    nodes = [node(n) for n in "abcd"]
    old = [pod(ds, n, hash_="old") for n in "abcd"]
    out = plan(ds, nodes, old, T0)
    assert out.create == [] and len(out.delete) == 1  # maxUnavailable 1
    assert "updatedNumberScheduled" not in out.status  # none yet: omitted, as upstream's omitempty
    ds["spec"]["updateStrategy"]["rollingUpdate"]["maxUnavailable"] = "50%"
    assert len(plan(ds, nodes, old, T0).delete) == 2
    # a new pod not yet ready uses up the budget; an old pod that is not available goes anyway
    ds["spec"]["updateStrategy"]["rollingUpdate"]["maxUnavailable"] = 1
    pending = [pod(ds, "a", ready=False), pod(ds, "b", hash_="old", ready=False)] + old[2:]
    out = plan(ds, nodes, pending, T0)
    assert out.delete == [pending[1]["metadata"]["name"]]
    assert out.status["updatedNumberScheduled"] == 1
    ds["spec"]["updateStrategy"] = {"type": "OnDelete"}
    assert plan(ds, nodes, old, T0).delete == []
