"""The API server's write-path shortcuts give exactly what the long way gives.

- managed fields of a JSON merge patch computed over the fields the patch names only, against the
  comparison of the whole objects, on realistic pods and random patches (status writes like the node
  agent's, metadata and spec edits, unknown fields, wrong types, nulls);
- the memoized FieldsV1 encoding and decoding against the plain functions;
- the stored value and the response/watch JSON built from one serialization against json.dumps.
"""

from __future__ import annotations

import copy
import json
import random

import pytest

from skiff.api import managedfields
from skiff.api.patch import apply_merge_patch
from skiff.api.validation import structure
from skiff.apiserver import fieldprune
from skiff.apiserver.registry import Registry, _encode_split, _with_resource_version

T0 = "2026-01-01T00:00:00Z"


def _ts(rng: random.Random) -> str:
    return f"2026-01-01T00:{rng.randrange(60):02d}:{rng.randrange(60):02d}Z"


def _condition(rng: random.Random, ctype: str) -> dict:
    c: dict = {"type": ctype, "status": rng.choice(["True", "False"]), "lastProbeTime": None,
               "lastTransitionTime": _ts(rng)}
    if rng.random() < 0.4:
        c["reason"] = rng.choice(["ContainersNotReady", "PodCompleted"])
        c["message"] = "containers with unready status: [web]"
    return c


def _container_status(rng: random.Random, name: str) -> dict:
    state = rng.choice([{"waiting": {"reason": "ContainerCreating"}}, {"running": {"startedAt": _ts(rng)}},
                        {"terminated": {"exitCode": rng.choice([0, 1]), "reason": "Completed",
                                        "startedAt": _ts(rng), "finishedAt": _ts(rng)}}])
    st = {"name": name, "state": state, "lastState": {}, "ready": rng.random() < 0.5,
          "restartCount": rng.randrange(3), "image": "hello:1", "imageID": "sha256:ab", "started": rng.random() < 0.5}
    if rng.random() < 0.7:
        st["containerID"] = f"skiff://{rng.randrange(10**8):08x}"
    return st


def _status_patch(rng: random.Random) -> dict:
    """A status like the node agent's, partly: each field present, changed, or removed (null)."""
    full = {"phase": rng.choice(["Pending", "Running", "Succeeded", "Failed"]),
            "conditions": [_condition(rng, t) for t in ("PodReadyToStartContainers", "Initialized", "Ready",
                                                        "ContainersReady", "PodScheduled")
                           if rng.random() < 0.9],
            "hostIP": "172.29.5.2", "hostIPs": [{"ip": "172.29.5.2"}],
            "podIP": f"10.200.0.{rng.randrange(2, 250)}", "startTime": _ts(rng),
            "containerStatuses": [_container_status(rng, n) for n in ("web", "side")[:rng.randrange(1, 3)]]}
    full["podIPs"] = [{"ip": full["podIP"]}]
    out = {}
    for k, v in full.items():
        r = rng.random()
        if r < 0.55:
            out[k] = v
        elif r < 0.65:
            out[k] = None
    return out


_JUNK = [None, 1, -7, 2**40, 1.5, "x", True, [], [1, "a"], {}, {"bogus": 1}, {"a": {"b": None}}]


def _random_patch(rng: random.Random) -> dict:
    patch: dict = {}
    r = rng.random()
    if r < 0.6:
        patch["status"] = _status_patch(rng)
    elif r < 0.7:
        patch["status"] = rng.choice(_JUNK)
    if rng.random() < 0.3:
        md = patch.setdefault("metadata", {})
        md["labels"] = rng.choice([{"app": "web", "tier": rng.choice(["a", "b", None])}, None, {"new": "1"}, "x"])
        if rng.random() < 0.3:
            md["annotations"] = {"note": rng.choice(["1", None, 2])}
        if rng.random() < 0.1:
            md["bogusMeta"] = rng.choice(_JUNK)
        if rng.random() < 0.05:
            md["managedFields"] = rng.choice([None, [], [{"manager": "x", "operation": "Update", "apiVersion": "v1",
                                                          "fieldsType": "FieldsV1", "fieldsV1": {"f:spec": {}}}]])
    if rng.random() < 0.2:
        spec = patch.setdefault("spec", {})
        spec[rng.choice(["nodeName", "restartPolicy", "bogusSpec", "containers", "activeDeadlineSeconds"])] = \
            rng.choice(_JUNK + ["node-2", "Always", [{"name": "web", "image": "hello:2"}]])
    if rng.random() < 0.1:
        patch[rng.choice(["bogusTop", "kind", "apiVersion"])] = rng.choice(_JUNK)
    if rng.random() < 0.15 and isinstance(patch.get("status"), dict):
        patch["status"][rng.choice(["bogusStatus", "nominatedNodeName", "qosClass"])] = rng.choice(_JUNK)
    if rng.random() < 0.1:
        patch["status"] = {"conditions": None, "absent": None} if rng.random() < 0.5 else {"phase": 3}
    return patch


def _stored_pod(rng: random.Random) -> dict:
    """A pod as stored after a create and a few status writes, with several managers' fields."""
    pod = {"apiVersion": "v1", "kind": "Pod",
           "metadata": {"name": "web-1", "namespace": "default", "uid": "u-1", "creationTimestamp": T0,
                        "labels": {"app": "web", "tier": "a"}, "generation": 1},
           "spec": {"containers": [{"name": "web", "image": "hello:1", "ports": [{"containerPort": 8080}],
                                    "resources": {}, "imagePullPolicy": "IfNotPresent"}],
                    "restartPolicy": "Always", "schedulerName": "default-scheduler", "nodeName": "node-1",
                    "terminationGracePeriodSeconds": 30},
           "status": {"phase": "Pending", "qosClass": "BestEffort"}}
    if rng.random() < 0.2:
        pod["spec"]["bogusStored"] = {"x": 1}  # an unknown field already in storage: pruning must not hide it
    pod = managedfields.update_managed_fields(None, pod, "kubectl-create", group="", version="v1", kind="Pod",
                                              now=T0)
    for manager in ("skiff", "skiff-scheduler", "skiff"):
        patch = {"status": _status_patch(rng)}
        new = apply_merge_patch(pod, patch)
        pod = managedfields.update_managed_fields(pod, new, manager, group="", version="v1", kind="Pod", now=T0,
                                                  subresource=rng.choice(["", "status"]))
    return pod


def _patch_path(old: dict, patch: dict, scoped: bool) -> tuple[str, object]:
    """What the PATCH handler does for a merge patch, with or without the scoped comparison."""
    new = apply_merge_patch(old, patch)
    err = structure.type_errors(new, "", "v1", "Pod")
    if err:
        return "type-error", err
    unknown = structure.unknown_fields(new, "", "v1", "Pod")
    fieldprune.prune(new, unknown)
    out = managedfields.update_managed_fields(
        old, new, "skiff", group="", version="v1", kind="Pod", now="2026-01-02T00:00:00Z",
        merge_patch=patch if scoped and not unknown else None, copy=not scoped)
    return "ok", (out, unknown)


@pytest.mark.parametrize("seed", range(4))
def test_scoped_managed_fields_match_the_full_comparison_on_random_merge_patches(seed: int) -> None:
    rng = random.Random(seed)
    outcomes = set()
    for _ in range(150):
        old = _stored_pod(rng)
        patch = _random_patch(rng)
        pristine = copy.deepcopy(old)
        full = _patch_path(copy.deepcopy(old), patch, scoped=False)
        scoped = _patch_path(old, patch, scoped=True)
        assert scoped == full, patch
        assert json.dumps(scoped) == json.dumps(full)  # same order of keys and managers too
        assert old == pristine  # the stored object is read, never written
        outcomes.add(full[0])
    assert outcomes == {"ok", "type-error"}


def test_scoped_comparison_sees_a_change_inside_a_replaced_list() -> None:
    old = {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "p"},
           "status": {"phase": "Running", "podIP": "10.0.0.2", "conditions": [{"type": "Ready", "status": "True"}]}}
    patch = {"status": {"podIP": None, "conditions": [{"type": "Ready", "status": "False"}]}}
    new = apply_merge_patch(old, patch)
    kw = {"group": "", "version": "v1", "kind": "Pod", "now": T0}
    full = managedfields.update_managed_fields(old, new, "kubelet", **kw)
    scoped = managedfields.update_managed_fields(old, copy.deepcopy(new), "kubelet", merge_patch=patch, **kw)
    assert scoped == full
    # The changed leaf is owned; the removed podIP is owned by nobody.
    assert managedfields.managers_of(scoped) == {
        "kubelet": {("f:status", "f:conditions", 'k:{"type":"Ready"}', "f:status")}}


def test_patch_that_writes_managed_fields_is_compared_in_full() -> None:
    assert not managedfields._merge_patch_scope({"metadata": {"managedFields": []}})
    assert not managedfields._merge_patch_scope({"metadata": None})
    assert not managedfields._merge_patch_scope([{"op": "add"}])
    assert managedfields._merge_patch_scope({"metadata": {"labels": {"a": "b"}}, "status": None})


def test_fieldsv1_memos_give_fresh_copies_of_the_plain_results() -> None:
    rng = random.Random(7)
    for _ in range(200):
        pod = _stored_pod(rng)
        for entry in pod["metadata"]["managedFields"]:
            raw = entry["fieldsV1"]
            paths = managedfields.fields_to_set(raw)
            assert paths == managedfields._fields_to_set(raw)
            paths.add(("f:mutated",))  # the memo hands out copies
            assert ("f:mutated",) not in managedfields.fields_to_set(raw)
            enc = managedfields.set_to_fields(managedfields._fields_to_set(raw))
            plain = managedfields._set_to_fields(managedfields._fields_to_set(raw))
            assert json.dumps(enc) == json.dumps(plain)
            enc["f:mutated"] = {}
            assert "f:mutated" not in managedfields.set_to_fields(managedfields._fields_to_set(raw))


def _objects(rng: random.Random) -> list[dict]:
    pods = [_stored_pod(rng) for _ in range(20)]
    odd = [{"metadata": {}}, {"kind": "X", "metadata": {"name": "é\u2028\ud800"}, "data": {"k": [1.5, -0.0, 1e300]}},
           {"metadata": {"name": "a", "labels": {}}, "spec": None},
           {"z": 1, "metadata": {"resourceVersion": "9", "name": "mid"}, "a": [{}]}]
    return pods + odd


@pytest.mark.parametrize("rv", ["12", "98765"])
def test_one_serialization_gives_the_stored_value_and_the_response(rv: str) -> None:
    for obj in _objects(random.Random(3)):
        obj = copy.deepcopy(obj)
        obj["metadata"].pop("resourceVersion", None)
        obj["metadata"]["resourceVersion"] = "1"
        value, cut = _encode_split(obj)
        assert cut is not None
        without = copy.deepcopy(obj)
        without["metadata"].pop("resourceVersion")
        assert value == json.dumps(without, separators=(",", ":")).encode()
        assert list(obj["metadata"])[-1] == "resourceVersion"  # where the splice puts it
        obj["metadata"]["resourceVersion"] = rv
        assert _with_resource_version(cut, rv) == json.dumps(obj, separators=(",", ":")).encode()
        # What a watcher decodes from the stored value serializes the same way.
        decoded = json.loads(value)
        decoded["metadata"]["resourceVersion"] = rv
        assert json.dumps(decoded, separators=(",", ":")).encode() == _with_resource_version(cut, rv)


def test_non_string_top_level_keys_take_the_plain_path() -> None:
    obj = {1: "a", "metadata": {"name": "x", "resourceVersion": "3"}}
    value, cut = _encode_split(obj)
    assert cut is None
    assert value == json.dumps({1: "a", "metadata": {"name": "x"}}, separators=(",", ":")).encode()
    assert obj["metadata"]["resourceVersion"] == "3"


def test_written_json_is_only_for_the_very_object_written() -> None:
    reg = Registry(store=None)  # type: ignore[arg-type]
    obj = {"kind": "Pod", "metadata": {"name": "p", "resourceVersion": "1"}}
    value, cut = _encode_split(obj)
    obj["metadata"]["resourceVersion"] = "5"
    reg._remember(5, obj, cut)
    assert reg.written_json(obj) == json.dumps(obj, separators=(",", ":")).encode()
    assert reg.revision_json(5) == reg.written_json(obj)
    assert reg.written_json(copy.deepcopy(obj)) is None
    assert reg.revision_json(6) is None


async def test_status_writes_keep_the_stored_metadata_whole(tmp_path) -> None:
    """Why the PATCH handler may skip managed fields on /status: whatever it would put there is dropped."""
    from skiff.api.resources import lookup
    from skiff.apiserver import strategy
    from skiff.store import open_store

    assert strategy.keeps_stored_metadata("status")
    assert not strategy.keeps_stored_metadata(None) and not strategy.keeps_stored_metadata("binding")
    store = open_store(str(tmp_path / "db.sqlite"))
    await store.start()
    try:
        reg = Registry(store)
        pods, namespaces = lookup("", "v1", "pods"), lookup("", "v1", "namespaces")
        await reg.create(namespaces, None, {"metadata": {"name": "default"}})
        pod = _stored_pod(random.Random(1))
        for f in ("uid", "creationTimestamp", "generation"):
            pod["metadata"].pop(f)
        created = await reg.create(pods, "default", pod)
        before = copy.deepcopy(created["metadata"])

        def mutate(cur: dict) -> dict:
            new = apply_merge_patch(cur, {"status": {"phase": "Running"}, "metadata": {"labels": {"x": "y"}}})
            new["metadata"]["managedFields"] = [{"manager": "someone", "operation": "Update", "apiVersion": "v1",
                                                 "fieldsType": "FieldsV1", "fieldsV1": {"f:status": {}}}]
            return new
        new, _ = await reg.update(pods, "default", "web-1", {}, subresource="status", mutate=mutate,
                                  mutate_copy=False)
        assert new["status"]["phase"] == "Running"
        assert {k: v for k, v in new["metadata"].items() if k != "resourceVersion"} == \
            {k: v for k, v in before.items() if k != "resourceVersion"}
        assert reg.written_json(new) == json.dumps(new, separators=(",", ":")).encode()
    finally:
        await store.close()


def test_check_decodable_raises_what_the_full_update_raises() -> None:
    kw = {"group": "", "version": "v1", "kind": "Pod", "now": T0}
    old = {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "p"}}
    raised = set()
    for managed in ([{"manager": "m", "fieldsV1": {"f:a": 1}}], [{"manager": "m", "fieldsV1": "x"}],
                    [{"manager": "m", "fieldsV1": {"f:a": {}}}], [], "junk"):
        new = {**old, "metadata": {"name": "p", "managedFields": managed}}
        expected = None
        try:
            managedfields.update_managed_fields(old, copy.deepcopy(new), "x", **kw)
        except Exception as e:  # noqa: BLE001 - whatever it is, the check must raise the same
            expected = type(e)
        got = None
        try:
            managedfields.check_decodable(old, new)
        except Exception as e:  # noqa: BLE001
            got = type(e)
        assert got == expected, managed
        raised.add(got)
    assert len(raised) > 1  # some of them do fail
