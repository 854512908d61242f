"""Server-side apply and managedFields bookkeeping."""

from __future__ import annotations

import copy

import pytest

from skiff.api.errors import APIError
from skiff.api.managedfields import (
    fields_to_set,
    managers_of,
    server_side_apply,
    set_to_fields,
    update_managed_fields,
)

T0, T1, T2 = "2026-01-01T00:00:00Z", "2026-01-01T00:01:00Z", "2026-01-01T00:02:00Z"


def config(replicas: int = 2, image: str = "nginx:1.25", extra_container: bool = False,
           labels: dict | None = None) -> dict:
    cs = [{"name": "nginx", "image": image, "ports": [{"containerPort": 80}]}]
    if extra_container:
        cs.append({"name": "sidecar", "image": "busybox"})
    return {"apiVersion": "apps/v1", "kind": "Deployment",
            "metadata": {"name": "web", "namespace": "default", "labels": labels or {"app": "web"}},
            "spec": {"replicas": replicas, "selector": {"matchLabels": {"app": "web"}},
                     "template": {"metadata": {"labels": {"app": "web"}}, "spec": {"containers": cs}}}}


def apply(live, cfg, manager="kubectl", force=False, now=T0):
    return server_side_apply(live, cfg, manager, force, "apps", "v1", "Deployment", now)


def test_create_records_apply_entry_in_fieldsv1_format():
    obj = apply(None, config())
    assert obj["spec"]["replicas"] == 2
    (entry,) = obj["metadata"]["managedFields"]
    assert {k: entry[k] for k in ("manager", "operation", "apiVersion", "time", "fieldsType")} == {
        "manager": "kubectl", "operation": "Apply", "apiVersion": "apps/v1", "time": T0, "fieldsType": "FieldsV1"}
    assert entry["fieldsV1"] == {
        "f:metadata": {"f:labels": {"f:app": {}}},
        "f:spec": {
            "f:replicas": {},
            "f:selector": {},  # LabelSelector is an atomic map
            "f:template": {
                "f:metadata": {"f:labels": {"f:app": {}}},
                "f:spec": {"f:containers": {'k:{"name":"nginx"}': {
                    ".": {}, "f:image": {}, "f:name": {},
                    "f:ports": {'k:{"containerPort":80,"protocol":"TCP"}': {".": {}, "f:containerPort": {}}},
                }}},
            },
        },
    }


def test_reapply_same_config_is_stable():
    first = apply(None, config())
    again = apply(first, config(), now=T1)
    assert {k: v for k, v in again.items() if k != "metadata"} == {k: v for k, v in first.items() if k != "metadata"}
    assert again["metadata"]["managedFields"][0]["fieldsV1"] == first["metadata"]["managedFields"][0]["fieldsV1"]
    assert again["metadata"]["managedFields"][0]["time"] == T1


def test_reapply_changes_values_and_keeps_fields_set_by_others():
    live = apply(None, config())
    live["status"] = {"replicas": 2}
    live["spec"]["template"]["spec"]["containers"][0]["imagePullPolicy"] = "IfNotPresent"  # a default
    out = apply(live, config(replicas=4, image="nginx:1.26"), now=T1)
    c = out["spec"]["template"]["spec"]["containers"][0]
    assert (out["spec"]["replicas"], c["image"], c["imagePullPolicy"]) == (4, "nginx:1.26", "IfNotPresent")
    assert out["status"] == {"replicas": 2}


def test_fields_omitted_on_reapply_are_removed():
    live = apply(None, config(extra_container=True, labels={"app": "web", "tier": "fe"}))
    out = apply(live, config(), now=T1)
    assert [c["name"] for c in out["spec"]["template"]["spec"]["containers"]] == ["nginx"]
    assert out["metadata"]["labels"] == {"app": "web"}
    fields = out["metadata"]["managedFields"][0]["fieldsV1"]
    assert 'k:{"name":"sidecar"}' not in fields["f:spec"]["f:template"]["f:spec"]["f:containers"]


def test_omitted_field_owned_by_another_manager_is_kept():
    live = apply(None, config(labels={"app": "web", "tier": "fe"}))
    live = apply(live, {"apiVersion": "apps/v1", "kind": "Deployment",
                        "metadata": {"name": "web", "labels": {"tier": "fe"}}}, manager="other", now=T1)
    out = apply(live, config(), now=T2)
    assert out["metadata"]["labels"] == {"app": "web", "tier": "fe"}
    assert ("f:metadata", "f:labels", "f:tier") in managers_of(out)["other"]
    assert ("f:metadata", "f:labels", "f:tier") not in managers_of(out)["kubectl"]


def test_conflict_with_client_side_apply_manager():
    created = update_managed_fields(None, config(), "kubectl-client-side-apply", group="apps", version="v1",
                                    kind="Deployment", now=T0)
    with pytest.raises(APIError) as err:
        apply(created, config(replicas=3), now=T1)
    e = err.value
    assert (e.code, e.reason) == (409, "Conflict")
    assert e.message == ('Apply failed with 1 conflict: conflict with "kubectl-client-side-apply" '
                         'using apps/v1: .spec.replicas')
    assert e.details == {"causes": [{"reason": "FieldManagerConflict",
                                     "message": 'conflict with "kubectl-client-side-apply" using apps/v1',
                                     "field": ".spec.replicas"}]}


def test_several_conflicts_are_listed_per_manager():
    live = apply(None, config(), manager="alice")
    with pytest.raises(APIError) as err:
        apply(live, config(replicas=5, image="nginx:2"), manager="bob", now=T1)
    assert err.value.message == (
        'Apply failed with 2 conflicts: conflicts with "alice":\n- .spec.replicas\n'
        '- .spec.template.spec.containers[name="nginx"].image')
    assert len(err.value.details["causes"]) == 2


def test_same_value_is_shared_not_a_conflict():
    live = apply(None, config(), manager="alice")
    out = apply(live, config(), manager="bob", now=T1)
    owners = managers_of(out)
    assert ("f:spec", "f:replicas") in owners["alice"] and ("f:spec", "f:replicas") in owners["bob"]


def test_force_takes_ownership():
    live = apply(None, config(), manager="alice")
    out = apply(live, config(replicas=7), manager="bob", force=True, now=T1)
    assert out["spec"]["replicas"] == 7
    owners = managers_of(out)
    assert ("f:spec", "f:replicas") in owners["bob"]
    assert ("f:spec", "f:replicas") not in owners["alice"]
    assert ("f:spec", "f:template", "f:spec", "f:containers", 'k:{"name":"nginx"}', "f:image") in owners["alice"]


def test_update_takes_ownership_so_a_later_apply_conflicts():
    live = apply(None, config(), manager="kubectl")
    scaled = copy.deepcopy(live)
    scaled["spec"]["replicas"] = 9
    scaled = update_managed_fields(live, scaled, "kubectl-scale", group="apps", version="v1", kind="Deployment",
                                   now=T1, subresource="scale")
    owners = managers_of(scaled)
    assert owners["kubectl-scale"] == {("f:spec", "f:replicas")}
    assert ("f:spec", "f:replicas") not in owners["kubectl"]
    entry = next(e for e in scaled["metadata"]["managedFields"] if e["manager"] == "kubectl-scale")
    assert entry["subresource"] == "scale" and entry["operation"] == "Update"
    # Applying the old value again now changes a field kubectl-scale owns.
    with pytest.raises(APIError) as err:
        apply(scaled, config(replicas=2), now=T2)
    assert 'conflict with "kubectl-scale" with subresource "scale" using apps/v1' in err.value.message


def test_update_on_create_marks_new_maps_and_items():
    obj = update_managed_fields(None, config(), "kubectl-create", group="apps", version="v1", kind="Deployment",
                                now=T0)
    (entry,) = obj["metadata"]["managedFields"]
    assert entry["operation"] == "Update" and entry["manager"] == "kubectl-create"
    fields = entry["fieldsV1"]
    assert fields["f:metadata"]["f:labels"] == {".": {}, "f:app": {}}
    assert "." not in fields["f:spec"] and "." not in fields["f:spec"]["f:template"]


def test_update_without_changes_keeps_entries():
    live = apply(None, config())
    same = update_managed_fields(live, copy.deepcopy(live), "other", group="apps", version="v1",
                                 kind="Deployment", now=T1)
    assert same["metadata"]["managedFields"] == live["metadata"]["managedFields"]


def test_set_list_and_atomic_list():
    pod = {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "p", "finalizers": ["a/b", "c/d"]},
           "spec": {"containers": [{"name": "c", "image": "i", "args": ["x", "y"]}]}}
    obj = server_side_apply(None, pod, "m", False, "", "v1", "Pod", T0)
    fields = obj["metadata"]["managedFields"][0]["fieldsV1"]
    assert fields["f:metadata"]["f:finalizers"] == {'v:"a/b"': {}, 'v:"c/d"': {}}
    assert fields["f:spec"]["f:containers"]['k:{"name":"c"}']["f:args"] == {}
    other = {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "p", "finalizers": ["e/f"]},
             "spec": {"containers": [{"name": "c", "args": ["z"]}]}}
    merged = server_side_apply(obj, other, "n", True, "", "v1", "Pod", T1)
    assert merged["metadata"]["finalizers"] == ["a/b", "c/d", "e/f"]  # sets merge
    assert merged["spec"]["containers"][0]["args"] == ["z"]  # atomic lists replace


def test_service_ports_key_includes_defaulted_protocol():
    svc = {"apiVersion": "v1", "kind": "Service", "metadata": {"name": "s"},
           "spec": {"ports": [{"port": 80, "targetPort": 8080}]}}
    obj = server_side_apply(None, svc, "m", False, "", "v1", "Service", T0)
    ports = obj["metadata"]["managedFields"][0]["fieldsV1"]["f:spec"]["f:ports"]
    assert list(ports) == ['k:{"port":80,"protocol":"TCP"}']


def test_applied_managed_fields_are_rejected():
    cfg = config()
    cfg["metadata"]["managedFields"] = []
    with pytest.raises(APIError) as err:
        apply(None, cfg)
    assert err.value.code == 400


def test_fieldsv1_round_trip():
    fields = {"f:metadata": {"f:labels": {".": {}, "f:app": {}}},
              "f:spec": {"f:containers": {'k:{"name":"a"}': {".": {}, "f:image": {}}}, "f:replicas": {}}}
    assert set_to_fields(fields_to_set(fields)) == fields
    assert list(set_to_fields(fields_to_set(fields))["f:spec"]) == ["f:containers", "f:replicas"]


def test_unknown_kind_is_applied_untyped():
    cr = {"apiVersion": "example.com/v1", "kind": "Widget", "metadata": {"name": "w"},
          "spec": {"size": 1, "tags": ["a"], "nested": {"x": 1}}}
    obj = server_side_apply(None, cr, "m", False, "example.com", "v1", "Widget", T0)
    fields = obj["metadata"]["managedFields"][0]["fieldsV1"]
    # Untyped maps own their keys themselves and lists are atomic, as structured-merge-diff deduces.
    assert fields == {"f:spec": {".": {}, "f:nested": {".": {}, "f:x": {}}, "f:size": {}, "f:tags": {}}}
    cr2 = {"apiVersion": "example.com/v1", "kind": "Widget", "metadata": {"name": "w"}, "spec": {"size": 2}}
    out = server_side_apply(obj, cr2, "m", False, "example.com", "v1", "Widget", T1)
    assert out["spec"] == {"size": 2}
