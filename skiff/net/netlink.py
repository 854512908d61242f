"""What every netlink client here shares: attributes, message headers, acknowledgements, sockets.

skiff.proxy.netlink (nf_tables batches) and skiff.net.rtnl (links, addresses, routes) differ in
their messages, not in how a request is framed, how the kernel's acknowledgements are read back
and matched to requests, or how the kernel's error text is found in them.

Constants are the kernel's UAPI values (linux/netlink.h, asm-generic/socket.h); only the ones
used are defined.
"""

from __future__ import annotations

import errno
import select
import socket
import struct
import time
from collections.abc import Container, Iterable, Iterator

# linux/netlink.h
SOL_NETLINK = 270
NETLINK_CAP_ACK = 10
NETLINK_EXT_ACK = 11
NLMSG_ERROR = 2
NLM_F_REQUEST = 0x01
NLM_F_ACK = 0x04
NLM_F_CAPPED = 0x100  # in an ack: only the request's header is echoed
NLM_F_ACK_TLVS = 0x200  # in an ack: extended-ack attributes follow
NLM_F_EXCL = 0x200  # in a request (same bit, other meaning)
NLM_F_CREATE = 0x400
NLM_F_APPEND = 0x800
NLA_F_NESTED = 0x8000
NLMSGERR_ATTR_MSG = 1
# asm-generic/socket.h (Python's socket module lacks them): buffer sizes past the sysctl limits.
SO_SNDBUFFORCE = 32
SO_RCVBUFFORCE = 33

# How long to wait for acknowledgements once the kernel has stopped answering.
ACK_TIMEOUT = 5.0

NLMSGHDR = struct.Struct("=IHHII")  # length, type, flags, seq, pid
NLATTR = struct.Struct("=HH")  # length, type


class AckTimeout(OSError):
    """Some requests got no acknowledgement: the caller cannot tell what the kernel did with them."""

    def __init__(self, pending: int):
        super().__init__(errno.ETIMEDOUT, f"no acknowledgement for {pending} request(s)")
        self.pending = pending


# --- attributes ---------------------------------------------------------------------------------


def attr(kind: int, payload: bytes) -> bytes:
    """One netlink attribute, padded to 4 bytes."""
    length = NLATTR.size + len(payload)
    if length > 0xFFFF:
        raise ValueError(f"netlink attribute {kind} too long ({length} bytes)")
    return NLATTR.pack(length, kind) + payload + b"\0" * (-length % 4)


def nested(kind: int, *parts: bytes) -> bytes:
    return attr(kind | NLA_F_NESTED, b"".join(parts))


def attr_str(kind: int, value: str) -> bytes:
    return attr(kind, value.encode() + b"\0")


def attr_be32(kind: int, value: int) -> bytes:
    # nf_tables integer attributes are big-endian, whatever the host.
    return attr(kind, struct.pack(">I", value & 0xFFFFFFFF))


def attr_be64(kind: int, value: int) -> bytes:
    return attr(kind, struct.pack(">Q", value))


# --- messages -----------------------------------------------------------------------------------


def message(kind: int, flags: int, seq: int, payload: bytes) -> bytes:
    """One netlink message: the header, then `payload` (already padded by its attributes)."""
    return NLMSGHDR.pack(NLMSGHDR.size + len(payload), kind, flags, seq, 0) + payload


def messages(data: bytes) -> Iterator[tuple[int, int, int, bytes]]:
    """(type, flags, seq, body) of each netlink message in one datagram."""
    offset = 0
    while offset + NLMSGHDR.size <= len(data):
        length, kind, flags, seq, _pid = NLMSGHDR.unpack_from(data, offset)
        if length < NLMSGHDR.size:
            return
        yield kind, flags, seq, data[offset + NLMSGHDR.size: offset + length]
        offset += (length + 3) & ~3


def ack(flags: int, body: bytes) -> tuple[int, str]:
    """(errno, extended-ack text) of an NLMSG_ERROR body; errno 0 is a plain acknowledgement."""
    (error,) = struct.unpack_from("=i", body)
    text = ""
    if flags & NLM_F_ACK_TLVS:
        if flags & NLM_F_CAPPED:
            pos = 4 + NLMSGHDR.size
        else:
            (orig_len,) = struct.unpack_from("=I", body, 4)
            pos = 4 + ((orig_len + 3) & ~3)
        while pos + NLATTR.size <= len(body):
            alen, akind = NLATTR.unpack_from(body, pos)
            if alen < NLATTR.size:
                break
            if akind == NLMSGERR_ATTR_MSG:
                text = body[pos + NLATTR.size: pos + alen].rstrip(b"\0").decode(errors="replace")
            pos += (alen + 3) & ~3
    return -error, text


# --- sockets ------------------------------------------------------------------------------------


def open_socket(protocol: int, rcvbuf: int | None = None) -> socket.socket:
    """A bound netlink socket whose acks echo only the request's header and carry the kernel's
    error text when it has one. rcvbuf: room for that many bytes of replies (past the sysctl cap
    when allowed)."""
    sock = socket.socket(socket.AF_NETLINK, socket.SOCK_RAW | socket.SOCK_CLOEXEC, protocol)
    try:
        sock.setsockopt(SOL_NETLINK, NETLINK_CAP_ACK, 1)
        sock.setsockopt(SOL_NETLINK, NETLINK_EXT_ACK, 1)
        if rcvbuf is not None:
            try:
                sock.setsockopt(socket.SOL_SOCKET, SO_RCVBUFFORCE, rcvbuf)
            except OSError:
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, rcvbuf)
        sock.bind((0, 0))
    except BaseException:
        sock.close()
        raise
    return sock


def read_acks(sock: socket.socket, want: Iterable[int], accept: Container[int] | None = None, *,
              stop_at_error: bool = False, timeout: float = ACK_TIMEOUT
              ) -> tuple[dict[int, tuple[int, str]], dict[int, list[tuple[int, bytes]]]]:
    """Read until every request numbered in `want` is acknowledged.

    Returns ({seq: (errno, text)} of the acknowledgements, {seq: [(type, body)]} of the other
    replies). Messages whose seq is not in `accept` (default: `want`) are left-overs of an earlier,
    interrupted exchange and are skipped. stop_at_error: once the kernel has nothing more to say
    and some request failed, stop waiting for the rest (an nf_tables batch is then abandoned).
    Raises AckTimeout, or the OSError of a failed read (ENOBUFS: replies were dropped).
    """
    pending = set(want)
    accept = pending.copy() if accept is None else accept
    acks: dict[int, tuple[int, str]] = {}
    replies: dict[int, list[tuple[int, bytes]]] = {}
    deadline: float | None = None
    while pending:
        try:
            # The kernel handles requests inside sendmsg, so their answers are normally queued already.
            data = sock.recv(65536, socket.MSG_DONTWAIT)
        except (BlockingIOError, InterruptedError):
            if stop_at_error and any(err for err, _ in acks.values()):
                break
            now = time.monotonic()
            deadline = deadline or now + timeout
            if now >= deadline:
                raise AckTimeout(len(pending)) from None
            select.select([sock], [], [], deadline - now)
            continue
        for kind, flags, seq, body in messages(data):
            if seq not in accept:
                continue
            if kind == NLMSG_ERROR:
                acks[seq] = ack(flags, body)
                pending.discard(seq)
            else:
                replies.setdefault(seq, []).append((kind, body))
    return acks, replies
