"""SPDY/3.1 framing, the wire format under `kubectl port-forward`.

kubectl tunnels a SPDY/3.1 session through WebSocket binary messages (subprotocol
``SPDY/3.1+portforward.k8s.io``), cut at arbitrary byte boundaries, so `FrameParser` takes any
pieces and yields whole frames. Header blocks are zlib streams primed with the SPDY/3
dictionary; each direction keeps one stream for the whole session, so a `HeaderCompressor`
(ours → peer) and a `HeaderDecompressor` (peer → ours) live as long as the connection.

Pure: no I/O. Integers are big-endian; stream ids are 31 bits.
"""

from __future__ import annotations

import struct
import zlib
from dataclasses import dataclass, field

VERSION = 3

# Control frame types (SPDY/3 §2.6).
SYN_STREAM = 1
SYN_REPLY = 2
RST_STREAM = 3
SETTINGS = 4
PING = 6
GOAWAY = 7
HEADERS = 8
WINDOW_UPDATE = 9

FLAG_FIN = 0x01
FLAG_UNIDIRECTIONAL = 0x02

# RST_STREAM status codes.
PROTOCOL_ERROR = 1
INVALID_STREAM = 2
REFUSED_STREAM = 3
CANCEL = 5
INTERNAL_ERROR = 6

MAX_FRAME_LENGTH = 0xFFFFFF


def _dictionary() -> bytes:
    """The SPDY/3 header compression dictionary (draft-mbelshe-httpbis-spdy-00 §2.6.10.1).

    It is protocol data: the first part is a list of length-prefixed words (header names and a
    few values), the rest is plain text of common values. zlib only inflates what was deflated
    with the very same 1423 bytes, so it is built here from the spec's word list and checked by
    length and by a digest in the unit tests.
    """
    words = (
        "options head post put delete trace accept accept-charset accept-encoding accept-language "
        "accept-ranges age allow authorization cache-control connection content-base content-encoding "
        "content-language content-length content-location content-md5 content-range content-type date "
        "etag expect expires from host if-match if-modified-since if-none-match if-range "
        "if-unmodified-since last-modified location max-forwards pragma proxy-authenticate "
        "proxy-authorization range referer retry-after server te trailer transfer-encoding upgrade "
        "user-agent vary via warning www-authenticate method get status"
    ).split() + ["200 OK", "version", "HTTP/1.1", "url", "public", "set-cookie", "keep-alive", "origin"]
    status_codes = "100 101 201 202 205 206 300 302 303 304 305 306 307 402 405 406 407 408 409 410 " \
                   "411 412 413 414 415 416 417 502 504 505".split()
    reasons = [
        "203 Non-Authoritative Information", "204 No Content", "301 Moved Permanently", "400 Bad Request",
        "401 Unauthorized", "403 Forbidden", "404 Not Found", "500 Internal Server Error",
        "501 Not Implemented", "503 Service Unavailable",
    ]
    text = (
        "".join(status_codes)
        + "".join(reasons)
        + "Jan Feb Mar Apr May Jun Jul Aug Sept Oct Nov Dec"
        + " 00:00:00"
        + " Mon, Tue, Wed, Thu, Fri, Sat, Sun, GMT"
        + "chunked,text/html,image/png,image/jpg,image/gif,application/xml,application/xhtml+xml,"
        + "text/plain,text/javascript,public"
        + "privatemax-age="
        + "gzip,deflate,sdch"
        + "charset=utf-8charset=iso-8859-1,utf-,*,enq=0."
    )
    return b"".join(struct.pack(">I", len(w)) + w.encode() for w in words) + text.encode()


DICTIONARY = _dictionary()


class ProtocolError(ValueError):
    """The peer sent something that is not SPDY/3."""


# ---- header blocks ---------------------------------------------------------------------------------


def encode_header_block(headers: list[tuple[str, str]]) -> bytes:
    """Uncompressed name/value block: count, then (len, name, len, value) for each header."""
    out = [struct.pack(">I", len(headers))]
    for name, value in headers:
        n, v = name.encode(), value.encode()
        out.append(struct.pack(">I", len(n)) + n + struct.pack(">I", len(v)) + v)
    return b"".join(out)


def decode_header_block(block: bytes) -> list[tuple[str, str]]:
    try:
        (count,) = struct.unpack_from(">I", block, 0)
        pos, headers = 4, []
        for _ in range(count):
            (n,) = struct.unpack_from(">I", block, pos)
            name = block[pos + 4:pos + 4 + n]
            pos += 4 + n
            (v,) = struct.unpack_from(">I", block, pos)
            value = block[pos + 4:pos + 4 + v]
            pos += 4 + v
            if len(name) != n or len(value) != v:
                raise ProtocolError("truncated header block")
            headers.append((name.decode(), value.decode()))
    except struct.error as exc:
        raise ProtocolError(f"truncated header block: {exc}") from None
    return headers


class HeaderCompressor:
    """Compresses our header blocks; one zlib stream for the whole session, flushed per frame."""

    def __init__(self) -> None:
        self._z = zlib.compressobj(zlib.Z_DEFAULT_COMPRESSION, zlib.DEFLATED, 15, 8, zlib.Z_DEFAULT_STRATEGY,
                                   DICTIONARY)

    def compress(self, headers: list[tuple[str, str]]) -> bytes:
        return self._z.compress(encode_header_block(headers)) + self._z.flush(zlib.Z_SYNC_FLUSH)


class HeaderDecompressor:
    """Inflates the peer's header blocks; the dictionary is supplied when zlib asks for it."""

    def __init__(self) -> None:
        self._z = zlib.decompressobj(15, DICTIONARY)

    def decompress(self, data: bytes) -> list[tuple[str, str]]:
        try:
            return decode_header_block(self._z.decompress(data))
        except zlib.error as exc:
            raise ProtocolError(f"header block does not inflate: {exc}") from None


# ---- frames --------------------------------------------------------------------------------------


@dataclass
class DataFrame:
    stream_id: int
    data: bytes = b""
    flags: int = 0

    @property
    def fin(self) -> bool:
        return bool(self.flags & FLAG_FIN)


@dataclass
class ControlFrame:
    """A control frame with its type-specific fields parsed; `payload` keeps the raw bytes."""

    type: int
    flags: int = 0
    payload: bytes = b""
    stream_id: int = 0
    associated_id: int = 0
    priority: int = 0
    headers: list[tuple[str, str]] = field(default_factory=list)
    status: int = 0  # RST_STREAM status, GOAWAY status
    ping_id: int = 0
    last_good_stream_id: int = 0
    delta_window: int = 0

    @property
    def fin(self) -> bool:
        return bool(self.flags & FLAG_FIN)

    def header(self, name: str) -> str | None:
        for n, v in self.headers:
            if n.lower() == name:
                return v
        return None


Frame = DataFrame | ControlFrame


def _control(ftype: int, flags: int, payload: bytes) -> bytes:
    if len(payload) > MAX_FRAME_LENGTH:
        raise ValueError("frame too large")
    return struct.pack(">HHI", 0x8000 | VERSION, ftype, (flags << 24) | len(payload)) + payload


def encode_data(stream_id: int, data: bytes = b"", fin: bool = False) -> bytes:
    if len(data) > MAX_FRAME_LENGTH:
        raise ValueError("frame too large")
    return struct.pack(">II", stream_id & 0x7FFFFFFF, ((FLAG_FIN if fin else 0) << 24) | len(data)) + data


def encode_syn_stream(stream_id: int, headers: list[tuple[str, str]], compressor: HeaderCompressor,
                      associated_id: int = 0, priority: int = 0, flags: int = 0) -> bytes:
    body = struct.pack(">IIBB", stream_id & 0x7FFFFFFF, associated_id & 0x7FFFFFFF, (priority & 7) << 5, 0)
    return _control(SYN_STREAM, flags, body + compressor.compress(headers))


def encode_syn_reply(stream_id: int, headers: list[tuple[str, str]], compressor: HeaderCompressor,
                     flags: int = 0) -> bytes:
    return _control(SYN_REPLY, flags, struct.pack(">I", stream_id & 0x7FFFFFFF) + compressor.compress(headers))


def encode_rst_stream(stream_id: int, status: int) -> bytes:
    return _control(RST_STREAM, 0, struct.pack(">II", stream_id & 0x7FFFFFFF, status))


def encode_ping(ping_id: int) -> bytes:
    return _control(PING, 0, struct.pack(">I", ping_id))


def encode_goaway(last_good_stream_id: int, status: int = 0) -> bytes:
    return _control(GOAWAY, 0, struct.pack(">II", last_good_stream_id & 0x7FFFFFFF, status))


def encode_window_update(stream_id: int, delta: int) -> bytes:
    return _control(WINDOW_UPDATE, 0, struct.pack(">II", stream_id & 0x7FFFFFFF, delta & 0x7FFFFFFF))


class FrameParser:
    """Turns a byte stream cut anywhere into frames (header blocks inflated with `decompressor`)."""

    def __init__(self, decompressor: HeaderDecompressor | None = None):
        self._buf = bytearray()
        self._dec = decompressor or HeaderDecompressor()

    def feed(self, data: bytes) -> list[Frame]:
        self._buf += data
        frames: list[Frame] = []
        while len(self._buf) >= 8:
            word, flags_len = struct.unpack_from(">II", self._buf, 0)
            length = flags_len & 0xFFFFFF
            if len(self._buf) < 8 + length:
                break
            payload = bytes(self._buf[8:8 + length])
            del self._buf[:8 + length]
            flags = flags_len >> 24
            if word & 0x80000000:
                frames.append(self._parse_control(word, flags, payload))
            else:
                frames.append(DataFrame(word & 0x7FFFFFFF, payload, flags))
        return frames

    def _parse_control(self, word: int, flags: int, payload: bytes) -> ControlFrame:
        version, ftype = (word >> 16) & 0x7FFF, word & 0xFFFF
        if version != VERSION:
            raise ProtocolError(f"unsupported SPDY version {version}")
        f = ControlFrame(ftype, flags, payload)
        try:
            if ftype == SYN_STREAM:
                sid, assoc, pri, _slot = struct.unpack_from(">IIBB", payload, 0)
                f.stream_id, f.associated_id, f.priority = sid & 0x7FFFFFFF, assoc & 0x7FFFFFFF, pri >> 5
                f.headers = self._dec.decompress(payload[10:])
            elif ftype in (SYN_REPLY, HEADERS):
                f.stream_id = struct.unpack_from(">I", payload, 0)[0] & 0x7FFFFFFF
                f.headers = self._dec.decompress(payload[4:])
            elif ftype == RST_STREAM:
                sid, f.status = struct.unpack_from(">II", payload, 0)
                f.stream_id = sid & 0x7FFFFFFF
            elif ftype == PING:
                (f.ping_id,) = struct.unpack_from(">I", payload, 0)
            elif ftype == GOAWAY:
                last, *rest = struct.unpack_from(">I" + ("I" if len(payload) >= 8 else ""), payload, 0)
                f.last_good_stream_id, f.status = last & 0x7FFFFFFF, (rest[0] if rest else 0)
            elif ftype == WINDOW_UPDATE:
                sid, delta = struct.unpack_from(">II", payload, 0)
                f.stream_id, f.delta_window = sid & 0x7FFFFFFF, delta & 0x7FFFFFFF
        except struct.error as exc:
            raise ProtocolError(f"short control frame of type {ftype}: {exc}") from None
        return f
