"""JSON patch, merge patch and strategic merge patch, with the patches kubectl really sends."""

from __future__ import annotations

import copy

import pytest

from skiff.api.errors import APIError
from skiff.api.patch import apply_json_patch, apply_merge_patch, apply_strategic_merge_patch


def deployment() -> dict:
    return {
        "apiVersion": "apps/v1", "kind": "Deployment",
        "metadata": {"name": "web", "namespace": "default", "labels": {"app": "web"},
                     "finalizers": ["a.example/x"]},
        "spec": {
            "replicas": 2,
            "selector": {"matchLabels": {"app": "web"}},
            "strategy": {"type": "RollingUpdate", "rollingUpdate": {"maxSurge": "25%", "maxUnavailable": "25%"}},
            "template": {
                "metadata": {"labels": {"app": "web"}},
                "spec": {
                    "containers": [
                        {"name": "nginx", "image": "nginx:1.25",
                         "env": [{"name": "A", "value": "1"}, {"name": "B", "value": "2"}],
                         "ports": [{"containerPort": 80, "protocol": "TCP"}],
                         "volumeMounts": [{"name": "data", "mountPath": "/data"}]},
                        {"name": "sidecar", "image": "busybox", "args": ["sleep", "1d"]},
                    ],
                    "volumes": [{"name": "data", "emptyDir": {}}],
                },
            },
        },
        "status": {"conditions": [{"type": "Available", "status": "True"},
                                  {"type": "Progressing", "status": "True"}]},
    }


def smp(obj: dict, patch: dict, group: str = "apps", version: str = "v1", kind: str = "Deployment") -> dict:
    before = copy.deepcopy(obj)
    out = apply_strategic_merge_patch(obj, patch, group, version, kind)
    assert obj == before, "the input object must not be modified"
    return out


def containers(obj: dict) -> list[dict]:
    return obj["spec"]["template"]["spec"]["containers"]


# ---- strategic merge patch: what kubectl sends --------------------------------------------------------------

def test_client_side_apply_second_run_patch():
    # Captured from kubectl apply (replicas 2->3, image changed, env removed), §5.2 of the protocol notes.
    patch = {"metadata": {"annotations": {"kubectl.kubernetes.io/last-applied-configuration": "{}\n"}},
             "spec": {"replicas": 3, "template": {"spec": {
                 "$setElementOrder/containers": [{"name": "nginx"}, {"name": "sidecar"}],
                 "containers": [{"env": None, "image": "nginx:1.26", "name": "nginx"}]}}}}
    out = smp(deployment(), patch)
    assert out["spec"]["replicas"] == 3
    nginx, sidecar = containers(out)
    assert nginx["image"] == "nginx:1.26" and "env" not in nginx
    assert nginx["ports"] == [{"containerPort": 80, "protocol": "TCP"}]
    assert sidecar["name"] == "sidecar"
    assert out["metadata"]["annotations"] == {"kubectl.kubernetes.io/last-applied-configuration": "{}\n"}
    assert out["metadata"]["labels"] == {"app": "web"}


def test_set_image_patch_keeps_other_fields():
    patch = {"spec": {"template": {"spec": {"$setElementOrder/containers": [{"name": "nginx"}, {"name": "sidecar"}],
                                            "containers": [{"image": "nginx:1.27", "name": "nginx"}]}}}}
    out = smp(deployment(), patch)
    assert [c["image"] for c in containers(out)] == ["nginx:1.27", "busybox"]
    assert containers(out)[0]["env"] == deployment()["spec"]["template"]["spec"]["containers"][0]["env"]


def test_set_element_order_reorders_list():
    patch = {"spec": {"template": {"spec": {"$setElementOrder/containers": [{"name": "sidecar"}, {"name": "nginx"}]}}}}
    out = smp(deployment(), patch)
    assert [c["name"] for c in containers(out)] == ["sidecar", "nginx"]


def test_rollout_restart_annotation():
    patch = {"spec": {"template": {"metadata": {"annotations": {
        "kubectl.kubernetes.io/restartedAt": "2026-11-27T05:27:33Z"}}}}}
    out = smp(deployment(), patch)
    assert out["spec"]["template"]["metadata"] == {
        "labels": {"app": "web"}, "annotations": {"kubectl.kubernetes.io/restartedAt": "2026-11-27T05:27:33Z"}}


def test_label_merge_patch():
    out = apply_merge_patch(deployment(), {"metadata": {"labels": {"tier": "frontend", "app": None}}})
    assert out["metadata"]["labels"] == {"tier": "frontend"}


# ---- merge keys --------------------------------------------------------------------------------------------

def test_containers_merge_by_name_and_new_container_is_added():
    out = smp(deployment(), {"spec": {"template": {"spec": {"containers": [{"name": "extra", "image": "x"}]}}}})
    assert sorted(c["name"] for c in containers(out)) == ["extra", "nginx", "sidecar"]
    assert containers(out)[-1]["name"] == "sidecar"  # server-only items keep their relative order


def test_env_merges_by_name_and_null_deletes_a_field_inside_an_item():
    patch = {"spec": {"template": {"spec": {"containers": [
        {"name": "nginx", "env": [{"name": "B", "value": "3"}, {"name": "C", "value": "4"}]}]}}}}
    out = smp(deployment(), patch)
    env = containers(out)[0]["env"]
    assert {e["name"]: e["value"] for e in env} == {"A": "1", "B": "3", "C": "4"}
    patch = {"spec": {"template": {"spec": {"containers": [{"name": "nginx", "image": None}]}}}}
    assert "image" not in containers(smp(deployment(), patch))[0]


def test_container_ports_merge_by_container_port():
    patch = {"spec": {"template": {"spec": {"containers": [
        {"name": "nginx", "ports": [{"containerPort": 80, "name": "http"}, {"containerPort": 443}]}]}}}}
    ports = containers(smp(deployment(), patch))[0]["ports"]
    assert {"containerPort": 80, "protocol": "TCP", "name": "http"} in ports
    assert {"containerPort": 443} in ports and len(ports) == 2


def test_service_ports_merge_by_port():
    svc = {"apiVersion": "v1", "kind": "Service", "metadata": {"name": "web"},
           "spec": {"selector": {"app": "web"}, "ports": [
               {"name": "http", "port": 80, "targetPort": 8080, "protocol": "TCP"},
               {"name": "https", "port": 443, "targetPort": 8443, "protocol": "TCP"}]}}
    out = smp(svc, {"spec": {"ports": [{"port": 80, "targetPort": 9090}]}}, "", "v1", "Service")
    assert out["spec"]["ports"][0] == {"name": "http", "port": 80, "targetPort": 9090, "protocol": "TCP"}
    assert out["spec"]["ports"][1]["port"] == 443
    # selector is a plain map: it merges, and null deletes a key.
    out = smp(svc, {"spec": {"selector": {"tier": "fe", "app": None}}}, "", "v1", "Service")
    assert out["spec"]["selector"] == {"tier": "fe"}


def test_volumes_merge_by_name_and_conditions_by_type():
    patch = {"spec": {"template": {"spec": {"volumes": [{"name": "cfg", "configMap": {"name": "c"}}]}}}}
    vols = smp(deployment(), patch)["spec"]["template"]["spec"]["volumes"]
    assert [v["name"] for v in vols] == ["cfg", "data"]
    patch = {"status": {"conditions": [{"type": "Available", "status": "False", "reason": "Down"}]}}
    conds = smp(deployment(), patch)["status"]["conditions"]
    assert conds[0] == {"type": "Available", "status": "False", "reason": "Down"}
    assert conds[1] == {"type": "Progressing", "status": "True"}


def test_list_without_merge_strategy_is_replaced():
    patch = {"spec": {"template": {"spec": {"containers": [{"name": "sidecar", "args": ["sleep", "2d"]}]}}}}
    assert containers(smp(deployment(), patch))[1]["args"] == ["sleep", "2d"]


def test_finalizers_union_and_delete_from_primitive_list():
    out = smp(deployment(), {"metadata": {"finalizers": ["b.example/y", "a.example/x"]}})
    assert sorted(out["metadata"]["finalizers"]) == ["a.example/x", "b.example/y"]
    assert len(out["metadata"]["finalizers"]) == 2
    out = smp(out, {"metadata": {"$deleteFromPrimitiveList/finalizers": ["a.example/x"]}})
    assert out["metadata"]["finalizers"] == ["b.example/y"]


# ---- directives ---------------------------------------------------------------------------------------------

def test_patch_delete_in_a_list():
    patch = {"spec": {"template": {"spec": {"containers": [{"name": "sidecar", "$patch": "delete"}]}}}}
    assert [c["name"] for c in containers(smp(deployment(), patch))] == ["nginx"]


def test_patch_replace_in_a_list_and_on_a_map():
    patch = {"spec": {"template": {"spec": {"containers": [{"$patch": "replace"}, {"name": "only", "image": "x"}]}}}}
    assert containers(smp(deployment(), patch)) == [{"name": "only", "image": "x"}]
    patch = {"metadata": {"labels": {"$patch": "replace", "new": "yes"}}}
    assert smp(deployment(), patch)["metadata"]["labels"] == {"new": "yes"}


def test_patch_delete_on_a_map_empties_it():
    out = smp(deployment(), {"spec": {"strategy": {"rollingUpdate": {"$patch": "delete"}}}})
    assert out["spec"]["strategy"] == {"type": "RollingUpdate", "rollingUpdate": {}}


def test_patch_merge_in_a_list_is_rejected_like_upstream():
    patch = {"spec": {"template": {"spec": {"containers": [{"$patch": "merge"}]}}}}
    with pytest.raises(APIError) as err:
        smp(deployment(), patch)
    assert err.value.code == 500
    assert err.value.message == "merging lists cannot yet be specified in the patch"


def test_retain_keys_clears_other_fields():
    # What kubectl sends when switching a Deployment's strategy to Recreate.
    patch = {"spec": {"strategy": {"$retainKeys": ["type"], "type": "Recreate", "rollingUpdate": None}}}
    assert smp(deployment(), patch)["spec"]["strategy"] == {"type": "Recreate"}


def test_retain_keys_must_list_every_patched_key():
    patch = {"spec": {"strategy": {"$retainKeys": ["type"], "rollingUpdate": {"maxSurge": 1}}}}
    with pytest.raises(APIError) as err:
        smp(deployment(), patch)
    assert (err.value.code, err.value.reason) == (400, "BadRequest")
    assert err.value.message == "invalid patch format of retainKeys"


def test_retain_keys_inside_a_volume():
    patch = {"spec": {"template": {"spec": {"volumes": [
        {"name": "data", "$retainKeys": ["name", "hostPath"], "hostPath": {"path": "/tmp"}}]}}}}
    vols = smp(deployment(), patch)["spec"]["template"]["spec"]["volumes"]
    assert vols == [{"name": "data", "hostPath": {"path": "/tmp"}}]


def test_missing_merge_key_is_an_error_with_upstream_text():
    patch = {"spec": {"template": {"spec": {"containers": [{"image": "nginx"}]}}}}
    with pytest.raises(APIError) as err:
        smp(deployment(), patch)
    assert err.value.code == 500
    assert err.value.message == "map: map[image:nginx] does not contain declared merge key: name"


def test_set_element_order_must_match_patch_list():
    patch = {"spec": {"template": {"spec": {"$setElementOrder/containers": [{"name": "nginx"}],
                                            "containers": [{"name": "sidecar", "image": "x"}]}}}}
    with pytest.raises(APIError) as err:
        smp(deployment(), patch)
    assert "doesn't match $setElementOrder list" in err.value.message


def test_malformed_delete_from_primitive_list_key():
    with pytest.raises(APIError) as err:
        smp(deployment(), {"metadata": {"$deleteFromPrimitiveList": ["x"]}})
    assert (err.value.code, err.value.message) == (400, "invalid patch format of primitive list")


def test_smp_body_must_be_an_object():
    with pytest.raises(APIError) as err:
        smp(deployment(), [1])  # type: ignore[arg-type]
    assert err.value.code == 400


def test_unknown_kind_falls_back_to_merge_patch():
    obj = {"apiVersion": "example.com/v1", "kind": "Widget", "spec": {"items": [{"name": "a"}, {"name": "b"}]}}
    out = apply_strategic_merge_patch(obj, {"spec": {"items": [{"name": "c"}]}}, "example.com", "v1", "Widget")
    assert out["spec"]["items"] == [{"name": "c"}]


# ---- json patch --------------------------------------------------------------------------------------------

def test_json_patch_ops():
    ops = [{"op": "test", "path": "/spec/replicas", "value": 2},
           {"op": "replace", "path": "/spec/replicas", "value": 5},
           {"op": "add", "path": "/metadata/labels/tier", "value": "fe"},
           {"op": "remove", "path": "/spec/template/spec/containers/1"},
           {"op": "copy", "from": "/metadata/labels/app", "path": "/metadata/labels/copy"},
           {"op": "move", "from": "/metadata/labels/copy", "path": "/metadata/labels/moved"}]
    obj = deployment()
    out = apply_json_patch(obj, ops)
    assert out["spec"]["replicas"] == 5
    assert out["metadata"]["labels"] == {"app": "web", "tier": "fe", "moved": "web"}
    assert [c["name"] for c in containers(out)] == ["nginx"]
    assert obj == deployment()


@pytest.mark.parametrize("op", [
    {"op": "test", "path": "/spec/replicas", "value": 7},
    {"op": "test", "path": "/spec/replicas", "value": True},
    {"op": "remove", "path": "/spec/nothere"},
    {"op": "replace", "path": "/spec/nothere/deeper", "value": 1},
    {"op": "frobnicate", "path": "/spec"},
])
def test_json_patch_failures_are_generic_422(op):
    with pytest.raises(APIError) as err:
        apply_json_patch(deployment(), [op])
    assert (err.value.code, err.value.reason) == (422, "Invalid")
    assert err.value.message == "the server rejected our request due to an error in our request"


def test_json_patch_body_must_be_a_list_of_operations():
    with pytest.raises(APIError) as err:
        apply_json_patch(deployment(), {"op": "add"})  # type: ignore[arg-type]
    assert err.value.code == 400
    assert err.value.message == "json: cannot unmarshal object into Go value of type jsonpatch.Patch"


def test_json_patch_operation_limit():
    with pytest.raises(APIError) as err:
        apply_json_patch({}, [{"op": "test", "path": "", "value": {}}] * 10001)
    assert err.value.code == 413


# ---- merge patch -------------------------------------------------------------------------------------------

def test_merge_patch_replaces_lists_and_prunes_nested_nulls():
    out = apply_merge_patch(deployment(), {"spec": {"template": {"spec": {"containers": [{"name": "x"}]}}},
                                           "metadata": {"annotations": {"a": "b", "c": None}}})
    assert containers(out) == [{"name": "x"}]
    assert out["metadata"]["annotations"] == {"a": "b"}


def test_merge_patch_must_be_an_object():
    with pytest.raises(APIError) as err:
        apply_merge_patch(deployment(), None)
    assert (err.value.code, err.value.message) == (400, "Invalid JSON Patch")
