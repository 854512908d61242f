"""A minimal nf_tables netlink client: one atomic batch of table changes per call, no `nft` process.

nft 1.0.6 dumps and parses the whole table before any transaction that adds a rule or an element;
with tens of thousands of chains that costs more than the kernel commit itself. Talking to the
kernel directly skips that: the caller already knows the table's state. A batch is framed by
BATCH_BEGIN/BATCH_END for the nf_tables subsystem, so the kernel applies all of it or none of it.
Every message asks for an acknowledgement, which is how a failure is pinned to one operation.

Constants are the kernel's UAPI values (linux/netlink.h, linux/netfilter/nfnetlink.h,
linux/netfilter/nf_tables.h); only the ones this client uses are defined.
"""

from __future__ import annotations

import errno
import itertools
import os
import random
import socket
import struct
import threading
from dataclasses import dataclass, field

from skiff.net.netlink import (
    NLM_F_ACK,
    NLM_F_APPEND,
    NLM_F_CREATE,
    NLM_F_REQUEST,
    SO_SNDBUFFORCE,
    AckTimeout,
    attr_be32,
    attr_str,
    message,
    nested,
    open_socket,
    read_acks,
)
from skiff.net.ns import call_in_netns, netns_path

NETLINK_NETFILTER = 12

# linux/netfilter/nfnetlink.h
NFNL_SUBSYS_NFTABLES = 10
NFNL_MSG_BATCH_BEGIN = 16
NFNL_MSG_BATCH_END = 17
NFNETLINK_V0 = 0
NFPROTO_IPV4 = 2

# linux/netfilter/nf_tables.h: enum nf_tables_msg_types
NFT_MSG_NEWCHAIN = 3
NFT_MSG_DELCHAIN = 5
NFT_MSG_NEWRULE = 6
NFT_MSG_DELRULE = 8
NFT_MSG_NEWSET = 9
NFT_MSG_DELSET = 11
NFT_MSG_NEWSETELEM = 12
NFT_MSG_DELSETELEM = 14

# enum nft_chain_attributes / nft_rule_attributes / nft_set_attributes / nft_set_elem_list_attributes
NFTA_CHAIN_TABLE = 1
NFTA_CHAIN_NAME = 3
NFTA_RULE_TABLE = 1
NFTA_RULE_CHAIN = 2
NFTA_RULE_EXPRESSIONS = 4
NFTA_SET_TABLE = 1
NFTA_SET_NAME = 2
NFTA_SET_ID = 10
NFTA_SET_ELEM_LIST_TABLE = 1
NFTA_SET_ELEM_LIST_SET = 2
NFTA_SET_ELEM_LIST_ELEMENTS = 3
NFTA_LIST_ELEM = 1
NFTA_EXPR_NAME = 1
NFTA_EXPR_DATA = 2

# An attribute's length is a u16, so elements are split over messages below this payload size.
MAX_ELEMENTS_PAYLOAD = 60000
# Each acknowledgement is a separate skb queued on our socket (~1 KiB of receive buffer each).
MAX_BATCH_MESSAGES = 10000
RCVBUF_BYTES = 16 * 1024 * 1024

_NFGENMSG = struct.Struct("=BBH")


class NetlinkError(RuntimeError):
    """The kernel rejected a batch (nothing of it was applied) or the exchange broke down.

    errno is the kernel's error for the first failing operation; operation describes that
    operation in nft syntax. state_unknown means we cannot tell whether the batch was applied.
    """

    def __init__(self, message: str, *, errno_: int | None = None, operation: str | None = None,
                 state_unknown: bool = False):
        super().__init__(message)
        self.errno = errno_
        self.operation = operation
        self.state_unknown = state_unknown


@dataclass(frozen=True)
class Expr:
    """One nf_tables expression: its name ("payload", "cmp", ...) and its encoded NFTA_EXPR_DATA body."""

    name: str
    data: bytes


def encode_expressions(exprs: tuple[Expr, ...] | list[Expr]) -> bytes:
    """The NFTA_RULE_EXPRESSIONS attribute for a rule made of `exprs`, in order."""
    return nested(
        NFTA_RULE_EXPRESSIONS,
        *(nested(NFTA_LIST_ELEM, attr_str(NFTA_EXPR_NAME, e.name), nested(NFTA_EXPR_DATA, e.data)) for e in exprs),
    )


# --- batches --------------------------------------------------------------------------------


@dataclass(frozen=True)
class Message:
    """One operation of a batch. what is the same operation in nft syntax, for error messages."""

    type: int
    flags: int
    payload: bytes
    what: str


@dataclass
class Batch:
    """Operations on one table (family ip), applied in order and atomically by NftSocket.commit."""

    table: str
    messages: list[Message] = field(default_factory=list)
    _set_ids: itertools.count = field(default_factory=lambda: itertools.count(1), repr=False)

    def __len__(self) -> int:
        return len(self.messages)

    def _add(self, kind: int, flags: int, payload: bytes, what: str) -> None:
        self.messages.append(Message(kind, flags, payload, what))

    def new_chain(self, name: str) -> None:
        """A regular (non-base) chain; like `nft add chain`, not an error if it exists."""
        payload = attr_str(NFTA_CHAIN_TABLE, self.table) + attr_str(NFTA_CHAIN_NAME, name)
        self._add(NFT_MSG_NEWCHAIN, NLM_F_CREATE, payload, f"add chain ip {self.table} {name}")

    def flush_chain(self, name: str) -> None:
        # DELRULE naming only the chain deletes all of its rules.
        payload = attr_str(NFTA_RULE_TABLE, self.table) + attr_str(NFTA_RULE_CHAIN, name)
        self._add(NFT_MSG_DELRULE, 0, payload, f"flush chain ip {self.table} {name}")

    def delete_chain(self, name: str) -> None:
        payload = attr_str(NFTA_CHAIN_TABLE, self.table) + attr_str(NFTA_CHAIN_NAME, name)
        self._add(NFT_MSG_DELCHAIN, 0, payload, f"delete chain ip {self.table} {name}")

    def add_rule(self, chain: str, exprs: tuple[Expr, ...] | list[Expr], text: str = "") -> None:
        """Append a rule at the end of `chain`; text is its nft form, for error messages."""
        payload = attr_str(NFTA_RULE_TABLE, self.table) + attr_str(NFTA_RULE_CHAIN, chain)
        payload += encode_expressions(exprs)
        self._add(NFT_MSG_NEWRULE, NLM_F_CREATE | NLM_F_APPEND, payload, f"add rule ip {self.table} {chain} {text}")

    def new_set(self, name: str, attrs: bytes, text: str = "") -> None:
        """A named set; attrs are its NFTA_SET_* attributes other than table, name and id."""
        payload = attr_str(NFTA_SET_TABLE, self.table) + attr_str(NFTA_SET_NAME, name)
        payload += attrs + attr_be32(NFTA_SET_ID, next(self._set_ids))
        self._add(NFT_MSG_NEWSET, NLM_F_CREATE, payload, f"add set ip {self.table} {name} {text}".rstrip())

    def delete_set(self, name: str) -> None:
        payload = attr_str(NFTA_SET_TABLE, self.table) + attr_str(NFTA_SET_NAME, name)
        self._add(NFT_MSG_DELSET, 0, payload, f"delete set ip {self.table} {name}")

    def add_elements(self, set_name: str, elements: list[bytes], texts: list[str] | None = None) -> None:
        """Add encoded NFTA_LIST_ELEM elements (see expressions.compile_element) to a set or map."""
        self._elements(NFT_MSG_NEWSETELEM, NLM_F_CREATE, "add", set_name, elements, texts)

    def delete_elements(self, set_name: str, elements: list[bytes], texts: list[str] | None = None) -> None:
        self._elements(NFT_MSG_DELSETELEM, 0, "delete", set_name, elements, texts)

    def _elements(self, kind: int, flags: int, verb: str, set_name: str, elements: list[bytes],
                  texts: list[str] | None) -> None:
        head = attr_str(NFTA_SET_ELEM_LIST_TABLE, self.table) + attr_str(NFTA_SET_ELEM_LIST_SET, set_name)
        start = 0
        while start < len(elements):
            end, size = start, 0
            while end < len(elements) and (end == start or size + len(elements[end]) <= MAX_ELEMENTS_PAYLOAD):
                size += len(elements[end])
                end += 1
            shown = texts[start:end] if texts else []
            summary = ", ".join(shown[:3]) + (", ..." if len(shown) > 3 else "")
            what = f"{verb} element ip {self.table} {set_name} {{ {summary or f'{end - start} elements'} }}"
            payload = head + nested(NFTA_SET_ELEM_LIST_ELEMENTS, *elements[start:end])
            self._add(kind, flags, payload, what)
            start = end


# --- the socket -----------------------------------------------------------------------------


def _open_socket() -> socket.socket:
    return open_socket(NETLINK_NETFILTER, RCVBUF_BYTES)


class NftSocket:
    """A NETLINK_NETFILTER socket in one network namespace (the one it was opened in, for good)."""

    def __init__(self, netns: str | None = None):
        self.netns = netns
        self._ns_ident = _netns_ident(netns)
        self._sock = call_in_netns(netns, _open_socket) if netns else _open_socket()
        self._lock = threading.Lock()
        self._seq = random.randrange(1, 1 << 30)
        self._sndbuf = self._sock.getsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF)

    def close(self) -> None:
        self._sock.close()

    def namespace_replaced(self) -> bool:
        """True if `netns` now names another namespace than the one this socket lives in (it was
        deleted and created again): `nft` would follow the name, so the socket must be reopened."""
        return self.netns is not None and _netns_ident(self.netns) != self._ns_ident

    def commit(self, batch: Batch) -> None:
        """Send `batch` as one transaction and wait for the kernel's verdict (blocking).

        Raises NetlinkError naming the first failing operation; the kernel then applied nothing.
        """
        if not batch.messages:
            return
        if len(batch.messages) > MAX_BATCH_MESSAGES:
            raise NetlinkError(f"batch of {len(batch.messages)} messages exceeds {MAX_BATCH_MESSAGES}")
        with self._lock:
            first = self._seq
            self._seq = (self._seq + len(batch.messages) + 2) % (1 << 31) or 1
            data = self._frame(batch, first)
            self._ensure_sndbuf(len(data))
            self._drain_stale()
            try:
                self._sock.sendto(data, (0, 0))
            except OSError as exc:
                # A send the kernel refused was not processed at all.
                raise NetlinkError(f"sending nf_tables batch failed: {exc}", errno_=exc.errno) from exc
            replies = self._collect(first, len(batch.messages))
        self._verdict(batch, first, replies)

    def _frame(self, batch: Batch, first: int) -> bytes:
        parts = [self._header(NFNL_MSG_BATCH_BEGIN, NLM_F_REQUEST, first, socket.AF_UNSPEC,
                              socket.htons(NFNL_SUBSYS_NFTABLES), b"")]
        for i, m in enumerate(batch.messages, start=1):
            kind = (NFNL_SUBSYS_NFTABLES << 8) | m.type
            parts.append(self._header(kind, NLM_F_REQUEST | NLM_F_ACK | m.flags, first + i, NFPROTO_IPV4, 0, m.payload))
        parts.append(self._header(NFNL_MSG_BATCH_END, NLM_F_REQUEST, first + len(batch.messages) + 1,
                                  socket.AF_UNSPEC, socket.htons(NFNL_SUBSYS_NFTABLES), b""))
        return b"".join(parts)

    @staticmethod
    def _header(kind: int, flags: int, seq: int, family: int, res_id: int, payload: bytes) -> bytes:
        return message(kind, flags, seq, _NFGENMSG.pack(family, NFNETLINK_V0, res_id) + payload)

    def _ensure_sndbuf(self, size: int) -> None:
        # The kernel refuses a datagram larger than the send buffer (less a little overhead).
        if size + 4096 <= self._sndbuf:
            return
        want = size + 65536
        try:
            self._sock.setsockopt(socket.SOL_SOCKET, SO_SNDBUFFORCE, want)
        except OSError:
            self._sock.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, want)
        self._sndbuf = self._sock.getsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF)

    def _drain_stale(self) -> None:
        """Drop anything left over from an earlier, interrupted exchange."""
        while True:
            try:
                self._sock.recv(65536, socket.MSG_DONTWAIT)
            except (BlockingIOError, InterruptedError):
                return
            except OSError as exc:
                if exc.errno != errno.ENOBUFS:  # an overrun is reported once, then reading goes on
                    raise

    def _collect(self, first: int, count: int) -> dict[int, tuple[int, str]]:
        """Read acknowledgements: {seq: (errno, kernel message)}; errno 0 means success."""
        try:
            acks, _ = read_acks(self._sock, range(first + 1, first + count + 1),
                                range(first, first + count + 2), stop_at_error=True)
        except AckTimeout as exc:
            raise NetlinkError(f"no acknowledgement for {exc.pending} of {count} nf_tables operations",
                               state_unknown=True) from None
        except OSError as exc:
            # ENOBUFS: the kernel had to drop replies; we cannot tell how the batch ended.
            raise NetlinkError(f"reading nf_tables replies failed: {exc}", errno_=exc.errno,
                               state_unknown=True) from exc
        return acks

    @staticmethod
    def _verdict(batch: Batch, first: int, replies: dict[int, tuple[int, str]]) -> None:
        failures = sorted((seq, err, msg) for seq, (err, msg) in replies.items() if err)
        if not failures:
            return
        seq, err, msg = failures[0]
        index = seq - first - 1
        what = batch.messages[index].what if 0 <= index < len(batch.messages) else "commit of the batch"
        detail = f" ({msg})" if msg else ""
        more = f"; {len(failures) - 1} more operation(s) failed" if len(failures) > 1 else ""
        name = errno.errorcode.get(err, str(err))
        raise NetlinkError(
            f"nf_tables rejected `{what}`: {os.strerror(err)} [{name}]{detail}{more}; nothing was applied",
            errno_=err,
            operation=what,
        )


def _netns_ident(netns: str | None) -> tuple[int, int] | None:
    if netns is None:
        return None
    try:
        st = os.stat(netns_path(netns))
    except OSError:
        return None
    return st.st_dev, st.st_ino
