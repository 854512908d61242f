"""The defaults kube-apiserver's admission plugins give a new Pod (skiff.apiserver.podadmission)."""

from __future__ import annotations

from skiff.apiserver.podadmission import default_priority, default_tolerations

NOT_READY = {"key": "node.kubernetes.io/not-ready", "operator": "Exists", "effect": "NoExecute", "tolerationSeconds": 300}
UNREACHABLE = {**NOT_READY, "key": "node.kubernetes.io/unreachable"}


def test_both_tolerations_are_added_to_a_pod_without_them():
    spec: dict = {}
    default_tolerations(spec)
    assert spec["tolerations"] == [NOT_READY, UNREACHABLE]


def test_a_pod_s_own_toleration_of_either_taint_is_kept_and_not_doubled():
    own = {"key": "node.kubernetes.io/unreachable", "operator": "Exists", "effect": "NoExecute", "tolerationSeconds": 5}
    spec = {"tolerations": [own]}
    default_tolerations(spec)
    assert spec["tolerations"] == [own, NOT_READY]
    everything = {"operator": "Exists"}  # tolerates every taint
    spec = {"tolerations": [everything]}
    default_tolerations(spec)
    assert spec["tolerations"] == [everything]
    no_schedule_only = {"key": "node.kubernetes.io/not-ready", "operator": "Exists", "effect": "NoSchedule"}
    spec = {"tolerations": [no_schedule_only]}
    default_tolerations(spec)
    assert spec["tolerations"] == [no_schedule_only, NOT_READY, UNREACHABLE]


def test_priority_defaults_leave_a_chosen_policy_alone():
    spec: dict = {}
    default_priority(spec)
    assert spec == {"priority": 0, "preemptionPolicy": "PreemptLowerPriority"}
    spec = {"preemptionPolicy": "Never"}
    default_priority(spec)
    assert spec == {"priority": 0, "preemptionPolicy": "Never"}
