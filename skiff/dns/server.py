"""The DNS server: UDP and TCP on one address, cluster names from the zone, the rest forwarded.

What it does follows the Corefile kubeadm installs: `kubernetes` for the cluster domain and the
cluster's reverse ranges, `forward . /etc/resolv.conf` (at most `max_concurrent` forwarded
queries in flight, REFUSED beyond), `health` on :8080/health and `ready` on :8181/ready. Wire
format is dnspython's throughout. Cluster answers are computed in the datagram callback itself
(no task per query); only forwarded queries become tasks.
"""

from __future__ import annotations

import asyncio
import errno
import ipaddress
import logging
import socket
import time
from collections.abc import Iterable

import dns.exception
import dns.flags
import dns.message
import dns.name
import dns.opcode
import dns.rcode
import dns.rdataclass
import dns.rdatatype
import dns.rrset

from skiff.dns.corefile import Corefile, Forward, Hosts
from skiff.dns.records import Answer, Zone
from skiff.dns.resolvconf import nameservers

log = logging.getLogger("skiff.dns")
queries_log = logging.getLogger("skiff.dns.log")  # the Corefile's log plugin

UDP_MIN_PAYLOAD = 512
TCP_IDLE_SECONDS = 10.0
UPSTREAM_LOG_INTERVAL = 10.0
# How long an upstream the kernel called out of reach is skipped (SERVFAIL at once meanwhile).
UNREACHABLE_SKIP_SECONDS = 5.0
_OUT_OF_REACH = {errno.ENETUNREACH, errno.EHOSTUNREACH}  # routing, not a server restarting


def parse_upstream(text: str) -> tuple[str, int]:
    """`1.2.3.4`, `1.2.3.4:5353`, `::1`, `[::1]:5353` → (address, port)."""
    text = text.strip()
    if text.startswith("["):
        host, _, rest = text[1:].partition("]")
        return host, int(rest.lstrip(":") or 53)
    if text.count(":") == 1:
        host, port = text.split(":")
        return host, int(port)
    ipaddress.ip_address(text)  # reject names: a resolver cannot depend on a resolver
    return text, 53


def host_nameservers(path: str = "/etc/resolv.conf") -> list[str]:
    """The `nameserver` lines of a resolv.conf (what `forward . /etc/resolv.conf` uses)."""
    try:
        with open(path) as f:
            return nameservers(f.read())
    except OSError as e:
        log.error("cannot read %s: %s", path, e)
        return []


class _Reply(asyncio.DatagramProtocol):
    def __init__(self, done: asyncio.Future[bytes]) -> None:
        self.done = done

    def datagram_received(self, data: bytes, addr: tuple) -> None:
        if not self.done.done():
            self.done.set_result(data)

    def error_received(self, exc: Exception) -> None:
        if not self.done.done():
            self.done.set_exception(exc)


# linux/in.h and linux/in6.h; Python's socket module does not name them.
_IP_RECVERR, _IPV6_RECVERR = 11, 25


async def _udp_query(q: dns.message.Message, host: str, port: int, timeout: float) -> dns.message.Message:
    """One query over a connected UDP socket that reports every ICMP error, so that an upstream
    out of reach (no route from the node: the kernel answers "network unreachable") or with
    nothing listening fails the query at once instead of after the whole timeout. From a pod
    the host's resolver is often out of reach, and each external name a program tried (glibc
    asks for A and AAAA, down the search list) would otherwise cost seconds. Without
    IP_RECVERR a connected socket reports only "port unreachable"."""
    loop = asyncio.get_running_loop()
    done: asyncio.Future[bytes] = loop.create_future()
    v6 = ":" in host
    sock = socket.socket(socket.AF_INET6 if v6 else socket.AF_INET, socket.SOCK_DGRAM)
    try:
        sock.setsockopt(socket.IPPROTO_IPV6 if v6 else socket.IPPROTO_IP, _IPV6_RECVERR if v6 else _IP_RECVERR, 1)
        sock.setblocking(False)
        sock.connect((host, port))
    except OSError:
        sock.close()
        raise
    transport, _ = await loop.create_datagram_endpoint(lambda: _Reply(done), sock=sock)
    try:
        transport.sendto(q.to_wire())
        async with asyncio.timeout(timeout):
            reply = dns.message.from_wire(await done)
    finally:
        transport.close()
    if not q.is_response(reply):
        raise dns.exception.DNSException(f"{host}:{port} answered another question")
    return reply


class DNSServer:
    def __init__(self, zone: Zone, listen: str = "0.0.0.0", port: int = 53,
                 upstreams: Iterable[str] | None = None, timeout: float = 2.0,
                 max_concurrent: int = 1000, health_port: int | None = 8080, ready_port: int | None = 8181):
        self.zone = zone
        self.listen = listen
        self.port = port
        ups = list(upstreams) if upstreams is not None else host_nameservers()
        self.upstreams = [parse_upstream(u) for u in ups]
        self.timeout = timeout
        self.max_concurrent = max_concurrent
        self.health_port = health_port
        self.ready_port = ready_port
        # /ready turns false for the lame-duck period before shutdown, while queries still work.
        self.shutting_down = False
        self._inflight = 0
        self._udp: asyncio.DatagramTransport | None = None
        self._servers: list[asyncio.AbstractServer] = []
        self._tasks: set[asyncio.Task] = set()
        self._upstream_logged: dict[tuple[str, int], float] = {}
        # Upstreams the kernel called out of reach, and until when they are skipped (see _forward).
        self._unreachable_until: dict[tuple[str, int], float] = {}
        # The Corefile in force (None: the flags' behaviour, one zone and `forward .` upstreams).
        self.corefile: Corefile | None = None
        self._forwards: dict[Forward, list[tuple[str, int]]] = {}  # each forward plugin's upstreams, parsed
        self._logging = False  # some server block has the log plugin

    # ---- lifecycle ---------------------------------------------------------------------------
    async def start(self) -> None:
        loop = asyncio.get_running_loop()
        self._udp, _ = await loop.create_datagram_endpoint(lambda: _UDPProtocol(self),
                                                           local_addr=(self.listen, self.port))
        self.port = self._udp.get_extra_info("sockname")[1]
        # The TCP listener shares the UDP port number, as DNS clients expect.
        self._servers.append(await asyncio.start_server(self._serve_tcp, self.listen, self.port))
        self.upstreams = [u for u in self.upstreams if not self._is_self(u)]
        for attr in ("health_port", "ready_port"):
            port = getattr(self, attr)
            if port is not None:
                srv = await asyncio.start_server(self._serve_http, self.listen, port)
                setattr(self, attr, srv.sockets[0].getsockname()[1])
                self._servers.append(srv)

    async def close(self) -> None:
        if self._udp is not None:
            self._udp.close()
        for srv in self._servers:
            srv.close()
        for task in list(self._tasks):
            task.cancel()
        for srv in self._servers:
            await srv.wait_closed()
        self._servers.clear()

    def _is_self(self, upstream: tuple[str, int]) -> bool:
        # Forwarding to ourselves would loop until every query times out (CoreDNS's `loop`
        # plugin exists for this); drop such an upstream instead.
        if upstream[1] != self.port:
            return False
        wildcard = self.listen in ("0.0.0.0", "::")
        return upstream[0] == self.listen or (wildcard and ipaddress.ip_address(upstream[0]).is_loopback)

    # ---- one query ---------------------------------------------------------------------------
    def apply_corefile(self, corefile: Corefile) -> None:
        """Serve as `corefile` says from now on: the cluster zone's ttl and pods mode come from its
        kubernetes plugin, forwarding from each server block's forward plugin."""
        forwards = {}
        for block in corefile.blocks:
            if block.forward is not None:
                forwards[block.forward] = [u for u in map(parse_upstream, block.forward.upstreams)
                                           if not self._is_self(u)]
            if block.kubernetes is not None and any(self.zone.origin.is_subdomain(z) for z in block.kubernetes.zones):
                self.zone.set_ttl(block.kubernetes.ttl)
                self.zone.pods = block.kubernetes.pods
        root = corefile.block_for(dns.name.root)
        if root is not None and root.forward is not None and root.forward.max_concurrent:
            self.max_concurrent = root.forward.max_concurrent
        self._forwards = forwards
        self._logging = any(b.log for b in corefile.blocks)
        self.corefile = corefile

    def handle(self, wire: bytes, max_size: int | None) -> bytes | asyncio.Task | None:
        """Reply bytes, a task that will produce them (forwarding), or None (drop the packet).
        max_size None means TCP; otherwise the UDP payload limit is taken from the query."""
        try:
            q = dns.message.from_wire(wire, continue_on_error=True)
        except Exception:  # shorter than a header: nothing to reply to
            return None
        if q.flags & dns.flags.QR:
            return None  # a response sent to us; answering it could start a loop
        if q.errors or len(q.question) != 1:
            return self._error(q, dns.rcode.FORMERR)
        if q.opcode() != dns.opcode.QUERY:
            return self._error(q, dns.rcode.NOTIMP)
        limit = 65535 if max_size is None else max(UDP_MIN_PAYLOAD, q.payload if q.edns >= 0 else 0)
        question = q.question[0]
        upstreams = self.upstreams
        block = self.corefile.block_for(question.name) if self.corefile is not None else None
        if self.corefile is not None:
            if block is None:
                return self._error(q, dns.rcode.REFUSED)  # no server block for the name, as CoreDNS
            if block.hosts is not None:
                found = self._hosts_answer(block.hosts, question.name, question.rdtype)
                if found is not None:
                    return self._render(self._response(q, found), limit)
        try:
            ans = None
            if block is None or (block.kubernetes is not None
                                 and any(question.name.is_subdomain(z) for z in block.kubernetes.zones)):
                ans = self.zone.answer(question.name, question.rdtype)
        except Exception:
            log.exception("answering %s %s failed", question.name, dns.rdatatype.to_text(question.rdtype))
            ans = Answer(dns.rcode.SERVFAIL, [], [], [])
        if ans is not None and not self._needs_chase(ans, question.rdtype):
            return self._render(self._response(q, ans), limit)
        if block is not None:
            forward = block.forward
            if forward is None or not question.name.is_subdomain(forward.zone):
                return self._error(q, dns.rcode.SERVFAIL)  # no plugin takes the name
            upstreams = self._forwards.get(forward, [])
        if self._inflight >= self.max_concurrent:
            return self._error(q, dns.rcode.REFUSED)
        self._inflight += 1  # counted before the task runs, so a burst cannot overshoot the cap
        task = asyncio.get_running_loop().create_task(self._resolve_remote(q, ans, limit, upstreams))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        return task

    @staticmethod
    def _hosts_answer(hosts: Hosts, name: dns.name.Name, qtype: int) -> Answer | None:
        """The hosts plugin: A/AAAA for its names; a name it has answers NOERROR without records for
        other types; an unknown name is NXDOMAIN, or passed on with fallthrough."""
        ips = hosts.lookup(name)
        if ips is None:
            return None if hosts.fallthrough else Answer(dns.rcode.NXDOMAIN, [], [], [])
        want = {dns.rdatatype.A: 4, dns.rdatatype.AAAA: 6}.get(qtype)
        records = [ip for ip in ips if want is not None and ipaddress.ip_address(ip).version == want]
        answer = [dns.rrset.from_text_list(name, hosts.ttl, "IN", qtype, records)] if records else []
        return Answer(dns.rcode.NOERROR, answer, [], [])

    def _response(self, q: dns.message.Message, ans: Answer) -> dns.message.Message:
        r = dns.message.make_response(q, recursion_available=True)
        r.flags |= dns.flags.AA
        r.set_rcode(ans.rcode)
        r.answer.extend(ans.answer)
        r.authority.extend(ans.authority)
        r.additional.extend(ans.additional)
        return r

    def _needs_chase(self, ans: Answer, qtype: int) -> bool:
        """An ExternalName's CNAME points outside the cluster: A/AAAA questions also get the
        target's records, resolved upstream (as CoreDNS does)."""
        if ans.rcode != dns.rcode.NOERROR or not ans.answer or qtype not in (dns.rdatatype.A,
                                                                             dns.rdatatype.AAAA):
            return False
        last = ans.answer[-1]
        return last.rdtype == dns.rdatatype.CNAME and not self.zone.is_authoritative(last[0].target)

    async def _resolve_remote(self, q: dns.message.Message, ans: Answer | None, limit: int,
                              upstreams: list[tuple[str, int]] | None = None) -> bytes:
        try:
            if ans is not None:  # chase an ExternalName target
                target = ans.answer[-1][0].target
                sub = dns.message.make_query(target, q.question[0].rdtype)
                upstream = await self._forward(sub, upstreams)
                r = self._response(q, ans)
                if upstream is not None and upstream.rcode() == dns.rcode.NOERROR:
                    r.answer.extend(upstream.answer)
                return self._render(r, limit)
            upstream = await self._forward(q, upstreams)
            if upstream is None:
                return self._error(q, dns.rcode.SERVFAIL)
            upstream.id = q.id
            return self._render(upstream, limit)
        finally:
            self._inflight -= 1

    async def _forward(self, q: dns.message.Message,
                       upstreams: list[tuple[str, int]] | None = None) -> dns.message.Message | None:
        import dns.asyncquery  # only forwarding needs it; keeps start-up imports small

        now = asyncio.get_running_loop().time()
        for host, port in self.upstreams if upstreams is None else upstreams:
            # The kernel rate-limits the ICMP errors that make an unreachable upstream fail fast
            # (a burst of about five, then one a second from the node), so an upstream it called
            # out of reach is skipped for a while instead of asked again: every query in that
            # window would otherwise wait the whole timeout.
            if self._unreachable_until.get((host, port), 0.0) > now:
                continue
            try:
                resp = await _udp_query(q, host, port, self.timeout)
                if resp.flags & dns.flags.TC:
                    resp = await dns.asyncquery.tcp(q, host, timeout=self.timeout, port=port)
                self._unreachable_until.pop((host, port), None)
                return resp
            except (dns.exception.DNSException, OSError, EOFError) as e:
                if isinstance(e, OSError) and e.errno in _OUT_OF_REACH:
                    self._unreachable_until[(host, port)] = now + UNREACHABLE_SKIP_SECONDS
                self._log_upstream_failure(host, port, q, e)
        return None

    def _log_upstream_failure(self, host: str, port: int, q: dns.message.Message, e: Exception) -> None:
        # One line per upstream per interval: a dead upstream must not turn into a log per query.
        now = asyncio.get_running_loop().time()
        if now - self._upstream_logged.get((host, port), -UPSTREAM_LOG_INTERVAL) >= UPSTREAM_LOG_INTERVAL:
            self._upstream_logged[(host, port)] = now
            why = (e.strerror if isinstance(e, OSError) and e.strerror else str(e)) or type(e).__name__
            log.error("upstream %s:%d failed for %s: %s (further failures muted for %.0f s)", host, port,
                      q.question[0].name, why, UPSTREAM_LOG_INTERVAL)

    @staticmethod
    def _error(q: dns.message.Message, rcode: int) -> bytes:
        r = dns.message.Message(id=q.id)
        r.flags = dns.flags.QR | (q.flags & dns.flags.RD)
        r.set_opcode(q.opcode())
        if len(q.question) == 1:
            r.question = list(q.question)
        r.set_rcode(rcode)
        return r.to_wire()

    @staticmethod
    def _render(r: dns.message.Message, limit: int) -> bytes:
        try:
            return r.to_wire(max_size=limit)
        except dns.exception.TooBig:
            # Too big for this UDP client: an empty truncated answer makes it retry over TCP.
            r.answer.clear()
            r.authority.clear()
            r.additional.clear()
            r.flags |= dns.flags.TC
            return r.to_wire(max_size=limit)

    # ---- transports --------------------------------------------------------------------------
    def _log_query(self, data: bytes, addr, proto: str, out: bytes, started: float) -> None:
        """The log plugin's line for one query, with CoreDNS's fields: client, id, "type class name
        proto size do bufsize", rcode, reply flags, reply size, duration."""
        try:
            q, r = dns.message.from_wire(data), dns.message.from_wire(out)
        except Exception:
            return
        assert self.corefile is not None
        question = q.question[0]
        block = self.corefile.block_for(question.name)
        if block is None or not block.log:
            return
        flags = ",".join(n for n, bit in (("qr", dns.flags.QR), ("aa", dns.flags.AA), ("tc", dns.flags.TC),
                                         ("rd", dns.flags.RD), ("ra", dns.flags.RA)) if r.flags & bit)
        edns = q.edns >= 0
        queries_log.info('%s:%d - %d "%s %s %s %s %d %s %d" %s %s %d %.9fs', addr[0], addr[1], q.id,
                         dns.rdatatype.to_text(question.rdtype), dns.rdataclass.to_text(question.rdclass),
                         question.name, proto, len(data), str(edns and bool(q.ednsflags & dns.flags.DO)).lower(),
                         q.payload if edns else UDP_MIN_PAYLOAD, dns.rcode.to_text(r.rcode()), flags, len(out),
                         time.perf_counter() - started)

    def _on_datagram(self, data: bytes, addr, transport: asyncio.DatagramTransport) -> None:
        started = time.perf_counter()
        try:
            out = self.handle(data, UDP_MIN_PAYLOAD)
        except Exception:
            log.exception("query from %s failed", addr)
            return
        if isinstance(out, bytes):
            if self._logging:
                self._log_query(data, addr, "udp", out, started)
            transport.sendto(out, addr)
        elif out is not None:
            out.add_done_callback(lambda t: self._send_later(t, data, addr, transport, started))

    def _send_later(self, task: asyncio.Task, data: bytes, addr, transport: asyncio.DatagramTransport,
                    started: float) -> None:
        if task.cancelled():
            return
        if task.exception() is not None:
            log.error("forwarding for %s failed: %r", addr, task.exception())
            return
        if not transport.is_closing():
            if self._logging:
                self._log_query(data, addr, "udp", task.result(), started)
            transport.sendto(task.result(), addr)

    async def _serve_tcp(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            while True:
                # RFC 1035 §4.2.2 framing: a two-byte length, then the message.
                size = int.from_bytes(await asyncio.wait_for(reader.readexactly(2), TCP_IDLE_SECONDS), "big")
                data = await asyncio.wait_for(reader.readexactly(size), TCP_IDLE_SECONDS)
                started = time.perf_counter()
                out = self.handle(data, None)
                if out is None:
                    break
                if not isinstance(out, bytes):
                    out = await out
                if self._logging:
                    self._log_query(data, writer.get_extra_info("peername"), "tcp", out, started)
                writer.write(len(out).to_bytes(2, "big") + out)
                await writer.drain()
        except (TimeoutError, asyncio.IncompleteReadError, ConnectionError):
            pass
        except Exception:
            log.exception("TCP client failed")
        finally:
            writer.close()

    async def _serve_http(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        """Just enough HTTP/1.x for kubelet probes: GET /health and GET /ready."""
        try:
            head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 5.0)
            parts = head.split(b"\r\n", 1)[0].split()
            path = parts[1].decode("latin-1").split("?", 1)[0] if len(parts) >= 2 else ""
            if path == "/health":
                status, body = "200 OK", "OK"
            elif path == "/ready":
                ready = self.zone.synced and not self.shutting_down
                status, body = ("200 OK", "OK") if ready else ("503 Service Unavailable", "not ready")
            else:
                status, body = "404 Not Found", "404 page not found"
            writer.write(f"HTTP/1.1 {status}\r\nContent-Type: text/plain; charset=utf-8\r\n"
                         f"Content-Length: {len(body)}\r\nConnection: close\r\n\r\n{body}".encode())
            await writer.drain()
        except (TimeoutError, asyncio.IncompleteReadError, asyncio.LimitOverrunError, ConnectionError):
            pass
        finally:
            writer.close()


class _UDPProtocol(asyncio.DatagramProtocol):
    def __init__(self, server: DNSServer):
        self.server = server
        self.transport: asyncio.DatagramTransport | None = None

    def connection_made(self, transport) -> None:
        self.transport = transport

    def datagram_received(self, data: bytes, addr) -> None:
        self.server._on_datagram(data, addr, self.transport)

    def error_received(self, exc: Exception) -> None:
        log.debug("UDP error: %s", exc)
