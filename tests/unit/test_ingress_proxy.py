"""The real Ingress proxy (worker processes on loopback) in front of small backend servers."""

from __future__ import annotations

import asyncio
import datetime
import hashlib
import json
import ssl

import aiohttp
import pytest
from aiohttp import web

from skiff.ingress.routes import RouteTable, build_route_table
from skiff.ingress.supervisor import ProxySupervisor

CLASS = {"metadata": {"name": "skiff"}, "spec": {"controller": "skiff.dev/ingress-controller"}}


class Backend:
    """An HTTP server that says who it is, echoes what it saw, streams, and speaks WebSocket."""

    def __init__(self, name: str, host: str = "127.0.0.1") -> None:
        self.name = name
        self.host = host
        self.port = 0
        self.peers: list[tuple[str, int]] = []
        self.release = asyncio.Event()
        self.runner: web.AppRunner | None = None

    async def start(self) -> Backend:
        app = web.Application()
        app.router.add_route("*", "/upload", self.upload)
        app.router.add_get("/download", self.download)
        app.router.add_get("/ws", self.ws)
        app.router.add_route("*", "/{tail:.*}", self.echo)
        self.runner = web.AppRunner(app, access_log=None)
        await self.runner.setup()
        site = web.TCPSite(self.runner, self.host, 0)
        await site.start()
        self.port = site._server.sockets[0].getsockname()[1]
        return self

    async def stop(self) -> None:
        if self.runner:
            await self.runner.cleanup()

    def _seen(self, request: web.Request) -> None:
        self.peers.append(request.transport.get_extra_info("peername")[:2])

    async def echo(self, request: web.Request) -> web.Response:
        self._seen(request)
        body = await request.read()
        return web.json_response({"service": self.name, "path": request.path_qs, "method": request.method,
                                  "headers": dict(request.headers), "body": len(body)})

    async def upload(self, request: web.Request) -> web.Response:
        h = hashlib.sha256()
        n = 0
        async for chunk in request.content.iter_any():
            h.update(chunk)
            n += len(chunk)
        return web.json_response({"service": self.name, "length": n, "sha256": h.hexdigest(),
                                  "te": request.headers.get("Transfer-Encoding", "")})

    async def download(self, request: web.Request) -> web.StreamResponse:
        resp = web.StreamResponse()
        resp.enable_chunked_encoding()
        await resp.prepare(request)
        await resp.write(b"first-chunk;")
        await asyncio.wait_for(self.release.wait(), 10)  # proves the proxy streams: the client saw chunk 1
        for i in range(200):
            await resp.write(bytes([i % 256]) * 10000)
        await resp.write_eof()
        return resp

    async def ws(self, request: web.Request) -> web.WebSocketResponse:
        ws = web.WebSocketResponse()
        await ws.prepare(request)
        async for msg in ws:
            if msg.type == aiohttp.WSMsgType.TEXT:
                await ws.send_str(f"{self.name}:{msg.data}")
            elif msg.type == aiohttp.WSMsgType.BINARY:
                await ws.send_bytes(msg.data)
        return ws


def objects(routes: dict[str, list[Backend]], default: str | None = None, tls: list[dict] | None = None,
            hosts: dict[str, list[tuple[str, str, str]]] | None = None):
    """Services + EndpointSlices for named groups of backends, and one Ingress using them.

    hosts: {host: [(path, pathType, service)]}. Each group is a Service whose endpoints are the backends
    (each backend on its own port, so each gets its own slice)."""
    services, slices = [], []
    for svc, backends in routes.items():
        services.append({"metadata": {"name": svc, "namespace": "t"}, "spec": {"ports": [{"port": 80}]}})
        for i, b in enumerate(backends):
            slices.append({"metadata": {"name": f"{svc}-{i}", "namespace": "t",
                                        "labels": {"kubernetes.io/service-name": svc}},
                           "ports": [{"name": "", "port": b.port}],
                           "endpoints": [{"addresses": [b.host], "conditions": {"ready": True}}]})
    spec: dict = {"ingressClassName": "skiff", "rules": []}
    for host, paths in (hosts or {}).items():
        spec["rules"].append({"host": host, "http": {"paths": [
            {"path": p, "pathType": t, "backend": {"service": {"name": s, "port": {"number": 80}}}}
            for p, t, s in paths]}})
    if default:
        spec["defaultBackend"] = {"service": {"name": default, "port": {"number": 80}}}
    if tls:
        spec["tls"] = tls
    ing = {"metadata": {"name": "test", "namespace": "t", "creationTimestamp": "2024-01-01T00:00:00Z"},
           "spec": spec}
    return [ing], services, slices


def table(routes, default=None, hosts=None, tls=None, secrets=()) -> RouteTable:
    ings, svcs, slices = objects(routes, default, tls, hosts)
    return build_route_table(ings, svcs, slices, list(secrets), [CLASS])


@pytest.fixture
async def backends():
    started: list[Backend] = []

    async def make(name: str, host: str = "127.0.0.1") -> Backend:
        b = await Backend(name, host).start()
        started.append(b)
        return b
    yield make
    for b in started:
        await b.stop()


@pytest.fixture
async def proxy():
    sups: list[ProxySupervisor] = []

    async def start(t: RouteTable, https: bool = False, workers: int = 2) -> ProxySupervisor:
        sup = ProxySupervisor(("127.0.0.1", 0), ("127.0.0.1", 0) if https else None, workers=workers,
                              access_log=False)
        sups.append(sup)
        await sup.start(t)
        return sup
    yield start
    for s in sups:
        await s.stop()


async def raw_request(reader: asyncio.StreamReader, writer: asyncio.StreamWriter, path: str, host: str,
                      extra: str = "") -> tuple[int, dict[str, str], bytes]:
    writer.write(f"GET {path} HTTP/1.1\r\nHost: {host}\r\n{extra}\r\n".encode())
    head = await reader.readuntil(b"\r\n\r\n")
    lines = head.decode().split("\r\n")
    status = int(lines[0].split()[1])
    headers = {k.lower(): v.strip() for k, _, v in (ln.partition(":") for ln in lines[1:] if ln)}
    if "content-length" in headers:
        body = await reader.readexactly(int(headers["content-length"]))
    else:
        body = b""
        while True:
            size = int((await reader.readline()).strip(), 16)
            chunk = await reader.readexactly(size + 2)
            if size == 0:
                break
            body += chunk[:-2]
    return status, headers, body


async def test_host_and_path_routing_404_503_and_headers(backends, proxy):
    a, b, c = await backends("svc-a"), await backends("svc-b"), await backends("svc-c")
    t = table({"a": [a], "b": [b], "c": [c], "empty": []},
              hosts={"a.test": [("/", "Prefix", "a"), ("/b", "Prefix", "b"), ("/exact", "Exact", "c")],
                     "*.wild.test": [("/", "Prefix", "c")], "down.test": [("/", "Prefix", "empty")]})
    sup = await proxy(t)
    base = f"http://127.0.0.1:{sup.http_port}"
    async with aiohttp.ClientSession() as s:
        async def get(host: str, path: str, **kw):
            async with s.get(base + path, headers={"Host": host, **kw}) as r:
                return r.status, await r.read(), r.headers
        st, body, hdrs = await get("a.test", "/x?q=1")
        doc = json.loads(body)
        assert (st, doc["service"], doc["path"]) == (200, "svc-a", "/x?q=1")
        assert hdrs["Server"]
        assert json.loads((await get("a.test:80", "/b/c"))[1])["service"] == "svc-b"
        assert json.loads((await get("a.test", "/bc"))[1])["service"] == "svc-a"
        assert json.loads((await get("a.test", "/exact"))[1])["service"] == "svc-c"
        assert json.loads((await get("x.wild.test", "/"))[1])["service"] == "svc-c"
        st, body, hdrs = await get("nobody.test", "/")
        assert st == 404 and b"404 Not Found" in body and hdrs["Content-Type"] == "text/html"
        assert (await get("y.x.wild.test", "/"))[0] == 404
        assert (await get("down.test", "/"))[0] == 503
        st, body, _ = await get("a.test", "/h", **{"X-Forwarded-For": "1.2.3.4"})
        seen = json.loads(body)["headers"]
        assert seen["Host"] == "a.test"
        assert seen["X-Forwarded-For"] == "1.2.3.4, 127.0.0.1"
        assert seen["X-Real-IP"] == "127.0.0.1"
        assert seen["X-Forwarded-Proto"] == "http"
        assert seen["X-Forwarded-Host"] == "a.test"
        assert seen["X-Forwarded-Port"] == str(sup.http_port)
        async with s.post(base + "/p", data=b"x" * 1000, headers={"Host": "a.test"}) as r:
            doc = await r.json()
            assert doc["method"] == "POST" and doc["body"] == 1000
            assert doc["headers"]["Content-Length"] == "1000"
        async with s.head(base + "/", headers={"Host": "a.test"}) as r:
            assert r.status == 200
        # after a HEAD (which ends that upstream connection) the pool still works
        assert json.loads((await get("a.test", "/again"))[1])["service"] == "svc-a"


async def test_round_robin_reaches_all_ten_backends(backends, proxy):
    pods = [await backends(f"pod-{i}", f"127.0.0.{10 + i}") for i in range(10)]
    sup = await proxy(table({"echo": pods}, default="echo"))
    seen = set()
    for _ in range(100):  # a new client connection each time, as the conformance suite does
        async with aiohttp.ClientSession() as s:
            async with s.get(f"http://127.0.0.1:{sup.http_port}/", headers={"Host": "load-balancing"}) as r:
                assert r.status == 200
                seen.add((await r.json())["service"])
    assert seen == {f"pod-{i}" for i in range(10)}


async def test_keep_alive_reuses_client_and_upstream_connections(backends, proxy):
    b = await backends("only")
    sup = await proxy(table({"s": [b]}, default="s"))
    reader, writer = await asyncio.open_connection("127.0.0.1", sup.http_port)
    try:
        for i in range(20):
            st, hdrs, body = await raw_request(reader, writer, f"/{i}", "k.test")
            assert st == 200 and json.loads(body)["path"] == f"/{i}"
            assert hdrs.get("connection", "keep-alive").lower() != "close"
    finally:
        writer.close()
    assert len(b.peers) == 20
    assert len(set(b.peers)) == 1  # one pooled upstream connection served all 20


async def test_streamed_chunked_upload_and_download(backends, proxy):
    b = await backends("stream")
    sup = await proxy(table({"s": [b]}, default="s"))
    payload = [bytes([i]) * 65536 for i in range(64)]  # 4 MiB

    async def gen():
        for p in payload:
            yield p
    async with aiohttp.ClientSession() as s:
        async with s.post(f"http://127.0.0.1:{sup.http_port}/upload", data=gen()) as r:
            doc = await r.json()
        assert doc["length"] == 64 * 65536
        assert doc["sha256"] == hashlib.sha256(b"".join(payload)).hexdigest()
        assert doc["te"] == "chunked"
        async with s.get(f"http://127.0.0.1:{sup.http_port}/download") as r:
            assert r.headers.get("Transfer-Encoding") == "chunked"
            first = await asyncio.wait_for(r.content.readexactly(len(b"first-chunk;")), 5)
            assert first == b"first-chunk;"
            b.release.set()
            rest = await r.read()
        assert rest == b"".join(bytes([i % 256]) * 10000 for i in range(200))


async def test_websocket_upgrade_echo(backends, proxy):
    b = await backends("ws-backend")
    sup = await proxy(table({"s": [b]}, hosts={"ws.test": [("/", "Prefix", "s")]}))
    async with aiohttp.ClientSession() as s:
        async with s.ws_connect(f"http://127.0.0.1:{sup.http_port}/ws", headers={"Host": "ws.test"}) as ws:
            for i in range(5):
                await ws.send_str(f"hello {i}")
                assert await ws.receive_str(timeout=5) == f"ws-backend:hello {i}"
            await ws.send_bytes(b"\x00" * 100000)
            assert await ws.receive_bytes(timeout=5) == b"\x00" * 100000


async def test_route_swap_keeps_open_keep_alive_connection(backends, proxy):
    old, new = await backends("old"), await backends("new")
    sup = await proxy(table({"old": [old], "new": [new]}, hosts={"swap.test": [("/", "Prefix", "old")]}))
    reader, writer = await asyncio.open_connection("127.0.0.1", sup.http_port)
    try:
        st, _, body = await raw_request(reader, writer, "/", "swap.test")
        assert json.loads(body)["service"] == "old"
        await sup.update(table({"old": [old], "new": [new]}, hosts={"swap.test": [("/", "Prefix", "new")]}))
        for _ in range(3):
            st, _, body = await raw_request(reader, writer, "/", "swap.test")
            assert st == 200 and json.loads(body)["service"] == "new"
        await sup.update(table({"old": [old]}, hosts={"other.test": [("/", "Prefix", "old")]}))
        st, _, _ = await raw_request(reader, writer, "/", "swap.test")
        assert st == 404
    finally:
        writer.close()


def make_cert(host: str) -> tuple[bytes, bytes]:
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, host)])
    now = datetime.datetime.now(datetime.UTC)
    cert = (x509.CertificateBuilder().subject_name(name).issuer_name(name).public_key(key.public_key())
            .serial_number(x509.random_serial_number()).not_valid_before(now - datetime.timedelta(hours=1))
            .not_valid_after(now + datetime.timedelta(days=1))
            .add_extension(x509.SubjectAlternativeName([x509.DNSName(host)]), critical=False)
            .sign(key, hashes.SHA256()))
    return (cert.public_bytes(serialization.Encoding.PEM),
            key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                              serialization.NoEncryption()))


def tls_secret(name: str, cert: tuple[bytes, bytes]) -> dict:
    import base64
    return {"metadata": {"name": name, "namespace": "t"}, "type": "kubernetes.io/tls",
            "data": {"tls.crt": base64.b64encode(cert[0]).decode(), "tls.key": base64.b64encode(cert[1]).decode()}}


async def test_tls_sni_selects_each_hosts_certificate(backends, proxy):
    from cryptography import x509
    a, b = await backends("tls-a"), await backends("tls-b")
    ca, cb = make_cert("a.tls.test"), make_cert("b.tls.test")
    t = table({"a": [a], "b": [b]}, hosts={"a.tls.test": [("/", "Prefix", "a")], "b.tls.test": [("/", "Prefix", "b")]},
              tls=[{"hosts": ["a.tls.test"], "secretName": "a"}, {"hosts": ["b.tls.test"], "secretName": "b"}],
              secrets=[tls_secret("a", ca), tls_secret("b", cb)])
    sup = await proxy(t, https=True)

    async def fetch(sni: str, host: str) -> tuple[str, dict]:
        ctx = ssl.create_default_context()
        ctx.check_hostname = False
        ctx.verify_mode = ssl.CERT_NONE
        reader, writer = await asyncio.open_connection("127.0.0.1", sup.https_port, ssl=ctx, server_hostname=sni)
        try:
            der = writer.get_extra_info("ssl_object").getpeercert(binary_form=True)
            san = x509.load_der_x509_certificate(der).extensions.get_extension_for_class(
                x509.SubjectAlternativeName).value.get_values_for_type(x509.DNSName)[0]
            st, _, body = await raw_request(reader, writer, "/", host)
            assert st == 200
            return san, json.loads(body)
        finally:
            writer.close()

    san, doc = await fetch("a.tls.test", "a.tls.test")
    assert san == "a.tls.test" and doc["service"] == "tls-a"
    assert doc["headers"]["X-Forwarded-Proto"] == "https"
    san, doc = await fetch("b.tls.test", "b.tls.test")
    assert san == "b.tls.test" and doc["service"] == "tls-b"
    san, doc = await fetch("unknown.test", "b.tls.test")  # SNI picks the cert, Host picks the route
    assert san == "ingress.local" and doc["service"] == "tls-b"
    async with aiohttp.ClientSession() as s:  # plain HTTP to a TLS host is still served
        async with s.get(f"http://127.0.0.1:{sup.http_port}/", headers={"Host": "a.tls.test"}) as r:
            assert (await r.json())["service"] == "tls-a"
