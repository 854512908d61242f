"""Built-in images: reference resolution, command/args semantics, and each program run as a real
process on a free loopback port."""

from __future__ import annotations

import http.client
import json
import os
import re
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator

import pytest

from skiff.images import registry
from skiff.images.golike import FlagError, duration, parse_flags
from skiff.images.reference import InvalidImageName, parse

PY = sys.executable
POD = "pod-" + os.urandom(3).hex()


# ---- references and resolution -------------------------------------------------------------


@pytest.mark.parametrize(("image", "canonical"), [
    ("nginx", "docker.io/library/nginx:latest"),
    ("nginx:1.25", "docker.io/library/nginx:1.25"),
    ("docker.io/library/nginx:latest", "docker.io/library/nginx:latest"),
    ("hashicorp/http-echo", "docker.io/hashicorp/http-echo:latest"),
    ("traefik/whoami:v1.10", "docker.io/traefik/whoami:v1.10"),
    ("registry.k8s.io/e2e-test-images/agnhost:2.53", "registry.k8s.io/e2e-test-images/agnhost:2.53"),
    ("localhost:5000/app", "localhost:5000/app:latest"),
    ("busybox@sha256:" + "a" * 64, "docker.io/library/busybox@sha256:" + "a" * 64),
    ("nginx:1.25@sha256:" + "b" * 64, "docker.io/library/nginx:1.25@sha256:" + "b" * 64),
])
def test_reference_canonical(image: str, canonical: str) -> None:
    assert registry.canonical_reference(image) == canonical


@pytest.mark.parametrize("image", ["", "Nginx", "nginx:", "nginx:bad tag", "busybox@sha256:xyz", " nginx"])
def test_invalid_reference(image: str) -> None:
    with pytest.raises(InvalidImageName):
        parse(image)
    with pytest.raises(InvalidImageName):
        registry.resolve(image, None, None)


def builtin(*args: str) -> list[str]:
    return [PY, "-m", "skiff.images", *args]


@pytest.mark.parametrize(("image", "name", "argv"), [
    ("nginx", "nginx", builtin("nginx", "-g", "daemon off;")),
    ("nginx:1.25", "nginx", builtin("nginx", "-g", "daemon off;")),
    ("docker.io/library/nginx:latest", "nginx", builtin("nginx", "-g", "daemon off;")),
    ("nginx:1.27-alpine@sha256:" + "c" * 64, "nginx", builtin("nginx", "-g", "daemon off;")),
    ("registry.k8s.io/nginx-slim:0.21", "nginx-slim", builtin("nginx", "-g", "daemon off;")),
    ("k8s.gcr.io/nginx-slim:0.8", "nginx-slim", builtin("nginx", "-g", "daemon off;")),
    ("registry.k8s.io/e2e-test-images/agnhost:2.53", "agnhost", builtin("agnhost", "pause")),
    ("gcr.io/google-samples/hello-app:1.0", "hello-app", builtin("hello-app")),
    ("us-docker.pkg.dev/google-samples/containers/gke/hello-app:2.0", "hello-app", builtin("hello-app")),
    ("hashicorp/http-echo", "http-echo", builtin("http-echo")),
    ("traefik/whoami:v1.10", "whoami", builtin("whoami")),
    ("registry.k8s.io/pause:3.9", "pause", builtin("pause")),
    ("busybox", "busybox", ["sh"]),
    ("ubuntu:22.04", "ubuntu", ["/bin/bash"]),
    ("curlimages/curl", "curl", ["curl"]),
    ("python:3.12", "python", [PY]),
    ("skiff/dns", "skiff/dns", [PY, "-m", "skiff.dns"]),
    ("skiff/ingress-controller:dev", "skiff/ingress-controller", [PY, "-m", "skiff.ingress"]),
])
def test_resolve_defaults(image: str, name: str, argv: list[str]) -> None:
    resolved = registry.resolve(image, None, None)
    assert resolved.name == name
    assert resolved.argv == argv
    assert "PATH" in resolved.env


def test_builtins_know_their_image() -> None:
    env = registry.resolve("gcr.io/google-samples/hello-app:2.0", None, None).env
    assert env["SKIFF_IMAGE"] == "gcr.io/google-samples/hello-app:2.0"
    assert env["PORT"] == "8080"


def test_command_and_args_semantics() -> None:
    agnhost = "registry.k8s.io/e2e-test-images/agnhost:2.53"
    # args replace CMD, keep ENTRYPOINT
    assert registry.resolve(agnhost, None, ["netexec", "--http-port=8080"]).argv == builtin(
        "agnhost", "netexec", "--http-port=8080")
    # command naming the image's own binary still runs the built-in
    assert registry.resolve(agnhost, ["/agnhost", "netexec"], None).argv == builtin("agnhost", "netexec")
    assert registry.resolve(agnhost, ["/agnhost"], ["serve-hostname"]).argv == builtin("agnhost", "serve-hostname")
    # any other command runs on the host, and CMD is dropped
    assert registry.resolve(agnhost, ["sh", "-c", "echo hi"], None).argv == ["sh", "-c", "echo hi"]
    # an empty command list means "not set", as in Kubernetes
    assert registry.resolve(agnhost, [], ["netexec"]).argv == builtin("agnhost", "netexec")
    # nginx: args pass through the image's docker-entrypoint.sh
    assert registry.resolve("nginx", None, ["nginx", "-g", "daemon off;"]).argv == builtin(
        "nginx", "-g", "daemon off;")
    assert registry.resolve("nginx", ["nginx"], None).argv == builtin("nginx")
    # http-echo: args go to the binary
    assert registry.resolve("hashicorp/http-echo", None, ["-text=hi"]).argv == builtin("http-echo", "-text=hi")
    # curl's entrypoint puts `curl` in front of flags
    assert registry.resolve("curlimages/curl", None, ["-s", "http://x"]).argv == ["curl", "-s", "http://x"]
    assert registry.resolve("curlimages/curl", ["curl", "-v", "x"], None).argv == ["curl", "-v", "x"]
    # generic images run the command with the host's programs
    assert registry.resolve("busybox", ["sh", "-c", "sleep 1"], None).argv == ["sh", "-c", "sleep 1"]
    assert registry.resolve("busybox", None, ["sleep", "3600"]).argv == ["sleep", "3600"]
    assert registry.resolve("python:3.11", ["python3", "-c", "print(1)"], None).argv == [PY, "-c", "print(1)"]
    # a path that only exists inside an image becomes the host program of that name
    assert registry.resolve("alpine", ["/usr/local/bin/sh", "-c", "true"], None).argv[0] == "/usr/bin/sh"
    # the system images get their arguments
    assert registry.resolve("skiff/dns", None, ["--port", "53"]).argv == [PY, "-m", "skiff.dns", "--port", "53"]


def test_effective_command_rules() -> None:
    ec = registry.effective_command
    assert ec(["/ep"], ["cmd"], None, None) == ["/ep", "cmd"]
    assert ec(["/ep"], ["cmd"], ["/c"], None) == ["/c"]
    assert ec(["/ep"], ["cmd"], None, ["a"]) == ["/ep", "a"]
    assert ec(["/ep"], ["cmd"], ["/c"], ["a"]) == ["/c", "a"]


def test_builtin_program_runs_an_image_s_own_program_as_resolve_does() -> None:
    agnhost = "registry.k8s.io/e2e-test-images/agnhost:2.53"
    exec_ = registry.builtin_program(agnhost, ["/agnhost", "connect", "10.0.0.1:80", "--timeout=1s"])
    assert exec_ is not None and exec_.argv == builtin("agnhost", "connect", "10.0.0.1:80", "--timeout=1s")
    # one mapping for both: what a container's command gets, an exec of the same command gets
    assert exec_ == registry.resolve(agnhost, ["/agnhost", "connect", "10.0.0.1:80", "--timeout=1s"], None)
    assert exec_.env["SKIFF_IMAGE"] == agnhost and exec_.env["PYTHONPATH"] and exec_.name == "agnhost"
    assert registry.builtin_program("nginx:1.25", ["nginx", "-s", "reload"]).argv == builtin("nginx", "-s", "reload")
    bootcamp = registry.builtin_program("gcr.io/google-samples/kubernetes-bootcamp:v1", ["node", "server.js"])
    assert bootcamp is not None and bootcamp.argv == builtin("kubernetes-bootcamp", "server.js")
    # anything else is not the image's: a host program, an unknown or invalid image, no command
    assert registry.builtin_program(agnhost, ["sh", "-c", "true"]) is None
    assert registry.builtin_program("busybox", ["agnhost"]) is None
    assert registry.builtin_program("example.invalid/nothing:1", ["/agnhost"]) is None
    assert registry.builtin_program("Not/Valid", ["/agnhost"]) is None
    assert registry.builtin_program(agnhost, []) is None


def test_exec_runs_an_image_s_own_program_as_its_built_in(tmp_path) -> None:
    from skiff.node.runtime import exec_argv

    bootcamp = "gcr.io/google-samples/kubernetes-bootcamp:v1"
    empty, with_node = tmp_path / "empty", tmp_path / "bin"
    empty.mkdir()
    with_node.mkdir()
    (with_node / "node").write_text("#!/bin/sh\n")
    (with_node / "node").chmod(0o755)
    argv, env = exec_argv(bootcamp, ["node", "-v"], {"PATH": str(empty), "MODE": "x"})
    assert argv == builtin("kubernetes-bootcamp", "-v")
    # the container's environment stays on top of the image's, as for the container's own command
    assert env["PATH"] == str(empty) and env["MODE"] == "x" and env["SKIFF_IMAGE"] == bootcamp
    # a host that has `node` runs it: an exec of `node` there means the real one
    assert exec_argv(bootcamp, ["node", "-v"], {"PATH": str(with_node)}) == (["node", "-v"], {"PATH": str(with_node)})
    # the nginx image's nginx is its built-in, even on a host that has an nginx of its own
    (with_node / "nginx").write_text("#!/bin/sh\n")
    (with_node / "nginx").chmod(0o755)
    argv, _ = exec_argv("nginx:1.27", ["nginx", "-s", "reload"], {"PATH": str(with_node)})
    assert argv == builtin("nginx", "-s", "reload")
    # no image known, or a missing program the image does not have: unchanged, to fail as before
    assert exec_argv(None, ["/agnhost"], {"PATH": str(empty)}) == (["/agnhost"], {"PATH": str(empty)})
    assert exec_argv(bootcamp, ["/agnhost"], {"PATH": str(empty)}) == (["/agnhost"], {"PATH": str(empty)})


def test_unknown_image_lists_available() -> None:
    with pytest.raises(registry.ImageNotFound) as info:
        registry.resolve("example.com/team/app:1.0", None, None)
    err = info.value
    assert err.image == "example.com/team/app:1.0"
    for name in ("nginx", "registry.k8s.io/e2e-test-images/agnhost", "busybox", "hashicorp/http-echo"):
        assert name in err.available
        assert name in str(err)
    assert "SKIFF_IMAGE_MAP" in str(err)


def test_user_image_map_json_and_yaml(tmp_path, monkeypatch) -> None:
    mapping = tmp_path / "images.json"
    mapping.write_text(json.dumps({
        "example.com/team/app": ["python3", "/srv/app.py"],
        "team/worker:2": {"entrypoint": ["/bin/worker"], "cmd": ["--queue", "a"], "env": {"MODE": "x"}},
        "nginx": ["/usr/sbin/nginx"],
    }))
    monkeypatch.setenv("SKIFF_IMAGE_MAP", str(mapping))
    app = registry.resolve("example.com/team/app:1.0", None, ["--debug"])
    assert app.argv == [PY, "/srv/app.py", "--debug"] and app.name == "example.com/team/app"
    worker = registry.resolve("team/worker:2", None, None)
    assert worker.argv[1:] == ["--queue", "a"] and worker.env["MODE"] == "x"
    with pytest.raises(registry.ImageNotFound) as info:
        registry.resolve("team/worker:3", None, None)  # the key names tag 2 only
    assert "example.com/team/app" in info.value.available
    # user entries win over built-ins
    assert registry.resolve("nginx", None, None).argv == ["/usr/sbin/nginx"]

    yaml_map = tmp_path / "images.yaml"
    yaml_map.write_text("myimage:\n  entrypoint: [sleep]\n  cmd: ['5']\n")
    monkeypatch.setenv("SKIFF_IMAGE_MAP", str(yaml_map))
    assert registry.resolve("docker.io/library/myimage:latest", None, None).argv == ["sleep", "5"]

    yaml_map.write_text("- not a mapping\n")
    os.utime(yaml_map, (time.time() + 5, time.time() + 5))
    with pytest.raises(ValueError, match="SKIFF_IMAGE_MAP"):
        registry.resolve("myimage", None, None)


def test_no_command(tmp_path, monkeypatch) -> None:
    mapping = tmp_path / "images.json"
    mapping.write_text(json.dumps({"scratch-app": {"env": {"A": "1"}}}))
    monkeypatch.setenv("SKIFF_IMAGE_MAP", str(mapping))
    with pytest.raises(registry.NoCommandSpecified):
        registry.resolve("scratch-app", None, None)
    assert registry.resolve("scratch-app", ["/bin/true"], None).argv == ["/bin/true"]


def test_go_flags_and_durations() -> None:
    values, rest = parse_flags(["-text=hi", "--listen", ":80", "-v", "x"], {"text": "", "listen": ":5678",
                                                                          "v": False})
    assert values == {"text": "hi", "listen": ":80", "v": True} and rest == ["x"]
    assert parse_flags(["--http=false", "--port=1"], {"http": True, "port": 9})[0] == {"http": False, "port": 1}
    with pytest.raises(FlagError):
        parse_flags(["--nope"], {})
    with pytest.raises(FlagError):
        parse_flags(["--port"], {"port": 1})
    assert [duration(s) for s in (0, 850e-9, 0.0015, 10.5, 90, 7200)] == [
        "0s", "850ns", "1.5ms", "10.5s", "1m30s", "2h0m0s"]


# ---- the programs, as real processes ---------------------------------------------------------


def free_port(kind: int = socket.SOCK_STREAM) -> int:
    with socket.socket(socket.AF_INET, kind) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Proc:
    def __init__(self, image: str, command: list[str] | None, args: list[str] | None,
                 env: dict[str, str] | None = None) -> None:
        resolved = registry.resolve(image, command, args)
        full_env = {**os.environ, **resolved.env, "HOSTNAME": POD, **(env or {})}
        self.p = subprocess.Popen(resolved.argv, env=full_env, cwd="/", stdout=subprocess.PIPE,
                                  stderr=subprocess.PIPE, text=True)

    def wait_tcp(self, port: int) -> None:
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            if self.p.poll() is not None:
                raise AssertionError(f"exited {self.p.returncode}: {self.p.stderr.read()}")  # type: ignore[union-attr]
            try:
                socket.create_connection(("127.0.0.1", port), timeout=1).close()
                return
            except OSError:
                time.sleep(0.01)
        raise AssertionError("never listened")

    def terminate(self) -> tuple[int, str]:
        """SIGTERM; the servers must exit 0 promptly. Returns (code, stdout)."""
        self.p.send_signal(signal.SIGTERM)
        out, _ = self.p.communicate(timeout=3)
        return self.p.returncode, out

    def kill(self) -> None:
        if self.p.poll() is None:
            self.p.kill()
        self.p.communicate()


@pytest.fixture
def start() -> Iterator:
    procs: list[Proc] = []

    def starter(image: str, command: list[str] | None = None, args: list[str] | None = None,
                env: dict[str, str] | None = None, port: int | None = None) -> Proc:
        proc = Proc(image, command, args, env)
        procs.append(proc)
        if port is not None:
            proc.wait_tcp(port)
        return proc

    yield starter
    for proc in procs:
        proc.kill()


def get(conn: http.client.HTTPConnection, path: str, method: str = "GET", body: bytes | None = None,
        headers: dict[str, str] | None = None) -> tuple[int, dict[str, str], bytes]:
    conn.request(method, path, body=body, headers=headers or {})
    resp = conn.getresponse()
    return resp.status, {k.lower(): v for k, v in resp.getheaders()}, resp.read()


def test_hello_app_keepalive_and_sigterm(start) -> None:
    port = free_port()
    proc = start("gcr.io/google-samples/hello-app:2.0", port=port, env={"PORT": str(port)})
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=5)
    status, headers, body = get(conn, "/")
    sock = conn.sock
    assert status == 200
    assert body == f"Hello, world!\nVersion: 2.0.0\nHostname: {POD}\n".encode()
    assert headers["content-type"] == "text/plain; charset=utf-8"
    status, _, body = get(conn, "/anything")
    assert status == 200 and body.startswith(b"Hello, world!")
    assert conn.sock is sock, "second request must reuse the connection"
    code, out = proc.terminate()
    assert code == 0
    assert f"Server listening on port {port}" in out
    assert "Serving request: /\n" in out and "Serving request: /anything" in out


def test_pipelined_requests_and_chunked_body(start) -> None:
    port = free_port()
    start("traefik/whoami", args=[f"--port={port}"], port=port)
    with socket.create_connection(("127.0.0.1", port), timeout=5) as s:
        s.sendall(b"GET /bench HTTP/1.1\r\nHost: a\r\n\r\nGET /bench HTTP/1.1\r\nHost: a\r\n\r\n"
                  b"POST /?x=1 HTTP/1.1\r\nHost: b\r\nTransfer-Encoding: chunked\r\n\r\n"
                  b"5\r\nhello\r\n6\r\n world\r\n0\r\n\r\n"
                  b"GET /bench HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n")
        data = b""
        while chunk := s.recv(65536):
            data += chunk
    assert data.count(b"HTTP/1.1 200 OK") == 4
    assert b"POST /?x=1 HTTP/1.1\r\nHost: b\r\n" in data and b"hello world" in data
    assert data.endswith(b"\r\n\r\n1")


def test_http_echo(start) -> None:
    port = free_port()
    proc = start("hashicorp/http-echo", args=["-text=hello there", f"-listen=:{port}", "-status-code=201"],
                 port=port)
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=5)
    status, headers, body = get(conn, "/some/path", headers={"User-Agent": "tester"})
    assert (status, body) == (201, b"hello there\n")
    assert headers["x-app-name"] == "http-echo"
    status, _, body = get(conn, "/health")
    assert (status, body) == (200, b'{"status":"ok"}\n')
    code, out = proc.terminate()
    assert code == 0
    assert re.search(rf'127\.0\.0\.1:{port} 127\.0\.0\.1:\d+ "GET /some/path HTTP/1\.1" 201 12 "tester" ', out)


def test_http_echo_requires_text() -> None:
    resolved = registry.resolve("hashicorp/http-echo", None, [])
    env = {k: v for k, v in os.environ.items() if k != "ECHO_TEXT"}
    done = subprocess.run(resolved.argv, env={**env, **resolved.env}, capture_output=True, text=True, timeout=10)
    assert done.returncode == 127
    assert "Missing -text option" in done.stderr


def test_whoami(start) -> None:
    port = free_port()
    start("traefik/whoami:v1.10", args=["--port", str(port), "--name", "alpha"], port=port)
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=5)
    status, _, body = get(conn, "/path?q=1", headers={"x-custom": "v1", "User-Agent": "tester"})
    text = body.decode()
    local = conn.sock.getsockname()
    assert status == 200
    assert text.startswith(f"Name: alpha\nHostname: {POD}\n")
    assert "IP: 127.0.0.1\n" in text
    assert f"RemoteAddr: 127.0.0.1:{local[1]}\n" in text
    assert f"GET /path?q=1 HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nUser-Agent: tester\r\n" in text
    assert "X-Custom: v1\r\n" in text
    status, headers, body = get(conn, "/api")
    data = json.loads(body)
    assert headers["content-type"] == "application/json"
    assert data["hostname"] == POD and data["name"] == "alpha" and "127.0.0.1" in data["ip"]
    assert data["method"] == "GET" and data["url"] == "/api"
    assert get(conn, "/bench")[2] == b"1"
    assert get(conn, "/data?size=3&unit=kb")[2] == (b"ABCDEFGHIJKLMNOPQRSTUVWXYZ" * 200)[:3072]
    assert get(conn, "/health")[0] == 200
    assert get(conn, "/health", method="POST", body=b"503")[0] == 200
    assert get(conn, "/health")[0] == 503
    big = get(conn, "/data?size=3&unit=mb")[2]
    assert len(big) == 3 << 20
    assert get(conn, "/bench")[2] == b"1"  # the connection survives a streamed body


def test_nginx(start) -> None:
    port = free_port()
    proc = start("nginx:1.25.3", env={"NGINX_PORT": str(port)}, port=port)
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=5)
    status, headers, body = get(conn, "/", headers={"User-Agent": "tester"})
    assert status == 200 and b"<title>Welcome to nginx!</title>" in body
    assert headers["server"] == "nginx/1.25.3" and headers["content-type"] == "text/html"
    status, _, body = get(conn, "/missing")
    assert status == 404 and b"<title>404 Not Found</title>" in body
    status, headers, body = get(conn, "/index.html", method="HEAD")
    assert status == 200 and body == b"" and int(headers["content-length"]) > 100
    code, out = proc.terminate()
    assert code == 0
    assert re.search(r'^127\.0\.0\.1 - - \[\d\d/\w{3}/\d{4}:\d\d:\d\d:\d\d \+0000\] "GET / HTTP/1\.1" 200 \d+ '
                     r'"-" "tester" "-"$', out, re.M)
    assert '"GET /missing HTTP/1.1" 404' in out


def udp_ask(port: int, message: bytes, timeout: float = 3) -> bytes:
    """Ask again every 0.2 s, as a UDP client must: the program may bind its UDP port a moment after
    the TCP port the test waited for."""
    deadline = time.monotonic() + timeout
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.settimeout(0.2)
        while True:
            s.sendto(message, ("127.0.0.1", port))
            try:
                return s.recv(2048)
            except TimeoutError:
                if time.monotonic() > deadline:
                    raise


def test_agnhost_netexec(start) -> None:
    http_port, udp_port = free_port(), free_port(socket.SOCK_DGRAM)
    proc = start("registry.k8s.io/e2e-test-images/agnhost:2.53",
                 args=["netexec", f"--http-port={http_port}", f"--udp-port={udp_port}"], port=http_port)
    conn = http.client.HTTPConnection("127.0.0.1", http_port, timeout=10)
    assert get(conn, "/hostname")[2] == POD.encode()
    assert get(conn, "/hostName")[2] == POD.encode()
    assert get(conn, "/clientip")[2] == f"127.0.0.1:{conn.sock.getsockname()[1]}".encode()
    assert get(conn, "/echo?msg=hi%20there")[2] == b"hi there"
    assert get(conn, "/echo?msg=x&code=418")[:1] == (418,)
    assert get(conn, "/healthz")[0] == 200
    assert get(conn, "/")[2].startswith(b"NOW: ")
    status, _, body = get(conn, f"/dial?request=hostname&host=127.0.0.1&port={http_port}&protocol=http")
    assert (status, json.loads(body)) == (200, {"responses": [POD]})
    status, _, body = get(conn, f"/dial?request=echo%20ping&host=127.0.0.1&port={udp_port}&protocol=udp&tries=2")
    assert json.loads(body) == {"responses": ["ping", "ping"]}
    status, _, body = get(conn, "/shell?cmd=echo%20from-shell")
    assert json.loads(body) == {"output": "from-shell\n"}
    assert udp_ask(udp_port, b"hostname") == POD.encode()
    assert udp_ask(udp_port, b"echo Hello\n") == b"hello"  # agnhost lower-cases commands
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.settimeout(3)
        s.sendto(b"clientip", ("127.0.0.1", udp_port))
        assert s.recv(2048) == f"127.0.0.1:{s.getsockname()[1]}".encode()
    conn.request("GET", "/exit?code=3")
    with pytest.raises((http.client.HTTPException, OSError)):
        conn.getresponse().read()
    assert proc.p.wait(timeout=5) == 3


def test_agnhost_netexec_udp_disabled_is_not_ready(start) -> None:
    port = free_port()
    proc = start("registry.k8s.io/e2e-test-images/agnhost:2.53",
                 command=["/agnhost", "netexec"], args=[f"--http-port={port}", "--udp-port=-1"], port=port)
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=5)
    assert get(conn, "/healthz")[0] == 412
    assert proc.terminate()[0] == 0


def test_agnhost_serve_hostname(start) -> None:
    port = free_port()
    proc = start("registry.k8s.io/e2e-test-images/agnhost:2.53", args=["serve-hostname", f"--port={port}"],
                 port=port)
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=5)
    assert get(conn, "/")[2] == POD.encode()
    assert get(conn, "/x")[2] == POD.encode()
    assert proc.terminate()[0] == 0

    port = free_port()
    udp = start("registry.k8s.io/e2e-test-images/agnhost:2.53",
                args=["serve-hostname", "--udp", "--tcp", "--http=false", f"--port={port}"], port=port)
    assert udp_ask(port, b"x") == POD.encode()
    with socket.create_connection(("127.0.0.1", port), timeout=3) as s:
        assert s.recv(100) == POD.encode()
    assert udp.terminate()[0] == 0

    bad = start("registry.k8s.io/e2e-test-images/agnhost:2.53", args=["serve-hostname", "--udp"])
    _, err = bad.p.communicate(timeout=10)
    assert bad.p.returncode == 1


def test_agnhost_unknown_subcommand() -> None:
    resolved = registry.resolve("registry.k8s.io/e2e-test-images/agnhost:2.53", None, ["nope"])
    done = subprocess.run(resolved.argv, env={**os.environ, **resolved.env}, capture_output=True, text=True,
                          timeout=10)
    assert done.returncode == 1 and 'unknown command "nope" for "agnhost"' in done.stderr


@pytest.mark.parametrize("image", ["registry.k8s.io/pause:3.9", "registry.k8s.io/e2e-test-images/agnhost:2.53"])
def test_pause_exits_on_sigterm(start, image: str) -> None:
    proc = start(image)
    time.sleep(0.3)
    assert proc.p.poll() is None
    assert proc.terminate()[0] == 0


def test_generic_image_runs_host_command() -> None:
    resolved = registry.resolve("busybox:1.36", ["sh", "-c", "echo $((6*7))"], None)
    done = subprocess.run(resolved.argv, env=resolved.env, capture_output=True, text=True, timeout=10)
    assert done.stdout == "42\n"
    resolved = registry.resolve("python:3.12-slim", None, ["python", "-c", "print('py')"])
    done = subprocess.run(resolved.argv, env=resolved.env, capture_output=True, text=True, timeout=10)
    assert done.stdout == "py\n"


# ---- agnhost connect ---------------------------------------------------------------------------


def agnhost_connect(*args: str) -> tuple[int, str, float]:
    """Run `/agnhost connect <args>` as a pod would: (exit code, stderr, seconds it took)."""
    resolved = registry.resolve("registry.k8s.io/e2e-test-images/agnhost:2.53", None, ["connect", *args])
    started = time.monotonic()
    done = subprocess.run(resolved.argv, env={**os.environ, **resolved.env}, capture_output=True, text=True,
                          timeout=10)
    return done.returncode, done.stderr, time.monotonic() - started


def test_agnhost_connect_tcp() -> None:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen(1)
        port = listener.getsockname()[1]
        assert agnhost_connect(f"127.0.0.1:{port}", "--timeout=1s")[:2] == (0, "")
    # The listener is closed: the kernel refuses at once, and upstream prints only the word.
    code, err, took = agnhost_connect(f"127.0.0.1:{port}", "--timeout=1s")
    assert (code, err) == (1, "REFUSED\n") and took < 1.0


def test_agnhost_connect_udp_needs_a_reply() -> None:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as server_sock:
        server_sock.bind(("127.0.0.1", 0))
        server_sock.settimeout(5)
        port = server_sock.getsockname()[1]
        resolved = registry.resolve("registry.k8s.io/e2e-test-images/agnhost:2.53", None,
                                    ["connect", f"127.0.0.1:{port}", "--protocol=udp", "--timeout=1s"])
        client = subprocess.Popen(resolved.argv, env={**os.environ, **resolved.env}, stderr=subprocess.PIPE,
                                  text=True)
        data, peer = server_sock.recvfrom(100)
        assert data == b"hostname\n"  # what netexec's and serve-hostname's UDP servers answer
        server_sock.sendto(b"pod", peer)
        assert client.wait(timeout=5) == 0 and client.stderr is not None and client.stderr.read() == ""

        # Bound but silent: only the deadline ends the wait.
        code, err, took = agnhost_connect(f"127.0.0.1:{port}", "--protocol=udp", "--timeout=500ms")
    assert code == 1 and took >= 0.5 and took < 1.5
    assert re.fullmatch(rf"TIMEOUT: read udp 127\.0\.0\.1:\d+->127\.0\.0\.1:{port}: i/o timeout\n", err)


def test_agnhost_connect_udp_refused() -> None:
    port = free_port(socket.SOCK_DGRAM)
    code, err, took = agnhost_connect(f"127.0.0.1:{port}", "--protocol=udp", "--timeout=1s")
    assert code == 1 and took < 1.0
    assert re.fullmatch(rf"REFUSED: read udp 127\.0\.0\.1:\d+->127\.0\.0\.1:{port}: read: connection refused\n", err)


@pytest.mark.parametrize(("args", "message"), [
    ([], "Error: accepts 1 arg(s), received 0\n"),
    (["127.0.0.1:1", "127.0.0.1:2"], "Error: accepts 1 arg(s), received 2\n"),
    (["--timeout=soon", "127.0.0.1:1"],
     'Error: invalid argument "soon" for "--timeout" flag: time: invalid duration "soon"\n'),
    (["--nope", "127.0.0.1:1"], "Error: flag provided but not defined: --nope\n"),
    (["127.0.0.1"], "UNKNOWN: address 127.0.0.1: missing port in address\n"),
    (["127.0.0.1:99999"], "DNS: address 99999: invalid port\n"),
    (["--protocol=icmp", "127.0.0.1:1"], "Unsupported protocol\nicmp\n"),
])
def test_agnhost_connect_usage_errors(args: list[str], message: str) -> None:
    assert agnhost_connect(*args)[:2] == (1, message)


def test_go_split_host_port() -> None:
    from skiff.images.agnhost import split_host_port

    assert split_host_port("127.0.0.1:80") == ("127.0.0.1", "80")
    assert split_host_port("[::1]:80") == ("::1", "80")
    assert split_host_port(":80") == ("", "80")
    for bad, why in [("::1:80", "too many colons"), ("[::1]", "missing port"), ("[::1:80", "missing ']'"),
                     ("a]:80", "unexpected ']'")]:
        with pytest.raises(ValueError, match=why):
            split_host_port(bad)


@pytest.mark.skipif(not os.path.exists("/proc/net/sctp"), reason="the kernel has no SCTP loaded")
def test_agnhost_connect_sctp() -> None:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM, socket.IPPROTO_SCTP) as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen(1)
        port = listener.getsockname()[1]
        assert agnhost_connect(f"127.0.0.1:{port}", "--protocol=sctp", "--timeout=1s")[:2] == (0, "")
