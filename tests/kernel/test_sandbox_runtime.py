"""Pod sandboxes and container processes on a real 2-node mini cluster network.

Needs root for the kernel tests; the CRI log format tests at the top run anywhere.
"""

import asyncio
import errno
import os
import signal
import socket
import subprocess
import sys
import time
from datetime import UTC, datetime, timedelta

import pytest

from skiff.images.registry import resolve
from skiff.net.cleanup import destroy_cluster_network_sync
from skiff.net.ipam import IPPool
from skiff.net.nodes import node_netns
from skiff.net.ns import call_in_netns, list_netns, netns_pids, pin_dir, run_in_netns_argv, sandbox_files_dir
from skiff.node import pidns
from skiff.node.forkserver import ForkServer
from skiff.node.runtime import (
    ContainerStartError,
    LogWriter,
    exec_in_container,
    follow_log,
    format_timestamp,
    parse_timestamp,
    read_log,
    start_container,
)
from skiff.node.sandbox import Sandbox, create_sandbox, destroy_sandbox, list_sandbox_netns

needs_root = pytest.mark.skipif(os.geteuid() != 0, reason="needs root for network namespaces")
RESOLV = "search default.svc.cluster.local svc.cluster.local cluster.local\nnameserver 10.96.0.10\noptions ndots:5\n"
CLEAN_ENV = {"PATH": "/usr/local/bin:/usr/bin:/bin"}  # and no *_proxy: curl must go straight to the pod


# ---- CRI log format (no root) -----------------------------------------------------------------------


def test_timestamps_round_trip():
    ns = 1_700_000_000_123_456_789
    text = format_timestamp(ns)
    assert text == "2023-11-14T22:13:20.123456789Z"
    assert parse_timestamp(text) == ns
    assert parse_timestamp("2023-11-14T23:13:20.5+01:00") == 1_700_000_000_500_000_000


def test_read_log_tail_since_timestamps_and_partial_lines(tmp_path):
    path = str(tmp_path / "0.log")
    with open(path, "wb") as f:
        f.write(b"2024-01-01T00:00:00.000000001Z stdout F first\n"
                b"2024-01-01T00:00:01.000000000Z stderr F an error\n"
                b"2024-01-01T00:00:02.000000000Z stdout P long li\n"
                b"2024-01-01T00:00:02.000000001Z stdout F ne ends\n"
                b"2024-01-01T00:00:03.000000000Z stdout F \n"
                b"2024-01-01T00:00:04.000000000Z stdout F last")  # unfinished record: not shown yet
    assert read_log(path) == b"first\nan error\nlong line ends\n\n"
    assert read_log(path, tail=2) == b"ne ends\n\n"
    assert read_log(path, tail=0) == b""
    assert read_log(path, since=datetime(2024, 1, 1, 0, 0, 1, tzinfo=UTC)) == b"an error\nlong line ends\n\n"
    assert read_log(path, tail=1, timestamps=True) == b"2024-01-01T00:00:03.000000000Z \n"
    assert read_log(path, limit_bytes=7) == b"first\na"
    assert read_log(str(tmp_path / "missing.log")) == b""


def test_log_writer_records(tmp_path):
    path = str(tmp_path / "x.log")
    w = LogWriter(path)
    w.write("stdout", b"hello")
    w.write("stderr", b"part", partial=True)
    w.write("stderr", b"-rest")
    w.close()
    lines = open(path, "rb").read().splitlines()
    assert [line.split(b" ", 1)[1] for line in lines] == [b"stdout F hello", b"stderr P part", b"stderr F -rest"]
    assert read_log(path) == b"hello\npart-rest\n"
    ts = parse_timestamp(lines[0].split()[0].decode())
    assert abs(ts / 1e9 - time.time()) < 5


# ---- kernel -----------------------------------------------------------------------------------------


@pytest.fixture(params=["ip", "fork-server"])
async def maker(request):
    """How sandboxes are made: with `ip` processes, or by the fork server and rtnetlink (the agent's way)."""
    if request.param == "ip":
        yield None
        return
    server = await ForkServer.start()
    try:
        yield server
    finally:
        await server.close()


async def new_sandbox(cfg, node: int, name: str, uid: str, fork_server: ForkServer | None = None) -> Sandbox:
    pool = IPPool(cfg.node_pod_cidr(node))
    ip = pool.allocate(uid)
    hosts = f"127.0.0.1\tlocalhost\n{ip}\t{name}\n"
    sb = await create_sandbox(node_netns(cfg, node), uid, name, "default", ip, pool.gateway, RESOLV, hosts,
                              fork_server=fork_server)
    if fork_server:
        # Pinned namespaces, no holder process (as CRI-O without infra containers).
        assert sb.pause_pid == 0 and sb.pinned and sb.is_alive()
        assert not netns_pids([sb.netns])[sb.netns]
    else:
        # The `ip netns exec` chain's `sleep` holds them.
        cmdline = open(f"/proc/{sb.pause_pid}/cmdline", "rb").read()
        assert cmdline.startswith(b"sleep"), cmdline
    return sb


def host_curl(url: str) -> subprocess.CompletedProcess:
    return subprocess.run(["curl", "-sS", "--noproxy", "*", "--max-time", "2", url],
                          capture_output=True, text=True, env=CLEAN_ENV)


@needs_root
async def test_pods_reach_each_other_and_host_reaches_pods(cluster, maker, tmp_path):
    cfg = cluster
    started = time.perf_counter()
    web = await new_sandbox(cfg, 0, "web", "11111111-aaaa", maker)
    sandbox_ms = (time.perf_counter() - started) * 1000
    web_c = await start_container(web, ["python3", "-m", "http.server", "8080"], {"PYTHONUNBUFFERED": "1"},
                                  str(tmp_path), str(tmp_path / "web" / "0.log"))
    total_ms = (time.perf_counter() - started) * 1000
    print(f"sandbox: {sandbox_ms:.1f} ms, sandbox + process start: {total_ms:.1f} ms")
    assert total_ms < 200
    client = await new_sandbox(cfg, 1, "client", "22222222-bbbb", maker)
    try:
        assert list_sandbox_netns(node_netns(cfg, 0)) == [web.netns]
        assert web.ip.startswith(cfg.node_pod_cidr(0).rsplit(".", 1)[0])
        (tmp_path / "index.html").write_text("hello from web\n")

        for _ in range(100):  # until http.server listens
            res = host_curl(f"http://{web.ip}:8080/index.html")
            if res.returncode == 0:
                break
            await asyncio.sleep(0.05)
        assert res.stdout == "hello from web\n", res.stderr

        cross = await exec_in_container(
            client, ["curl", "-sS", "--noproxy", "*", "--max-time", "2", f"http://{web.ip}:8080/index.html"],
            CLEAN_ENV, timeout=5)
        assert (cross.exit_code, cross.stdout) == (0, b"hello from web\n"), cross.stderr

        # Every node reaches every pod: node 1 -> pod on node 0.
        sock = call_in_netns(node_netns(cfg, 1), lambda: socket.socket())
        with sock:
            sock.settimeout(2)
            sock.connect((web.ip, 8080))

        # The pod sees its own hostname, resolv.conf, hosts and addresses.
        probe = await exec_in_container(
            client, ["sh", "-c", 'hostname; echo "$HOSTNAME"; cat /etc/resolv.conf /etc/hosts; ip -4 -br addr'],
            CLEAN_ENV)
        out = probe.stdout.decode()
        assert out.startswith("client\nclient\n" + RESOLV), out
        assert f"{client.ip}\tclient" in out and "eth0@" in out and f"{client.ip}/32" in out
        # The host's view is untouched.
        assert subprocess.run(["hostname"], capture_output=True, text=True).stdout.strip() != "client"
        assert open("/etc/resolv.conf").read() != RESOLV
        # Other pods' namespace pins are not mounted in the pod (fork server: neither /run/netns
        # nor any node's pin directory), and the files behind /etc are kept next to the pod's pins
        # (fork server, on the node's tmpfs) or in /etc/netns (ip netns exec).
        pins = await exec_in_container(
            client, ["sh", "-c", "grep -c -e ' /run/netns' -e ' /run/skiff' /proc/self/mountinfo"], CLEAN_ENV)
        forked = maker is not None
        assert (pins.stdout.decode().strip() == "0") == forked, pins.stdout
        files = sandbox_files_dir(pin_dir(client.node_netns), client.netns)
        assert os.path.exists(f"/etc/netns/{client.netns}/resolv.conf") != forked
        assert os.path.exists(f"{files}/resolv.conf") == forked
        if forked:
            # Its /sys shows its own network namespace.
            links = await exec_in_container(client, ["ls", "/sys/class/net"], CLEAN_ENV)
            assert links.stdout.decode().split() == ["eth0", "lo"], links.stdout

        # Pods reach the host (where the API server listens) through their node.
        reach_host = await exec_in_container(
            client, ["python3", "-c", f"import socket; socket.create_connection(('{cfg.host_ip}', 9), 1)"],
            CLEAN_ENV)
        assert b"ConnectionRefused" in reach_host.stderr, reach_host.stderr

        # Service IPs are unreachable from the host: no route leads them out of the machine.
        route = subprocess.run(["ip", "route", "get", cfg.kubernetes_service_ip], capture_output=True, text=True)
        assert route.returncode != 0 and "No route to host" in route.stderr

        # Logs: http.server writes its access log to stderr.
        log = read_log(str(tmp_path / "web" / "0.log"))
        assert b'"GET /index.html HTTP/1.1" 200' in log
        raw = open(tmp_path / "web" / "0.log", "rb").read().splitlines()[0].split(b" ")
        assert raw[1] in (b"stdout", b"stderr") and raw[2] == b"F"

        # Stop: http.server has no SIGTERM handler, and PID 1 of a PID namespace gets no signal
        # it has no handler for from outside it, so it runs on until the grace period ends and it
        # is killed -> 128 + 9, as such a container on Kubernetes.
        t0 = time.monotonic()
        assert await web_c.stop(grace_seconds=0.5) == 137
        assert time.monotonic() - t0 >= 0.5
        assert not web_c.running and web_c.finished_at is not None
        assert host_curl(f"http://{web.ip}:8080/").returncode != 0
    finally:
        await web_c.stop(0.1)
        await destroy_sandbox(web)
        await destroy_sandbox(client)
    assert web.netns not in list_netns() and client.netns not in list_netns()
    for sb in (web, client):
        assert not os.path.exists(f"/etc/netns/{sb.netns}")
        assert not os.path.exists(sandbox_files_dir(pin_dir(sb.node_netns), sb.netns))


@needs_root
async def test_exit_codes_kill_and_process_groups(cluster, tmp_path):
    sb = await new_sandbox(cluster, 0, "jobs", "33333333")
    try:
        done = await start_container(sb, ["sh", "-c", "echo out; echo err >&2; exit 3"], {}, None,
                                     str(tmp_path / "a.log"))
        assert await done.wait() == 3
        assert read_log(str(tmp_path / "a.log")) in (b"out\nerr\n", b"err\nout\n")

        # A shell that ignores SIGTERM and has a child: SIGKILL after the grace period, whole group.
        stubborn = await start_container(sb, ["sh", "-c", "trap '' TERM; sleep 300 & wait"], {}, None,
                                         str(tmp_path / "b.log"))
        await asyncio.sleep(0.2)
        children = subprocess.run(["pgrep", "-g", str(stubborn.pid)], capture_output=True, text=True).stdout.split()
        assert len(children) == 2
        t = time.perf_counter()
        assert await stubborn.stop(grace_seconds=0.3) == 137
        assert 0.25 < time.perf_counter() - t < 2
        # Dead members may linger as zombies until init reaps them; only live ones count.
        live = subprocess.run(["ps", "-o", "pid=,stat=", "-g", str(stubborn.pid)], capture_output=True, text=True)
        assert [line for line in live.stdout.splitlines() if "Z" not in line.split()[1]] == []

        follower = await start_container(sb, ["sh", "-c", "for i in 1 2 3; do echo line$i; sleep 0.05; done"],
                                         {}, None, str(tmp_path / "c.log"))
        chunks = [c async for c in follow_log(str(tmp_path / "c.log"), lambda: follower.running, poll_interval=0.02)]
        assert b"".join(chunks) == b"line1\nline2\nline3\n" and len(chunks) >= 2
        assert await follower.wait() == 0
        since = datetime.now(UTC) + timedelta(seconds=60)
        assert read_log(str(tmp_path / "c.log"), since=since) == b""

        # Lines longer than the 16 KiB pipe chunk are stored as partial records and come back whole.
        long = await start_container(sb, ["python3", "-c", "print('a' * 40000); print('end')"], {}, None,
                                     str(tmp_path / "long.log"))
        assert await long.wait() == 0
        assert read_log(str(tmp_path / "long.log")) == b"a" * 40000 + b"\nend\n"
        assert b" stdout P " in open(tmp_path / "long.log", "rb").read()

        with pytest.raises(ContainerStartError, match='exec: "no-such-program": executable file not found'):
            await start_container(sb, ["no-such-program"], {}, None, str(tmp_path / "d.log"))
        missing = await exec_in_container(sb, ["no-such-program"])
        assert missing.exit_code == 127
        with pytest.raises(TimeoutError):
            await exec_in_container(sb, ["sleep", "5"], timeout=0.2)
        wd = await exec_in_container(sb, ["pwd"], working_dir=str(tmp_path))
        assert wd.stdout.decode().strip() == str(tmp_path)
        # Killing the sandbox's pause process is what crash cleanup does: the sandbox reports it.
        assert sb.is_alive()
    finally:
        await destroy_sandbox(sb)
    assert not sb.is_alive()


async def _in(sb: Sandbox, proc, script: str) -> str:
    """What `script` prints, run by sh as `kubectl exec` runs it in container `proc`."""
    res = await exec_in_container(sb, ["sh", "-c", script], CLEAN_ENV, namespaces=proc.namespaces)
    assert res.exit_code == 0, res.stderr
    return res.stdout.decode()


# The processes the /proc in view lists, as "pid command" lines; a zombie has no command line.
PROCESSES = 'for d in /proc/[0-9]*; do echo "${d#/proc/} $(tr "\\0" " " < $d/cmdline)"; done'


@needs_root
async def test_pid_namespaces_of_containers(cluster, tmp_path):
    sb = await new_sandbox(cluster, 0, "pids", "55555555")
    started = []

    async def start(argv, mode=pidns.CONTAINER):
        proc = await start_container(sb, argv, CLEAN_ENV, None, str(tmp_path / f"{len(started)}.log"), pid_mode=mode)
        started.append(proc)
        return proc

    try:
        # Its own (the default): the program is PID 1, /proc lists only the container's processes,
        # and the node's are out of sight and out of reach.
        own = await start(["sleep", "300"])
        # Started means set up: its own mount namespace (and /proc) already, for an exec right away.
        assert os.readlink(f"/proc/{own.pid}/ns/mnt") != os.readlink(sb.ns_path("mnt"))
        seen = (await _in(sb, own, PROCESSES)).splitlines()
        assert seen[0] == "1 sleep 300 " and all(int(line.split()[0]) < 10 for line in seen), seen
        assert await _in(sb, own, f"kill -0 {os.getpid()} 2>/dev/null || echo unreachable") == "unreachable\n"
        # PID 1 gets no signal it has no handler for from outside its namespace: the grace period
        # runs out and it is killed. A shell that traps SIGTERM ends at once with its status.
        t0 = time.monotonic()
        assert await own.stop(grace_seconds=0.3) == 137 and time.monotonic() - t0 >= 0.3
        trapping = await start(["sh", "-c", "trap 'exit 7' TERM; sleep 300 & wait"])
        await asyncio.sleep(0.2)
        t0 = time.monotonic()
        assert await trapping.stop(grace_seconds=5) == 7 and time.monotonic() - t0 < 2

        # hostPID: the node's (here the host's) PID namespace and /proc.
        host = await start(["sleep", "300"], pidns.NODE)
        seen = await _in(sb, host, f"cat /proc/1/comm; kill -0 {os.getpid()} && echo reachable")
        assert seen == open("/proc/1/comm").read() + "reachable\n"

        # shareProcessNamespace: PID 1 is the pod's pause, every container sees the others', a
        # container's program is not PID 1 (SIGTERM ends sleep), and pause reaps the orphans.
        pause = await start(resolve("registry.k8s.io/pause:3.10", None, None).argv)
        sb.pid_holder = pause.pid
        first = await start(["sleep", "301"], pidns.POD)
        second = await start(["sh", "-c", "(sleep 0.2 &); exec sleep 302"], pidns.POD)
        await asyncio.sleep(0.6)  # the orphaned sleep has ended
        seen = await _in(sb, second, PROCESSES)
        commands = [line.split(" ", 1)[1] for line in seen.splitlines()]
        assert commands[0].endswith("-m skiff.images pause ") and "sleep 301 " in commands and "sleep 302 " in commands
        assert "" not in commands, seen  # no zombie
        t0 = time.monotonic()
        assert await first.stop(grace_seconds=5) == 143 and time.monotonic() - t0 < 2
        assert "sleep 301" not in await _in(sb, second, PROCESSES)
    finally:
        for proc in started:
            await proc.stop(0)
        await destroy_sandbox(sb)


AGENT_SCRIPT = """
import asyncio, json, sys
from skiff.node.sandbox import create_sandbox
args = json.loads(sys.argv[1])
sb = asyncio.run(create_sandbox(*args))
print(json.dumps(sb.to_dict()))
"""


@needs_root
async def test_sandbox_created_from_inside_the_node_namespace_is_visible_everywhere(cluster, tmp_path):
    """The node agent runs in its node's netns (nsenter --net only) and creates sandboxes from there."""
    cfg = cluster
    node = node_netns(cfg, 1)
    pool = IPPool(cfg.node_pod_cidr(1))
    ip = pool.allocate("x")
    # The pod's own name must be in its hosts file (as kubelet writes it): http.server looks it up.
    args = [node, "44444444", "agent-made", "kube-system", ip, pool.gateway, RESOLV, f"{ip}\tagent-made\n"]
    argv = run_in_netns_argv(node, [sys.executable, "-c", AGENT_SCRIPT, __import__("json").dumps(args)])
    proc = await asyncio.create_subprocess_exec(*argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                                cwd=os.path.dirname(os.path.dirname(os.path.dirname(__file__))))
    out, err = await proc.communicate()
    assert proc.returncode == 0, err.decode()
    sb = Sandbox.from_dict(__import__("json").loads(out))
    try:
        assert sb.netns in list_netns() and sb.is_alive()
        srv = await start_container(sb, ["python3", "-m", "http.server", "8081"], {}, str(tmp_path),
                                    str(tmp_path / "s.log"))
        for _ in range(100):
            res = host_curl(f"http://{sb.ip}:8081/")
            if res.returncode == 0:
                break
            await asyncio.sleep(0.05)
        assert res.returncode == 0, (res.stderr, srv.exit_code, read_log(str(tmp_path / "s.log")))
        # Crash cleanup: the whole cluster goes, with the pod's processes and files.
        destroy_cluster_network_sync(cfg.name)
        assert await asyncio.wait_for(srv.wait(), 3) == 137
        assert sb.netns not in list_netns() and not sb.is_alive()
        assert not os.path.exists(f"/etc/netns/{sb.netns}")
        assert netns_pids([sb.netns]) == {}
    finally:
        await destroy_sandbox(sb)


def _forked_holders(server_pid: int) -> list[int]:
    """Live children of the fork server that are sandbox holders ("/pause")."""
    found = []
    for pid in filter(str.isdigit, os.listdir("/proc")):
        try:
            stat = open(f"/proc/{pid}/stat").read()
            cmdline = open(f"/proc/{pid}/cmdline", "rb").read()
        except OSError:
            continue
        fields = stat[stat.rindex(")") + 2:].split()
        if fields[0] != "Z" and int(fields[1]) == server_pid and cmdline.startswith(b"/pause"):
            found.append(int(pid))
    return found


@needs_root
async def test_a_failing_fork_server_path_falls_back_to_ip_and_leaves_nothing(cluster, monkeypatch):
    """If wiring the forked sandbox fails half-way (its namespace and holder exist, the veth does
    not), that attempt is removed completely and `ip` builds the sandbox instead."""
    from skiff.node import sandbox as sandbox_mod

    attempts: list[str] = []

    def broken_wire(node_netns: str, netns: str, veth: str, ip: str, gateway: str) -> None:
        attempts.append(netns)
        assert netns in list_netns()  # the fork server's half is there
        raise OSError(errno.EPERM, "wiring refused (test)")

    monkeypatch.setattr(sandbox_mod, "wire_pod_network", broken_wire)
    node = node_netns(cluster, 0)
    pool = IPPool(cluster.node_pod_cidr(0))
    ip = pool.allocate("66666666-dddd")
    server = await ForkServer.start()
    try:
        sb = await create_sandbox(node, "66666666-dddd", "fallback", "default", ip, pool.gateway,
                                  RESOLV, f"{ip}\tfallback\n", fork_server=server)
        try:
            assert attempts == [sb.netns]
            assert open(f"/proc/{sb.pause_pid}/cmdline", "rb").read().startswith(b"sleep")  # built by ip
            # One holder: the forked one went with its half-made namespace.
            assert netns_pids([sb.netns]) == {sb.netns: [sb.pause_pid]}
            assert not _forked_holders(server.pid)

            def connect() -> str:
                with socket.socket() as s:
                    s.settimeout(2)
                    try:
                        s.connect((sb.ip, 1))
                    except OSError as exc:
                        return type(exc).__name__
                return "connected"

            # The node reaches the pod (nothing listens on port 1: refused, not unreachable).
            assert call_in_netns(node, connect) == "ConnectionRefusedError"
        finally:
            await destroy_sandbox(sb)
    finally:
        for pid in _forked_holders(server.pid):  # only if the fallback leaked one: holders outlive the server
            os.kill(pid, signal.SIGKILL)
        await server.close()
    assert sb.netns not in list_netns()
