"""Which ReplicaSet runs a Deployment's template, and the revision bookkeeping on ReplicaSets:
templates compare by what they mean (as decoded Go structs do), not by how the JSON spells them."""

from __future__ import annotations

import copy

from skiff.controllers import deployment
from skiff.controllers.deployment import (
    REVISION,
    REVISION_HISTORY,
    find_new_replicaset,
    new_rs_annotations,
    template_hash,
    templates_equal,
)


def stored_template() -> dict:
    """A Deployment template as the API server stores it after `kubectl apply` of a manifest that
    never mentions creationTimestamp."""
    return {"metadata": {"labels": {"app": "web"}},
            "spec": {"containers": [{"name": "web", "image": "gcr.io/google-samples/hello-app:1.0",
                                     "imagePullPolicy": "IfNotPresent", "resources": {},
                                     "terminationMessagePath": "/dev/termination-log",
                                     "terminationMessagePolicy": "File"}],
                     "restartPolicy": "Always", "dnsPolicy": "ClusterFirst", "securityContext": {},
                     "schedulerName": "default-scheduler", "terminationGracePeriodSeconds": 30}}


def as_kubectl_sends(t: dict) -> dict:
    """What Go's encoder makes of the same template (rollout undo copies an RS template this way): a
    zero creationTimestamp printed as null, empty structs printed, empty lists and zero scalars left out."""
    out = copy.deepcopy(t)
    out["metadata"]["creationTimestamp"] = None
    out["metadata"]["labels"].pop("pod-template-hash", None)
    return out


def test_null_and_absent_creation_timestamp_are_the_same_template():
    t = stored_template()
    sent = as_kubectl_sends(t)
    assert sent != t  # the JSON differs ...
    assert templates_equal(sent, t)  # ... the template does not
    assert template_hash(sent) == template_hash(t)


def test_go_zero_values_equal_absent_fields():
    t = stored_template()
    spelled = copy.deepcopy(t)
    spelled["spec"].update({"hostNetwork": False, "nodeSelector": {}, "volumes": [], "tolerations": None,
                            "serviceAccountName": ""})
    spelled["spec"]["containers"][0].update({"args": [], "env": None, "stdin": False, "ports": []})
    del t["spec"]["containers"][0]["resources"]  # a non-pointer struct: {} and absent decode alike
    assert templates_equal(spelled, t)
    assert template_hash(spelled) == template_hash(t)


def test_explicit_zero_in_a_pointer_field_is_a_change():
    t = stored_template()
    for field, zero in (("automountServiceAccountToken", False), ("terminationGracePeriodSeconds", 0),
                        ("enableServiceLinks", False)):
        changed = copy.deepcopy(t)
        if field in changed["spec"]:
            del changed["spec"][field]
        other = copy.deepcopy(changed)
        other["spec"][field] = zero
        assert not templates_equal(changed, other), field
        assert template_hash(changed) != template_hash(other), field


def test_an_empty_dir_volume_is_not_an_absent_source():
    t = stored_template()
    with_dir, without = copy.deepcopy(t), copy.deepcopy(t)
    with_dir["spec"]["volumes"] = [{"name": "scratch", "emptyDir": {}}]
    without["spec"]["volumes"] = [{"name": "scratch"}]
    assert not templates_equal(with_dir, without)


def test_quantities_compare_by_value_and_probe_handlers_inline():
    t = stored_template()
    a, b = copy.deepcopy(t), copy.deepcopy(t)
    a["spec"]["containers"][0]["resources"] = {"requests": {"cpu": "0.5", "memory": "1Gi"}}
    b["spec"]["containers"][0]["resources"] = {"requests": {"cpu": "500m", "memory": "1024Mi"}}
    assert templates_equal(a, b)
    b["spec"]["containers"][0]["resources"]["requests"]["cpu"] = "600m"
    assert not templates_equal(a, b)
    a["spec"]["containers"][0]["readinessProbe"] = {"httpGet": {"path": "/", "port": 8080, "host": ""},
                                                    "exec": None, "periodSeconds": 10}
    c = copy.deepcopy(t)
    c["spec"]["containers"][0]["readinessProbe"] = {"httpGet": {"path": "/", "port": 8080}, "periodSeconds": 10}
    c["spec"]["containers"][0]["resources"] = {"requests": {"cpu": "500m", "memory": "1Gi"}}
    assert templates_equal(a, c)


def test_real_changes_and_the_hash_label():
    t = stored_template()
    v2 = copy.deepcopy(t)
    v2["spec"]["containers"][0]["image"] = "gcr.io/google-samples/hello-app:2.0"
    assert not templates_equal(t, v2) and template_hash(t) != template_hash(v2)
    relabelled = copy.deepcopy(t)
    relabelled["metadata"]["labels"]["tier"] = "front"
    assert not templates_equal(t, relabelled)
    in_rs = copy.deepcopy(t)
    in_rs["metadata"]["labels"]["pod-template-hash"] = template_hash(t)
    assert templates_equal(in_rs, t)
    assert template_hash(t, 1) != template_hash(t)


def rs(name: str, template: dict, created: str, revision: int | None = None) -> dict:
    t = copy.deepcopy(template)
    t["metadata"]["labels"]["pod-template-hash"] = name.rsplit("-", 1)[-1]
    ann = {} if revision is None else {REVISION: str(revision)}
    return {"metadata": {"name": name, "creationTimestamp": created, "annotations": ann},
            "spec": {"template": t}}


def test_find_new_replicaset_matches_the_undo_template_and_prefers_the_oldest():
    v1, v2 = stored_template(), stored_template()
    v2["spec"]["containers"][0]["image"] = "gcr.io/google-samples/hello-app:2.0"
    a = rs("web-aaaa", v1, "2026-01-01T00:00:00Z", 1)
    b = rs("web-bbbb", v2, "2026-01-01T00:01:00Z", 2)
    undo = as_kubectl_sends(a["spec"]["template"])
    assert find_new_replicaset([b, a], undo) is a
    assert find_new_replicaset([a, b], v2) is b
    v3 = copy.deepcopy(v2)
    v3["spec"]["containers"][0]["image"] = "gcr.io/google-samples/hello-app:3.0"
    assert find_new_replicaset([a, b], v3) is None
    # Two ReplicaSets for one template (an older controller made a second on undo): the oldest wins.
    dup = rs("web-cccc", as_kubectl_sends(v1), "2026-01-01T00:02:00Z", 3)
    assert find_new_replicaset([dup, b, a], v1) is a


def deploy(annotations: dict | None = None) -> dict:
    return {"metadata": {"name": "web", "annotations": annotations or {}}, "spec": {"replicas": 3}}


def test_a_new_replicaset_takes_the_deployments_annotations_but_not_its_bookkeeping():
    d = deploy({"team": "blue", REVISION: "7", REVISION_HISTORY: "1,2",
                "kubectl.kubernetes.io/last-applied-configuration": "{}",
                "deployment.kubernetes.io/desired-replicas": "9", "deployment.kubernetes.io/max-replicas": "9",
                "deprecated.deployment.rollback.to": "1"})
    assert new_rs_annotations(d, {}, 3) == {"team": "blue", REVISION: "3"}


def test_rolling_back_to_a_replicaset_gives_it_the_next_revision_and_records_the_old_one():
    d = deploy()
    once = new_rs_annotations(d, {REVISION: "1"}, 3)
    assert once == {REVISION: "3", REVISION_HISTORY: "1"}
    twice = new_rs_annotations(d, once, 5)
    assert twice == {REVISION: "5", REVISION_HISTORY: "1,3"}
    # Already the newest (the usual case on every sync): nothing changes.
    assert new_rs_annotations(d, twice, 5) == twice
    assert new_rs_annotations(d, {REVISION: "6"}, 5) == {REVISION: "6"}
    # Revision "10" is newer than "9": numbers, not strings, are compared.
    assert new_rs_annotations(d, {REVISION: "10"}, 9) == {REVISION: "10"}
    assert new_rs_annotations(d, {REVISION: "not-a-number"}, 4) == {REVISION: "not-a-number"}


def test_revision_history_stays_bounded():
    d = deploy()
    history = ",".join(str(n) for n in range(1, 600))  # longer than the cap
    out = new_rs_annotations(d, {REVISION: "600", REVISION_HISTORY: history}, 601)
    assert out[REVISION] == "601"
    kept = out[REVISION_HISTORY].split(",")
    assert len(out[REVISION_HISTORY]) <= deployment.MAX_REVISION_HISTORY_CHARS
    assert kept[-1] == "600" and kept[-2] == "599" and "1" not in kept
