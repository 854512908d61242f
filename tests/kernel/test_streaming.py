"""The node agent's streaming server against a real pod sandbox and real container processes.

Needs root (network namespaces). Clients speak the wire protocols themselves: HTTP for logs,
WebSocket v5.channel.k8s.io for exec/attach, SPDY/3.1 inside WebSocket for port-forward.
"""

from __future__ import annotations

import asyncio
import json
import os
import socket
import subprocess
import sys
import time
from dataclasses import dataclass, field

import aiohttp
import pytest

from skiff.net import names
from skiff.net.cleanup import destroy_cluster_network_sync
from skiff.net.ipam import IPPool
from skiff.net.nodes import NetworkConflict, create_cluster_network, node_netns
from skiff.net.ns import list_netns
from skiff.node import spdy
from skiff.node.runtime import ContainerProcess, start_container
from skiff.node.sandbox import Sandbox, create_sandbox, destroy_sandbox
from skiff.node.streaming import StreamingServer

sys.path.insert(0, os.path.dirname(__file__))
from test_node_network import leftovers, random_config  # noqa: E402

pytestmark = pytest.mark.skipif(os.geteuid() != 0, reason="needs root for network namespaces")
TOKEN = "s3cret-token"
AUTH = {"Authorization": f"Bearer {TOKEN}"}
RESOLV = "nameserver 10.96.0.10\n"

# A TCP server that upper-cases what it reads, bound to the pod's loopback only: port-forward must
# reach it the way containerd does, from inside the pod's network namespace.
ECHO_SERVER = """
import socket, sys, threading
s = socket.socket(); s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
s.bind(("127.0.0.1", int(sys.argv[1]))); s.listen(16); print("listening", flush=True)
def serve(c):
    while data := c.recv(65536):
        c.sendall(data.upper())
    c.close()
while True:
    c, _ = s.accept(); threading.Thread(target=serve, args=(c,), daemon=True).start()
"""


@dataclass
class Pod:
    """What the node agent knows about one pod, answering the StreamingServer's resolver calls."""

    namespace: str
    name: str
    sandbox: Sandbox
    containers: dict[str, ContainerProcess] = field(default_factory=dict)
    logs: dict[str, list[str]] = field(default_factory=dict)  # container -> log paths, oldest first
    env: dict[str, str] = field(default_factory=dict)


class Resolver:
    def __init__(self) -> None:
        self.pods: dict[tuple[str, str], Pod] = {}

    def _pod(self, namespace: str, pod: str) -> Pod | None:
        return self.pods.get((namespace, pod))

    def container_log_path(self, namespace, pod, container, previous):
        p = self._pod(namespace, pod)
        paths = p.logs.get(container, []) if p else []
        if previous:
            return paths[-2] if len(paths) >= 2 else None
        return paths[-1] if paths else None

    def sandbox(self, namespace, pod):
        p = self._pod(namespace, pod)
        return p.sandbox if p else None

    def container_env(self, namespace, pod, container):
        p = self._pod(namespace, pod)
        return dict(p.env) if p else {}

    def container_credentials(self, namespace, pod, container):
        return None  # root, as a container without a securityContext

    def container_image(self, namespace, pod, container):
        return None  # no image: commands run as the host has them

    def container_namespaces(self, namespace, pod, container):
        p = self._pod(namespace, pod)
        c = p.containers.get(container) if p else None
        return dict(c.namespaces) if c is not None else {}

    def pod_ip(self, namespace, pod):
        p = self._pod(namespace, pod)
        return p.sandbox.ip if p else None

    def is_running(self, namespace, pod, container):
        p = self._pod(namespace, pod)
        c = p.containers.get(container) if p else None
        return c is not None and c.running

    def waiting_reason(self, namespace, pod, container):
        return "ContainerCreating"

    def started_at(self, namespace, pod, container):
        return None


@dataclass
class Env:
    server: StreamingServer
    resolver: Resolver
    pod: Pod
    tmp: str
    session: aiohttp.ClientSession

    @property
    def base(self) -> str:
        return f"http://127.0.0.1:{self.server.port}"

    async def run(self, container: str, argv: list[str]) -> ContainerProcess:
        path = os.path.join(self.tmp, container, f"{len(self.pod.logs.get(container, []))}.log")
        proc = await start_container(self.pod.sandbox, argv, self.pod.env, None, path)
        self.pod.containers[container] = proc
        self.pod.logs.setdefault(container, []).append(path)
        return proc


@pytest.fixture
async def env(tmp_path):
    for _ in range(5):  # other engineers' tests pick random ranges too: retry on a collision
        cfg = random_config(nodes=1)
        try:
            await create_cluster_network(cfg)
            break
        except NetworkConflict:
            destroy_cluster_network_sync(cfg.name)
        except BaseException:
            destroy_cluster_network_sync(cfg.name)
            raise
    else:
        pytest.fail("no free address range for a test cluster")
    resolver = Resolver()
    server = StreamingServer("127.0.0.1", 0, TOKEN, resolver)
    sandbox = None
    pod = None
    try:
        pool = IPPool(cfg.node_pod_cidr(0))
        uid = os.urandom(4).hex()
        ip = pool.allocate(uid)
        sandbox = await create_sandbox(node_netns(cfg, 0), uid, "web", "demo", ip, pool.gateway, RESOLV,
                                       f"127.0.0.1\tlocalhost\n{ip}\tweb\n")
        pod = Pod("demo", "web", sandbox, env={"GREETING": "hi from env"})
        resolver.pods[("demo", "web")] = pod
        await server.start()
        async with aiohttp.ClientSession() as session:
            yield Env(server, resolver, pod, str(tmp_path), session)
    finally:
        await server.stop()
        if pod is not None:
            for c in pod.containers.values():
                await c.stop(0.2)
        if sandbox is not None:
            await destroy_sandbox(sandbox)
        destroy_cluster_network_sync(cfg.name)
        assert leftovers(cfg) == []
        assert not [ns for ns in list_netns() if names.belongs_to_cluster(cfg.name, ns)]


# ---- auth and logs --------------------------------------------------------------------------------


async def test_requests_without_the_cluster_token_are_rejected(env):
    for headers in ({}, {"Authorization": "Bearer wrong"}):
        async with env.session.get(f"{env.base}/containerLogs/demo/web/app", headers=headers) as r:
            assert r.status == 401
            assert (await r.json())["reason"] == "Unauthorized"


async def test_logs_tail_timestamps_follow_previous_and_not_found(env):
    first = await env.run("app", ["sh", "-c", "echo one; echo two >&2; sleep 0.05; echo three"])
    assert await first.wait() == 0
    # A restart: the new instance follows; the first is now the "previous" one.
    await env.run("app", ["sh", "-c", 'for i in 1 2 3 4 5; do echo "tick $i $GREETING"; sleep 0.1; done'])

    url = f"{env.base}/containerLogs/demo/web/app"
    async with env.session.get(url, params={"previous": "true"}, headers=AUTH) as r:
        # stdout and stderr are separate pipes: only lines written apart in time keep their order.
        assert r.status == 200 and await r.text() in ("one\ntwo\nthree\n", "two\none\nthree\n")
    async with env.session.get(url, params={"previous": "true", "tailLines": "1", "timestamps": "true"},
                               headers=AUTH) as r:
        line = await r.text()
        assert line.endswith("Z three\n") and line[4] == "-" and line[10] == "T", line

    # follow: chunks arrive while the container runs; the response ends when it stops.
    chunks = []
    async with env.session.get(url, params={"follow": "true"}, headers=AUTH) as r:
        assert r.status == 200 and r.headers["Transfer-Encoding"] == "chunked"
        async for chunk in r.content.iter_any():
            chunks.append(chunk)
    text = b"".join(chunks).decode()
    assert text == "".join(f"tick {i} hi from env\n" for i in range(1, 6))
    assert len(chunks) >= 2, "follow should stream as lines arrive"

    async with env.session.get(url, params={"tailLines": "2", "limitBytes": "9"}, headers=AUTH) as r:
        assert await r.text() == "tick 4 hi"
    async with env.session.get(url, params={"sinceSeconds": "3600"}, headers=AUTH) as r:
        assert (await r.text()).count("\n") == 5
    async with env.session.get(url, params={"sinceTime": "2999-01-01T00:00:00Z"}, headers=AUTH) as r:
        assert await r.text() == ""

    async with env.session.get(f"{env.base}/containerLogs/demo/web/other", params={"previous": "true"},
                               headers=AUTH) as r:
        assert r.status == 400
        assert (await r.json())["message"] == 'previous terminated container "other" in pod "web" not found'
    async with env.session.get(f"{env.base}/containerLogs/demo/nope/app", headers=AUTH) as r:
        body = await r.json()
        assert r.status == 404 and body["reason"] == "NotFound" and body["message"] == 'pods "nope" not found'
    async with env.session.get(url, params={"tailLines": "-1"}, headers=AUTH) as r:
        assert r.status == 400


# ---- exec (v5.channel.k8s.io) ---------------------------------------------------------------------


async def exec_session(env: Env, argv: list[str], stdin: bytes | None = None, tty: bool = False,
                       resize: tuple[int, int] | None = None, protocol: str = "v5.channel.k8s.io"):
    params = [("command", a) for a in argv] + [("stdout", "true")]
    params += [("stdin", "true")] if stdin is not None else []
    params += [("tty", "true")] if tty else [("stderr", "true")]
    out: dict[int, bytes] = {}
    async with env.session.ws_connect(f"{env.base}/exec/demo/web/app", params=params, headers=AUTH,
                                      protocols=[protocol]) as ws:
        assert ws.protocol == protocol
        if resize is not None:
            await ws.send_bytes(b"\x04" + json.dumps({"Width": resize[0], "Height": resize[1]}).encode())
        if stdin is not None:
            await ws.send_bytes(b"\x00" + stdin)
            await ws.send_bytes(b"\xff\x00")  # v5 CLOSE of stdin: EOF
        async for msg in ws:
            assert msg.type == aiohttp.WSMsgType.BINARY
            out[msg.data[0]] = out.get(msg.data[0], b"") + msg.data[1:]
        close_code = ws.close_code
    return out, close_code


async def test_exec_streams_output_and_exit_code_inside_the_pod(env):
    await env.run("app", ["sleep", "30"])
    out, code = await exec_session(env, ["sh", "-c", 'echo out; echo err >&2; hostname; echo "$GREETING"; exit 3'])
    assert out[1] == b"out\nweb\nhi from env\n" and out[2] == b"err\n" and code == 1000
    status = json.loads(out[3])
    assert status == {
        "metadata": {}, "status": "Failure", "reason": "NonZeroExitCode",
        "message": "command terminated with non-zero exit code: error executing command "
                   '[sh -c echo out; echo err >&2; hostname; echo "$GREETING"; exit 3], exit code 3',
        "details": {"causes": [{"reason": "ExitCode", "message": "3"}]},
    }

    out, code = await exec_session(env, ["cat"], stdin=b"hello\nworld\n")
    assert out[1] == b"hello\nworld\n" and json.loads(out[3]) == {"metadata": {}, "status": "Success"}

    out, _ = await exec_session(env, ["no-such-tool", "x"])
    status = json.loads(out[3])
    assert status["status"] == "Failure" and status["reason"] == "InternalError" and status["code"] == 500
    assert 'exec: "no-such-tool": executable file not found in $PATH' in status["message"]

    # Older protocols: v4 has the same JSON status; channel.k8s.io only says what failed, in text.
    out, _ = await exec_session(env, ["sh", "-c", "exit 2"], protocol="v4.channel.k8s.io")
    assert json.loads(out[3])["details"]["causes"][0]["message"] == "2"
    out, _ = await exec_session(env, ["true"], protocol="channel.k8s.io")
    assert 3 not in out


async def test_exec_with_a_terminal(env):
    await env.run("app", ["sleep", "30"])
    out, code = await exec_session(env, ["sh", "-c", "tty; stty size; echo err >&2"], tty=True, resize=(100, 42))
    text = out[1].decode()
    assert text.startswith("/dev/pts/") and "42 100\r\n" in text and "err\r\n" in text and 2 not in out
    assert json.loads(out[3])["status"] == "Success" and code == 1000


async def test_exec_into_a_stopped_container_or_unknown_pod(env):
    async with env.session.get(f"{env.base}/exec/demo/web/app", params={"command": "ls"}, headers=AUTH) as r:
        assert r.status == 404 and (await r.json())["message"] == 'container not found ("app")'
    async with env.session.get(f"{env.base}/exec/demo/ghost/app", params={"command": "ls"}, headers=AUTH) as r:
        assert r.status == 404


async def test_attach_streams_the_container_output_until_it_stops(env):
    await env.run("app", ["sh", "-c", "sleep 0.3; echo late; echo oops >&2; sleep 0.2"])
    out: dict[int, bytes] = {}
    params = {"stdout": "true", "stderr": "true"}
    async with env.session.ws_connect(f"{env.base}/attach/demo/web/app", params=params, headers=AUTH,
                                      protocols=["v5.channel.k8s.io"]) as ws:
        async for msg in ws:
            out[msg.data[0]] = out.get(msg.data[0], b"") + msg.data[1:]
    assert out[1] == b"late\n" and out[2] == b"oops\n" and json.loads(out[3])["status"] == "Success"


async def test_stop_ends_open_sessions_and_their_commands(env):
    await env.run("app", ["sleep", "30"])
    nap = f"sleep 29.{int.from_bytes(os.urandom(3), 'big')}"  # a command line no other test runs
    params = [("command", "sh"), ("command", "-c"), ("command", f"echo started; exec {nap}"), ("stdout", "true")]
    ws = await env.session.ws_connect(f"{env.base}/exec/demo/web/app", params=params, headers=AUTH,
                                      protocols=["v5.channel.k8s.io"])
    first = await ws.receive()
    assert first.data == b"\x01started\n"
    follow = await env.session.get(f"{env.base}/containerLogs/demo/web/app", params={"follow": "true"},
                                   headers=AUTH)
    assert follow.status == 200

    def napping() -> list[str]:
        return subprocess.run(["pgrep", "-xf", nap], capture_output=True, text=True).stdout.split()

    assert len(napping()) == 1
    started = time.monotonic()
    await env.server.stop()
    assert time.monotonic() - started < 2
    assert (await ws.receive()).type in (aiohttp.WSMsgType.CLOSE, aiohttp.WSMsgType.CLOSED)
    await ws.close()
    follow.close()
    assert napping() == []
    assert env.pod.containers["app"].running  # the container itself is not the server's to stop


# ---- port-forward (SPDY/3.1 in WebSocket) ------------------------------------------------------------


class SpdyClient:
    """kubectl's side of port-forward, written from the protocol description."""

    def __init__(self, ws):
        self.ws = ws
        self.comp = spdy.HeaderCompressor()
        self.parser = spdy.FrameParser()
        self.frames: list[spdy.Frame] = []

    async def send(self, frame: bytes) -> None:
        # kubectl writes frames in pieces; so do we.
        for i in range(0, len(frame), 5):
            await self.ws.send_bytes(frame[i:i + 5])

    async def open_pair(self, request_id: int, port: int) -> tuple[int, int]:
        ids = (4 * request_id + 1, 4 * request_id + 3)
        for sid, kind in zip(ids, ("error", "data"), strict=True):
            await self.send(spdy.encode_syn_stream(
                sid, [("streamtype", kind), ("port", str(port)), ("requestid", str(request_id))], self.comp))
        return ids

    async def until(self, predicate, timeout: float = 5.0) -> None:
        async def loop():
            while not predicate():
                msg = await self.ws.receive()
                assert msg.type == aiohttp.WSMsgType.BINARY, msg
                self.frames += self.parser.feed(msg.data)
        await asyncio.wait_for(loop(), timeout)

    def data(self, sid: int) -> bytes:
        return b"".join(f.data for f in self.frames if isinstance(f, spdy.DataFrame) and f.stream_id == sid)

    def fin(self, sid: int) -> bool:
        return any(isinstance(f, spdy.DataFrame) and f.stream_id == sid and f.fin for f in self.frames)


async def test_port_forward_reaches_the_pods_loopback(env):
    port = 20000 + int.from_bytes(os.urandom(2), "big") % 20000
    server = await env.run("app", [sys.executable, "-u", "-c", ECHO_SERVER, str(port)])
    for _ in range(100):
        if b"listening" in open(env.pod.logs["app"][-1], "rb").read():
            break
        await asyncio.sleep(0.02)
    assert server.running
    # Not reachable on the pod IP from the host: only a loopback dial inside the pod works.
    with pytest.raises(OSError):
        socket.create_connection((env.pod.sandbox.ip, port), timeout=1).close()

    async with env.session.ws_connect(f"{env.base}/portForward/demo/web", headers=AUTH,
                                      protocols=["SPDY/3.1+portforward.k8s.io"]) as ws:
        assert ws.protocol == "SPDY/3.1+portforward.k8s.io"
        c = SpdyClient(ws)
        await c.send(spdy.encode_ping(1))
        await c.until(lambda: any(getattr(f, "type", 0) == spdy.PING for f in c.frames))

        err, data = await c.open_pair(0, port)
        await c.send(spdy.encode_data(err, b"", fin=True))
        await c.until(lambda: sum(getattr(f, "type", 0) == spdy.SYN_REPLY for f in c.frames) == 2)
        await c.send(spdy.encode_data(data, b"x" * 100_000))
        await c.until(lambda: len(c.data(data)) == 100_000)
        assert c.data(data) == b"X" * 100_000
        await c.send(spdy.encode_rst_stream(data, spdy.CANCEL))
        await c.until(lambda: c.fin(err))
        assert c.data(err) == b""

        # Nothing listens on port 1: the error text goes to the error stream, both streams end.
        err2, data2 = await c.open_pair(1, 1)
        await c.until(lambda: c.fin(err2) and c.fin(data2))
        text = c.data(err2).decode()
        assert text.startswith("error forwarding port 1 to pod demo/web: failed to connect to localhost:1 "
                               f"inside namespace {env.pod.sandbox.netns}, IPv4: dial tcp 127.0.0.1:1: "), text
        assert text.endswith("connect: connection refused IPv6 dial tcp [::1]:1: connect: connection refused"), text


async def test_port_forward_to_an_unknown_pod_is_404(env):
    async with env.session.get(f"{env.base}/portForward/demo/ghost", headers=AUTH) as r:
        assert r.status == 404


# ---- the real kubectl, through the real API server's node proxy ------------------------------------


async def test_real_kubectl_logs_exec_and_port_forward(env):
    from tests.support import ControlPlane, free_port

    cp = ControlPlane()
    cp.cfg.token = TOKEN  # the API server authenticates to agents with the cluster token
    try:
        await asyncio.to_thread(cp.start)
        k = cp.kubectl

        def kubectl(*args, **kw):
            return asyncio.to_thread(k.run, *args, check=False, **kw)

        node = {"apiVersion": "v1", "kind": "Node", "metadata": {"name": "n1"}}
        pod = {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "web", "namespace": "demo"},
               "spec": {"nodeName": "n1", "containers": [{"name": "app", "image": "busybox"}]}}
        node_status = {"status": {"addresses": [{"type": "InternalIP", "address": "127.0.0.1"}],
                                  "daemonEndpoints": {"kubeletEndpoint": {"Port": env.server.port}}}}
        for args, stdin in ((("create", "namespace", "demo"), None), (("create", "-f", "-"), json.dumps(node)),
                            (("patch", "node", "n1", "--subresource=status", "--type=merge", "-p",
                              json.dumps(node_status)), None),
                            (("create", "-f", "-"), json.dumps(pod)),
                            (("patch", "pod", "web", "-n", "demo", "--subresource=status", "--type=merge", "-p",
                              '{"status":{"phase":"Running"}}'), None)):
            r = await kubectl(*args, input=stdin)
            assert r.returncode == 0, r.stderr

        port = 20000 + int.from_bytes(os.urandom(2), "big") % 20000
        await env.run("app", [sys.executable, "-u", "-c", ECHO_SERVER, str(port)])
        for _ in range(100):
            if b"listening" in open(env.pod.logs["app"][-1], "rb").read():
                break
            await asyncio.sleep(0.02)

        r = await kubectl("logs", "web", "-n", "demo")
        assert (r.returncode, r.stdout) == (0, "listening\n"), r.stderr

        r = await kubectl("exec", "web", "-n", "demo", "--", "sh", "-c", "echo out; echo err >&2; exit 3")
        assert (r.returncode, r.stdout) == (3, "out\n") and r.stderr.startswith("err\n"), r.stderr
        assert "command terminated with exit code 3" in r.stderr
        r = await kubectl("exec", "-i", "web", "-n", "demo", "--", "cat", input="through stdin\n")
        assert (r.returncode, r.stdout) == (0, "through stdin\n"), r.stderr
        r = await kubectl("exec", "web", "-n", "demo", "--", "no-such-tool")
        assert r.returncode != 0 and 'exec: "no-such-tool": executable file not found in $PATH' in r.stderr

        local = free_port()
        pf = await asyncio.to_thread(k.popen, "port-forward", "pod/web", "-n", "demo", f"{local}:{port}")
        try:
            line = await asyncio.wait_for(asyncio.to_thread(pf.stdout.readline), 15)
            assert line.startswith(f"Forwarding from 127.0.0.1:{local} -> {port}"), line
            for attempt in range(2):  # two local connections: requestid 0, then 1
                reader, writer = await asyncio.open_connection("127.0.0.1", local)
                writer.write(f"hello {attempt}".encode())
                assert await asyncio.wait_for(reader.readexactly(7), 10) == f"HELLO {attempt}".encode()
                writer.close()
                await writer.wait_closed()
        finally:
            pf.terminate()
            await asyncio.to_thread(pf.wait, 10)
    finally:
        await asyncio.to_thread(cp.cleanup)
