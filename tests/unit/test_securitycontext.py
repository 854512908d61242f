"""Who a container runs as (skiff.node.securitycontext) and fsGroup volume ownership."""

from __future__ import annotations

import os
import stat

import pytest

from skiff.node.securitycontext import (
    CAPABILITIES,
    DEFAULT_CAPABILITIES,
    Credentials,
    NonRootError,
    capabilities,
    credentials,
    fs_group,
    setpriv_argv,
)
from skiff.node.volumeownership import set_volume_ownership


def pod(pod_sc: dict | None = None, container_sc: dict | None = None) -> tuple[dict, dict]:
    c = {"name": "app", **({"securityContext": container_sc} if container_sc is not None else {})}
    return ({"metadata": {"name": "web", "namespace": "shop", "uid": "u-1"},
             "spec": {"securityContext": pod_sc or {}, "containers": [c]}}, c)


DEFAULT_BOUNDING = "--bounding-set=-all,+chown,+dac_override,+fowner,+fsetid,+kill,+setgid,+setuid,+setpcap,+net_bind_service"


def test_nothing_asked_is_the_runtimes_default():
    assert credentials(*pod()) == Credentials(0, 0, (0,))
    assert credentials(*pod({"runAsNonRoot": False}, {"privileged": False})) == Credentials(0, 0, (0,))
    assert setpriv_argv(credentials(*pod())) == ["setpriv", "--reuid=0", "--regid=0", "--groups=0", DEFAULT_BOUNDING]


def test_capabilities_as_containerds_cri_plugin_changes_its_default():
    assert set(DEFAULT_CAPABILITIES) == {"CHOWN", "DAC_OVERRIDE", "FSETID", "FOWNER", "SETGID", "SETUID", "SETPCAP",
                                         "NET_BIND_SERVICE", "KILL"}  # containerd 2.x
    assert capabilities({}) == DEFAULT_CAPABILITIES
    assert "NET_ADMIN" in capabilities({"capabilities": {"add": ["NET_ADMIN", "SYS_TIME"]}})
    assert capabilities({"capabilities": {"drop": ["ALL"], "add": ["NET_BIND_SERVICE"]}}) == ("NET_BIND_SERVICE",)
    # add ALL, then drop ALL, then the named ones: ALL + drop CHOWN is everything but CHOWN.
    assert capabilities({"capabilities": {"add": ["ALL"], "drop": ["CHOWN"]}}) == CAPABILITIES[1:]
    assert capabilities({"capabilities": {"add": ["ALL"], "drop": ["ALL"]}}) == ()
    assert capabilities({"capabilities": {"add": ["CAP_SYS_ADMIN", "no_such"], "drop": ["kill"]}}) == tuple(
        c for c in CAPABILITIES if c in set(DEFAULT_CAPABILITIES) - {"KILL"} | {"SYS_ADMIN"})
    assert capabilities({"privileged": True, "capabilities": {"drop": ["ALL"]}}) == CAPABILITIES
    creds = credentials(*pod(container_sc={"privileged": True}))
    assert creds.privileged and setpriv_argv(creds) == ["setpriv", "--reuid=0", "--regid=0", "--groups=0"]
    assert Credentials(0, 0, (0,), capabilities=("CHOWN", "NET_ADMIN")).capability_mask() == (1 << 0) | (1 << 12)


def test_the_docs_demo_groups_include_primary_fs_group_and_supplemental():
    creds = credentials(*pod({"runAsUser": 1000, "runAsGroup": 3000, "fsGroup": 2000, "supplementalGroups": [4000]},
                             {"allowPrivilegeEscalation": False}))
    assert creds == Credentials(1000, 3000, (2000, 3000, 4000), no_new_privs=True)
    assert setpriv_argv(creds) == ["setpriv", "--reuid=1000", "--regid=3000", "--groups=2000,3000,4000",
                                   DEFAULT_BOUNDING, "--no-new-privs"]


def test_container_fields_win_over_the_pods():
    creds = credentials(*pod({"runAsUser": 1000, "runAsGroup": 3000}, {"runAsUser": 2000}))
    assert (creds.uid, creds.gid) == (2000, 3000)
    creds = credentials(*pod({"runAsUser": 1000}, {"runAsGroup": 7}))
    assert (creds.uid, creds.gid, creds.groups) == (1000, 7, (7,))


def test_an_unset_group_is_root_as_for_a_user_the_image_does_not_name():
    assert credentials(*pod({"runAsUser": 1000})) == Credentials(1000, 0, (0,))
    assert credentials(*pod({"fsGroup": 2000})) == Credentials(0, 0, (0, 2000))


def test_run_as_non_root_in_the_kubelets_words():
    with pytest.raises(NonRootError, match=r'^container has runAsNonRoot and image will run as root '
                                           r'\(pod: "web_shop\(u-1\)", container: app\)$'):
        credentials(*pod({"runAsNonRoot": True}))
    with pytest.raises(NonRootError, match=r"^container's runAsUser breaks non-root policy"):
        credentials(*pod({"runAsNonRoot": True}, {"runAsUser": 0}))
    # The container's own runAsNonRoot: false overrides the pod's true.
    assert credentials(*pod({"runAsNonRoot": True}, {"runAsNonRoot": False})).uid == 0
    assert credentials(*pod({"runAsNonRoot": True, "runAsUser": 5})).uid == 5


def test_fs_group():
    assert fs_group(pod({"fsGroup": 2000})[0]) == 2000
    assert fs_group(pod()[0]) is None


@pytest.mark.skipif(os.geteuid() != 0, reason="changing a file's group to any group needs root")
def test_volume_ownership_masks_setgid_and_symlinks(tmp_path):
    d = tmp_path / "vol"
    (d / "sub").mkdir(parents=True)
    (d / "sub" / "f").write_text("x")
    os.chmod(d / "sub" / "f", 0o600)
    os.chmod(d / "sub", 0o700)
    os.symlink("sub/f", d / "link")
    set_volume_ownership(str(d), 2000, read_only=True)
    f, sub, link = os.lstat(d / "sub" / "f"), os.lstat(d / "sub"), os.lstat(d / "link")
    assert f.st_gid == sub.st_gid == link.st_gid == 2000
    assert stat.S_IMODE(f.st_mode) == 0o640  # 0600 | 0440
    assert stat.S_IMODE(sub.st_mode) == 0o2750  # 0700 | 0440 | 0110 | setgid
    set_volume_ownership(str(d), 2000, read_only=False)
    assert stat.S_IMODE(os.lstat(d / "sub" / "f").st_mode) == 0o660
