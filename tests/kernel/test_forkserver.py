"""Built-in images started by the fork server: same namespaces, logs, exit codes and stop semantics as
the nsenter path, much faster, and a fallback to nsenter when the server is gone."""

import asyncio
import json
import os
import re
import signal
import subprocess
import time
import urllib.request

import pytest

from skiff.images.registry import resolve
from skiff.net.ipam import IPPool
from skiff.net.nodes import node_netns
from skiff.node import runtime
from skiff.node.forkserver import ForkServer, ForkServerError, SpawnFailed, is_builtin_argv
from skiff.node.runtime import ContainerStartError, read_log, start_container
from skiff.node.sandbox import create_sandbox, destroy_sandbox

pytestmark = pytest.mark.skipif(os.geteuid() != 0, reason="needs root for network namespaces")
RESOLV = "nameserver 10.96.0.10\n"


@pytest.fixture
async def server():
    fs = await ForkServer.start()
    runtime.use_fork_server(fs)
    try:
        yield fs
    finally:
        runtime.use_fork_server(None)
        await fs.close()
        assert subprocess.run(["kill", "-0", str(fs.pid)], capture_output=True).returncode != 0


@pytest.fixture
async def sandbox(network):
    pool = IPPool(network.node_pod_cidr(0))
    uid = os.urandom(4).hex()
    ip = pool.allocate(uid)
    sb = await create_sandbox(node_netns(network, 0), uid, "web", "default", ip, pool.gateway, RESOLV,
                              f"127.0.0.1\tlocalhost\n{ip}\tweb\n")
    try:
        yield sb
    finally:
        await destroy_sandbox(sb)


def builtin(image: str, args: list[str] | None = None) -> tuple[list[str], dict[str, str]]:
    r = resolve(image, None, args)
    assert is_builtin_argv(r.argv)
    return r.argv, {**r.env, "HOSTNAME": "web"}


async def until_accepting(ip: str, port: int, timeout: float = 5.0) -> None:
    deadline = time.monotonic() + timeout
    while True:
        try:
            _, w = await asyncio.open_connection(ip, port)
            w.close()
            return
        except OSError:
            if time.monotonic() > deadline:
                raise
            await asyncio.sleep(0.002)


async def until_waiting_for_sigterm(pid: int) -> None:
    """pause blocks SIGTERM and waits for it; a SIGTERM before that would simply kill it (143)."""
    for _ in range(500):
        if "sigtimedwait" in open(f"/proc/{pid}/wchan").read():
            return
        status = open(f"/proc/{pid}/status").read()
        blocked = int(next(line for line in status.splitlines() if line.startswith("SigBlk:")).split()[1], 16)
        if blocked & (1 << (signal.SIGTERM - 1)):
            return
        await asyncio.sleep(0.005)
    raise TimeoutError(f"{pid} never blocked SIGTERM")


def http_get(url: str) -> str:
    opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
    with opener.open(url, timeout=3) as r:
        return r.read().decode()


def own_pid_namespace(pid: int) -> list[int]:
    """The pids of process `pid`, from the host's PID namespace down to its own (NSpid)."""
    with open(f"/proc/{pid}/status") as f:
        line = next(line for line in f if line.startswith("NSpid:"))
    return [int(n) for n in line.split()[1:]]


def proc_entries(pid: int) -> list[str]:
    """The processes the /proc of process `pid`'s mount namespace lists."""
    return sorted(e for e in os.listdir(f"/proc/{pid}/root/proc") if e.isdigit())


def netns_pids(netns: str) -> list[int]:
    out = subprocess.run(["ip", "netns", "pids", netns], capture_output=True, text=True).stdout
    return [int(p) for p in out.split()]


async def test_forked_container_is_in_the_sandbox_and_behaves_like_nsenter(network, sandbox, server, tmp_path):
    argv, env = builtin("gcr.io/google-samples/hello-app:2.0")
    env["PYTHONUNBUFFERED"] = "1"
    timings = {}
    procs = {}
    for how in ("nsenter", "forkserver"):
        runtime.use_fork_server(server if how == "forkserver" else None)
        t0 = time.perf_counter()
        proc = await start_container(sandbox, argv, env, str(tmp_path), str(tmp_path / how / "0.log"))
        await until_accepting(sandbox.ip, 8080)
        timings[how] = (time.perf_counter() - t0) * 1000
        procs[how] = proc
        assert proc.forked == (how == "forkserver")
        # The process is where a container is: the pod's namespaces, PID 1 of its own PID
        # namespace with a /proc of it, its own process group, the container's directory, and a
        # command line that names the image.
        for kind in ("net", "uts"):
            assert os.stat(f"/proc/{proc.pid}/ns/{kind}").st_ino == os.stat(sandbox.ns_path(kind)).st_ino
        assert own_pid_namespace(proc.pid) == [proc.pid, 1]
        assert os.stat(f"/proc/{proc.pid}/ns/mnt").st_ino not in (
            os.stat(sandbox.ns_path("mnt")).st_ino, os.stat("/proc/self/ns/mnt").st_ino)
        assert proc_entries(proc.pid) == ["1"]
        assert proc.pid in netns_pids(sandbox.netns)
        assert os.getpgid(proc.pid) == proc.pid and os.getsid(proc.pid) == proc.pid
        assert os.readlink(f"/proc/{proc.pid}/cwd") == str(tmp_path)
        cmdline = open(f"/proc/{proc.pid}/cmdline", "rb").read().split(b"\0")[:-1]
        assert [c.decode() for c in cmdline] == argv
        environ = dict(e.decode().split("=", 1) for e in open(f"/proc/{proc.pid}/environ", "rb").read().split(b"\0")
                       if b"=" in e)
        assert environ == runtime.container_env(sandbox, env)
        body = await asyncio.to_thread(http_get, f"http://{sandbox.ip}:8080/hi")
        assert body == "Hello, world!\nVersion: 2.0.0\nHostname: web\n"
        assert await proc.stop(grace_seconds=5) == procs[how].exit_code
        assert read_log(str(tmp_path / how / "0.log")).count(b"Serving request: /hi") == 1
    print(f"start_container() -> accepting TCP: nsenter {timings['nsenter']:.1f} ms, "
          f"fork server {timings['forkserver']:.1f} ms")
    assert procs["forkserver"].exit_code == procs["nsenter"].exit_code
    assert timings["forkserver"] < timings["nsenter"]
    # The same log lines (apart from Go-style time prefixes) either way.
    logs = [re.sub(rb"(?m)^\d{4}/\d\d/\d\d \d\d:\d\d:\d\d ", b"", read_log(str(tmp_path / how / "0.log")))
            for how in ("nsenter", "forkserver")]
    assert logs[0] == logs[1] and b"Server listening on port 8080" in logs[0]


async def test_environment_exit_codes_and_signals(network, sandbox, server, tmp_path):
    argv, env = builtin("traefik/whoami", ["--port", "8081"])
    env["GREETING"] = "hej"
    web = await start_container(sandbox, argv, env, None, str(tmp_path / "w.log"))
    try:
        assert web.forked
        await until_accepting(sandbox.ip, 8081)
        data = json.loads(await asyncio.to_thread(http_get, f"http://{sandbox.ip}:8081/api?env=true"))
        assert data["environ"]["GREETING"] == "hej" and data["hostname"] == "web"
        assert "SKIFF_FORKSERVER" not in data["environ"] and data["environ"]["PATH"] == env["PATH"]
        assert os.readlink(f"/proc/{web.pid}/cwd") == "/"
        # kill -9 of the container process: 128 + 9, the rest of its group goes too.
        os.kill(web.pid, signal.SIGKILL)
        assert await asyncio.wait_for(web.wait(), 3) == 137
        assert not web.running and web.finished_at is not None
    finally:
        await web.stop(0.1)

    # An exit status of the program itself, with its message in the log, as through nsenter.
    bad_argv = [*argv[:3], "no-such-program"]
    codes = []
    for srv in (server, None):
        runtime.use_fork_server(srv)
        proc = await start_container(sandbox, bad_argv, {}, None, str(tmp_path / f"bad-{bool(srv)}.log"))
        assert proc.forked == bool(srv)
        codes.append(await asyncio.wait_for(proc.wait(), 10))
        assert b"unknown built-in program 'no-such-program'" in read_log(str(tmp_path / f"bad-{bool(srv)}.log"))
    assert codes == [2, 2]
    runtime.use_fork_server(server)

    # pause: SIGTERM -> clean exit 0 after its message; stop() signals the whole group.
    argv, env = builtin("registry.k8s.io/pause:3.10")
    pause = await start_container(sandbox, argv, env, None, str(tmp_path / "p.log"))
    await until_waiting_for_sigterm(pause.pid)
    t = time.perf_counter()
    assert await pause.stop(grace_seconds=5) == 0
    assert time.perf_counter() - t < 1
    assert read_log(str(tmp_path / "p.log")) == b"Shutting down, got signal: Terminated\n"


async def test_a_forked_built_in_image_says_when_it_listens(network, sandbox, server, tmp_path):
    # Started by the fork server, the image tells the agent once its listeners are bound: at
    # that moment the port accepts connections. Through nsenter it cannot say (None: poll).
    argv, env = builtin("gcr.io/google-samples/hello-app:1.0")
    env["PORT"] = "8089"
    proc = await start_container(sandbox, argv, env, None, str(tmp_path / "l.log"))
    try:
        assert proc.forked and proc.listened is not None
        await asyncio.wait_for(proc.listened.wait(), 5)
        _, w = await asyncio.open_connection(sandbox.ip, 8089)
        w.close()
    finally:
        await proc.stop(1)
    runtime.use_fork_server(None)
    plain = await start_container(sandbox, argv, env, None, str(tmp_path / "n.log"))
    try:
        assert not plain.forked and plain.listened is None
    finally:
        await plain.stop(1)
        runtime.use_fork_server(server)


async def test_a_burst_of_starts_is_served_side_by_side_in_order(network, sandbox, server, tmp_path):
    # Requests are answered as each child is ready, not one after the other; a child that exits at
    # once (a bad program name) is still reported started before exited, and a failing setup
    # in the middle of the burst fails alone.
    argv, env = builtin("registry.k8s.io/pause:3.10")
    bad_argv = [*argv[:3], "no-such-program"]
    r, w = os.pipe()
    try:
        starts = [start_container(sandbox, bad_argv if i % 3 == 0 else argv, env, None, str(tmp_path / f"{i}.log"))
                  for i in range(12)]
        broken = server.spawn(argv, env, None, {"net": "/proc/no-such/ns/net"}, w, w)
        *procs, failure = await asyncio.gather(*starts, broken, return_exceptions=True)
    finally:
        os.close(r)
        os.close(w)
    assert isinstance(failure, SpawnFailed)
    try:
        assert all(p.forked for p in procs)
        for i, proc in enumerate(procs):
            if i % 3 == 0:
                assert await asyncio.wait_for(proc.wait(), 10) == 2
            else:
                await until_waiting_for_sigterm(proc.pid)
                assert proc.running and proc.pid in netns_pids(sandbox.netns)
    finally:
        codes = await asyncio.gather(*(p.stop(5) for p in procs if p.running))
    assert codes and set(codes) == {0}


async def test_setup_errors_are_start_errors(network, sandbox, server, tmp_path):
    argv, env = builtin("registry.k8s.io/pause:3.10")
    r, w = os.pipe()
    try:
        with pytest.raises(SpawnFailed, match="No such file"):
            await server.spawn(argv, env, None, {"net": "/proc/no-such/ns/net"}, w, w)
        with pytest.raises(SpawnFailed, match="No such file or directory"):
            await server.spawn(argv, env, "/no/such/dir", {"net": sandbox.netns_path}, w, w)
        with pytest.raises(ForkServerError, match="not a built-in"):
            await server.spawn(["sleep", "1"], env, None, {}, w, w)
    finally:
        os.close(r)
        os.close(w)
    # The server carries on after refusals.
    proc = await start_container(sandbox, argv, env, None, str(tmp_path / "p.log"))
    assert proc.forked
    await until_waiting_for_sigterm(proc.pid)
    assert await proc.stop(5) == 0
    # A sandbox whose pause process is gone: the runtime refuses before asking the server.
    os.kill(sandbox.pause_pid, signal.SIGKILL)
    for _ in range(100):
        if not sandbox.is_alive():
            break
        await asyncio.sleep(0.01)
    with pytest.raises(ContainerStartError, match="is not running"):
        await start_container(sandbox, argv, env, None, str(tmp_path / "q.log"))


async def test_server_death_kills_its_containers_and_starts_fall_back_to_nsenter(network, sandbox, server, tmp_path):
    argv, env = builtin("registry.k8s.io/pause:3.10")
    first = await start_container(sandbox, argv, env, None, str(tmp_path / "a.log"))
    assert first.forked
    os.kill(server.pid, signal.SIGKILL)
    assert await asyncio.wait_for(first.wait(), 3) == 137
    assert "exited" in await asyncio.wait_for(server.wait_lost(), 1)
    for _ in range(100):  # PR_SET_PDEATHSIG: the container went with its server
        if first.pid not in netns_pids(sandbox.netns):
            break
        await asyncio.sleep(0.01)
    assert first.pid not in netns_pids(sandbox.netns)
    second = await start_container(sandbox, argv, env, None, str(tmp_path / "b.log"))
    try:
        assert not second.forked and second.running
        for _ in range(200):  # nsenter has to join the namespace first
            if second.pid in netns_pids(sandbox.netns):
                break
            await asyncio.sleep(0.01)
        assert second.pid in netns_pids(sandbox.netns)
        await until_waiting_for_sigterm(second.pid)
    finally:
        assert await second.stop(5) == 0


async def test_closing_the_server_ends_it_and_its_children(network, sandbox, tmp_path):
    fs = await ForkServer.start()
    runtime.use_fork_server(fs)
    try:
        argv, env = builtin("registry.k8s.io/pause:3.10")
        proc = await start_container(sandbox, argv, env, None, str(tmp_path / "a.log"))
        assert proc.forked
    finally:
        runtime.use_fork_server(None)
        await fs.close()
    assert await asyncio.wait_for(proc.wait(), 3) == 137
    assert subprocess.run(["kill", "-0", str(fs.pid)], capture_output=True).returncode != 0
    with pytest.raises(ForkServerError):
        await fs.spawn(argv, env, None, {}, 1, 2)
