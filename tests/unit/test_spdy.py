"""SPDY/3.1 framing and the port-forward session, without root: loopback TCP only."""

from __future__ import annotations

import asyncio
import hashlib
import random
import zlib

import pytest

from skiff.node import spdy
from skiff.node.spdy_portforward import PortForwardSession

# ---- dictionary and header blocks ------------------------------------------------------------------


def test_dictionary_is_the_spdy3_one():
    d = spdy.DICTIONARY
    assert len(d) == 1423
    assert d.startswith(b"\x00\x00\x00\x07options\x00\x00\x00\x04head")
    assert d.endswith(b"charset=iso-8859-1,utf-,*,enq=0.")
    # zlib names a preset dictionary by its Adler-32 in every stream that uses it: peers agree on
    # this id, so it pins all 1423 bytes (the digest pins them too, for a clearer failure).
    assert zlib.adler32(d) == 0xE3C6A7C2
    assert hashlib.sha1(d).hexdigest() == "d68ca9b208de9c3754703445a22cf668a5abebb3"


def test_header_blocks_round_trip_across_one_zlib_stream():
    comp, dec = spdy.HeaderCompressor(), spdy.HeaderDecompressor()
    blocks = [
        [("streamtype", "error"), ("port", "80"), ("requestid", "0")],
        [("streamtype", "data"), ("port", "80"), ("requestid", "0")],
        [],
        [("x-long", "v" * 5000), ("ünïcode", "välue")],
    ]
    for headers in blocks:
        assert dec.decompress(comp.compress(headers)) == headers
    # The first block declares the SPDY dictionary in its zlib header (FDICT + DICTID).
    first = spdy.HeaderCompressor().compress([("port", "80")])
    assert first[1] & 0x20 and int.from_bytes(first[2:6], "big") == zlib.adler32(spdy.DICTIONARY)


def test_a_block_deflated_without_the_dictionary_context_is_rejected():
    dec = spdy.HeaderDecompressor()
    with pytest.raises(spdy.ProtocolError):
        dec.decompress(b"\x78\x9c" + b"garbage!")


# The first bytes kubectl v1.32 sent through the WebSocket tunnel for `kubectl port-forward pod/web
# 41234:31455` and one local connection (captured from the kernel test that drives the real kubectl):
# SYN_STREAM error stream, DATA FIN on it, SYN_STREAM data stream. The second header block only
# inflates with the zlib state the first one left: one stream per direction for the whole session.
KUBECTL_CAPTURE = bytes.fromhex(
    "800300010000003f0000000100000000000078f9e3c6a7c202253a703a2b294a4dcc851625aca9a0808614cb45a024cc6a"
    "6c68620a2a85388b20f198094adf8c0600000000ffff"
    "0000000101000000"
    "800300010000001800000003000000000000c2aa1b54102512a119000000ffff"
)


def test_parses_the_frames_the_real_kubectl_sent():
    parser, frames = spdy.FrameParser(), []
    for i in range(0, len(KUBECTL_CAPTURE), 3):  # cut as the tunnel may cut it
        frames += parser.feed(KUBECTL_CAPTURE[i:i + 3])
    syn_err, fin, syn_data = frames
    assert (syn_err.type, syn_err.stream_id) == (spdy.SYN_STREAM, 1)
    assert syn_err.headers == [("streamtype", "error"), ("port", "31455"), ("requestid", "0")]
    assert fin == spdy.DataFrame(1, b"", spdy.FLAG_FIN)
    assert (syn_data.type, syn_data.stream_id) == (spdy.SYN_STREAM, 3)
    assert syn_data.headers == [("streamtype", "data"), ("port", "31455"), ("requestid", "0")]


# ---- frames ---------------------------------------------------------------------------------------


def test_control_and_data_frames_round_trip_through_a_byte_stream_cut_anywhere():
    comp = spdy.HeaderCompressor()
    wire = b"".join([
        spdy.encode_syn_stream(1, [("streamtype", "error"), ("port", "8080")], comp, priority=3),
        spdy.encode_syn_reply(1, [], comp, flags=spdy.FLAG_FIN),
        spdy.encode_data(3, b"hello"),
        spdy.encode_data(3, b"", fin=True),
        spdy.encode_rst_stream(5, spdy.CANCEL),
        spdy.encode_ping(7),
        spdy.encode_goaway(9, 1),
        spdy.encode_window_update(3, 65536),
    ])
    assert wire[:8] == bytes.fromhex("8003000100") + len(wire[8:8 + wire[7]]).to_bytes(3, "big")
    rng = random.Random(4)
    parser, frames, pos = spdy.FrameParser(), [], 0
    while pos < len(wire):
        step = rng.randint(1, 7)
        frames += parser.feed(wire[pos:pos + step])
        pos += step
    syn, reply, data, fin, rst, ping, goaway, window = frames
    assert (syn.type, syn.stream_id, syn.priority, syn.header("port")) == (spdy.SYN_STREAM, 1, 3, "8080")
    assert (reply.type, reply.stream_id, reply.headers, reply.fin) == (spdy.SYN_REPLY, 1, [], True)
    assert data == spdy.DataFrame(3, b"hello", 0) and fin.fin and fin.data == b""
    assert (rst.type, rst.stream_id, rst.status) == (spdy.RST_STREAM, 5, spdy.CANCEL)
    assert (ping.type, ping.ping_id) == (spdy.PING, 7)
    assert (goaway.type, goaway.last_good_stream_id, goaway.status) == (spdy.GOAWAY, 9, 1)
    assert (window.type, window.stream_id, window.delta_window) == (spdy.WINDOW_UPDATE, 3, 65536)


def test_rejects_other_spdy_versions():
    frame = bytes.fromhex("8002000600000004") + b"\x00\x00\x00\x01"
    with pytest.raises(spdy.ProtocolError, match="version 2"):
        spdy.FrameParser().feed(frame)


# ---- a whole port-forward session over an in-memory byte stream ---------------------------------


class Client:
    """kubectl's side: writes frames into the session, parses what comes back."""

    def __init__(self, session_factory):
        self.comp = spdy.HeaderCompressor()
        self.parser = spdy.FrameParser()
        self.frames: list[spdy.Frame] = []
        self.changed = asyncio.Condition()
        self.session: PortForwardSession = session_factory(self._receive)
        self.rng = random.Random(7)

    async def _receive(self, data: bytes) -> None:
        async with self.changed:
            self.frames += self.parser.feed(data)
            self.changed.notify_all()

    async def send(self, data: bytes) -> None:
        # Like the WebSocket tunnel: arbitrary message boundaries.
        pos = 0
        while pos < len(data):
            step = self.rng.randint(1, 9)
            await self.session.feed(data[pos:pos + step])
            pos += step

    async def open_pair(self, request_id: int, port: int) -> tuple[int, int]:
        err_id, data_id = 4 * request_id + 1, 4 * request_id + 3
        for sid, kind in ((err_id, "error"), (data_id, "data")):
            headers = [("streamtype", kind), ("port", str(port)), ("requestid", str(request_id))]
            await self.send(spdy.encode_syn_stream(sid, headers, self.comp))
        return err_id, data_id

    async def wait_for(self, predicate, timeout: float = 5.0):
        async def check():
            async with self.changed:
                await self.changed.wait_for(lambda: predicate(self.frames))
        await asyncio.wait_for(check(), timeout)

    def data(self, sid: int) -> bytes:
        return b"".join(f.data for f in self.frames if isinstance(f, spdy.DataFrame) and f.stream_id == sid)

    def finished(self, sid: int) -> bool:
        return any(isinstance(f, spdy.DataFrame) and f.stream_id == sid and f.fin for f in self.frames)


@pytest.fixture
async def echo_server():
    async def handle(reader, writer):
        while chunk := await reader.read(65536):
            writer.write(chunk.upper())
            await writer.drain()
        writer.close()

    server = await asyncio.start_server(handle, "127.0.0.1", 0)
    yield server.sockets[0].getsockname()[1]
    server.close()
    await server.wait_closed()


async def test_port_forward_session_against_a_loopback_echo_server(echo_server):
    dialled = []

    async def dial(port):
        dialled.append(port)
        return await asyncio.open_connection("127.0.0.1", port)

    client = Client(lambda send: PortForwardSession(send, dial))
    await client.send(spdy.encode_ping(1))
    await client.wait_for(lambda fs: any(getattr(f, "type", None) == spdy.PING and f.ping_id == 1 for f in fs))

    err1, data1 = await client.open_pair(0, echo_server)
    await client.send(spdy.encode_data(err1, b"", fin=True))  # kubectl half-closes the error stream
    await client.wait_for(lambda fs: sum(1 for f in fs if getattr(f, "type", None) == spdy.SYN_REPLY) == 2)
    payload = bytes(range(97, 123)) * 4000  # 104 kB: several reads and frames
    await client.send(spdy.encode_data(data1, payload))
    await client.wait_for(lambda fs: len(client.data(data1)) == len(payload))
    assert client.data(data1) == payload.upper()

    # A second connection in parallel (requestid 1) is independent of the first.
    err2, data2 = await client.open_pair(1, echo_server)
    await client.send(spdy.encode_data(data2, b"second", fin=True))  # half-close: target sees EOF
    await client.wait_for(lambda fs: client.finished(data2) and client.finished(err2))
    assert client.data(data2) == b"SECOND" and client.data(err2) == b""
    assert not client.finished(data1)

    # kubectl resets the data stream when its local connection closes: the pair is finished.
    await client.send(spdy.encode_rst_stream(data1, spdy.CANCEL))
    await client.wait_for(lambda fs: client.finished(err1))
    assert dialled == [echo_server, echo_server]
    await client.session.close()


async def test_port_forward_reports_a_refused_port_on_the_error_stream(echo_server):
    async def dial(port):
        return await asyncio.open_connection("127.0.0.1", port)

    # A port nothing listens on: a server we close right away.
    probe = await asyncio.start_server(lambda r, w: None, "127.0.0.1", 0)
    dead_port = probe.sockets[0].getsockname()[1]
    probe.close()
    await probe.wait_closed()

    client = Client(lambda send: PortForwardSession(send, dial, describe=lambda p: "pod default/web"))
    err, data = await client.open_pair(0, dead_port)
    await client.wait_for(lambda fs: client.finished(err) and client.finished(data))
    text = client.data(err).decode()
    assert text.startswith(f"error forwarding port {dead_port} to pod default/web: ") and "Connect call failed" in text

    # GOAWAY: further streams are refused.
    await client.send(spdy.encode_goaway(3))
    await client.send(spdy.encode_syn_stream(5, [("streamtype", "error"), ("port", "1"), ("requestid", "1")],
                                             client.comp))
    await client.wait_for(lambda fs: any(getattr(f, "type", None) == spdy.RST_STREAM and f.stream_id == 5
                                         for f in fs))
    await client.session.close()
