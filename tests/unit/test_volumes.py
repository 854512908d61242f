"""Pod volumes without a cluster: what each volume contains (skiff.node.volumes), the mounts a pod
gets, and the atomic writer's directory layout (skiff.node.atomicwriter)."""

from __future__ import annotations

import base64
import os
import re
import threading

import pytest

from skiff.node import volumes
from skiff.node.atomicwriter import DATA_DIR, check_payload_path, write_payload
from skiff.node.volumes import File, MountError, UnsupportedVolume, VolumeError, plan_mounts, render


def b64(text: str | bytes) -> str:
    return base64.b64encode(text.encode() if isinstance(text, str) else text).decode()


POD = {"metadata": {"name": "web", "namespace": "shop", "uid": "u-1",
                    "labels": {"app": "web", "tier": 'front"end'}, "annotations": {"note": "a\nb"}},
       "spec": {"containers": [{"name": "c", "resources": {"limits": {"memory": "64Mi", "cpu": "500m"}}}]}}
CM = {"metadata": {"name": "cfg", "namespace": "shop"},
      "data": {"SPECIAL_LEVEL": "very", "SPECIAL_TYPE": "charm"}, "binaryData": {"logo.bin": b64(b"\x00\xff")}}
SECRET = {"metadata": {"name": "creds", "namespace": "shop"},
          "data": {"username": b64("admin"), "password": b64(b"\x01s3cr\xffet")}}


def vol(name: str, **source) -> dict:
    return {"name": name, **source}


# ---- configMap and secret --------------------------------------------------------------------------


def test_configmap_all_keys_with_default_mode_and_binary_data():
    out = render(POD, vol("v", configMap={"name": "cfg"}), {"cfg": CM}, {}, {})
    assert out == {"SPECIAL_LEVEL": File(b"very", 0o644), "SPECIAL_TYPE": File(b"charm", 0o644),
                   "logo.bin": File(b"\x00\xff", 0o644)}


def test_configmap_items_paths_and_modes():
    src = {"name": "cfg", "defaultMode": 0o400,
           "items": [{"key": "SPECIAL_LEVEL", "path": "conf/level"}, {"key": "SPECIAL_TYPE", "path": "t", "mode": 0o755}]}
    out = render(POD, vol("v", configMap=src), {"cfg": CM}, {}, {})
    assert out == {"conf/level": File(b"very", 0o400), "t": File(b"charm", 0o755)}


def test_missing_configmap_and_key_use_the_kubelets_words():
    with pytest.raises(VolumeError, match=r'^configmap "nope" not found$'):
        render(POD, vol("v", configMap={"name": "nope"}), {"nope": None}, {}, {})
    with pytest.raises(VolumeError, match="^configmap references non-existent config key: missing$"):
        render(POD, vol("v", configMap={"name": "cfg", "items": [{"key": "missing", "path": "m"}]}), {"cfg": CM}, {}, {})
    with pytest.raises(VolumeError, match=r'^secret "gone" not found$'):
        render(POD, vol("v", secret={"secretName": "gone"}), {}, {"gone": None}, {})
    with pytest.raises(VolumeError, match="^references non-existent secret key: nokey$"):
        render(POD, vol("v", secret={"secretName": "creds", "items": [{"key": "nokey", "path": "k"}]}), {},
               {"creds": SECRET}, {})


def test_optional_sources_give_what_exists():
    assert render(POD, vol("v", configMap={"name": "nope", "optional": True}), {"nope": None}, {}, {}) == {}
    src = {"name": "cfg", "optional": True, "items": [{"key": "missing", "path": "m"}, {"key": "SPECIAL_TYPE", "path": "t"}]}
    assert render(POD, vol("v", configMap=src), {"cfg": CM}, {}, {}) == {"t": File(b"charm", 0o644)}
    assert render(POD, vol("v", secret={"secretName": "gone", "optional": True}), {}, {"gone": None}, {}) == {}


def test_secret_data_is_decoded_bytes():
    out = render(POD, vol("v", secret={"secretName": "creds", "defaultMode": 0o600}), {}, {"creds": SECRET}, {})
    assert out == {"username": File(b"admin", 0o600), "password": File(b"\x01s3cr\xffet", 0o600)}


# ---- downwardAPI ----------------------------------------------------------------------------------------


def test_downward_api_formats():
    items = [{"path": "labels", "fieldRef": {"fieldPath": "metadata.labels"}},
             {"path": "annotations", "fieldRef": {"fieldPath": "metadata.annotations"}},
             {"path": "name", "fieldRef": {"fieldPath": "metadata.name"}},
             {"path": "ns", "fieldRef": {"fieldPath": "metadata.namespace"}, "mode": 0o600},
             {"path": "uid", "fieldRef": {"fieldPath": "metadata.uid"}},
             {"path": "app", "fieldRef": {"fieldPath": "metadata.labels['app']"}},
             {"path": "mem", "resourceFieldRef": {"containerName": "c", "resource": "limits.memory", "divisor": "1Mi"}},
             {"path": "cpu", "resourceFieldRef": {"containerName": "c", "resource": "limits.cpu", "divisor": "1m"}}]
    out = render(POD, vol("v", downwardAPI={"items": items}), {}, {}, {})
    # Go's %q quoting, sorted by key, no trailing newline: what the kubelet writes.
    assert out["labels"] == File(b'app="web"\ntier="front\\"end"', 0o644)
    assert out["annotations"].data == b'note="a\\nb"'
    assert out["name"].data == b"web" and out["ns"] == File(b"shop", 0o600) and out["uid"].data == b"u-1"
    assert out["app"].data == b"web"
    assert out["mem"].data == b"64" and out["cpu"].data == b"500"


def test_downward_limit_falls_back_to_node_allocatable():
    items = [{"path": "cpu", "resourceFieldRef": {"containerName": "c", "resource": "limits.cpu"}}]
    pod = {**POD, "spec": {"containers": [{"name": "c"}]}}
    assert render(pod, vol("v", downwardAPI={"items": items}), {}, {}, {}, {"cpu": "4"})["cpu"].data == b"4"


def test_uses_pod_metadata():
    assert volumes.uses_pod_metadata({"spec": {"volumes": [vol("v", downwardAPI={"items": [
        {"path": "l", "fieldRef": {"fieldPath": "metadata.labels"}}]})]}})
    assert not volumes.uses_pod_metadata({"spec": {"volumes": [vol("v", downwardAPI={"items": [
        {"path": "n", "fieldRef": {"fieldPath": "metadata.name"}}]})]}})


# ---- projected --------------------------------------------------------------------------------------------


API_ACCESS = vol("kube-api-access-x2k9q", projected={"defaultMode": 0o644, "sources": [
    {"serviceAccountToken": {"expirationSeconds": 3607, "path": "token"}},
    {"configMap": {"name": "kube-root-ca.crt", "items": [{"key": "ca.crt", "path": "ca.crt"}]}},
    {"downwardAPI": {"items": [{"path": "namespace", "fieldRef": {"apiVersion": "v1",
                                                                   "fieldPath": "metadata.namespace"}}]}}]})
ROOT_CA = {"metadata": {"name": "kube-root-ca.crt"}, "data": {"ca.crt": "PEM"}}


def test_projected_api_access_volume():
    pod = {**POD, "spec": {**POD["spec"], "volumes": [API_ACCESS]}}
    [src] = volumes.token_sources(pod)
    assert (src.path, src.audience, src.expiration_seconds) == ("token", "", 3607)
    assert volumes.referenced_objects(pod) == ({"kube-root-ca.crt"}, set())
    out = render(pod, API_ACCESS, {"kube-root-ca.crt": ROOT_CA}, {}, {src.key: "jwt"})
    assert out == {"token": File(b"jwt", 0o644), "ca.crt": File(b"PEM", 0o644), "namespace": File(b"shop", 0o644)}


def test_projected_collects_every_sources_error():
    with pytest.raises(VolumeError) as e:
        render(POD, API_ACCESS, {"kube-root-ca.crt": None}, {},
               {}, token_errors={"kube-api-access-x2k9q/token": 'failed to fetch token: serviceaccounts "x" not found'})
    assert str(e.value) == '[failed to fetch token: serviceaccounts "x" not found, configmap "kube-root-ca.crt" not found]'


def test_projected_secret_with_mode_and_audience():
    v = vol("p", projected={"defaultMode": 0o440, "sources": [
        {"secret": {"name": "creds", "items": [{"key": "username", "path": "user"}]}},
        {"serviceAccountToken": {"audience": "vault", "expirationSeconds": 600, "path": "vault-token"}}]})
    pod = {**POD, "spec": {**POD["spec"], "volumes": [v]}}
    [src] = volumes.token_sources(pod)
    assert (src.audience, src.expiration_seconds) == ("vault", 600)
    assert volumes.referenced_objects(pod) == (set(), {"creds"})
    assert render(pod, v, {}, {"creds": SECRET}, {src.key: "t"}) == {"user": File(b"admin", 0o440),
                                                                    "vault-token": File(b"t", 0o440)}


def test_unsupported_volume_types_are_named():
    with pytest.raises(UnsupportedVolume, match="persistentVolumeClaim"):
        volumes.volume_kind(vol("data", persistentVolumeClaim={"claimName": "c"}))
    with pytest.raises(UnsupportedVolume, match="no volume plugin matched: Skiff does not provide nfs"):
        volumes.volume_kind(vol("n", nfs={"server": "x", "path": "/"}))
    assert volumes.volume_kind(vol("e", emptyDir={})) == "emptyDir"
    assert volumes.volume_kind(vol("h", hostPath={"path": "/x"})) == "hostPath"


# ---- mounts ---------------------------------------------------------------------------------------------------


def pod_with(volumes_: list[dict], *containers: dict, inits: tuple[dict, ...] = ()) -> dict:
    return {"metadata": {"name": "p", "namespace": "d"},
            "spec": {"volumes": volumes_, "containers": list(containers), "initContainers": list(inits)}}


def test_mounts_are_merged_and_files_volumes_read_only():
    pod = pod_with([vol("cfg", configMap={"name": "x"}), vol("scratch", emptyDir={})],
                   {"name": "a", "volumeMounts": [{"name": "cfg", "mountPath": "/etc/config"},
                                                  {"name": "scratch", "mountPath": "/data"}]},
                   {"name": "b", "volumeMounts": [{"name": "scratch", "mountPath": "/data/"}]},
                   inits=({"name": "i", "volumeMounts": [{"name": "scratch", "mountPath": "/data"}]},))
    plans = plan_mounts(pod)
    assert [(p.volume, p.target, p.read_only) for p in plans] == [("scratch", "/data", False),
                                                                  ("cfg", "/etc/config", True)]
    assert sorted(plans[0].containers) == ["a", "b", "i"]


def test_parents_are_mounted_before_what_is_inside_them():
    pod = pod_with([vol("a", emptyDir={}), vol("b", emptyDir={})],
                   {"name": "c", "volumeMounts": [{"name": "b", "mountPath": "/srv/www/static"},
                                                  {"name": "a", "mountPath": "/srv"}]})
    assert [p.target for p in plan_mounts(pod)] == ["/srv", "/srv/www/static"]


def test_different_things_at_one_path_conflict():
    pod = pod_with([vol("a", emptyDir={}), vol("b", emptyDir={})],
                   {"name": "one", "volumeMounts": [{"name": "a", "mountPath": "/data"}]},
                   {"name": "two", "volumeMounts": [{"name": "b", "mountPath": "/data"}]})
    with pytest.raises(MountError, match='containers "one" and "two" mount different things at /data'):
        plan_mounts(pod)
    ro = pod_with([vol("a", emptyDir={})],
                  {"name": "one", "volumeMounts": [{"name": "a", "mountPath": "/data"}]},
                  {"name": "two", "volumeMounts": [{"name": "a", "mountPath": "/data", "readOnly": True}]})
    with pytest.raises(MountError, match="read-write and volume \"a\" read-only"):
        plan_mounts(ro)


def test_sub_path_and_sub_path_expr():
    pod = pod_with([vol("a", emptyDir={})],
                   {"name": "c", "volumeMounts": [{"name": "a", "mountPath": "/x", "subPath": "one/two"},
                                                  {"name": "a", "mountPath": "/y", "subPathExpr": "logs/$(POD)"}]})
    plans = {p.target: p.sub_path for p in plan_mounts(pod, {"c": {"POD": "web-1"}})}
    assert plans == {"/x": "one/two", "/y": "logs/web-1"}
    with pytest.raises(MountError, match="no environment"):
        plan_mounts(pod)
    bad = pod_with([vol("a", emptyDir={})], {"name": "c", "volumeMounts": [{"name": "a", "mountPath": "/x",
                                                                           "subPath": "../etc"}]})
    with pytest.raises(MountError, match="'..'"):
        plan_mounts(bad)
    with pytest.raises(MountError, match="names no volume"):
        plan_mounts(pod_with([], {"name": "c", "volumeMounts": [{"name": "nope", "mountPath": "/x"}]}))


def test_host_network_warning_leaves_out_api_access():
    pod = pod_with([API_ACCESS, vol("cfg", configMap={"name": "x"})],
                   {"name": "c", "volumeMounts": [{"name": "kube-api-access-x2k9q", "mountPath": "/var/run/x"},
                                                  {"name": "cfg", "mountPath": "/etc/cfg"}]})
    assert volumes.unmounted_on_host_network(pod) == ["cfg"]


# ---- the atomic writer --------------------------------------------------------------------------------------


def test_atomic_writer_layout_and_modes(tmp_path):
    d = tmp_path / "vol"
    assert write_payload(d, {"a": File(b"1", 0o644), "sub/b": File(b"2", 0o600)})
    data = d / DATA_DIR
    # Named as the kubelet names them: ..<UTC time>.<random uint32 in decimal>
    assert data.is_symlink() and re.fullmatch(r"\.\.\d{4}(_\d\d){5}\.\d{1,10}", os.readlink(data))
    assert (d / os.readlink(data)).stat().st_mode & 0o777 == 0o755
    assert os.readlink(d / "a") == "..data/a" and os.readlink(d / "sub") == "..data/sub"
    assert (d / "a").read_bytes() == b"1" and (d / "sub" / "b").read_bytes() == b"2"
    assert (d / "sub" / "b").stat().st_mode & 0o777 == 0o600
    assert (d / "a").stat().st_mode & 0o777 == 0o644
    assert not write_payload(d, {"a": File(b"1", 0o644), "sub/b": File(b"2", 0o600)})  # nothing changed


def test_atomic_writer_update_replaces_version_and_drops_gone_files(tmp_path):
    d = tmp_path / "vol"
    write_payload(d, {"a": File(b"1", 0o644), "gone": File(b"x", 0o644)})
    first = os.readlink(d / DATA_DIR)
    fd = os.open(d, os.O_RDONLY)  # a bind mount of the directory keeps this same directory
    try:
        assert write_payload(d, {"a": File(b"2", 0o644), "new": File(b"y", 0o644)})
        assert os.readlink(d / DATA_DIR) != first
        assert not (d / first).exists()  # the old version is removed
        assert sorted(os.listdir(f"/proc/self/fd/{fd}")) == sorted(["..data", os.readlink(d / DATA_DIR), "a", "new"])
        assert (d / "a").read_bytes() == b"2" and not os.path.lexists(d / "gone")
    finally:
        os.close(fd)


def test_atomic_writer_readers_never_see_a_mix(tmp_path):
    d = tmp_path / "vol"
    write_payload(d, {"x": File(b"0", 0o644), "y": File(b"0", 0o644)})
    stop = threading.Event()
    seen: list[tuple[bytes, bytes]] = []

    def reader() -> None:
        while not stop.is_set():
            # Both through one resolution of ..data, as a reader holding the directory would.
            version = os.path.join(d, os.readlink(d / DATA_DIR))
            try:
                with open(os.path.join(version, "x"), "rb") as fx, open(os.path.join(version, "y"), "rb") as fy:
                    seen.append((fx.read(), fy.read()))
            except FileNotFoundError:
                pass  # that version was removed after we resolved it: a reader retries
    t = threading.Thread(target=reader)
    t.start()
    try:
        for i in range(1, 60):
            write_payload(d, {"x": File(str(i).encode(), 0o644), "y": File(str(i).encode(), 0o644)})
    finally:
        stop.set()
        t.join()
    assert seen and all(a == b for a, b in seen)


def test_payload_paths_are_checked(tmp_path):
    for bad in ("/abs", "../up", "a/../../b", "..hidden", ""):
        with pytest.raises(ValueError):
            check_payload_path(bad)
    with pytest.raises(ValueError):
        write_payload(tmp_path / "v", {"../escape": File(b"", 0o644)})
    assert not (tmp_path / "escape").exists()


# ---- hostPath checks (the node agent's, on a temporary directory) -------------------------------------------


def test_host_path_checks_and_creation(tmp_path):
    from skiff.node.kubelet import check_host_path

    d, f = tmp_path / "dir", tmp_path / "file"
    check_host_path(str(d), "DirectoryOrCreate")
    assert d.is_dir()
    check_host_path(str(f), "FileOrCreate")
    assert f.is_file()
    check_host_path(str(d), "Directory")
    check_host_path(str(f), "File")
    with pytest.raises(VolumeError, match=f"^hostPath type check failed: {f} is not a directory$"):
        check_host_path(str(f), "Directory")
    with pytest.raises(VolumeError, match=f"^hostPath type check failed: {tmp_path}/none is not a file$"):
        check_host_path(str(tmp_path / "none"), "File")
    with pytest.raises(VolumeError, match="is not a socket file"):
        check_host_path(str(f), "Socket")
    with pytest.raises(VolumeError, match="is not a character device"):
        check_host_path(str(f), "CharDevice")
    check_host_path("/dev/null", "CharDevice")
    with pytest.raises(VolumeError, match="no such file or directory"):
        check_host_path(str(tmp_path / "no" / "file"), "FileOrCreate")  # its directory must exist
    with pytest.raises(VolumeError, match="must not contain '..'"):
        check_host_path(str(tmp_path / ".." / "x"), "")
