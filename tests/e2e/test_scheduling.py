"""The scheduler in a real cluster: a pod that fits no node waits for a change that could help it,
instead of being retried in a loop (one FailedScheduling event per attempt, the PodScheduled
condition written once), and is placed as soon as a node changes to fit it.

Needs root: `skiff up` creates network namespaces, links and nftables tables; the fixture removes
them with `skiff down` whatever happens.
"""

from __future__ import annotations

import json
import os
import time

import pytest

from tests.support import wait_for

pytestmark = pytest.mark.skipif(os.geteuid() != 0, reason="needs root for network namespaces")

IMAGE = "gcr.io/google-samples/hello-app:1.0"


def _pod(k, name: str) -> dict:
    return json.loads(k("get", "pod", name, "-o", "json"))


def _failed_scheduling(k, name: str) -> list[dict]:
    items = json.loads(k("get", "events", "-o", "json", "--field-selector",
                         f"involvedObject.name={name},reason=FailedScheduling"))["items"]
    return items


def _scheduled_condition(pod: dict) -> dict:
    return next(c for c in pod["status"].get("conditions") or [] if c["type"] == "PodScheduled")


def test_unschedulable_pod_waits_quietly_then_runs_when_a_node_is_labelled(cluster):
    k = cluster.kubectl
    name = "wants-ssd"
    manifest = {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": name},
                "spec": {"nodeSelector": {"disk": "ssd"}, "containers": [{"name": "app", "image": IMAGE}]}}
    node = cluster.cfg.node_name(1)  # the worker; 0 is the control-plane node
    k("apply", "-f", "-", input=json.dumps(manifest))
    try:
        wait_for(lambda: _failed_scheduling(k, name), 5)
        time.sleep(3)
        events = _failed_scheduling(k, name)
        attempts = sum(e.get("count") or 1 for e in events)
        # Before the fix the pod was retried in a tight loop: hundreds of attempts in a few seconds.
        assert attempts <= 4, f"{attempts} FailedScheduling in ~3 s: {events}"
        assert events[-1]["message"] == (
            "0/2 nodes are available: 2 node(s) didn't match Pod's node affinity/selector. "
            "preemption: 0/2 nodes are available: 2 Preemption is not helpful for scheduling.")
        assert events[-1]["source"]["component"] == "default-scheduler" and events[-1]["type"] == "Warning"
        pod = _pod(k, name)
        cond = _scheduled_condition(pod)
        assert (cond["status"], cond["reason"], cond["message"]) == ("False", "Unschedulable", events[-1]["message"])
        # Nobody writes the waiting pod any more: not the scheduler's condition, not a retry. Node
        # heartbeats come and go meanwhile and must not wake it either.
        time.sleep(1.5)
        again = _pod(k, name)
        assert again["metadata"]["resourceVersion"] == pod["metadata"]["resourceVersion"]
        assert _scheduled_condition(again)["lastTransitionTime"] == cond["lastTransitionTime"]

        t0 = time.monotonic()
        k("label", "node", node, "disk=ssd")
        running = wait_for(lambda: (lambda p: p if p["status"].get("phase") == "Running" else None)(_pod(k, name)),
                           10, 0.05)
        elapsed = time.monotonic() - t0
        assert running["spec"]["nodeName"] == node
        assert elapsed < 2.0, f"labelling the node got the pod Running after {elapsed:.2f}s"
        assert _scheduled_condition(running)["status"] == "True"
        assert "Scheduled" in k("get", "events", "--field-selector", f"involvedObject.name={name}")
    finally:
        k("delete", "pod", name, "--grace-period=0", "--force", check=False)
        k("label", "node", node, "disk-", check=False)


def test_pod_placed_when_a_cordoned_node_is_uncordoned(cluster):
    k = cluster.kubectl
    name = "cordoned-out"
    nodes = [cluster.cfg.node_name(i) for i in (0, 1)]
    for n in nodes:
        k("cordon", n)
    try:
        k("run", name, f"--image={IMAGE}")
        wait_for(lambda: _failed_scheduling(k, name), 5)
        msg = _failed_scheduling(k, name)[-1]["message"]
        assert msg.startswith("0/2 nodes are available: 2 node(s) were unschedulable. preemption: "), msg
        time.sleep(1)
        t0 = time.monotonic()
        k("uncordon", nodes[1])
        pod = wait_for(lambda: (lambda p: p if p["spec"].get("nodeName") else None)(_pod(k, name)), 5, 0.05)
        assert pod["spec"]["nodeName"] == nodes[1]
        assert time.monotonic() - t0 < 1.5
        assert sum(e.get("count") or 1 for e in _failed_scheduling(k, name)) <= 2
    finally:
        for n in nodes:
            k("uncordon", n, check=False)
        k("delete", "pod", name, "--grace-period=0", "--force", check=False)
