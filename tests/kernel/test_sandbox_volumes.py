"""Volumes in a pod's sandbox: bind mounts in the pod's own mount namespace, made through the fork
server and through the `ip` fallback, seen by exec sessions; the host's file system and mount table
never change. The pure planning tests at the top run anywhere; the rest need root."""

import asyncio
import os
import shutil
import uuid

import pytest

from skiff.net.ipam import IPPool
from skiff.net.nodes import node_netns
from skiff.net.ns import detach, mount, mount_points, top_mount_points_under
from skiff.node.forkserver import ForkServer
from skiff.node.runtime import exec_in_container
from skiff.node.sandbox import (
    Sandbox,
    SandboxError,
    VolumeMount,
    create_sandbox,
    destroy_sandbox,
    list_sandbox_netns,
    plan_mounts,
)

needs_root = pytest.mark.skipif(os.geteuid() != 0, reason="needs root for namespaces and mounts")
TOKEN_DIR = "/var/run/secrets/kubernetes.io/serviceaccount"


# ---- planning (no root) -----------------------------------------------------------------------------


def test_mounts_are_planned_parents_first_once_each():
    a = VolumeMount("/src/a", "/data/sub/deeper")
    b = VolumeMount("/src/b", "/data")
    c = VolumeMount("/src/c", "/data-x")
    d = VolumeMount("/src/d", "/data/sub", read_only=True)
    e = VolumeMount("/src/e", "/data")  # same target, given later: ends up on top
    assert plan_mounts([a, b, c, d, b, e]) == [b, e, d, a, c]
    assert plan_mounts([]) == []


def test_relative_paths_are_refused_naming_the_target():
    with pytest.raises(SandboxError, match='"etc/config"'):
        plan_mounts([VolumeMount("/src", "etc/config")])
    with pytest.raises(SandboxError, match='"/etc/config".*source'):
        plan_mounts([VolumeMount("src", "/etc/config")])


def test_mount_points_to_re_attach_under_a_directory():
    info = ("22 1 8:1 / / rw - ext4 /dev/vda rw\n"
            "23 22 0:5 / /proc rw - proc proc rw\n"
            "24 22 0:6 / /run rw - tmpfs tmpfs rw\n"
            "25 24 0:7 / /run/lock rw - tmpfs tmpfs rw\n"
            "26 24 0:8 / /run/user/0 rw - tmpfs tmpfs rw\n"
            "27 26 0:9 / /run/user/0/gvfs rw - fuse gvfsd rw\n"
            "28 22 0:10 / /run-b rw - tmpfs tmpfs rw\n"
            "29 22 0:11 / /mnt/a\\040b rw - tmpfs tmpfs rw\n")
    points = mount_points(info)
    assert points[-1] == "/mnt/a b"
    assert top_mount_points_under("/run", points) == ["/run/lock", "/run/user/0"]
    assert top_mount_points_under("/", points) == ["/mnt/a b", "/proc", "/run", "/run-b"]
    assert top_mount_points_under("/run/lock", points) == []


# ---- kernel -----------------------------------------------------------------------------------------


def host_mounts() -> list[str]:
    with open("/proc/self/mountinfo") as f:
        return f.read().splitlines()


def foreign_mounts(lines: list[str], *tags: str) -> list[str]:
    """Host mount table lines that a pod's volumes could have leaked."""
    return [line for line in lines if "skiff-pod" in line or any(tag in line for tag in tags)]


@pytest.fixture(params=["fork-server", "ip"])
async def server(request):
    """How sandboxes are made: by the fork server (the agent's way), or with `ip` and a holder."""
    if request.param == "ip":
        yield None
        return
    fs = await ForkServer.start()
    try:
        yield fs
    finally:
        await fs.close()


@pytest.fixture
def tag():
    return f"skiffvol-{uuid.uuid4().hex[:8]}"


@pytest.fixture
def sources(tmp_path, tag):
    """Host directories shaped like the kubelet's: an atomic-writer token volume, an emptyDir-like
    one, a file (a subPath that is a file) and a script."""
    root = tmp_path / tag
    token = root / "token"
    (token / "..2025_01_01_00_00_00.1").mkdir(parents=True)
    (token / "..2025_01_01_00_00_00.1" / "token").write_text("first-token")
    (token / "..2025_01_01_00_00_00.1" / "namespace").write_text("default")
    os.symlink("..2025_01_01_00_00_00.1", token / "..data")
    for key in ("token", "namespace"):
        os.symlink(f"..data/{key}", token / key)
    (root / "cache").mkdir()
    (root / "config").mkdir()
    (root / "config" / "run.sh").write_text("#!/bin/sh\necho ran in $(pwd)\n")
    (root / "config" / "run.sh").chmod(0o755)
    (root / "app.conf").write_text("from-a-subpath\n")
    (root / "existing").mkdir()
    (root / "existing" / "host-only").write_text("the host's")
    (root / "over-existing").mkdir()
    (root / "over-existing" / "pod-only").write_text("the volume's")
    yield root
    shutil.rmtree(root, ignore_errors=True)


async def make(cfg, mounts, server, name="web", pool: IPPool | None = None) -> Sandbox:
    pool = pool or IPPool(cfg.node_pod_cidr(0))
    uid = os.urandom(4).hex()
    ip = pool.allocate(uid)
    return await create_sandbox(node_netns(cfg, 0), uid, name, "default", ip, pool.gateway, "nameserver 10.96.0.10\n",
                                f"127.0.0.1\tlocalhost\n{ip}\t{name}\n", fork_server=server, mounts=mounts)


async def sh(sb: Sandbox, script: str) -> tuple[int, str]:
    result = await exec_in_container(sb, ["sh", "-c", script], timeout=20)
    return result.exit_code, (result.stdout + result.stderr).decode()


def swap_token(token_dir, content: str) -> None:
    """What the kubelet's atomic writer does: a new timestamped dir, then ..data swapped by rename."""
    new = token_dir / "..2025_01_01_00_00_01.2"
    new.mkdir()
    (new / "token").write_text(content)
    (new / "namespace").write_text("default")
    os.symlink(new.name, token_dir / "..data_tmp")
    os.rename(token_dir / "..data_tmp", token_dir / "..data")


def mnt_ns_holders(inode: int) -> list[int]:
    pids = []
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                if os.stat(f"/proc/{entry}/ns/mnt").st_ino == inode:
                    pids.append(int(entry))
            except OSError:
                pass
    return pids


@needs_root
async def test_volumes_seen_in_the_pod_only_live_and_read_only(network, server, sources, tag):
    top = f"/{tag}"  # missing: the pod's root gets a private view
    etc_dir = f"/etc/{tag}"  # missing: /etc gets one, and the pod's /etc files must stay
    existing = str(sources / "existing")  # exists on the host: bound over
    created_on_host = [top, etc_dir, "/run/secrets"]
    before = {path: os.path.lexists(path) for path in created_on_host}
    assert not before[top] and not before[etc_dir]
    mounts = [
        VolumeMount(str(sources / "token"), TOKEN_DIR, read_only=True),
        VolumeMount(str(sources / "cache"), f"{top}/cache"),
        VolumeMount(str(sources / "config"), f"{etc_dir}/config", read_only=True),
        VolumeMount(str(sources / "cache"), f"{etc_dir}/config/nested"),  # inside a read-only one
        VolumeMount(str(sources / "app.conf"), f"{etc_dir}/app.conf", read_only=True),  # a file
        VolumeMount(str(sources / "over-existing"), existing),
    ]
    mounts_before = host_mounts()
    sb = await make(network, mounts, server)
    mnt_inode = os.stat(sb.ns_path("mnt")).st_ino
    try:
        code, out = await sh(sb, f"""
            cat {TOKEN_DIR}/token; echo; cat {TOKEN_DIR}/namespace; echo
            cat {etc_dir}/app.conf; ls {existing}; cat /etc/resolv.conf; hostname; ls /sys/class/net | tr '\\n' ' '; echo
            echo modes $(stat -c %a /etc) $(stat -c %a /); echo hello > {top}/cache/written; ls {etc_dir}/config/nested
            echo x > {TOKEN_DIR}/new || true; echo x > {etc_dir}/config/new || true; echo x > {etc_dir}/app.conf || true
            echo x > {etc_dir}/new-in-private-etc && echo private-etc-writable""")
        assert code == 0, out
        lines = out.splitlines()
        assert lines[:6] == ["first-token", "default", "from-a-subpath", "pod-only",
                             "nameserver 10.96.0.10", "web"], out
        assert lines[6].split() == ["eth0", "lo"], out
        host_modes = (f"{os.stat('/etc').st_mode & 0o7777:o}", f"{os.stat('/').st_mode & 0o7777:o}")
        assert lines[7] == f"modes {host_modes[0]} {host_modes[1]}", out
        assert lines[8] == "written", out  # the nested mount shows the cache volume
        assert out.count("Read-only file system") == 3, out
        assert lines[9] == "private-etc-writable", out
        # Writes to a writable volume reach its directory; the nested mount point was made inside
        # the parent volume's directory, as a runtime's mkdir does.
        assert (sources / "cache" / "written").read_text() == "hello\n"
        assert (sources / "config" / "nested").is_dir()
        assert not (sources / "token" / "new").exists()
        # The kubelet swaps the token in; the pod sees it.
        swap_token(sources / "token", "second-token")
        code, out = await sh(sb, f"cat {TOKEN_DIR}/token")
        assert (code, out) == (0, "second-token"), out
        # A script from a volume runs, in a working directory that only the pod has.
        result = await exec_in_container(sb, [f"{etc_dir}/config/run.sh"], working_dir=f"{top}/cache")
        assert (result.exit_code, result.stdout) == (0, f"ran in {top}/cache\n".encode()), result
        # The host saw nothing: no directory made, no mount, its own files untouched.
        assert {path: os.path.lexists(path) for path in created_on_host} == before
        assert os.listdir(existing) == ["host-only"]
        assert not os.path.exists(f"/etc/{tag}") and "private-etc-writable" not in os.listdir("/etc")
        assert foreign_mounts(host_mounts(), tag) == foreign_mounts(mounts_before, tag) == []
    finally:
        await destroy_sandbox(sb)
    assert foreign_mounts(host_mounts(), tag) == []
    assert mnt_ns_holders(mnt_inode) == []
    assert list_sandbox_netns(node_netns(network, 0)) == []


@needs_root
async def test_a_sandbox_without_volumes_is_as_before(network, server):
    sb = await make(network, [], server)
    try:
        code, out = await sh(sb, f"test -e {TOKEN_DIR} || echo no-token; grep -c ' - overlay ' /proc/self/mountinfo")
        assert (code, out) == (1, "no-token\n0\n"), out  # grep -c exits 1 when it counted nothing
    finally:
        await destroy_sandbox(sb)


@needs_root
@pytest.mark.parametrize("case", ["vanished source", "target in /proc", "file over a directory",
                                  "directory over a file", "beneath a file volume"])
async def test_a_volume_that_cannot_be_mounted_fails_the_sandbox_naming_it(network, server, sources, tag, case):
    good = VolumeMount(str(sources / "cache"), f"/{tag}/ok")
    bad = {
        "vanished source": VolumeMount(str(sources / "gone"), f"/{tag}/data"),
        "target in /proc": VolumeMount(str(sources / "cache"), f"/proc/{tag}"),
        "file over a directory": VolumeMount(str(sources / "app.conf"), "/etc"),
        "directory over a file": VolumeMount(str(sources / "cache"), "/etc/hostname"),
        # Fails after the pod's root got its private view (the server must come back from it).
        "beneath a file volume": VolumeMount(str(sources / "cache"), f"/{tag}/a.conf/sub"),
    }[case]
    extra = [VolumeMount(str(sources / "app.conf"), f"/{tag}/a.conf")] if case == "beneath a file volume" else []
    mounts_before = host_mounts()
    with pytest.raises(SandboxError) as info:
        await make(network, [bad, good, *extra], server)
    message = str(info.value)
    assert f'to rootfs at "{bad.target}"' in message and bad.source in message, message
    assert list_sandbox_netns(node_netns(network, 0)) == []
    assert not os.path.lexists(f"/{tag}")
    assert foreign_mounts(host_mounts(), tag) == foreign_mounts(mounts_before, tag) == []
    if server is not None:
        assert server.alive  # the server is fine, and the next sandbox works
        sb = await make(network, [good], server)
        try:
            code, out = await sh(sb, f"ls -d /{tag}/ok")
            assert (code, out) == (0, f"/{tag}/ok\n")
        finally:
            await destroy_sandbox(sb)


@needs_root
async def test_token_mounts_in_many_sandboxes_side_by_side(network, server, sources):
    """A burst: every pod gets its own token at the same path; each sees its own only."""
    for n in range(4):
        d = sources / f"tok{n}"
        d.mkdir()
        (d / "token").write_text(f"token-{n}")
    pool = IPPool(network.node_pod_cidr(0))
    made = await asyncio.gather(*[
        make(network, [VolumeMount(str(sources / f"tok{n}"), TOKEN_DIR, read_only=True)], server, f"p{n}", pool)
        for n in range(4)])
    try:
        outs = await asyncio.gather(*[sh(sb, f"cat {TOKEN_DIR}/token") for sb in made])
        assert outs == [(0, f"token-{n}") for n in range(4)]
    finally:
        await asyncio.gather(*[destroy_sandbox(sb) for sb in made])
    assert list_sandbox_netns(node_netns(network, 0)) == []


@needs_root
async def test_a_source_on_its_own_mount_below_a_private_view(network, server, tmp_path, tag):
    """The kubelet's directories may be on a tmpfs (/run, /tmp): the pod's root gets a private view
    (a missing target), which re-attaches copies of the host's mounts; the source is still bound."""
    mnt = tmp_path / "own-mount"
    mnt.mkdir()
    mount("skiff-test-src", str(mnt), "tmpfs", 0, "size=1m")
    try:
        (mnt / "data").mkdir()
        (mnt / "data" / "f").write_text("on a tmpfs")
        (mnt / "file").write_text("a file on a tmpfs")
        sb = await make(network, [VolumeMount(str(mnt / "data"), f"/{tag}/data"),
                                  VolumeMount(str(mnt / "file"), f"/{tag}/file")], server)
        try:
            code, out = await sh(sb, f"cat /{tag}/data/f; echo; cat /{tag}/file")
            assert (code, out) == (0, "on a tmpfs\na file on a tmpfs"), out
        finally:
            await destroy_sandbox(sb)
    finally:
        detach(str(mnt))
    assert not os.path.lexists(f"/{tag}")
