"""A minimal rtnetlink (NETLINK_ROUTE) client: veths, addresses and routes without `ip` processes.

A pod's network is a handful of link, address and route changes. Running `ip -batch` for them
costs a process (a few milliseconds of CPU) per namespace; sent from the agent's own process, the
same requests cost the kernel's own work plus about 10 microseconds each.

A netlink socket acts in the network namespace it was created in, for good, whatever namespace
the thread using it is in later. So an `Rtnl` for another namespace is opened on a short-lived
thread that has entered that namespace, and is then used from anywhere.

Every request asks for an acknowledgement and waits for it, so a failure is raised from the call
that caused it, as an `RtnlError` (an OSError with the kernel's errno) naming the operation in
`ip` syntax. Adds carry NLM_F_CREATE|NLM_F_EXCL like `ip ... add`: an existing object is EEXIST.
IPv4 only.

Constants are the kernel's UAPI values (linux/netlink.h, rtnetlink.h, if_link.h, if_addr.h,
veth.h, if.h); only the ones used here are defined.
"""

from __future__ import annotations

import errno
import ipaddress
import os
import socket
import struct
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass

from skiff.net.netlink import (
    NLM_F_ACK,
    NLM_F_CREATE,
    NLM_F_EXCL,
    NLM_F_REQUEST,
    AckTimeout,
    attr,
    attr_str,
    message,
    nested,
    open_socket,
    read_acks,
)
from skiff.net.ns import call_in_netns, call_in_netns_fd

NETLINK_ROUTE = 0  # linux/netlink.h

# linux/rtnetlink.h
RTM_NEWLINK = 16
RTM_DELLINK = 17
RTM_GETLINK = 18
RTM_NEWADDR = 20
RTM_NEWROUTE = 24
RTN_UNICAST = 1
RTPROT_BOOT = 3  # what `ip route add` uses unless told `proto`
RT_TABLE_MAIN = 254
RTA_DST = 1
RTA_OIF = 4
RTA_GATEWAY = 5
RTEXT_FILTER_SKIP_STATS = 1 << 3
SCOPES = {"universe": 0, "global": 0, "site": 200, "link": 253, "host": 254, "nowhere": 255}

# linux/if_link.h, linux/veth.h, linux/if_addr.h, linux/if.h
IFLA_IFNAME = 3
IFLA_LINKINFO = 18
IFLA_NET_NS_FD = 28
IFLA_EXT_MASK = 29
IFLA_NUM_TX_QUEUES = 31
IFLA_NUM_RX_QUEUES = 32
IFLA_INFO_KIND = 1
IFLA_INFO_DATA = 2
VETH_INFO_PEER = 1
IFA_ADDRESS = 1
IFA_LOCAL = 2
IFF_UP = 0x1

_IFINFOMSG = struct.Struct("=BxHiII")  # family, pad, type, index, flags, change
_IFADDRMSG = struct.Struct("=BBBBI")  # family, prefixlen, flags, scope, index
_RTMSG = struct.Struct("=BBBBBBBBI")  # family, dst_len, src_len, tos, table, protocol, scope, type, flags

class RtnlError(OSError):
    """The kernel refused a request. errno is its error; operation is the request in `ip` syntax."""

    def __init__(self, err: int, operation: str, detail: str = ""):
        super().__init__(err, os.strerror(err))
        self.operation = operation
        self.detail = detail  # the kernel's extended-ack text, when it gave one

    def __str__(self) -> str:
        more = f" ({self.detail})" if self.detail else ""
        return f"{self.operation}: {self.strerror}{more}"


@dataclass(frozen=True)
class Request:
    """One rtnetlink request: message type, NLM_F_* flags beyond REQUEST|ACK, body, `ip` text."""

    type: int
    flags: int
    payload: bytes
    what: str

    def encode(self, seq: int) -> bytes:
        return message(self.type, NLM_F_REQUEST | NLM_F_ACK | self.flags, seq, self.payload)


# --- requests (pure: no socket, so they can be checked byte by byte) ---------------------------


def _ifinfo(index: int = 0, up: bool | None = None) -> bytes:
    # ifi_change limits the flags written to IFF_UP; 0 would mean "replace all flags".
    if up is None:
        return _IFINFOMSG.pack(socket.AF_UNSPEC, 0, index, 0, 0)
    return _IFINFOMSG.pack(socket.AF_UNSPEC, 0, index, IFF_UP if up else 0, IFF_UP)


def veth_request(name: str, peer: str, peer_netns_fd: int | None = None, up: bool = True,
                 prefix: str = "ip") -> Request:
    """Create veth `name` (up if asked) and its peer `peer`, the peer directly in the namespace of
    peer_netns_fd, and down: the peer must be brought up by a request of its own.
    """
    # The peer has an ifinfomsg of its own, but IFF_UP there fails with ENOTCONN: the kernel opens
    # the peer before it has paired it with `name` (veth_newlink configures the peer first).
    # One queue each way, said outright: a veth gets one queue per possible CPU unless told, and
    # the kernel then cuts it down to the one in use, waiting for an RCU grace period while it
    # holds the RTNL lock (which every namespace, link and route change of the machine waits on).
    queues = attr(IFLA_NUM_TX_QUEUES, struct.pack("=I", 1)) + attr(IFLA_NUM_RX_QUEUES, struct.pack("=I", 1))
    peer_body = _ifinfo() + attr_str(IFLA_IFNAME, peer) + queues
    if peer_netns_fd is not None:
        peer_body += attr(IFLA_NET_NS_FD, struct.pack("=I", peer_netns_fd))
    linkinfo = nested(IFLA_LINKINFO, attr_str(IFLA_INFO_KIND, "veth"),
                      nested(IFLA_INFO_DATA, attr(VETH_INFO_PEER, peer_body)))
    payload = (_ifinfo(up=True) if up else _ifinfo()) + attr_str(IFLA_IFNAME, name) + queues + linkinfo
    where = f" netns {_netns_label(peer_netns_fd)}" if peer_netns_fd is not None else ""
    what = f"{prefix} link add {name}{' up' if up else ''} type veth peer name {peer}{where}"
    return Request(RTM_NEWLINK, NLM_F_CREATE | NLM_F_EXCL, payload, what)


def set_up_request(name: str, prefix: str = "ip") -> Request:
    # With no index the kernel finds the link by IFLA_IFNAME; without NLM_F_CREATE it only changes it.
    return Request(RTM_NEWLINK, 0, _ifinfo(up=True) + attr_str(IFLA_IFNAME, name), f"{prefix} link set {name} up")


def delete_link_request(name: str, prefix: str = "ip") -> Request:
    return Request(RTM_DELLINK, 0, _ifinfo() + attr_str(IFLA_IFNAME, name), f"{prefix} link del {name}")


def get_link_request(name: str, prefix: str = "ip") -> Request:
    # Statistics are most of a link's dump and are not wanted here.
    payload = _ifinfo() + attr_str(IFLA_IFNAME, name) + attr(IFLA_EXT_MASK, struct.pack("=I", RTEXT_FILTER_SKIP_STATS))
    return Request(RTM_GETLINK, 0, payload, f"{prefix} link show {name}")


def address_request(name: str, index: int, cidr: str, prefix: str = "ip") -> Request:
    iface = ipaddress.IPv4Interface(cidr)
    # Like `ip addr add`: loopback addresses get host scope, others global.
    scope = SCOPES["host"] if iface.ip.is_loopback else SCOPES["universe"]
    packed = iface.ip.packed
    payload = _IFADDRMSG.pack(socket.AF_INET, iface.network.prefixlen, 0, scope, index)
    payload += attr(IFA_LOCAL, packed) + attr(IFA_ADDRESS, packed)
    return Request(RTM_NEWADDR, NLM_F_CREATE | NLM_F_EXCL, payload, f"{prefix} addr add {cidr} dev {name}")


def route_request(dst: str, *, dev: str | None = None, oif: int | None = None, via: str | None = None,
                  scope: str | int | None = None, proto: int | None = None, prefix: str = "ip") -> Request:
    """A route in the main table. dev names the link for messages, oif is its index.

    scope None is `ip`'s default: link for a route without a gateway, universe otherwise.
    """
    if scope is None:
        scope = "universe" if via else "link"
    scope_id = SCOPES[scope] if isinstance(scope, str) else scope
    attrs = b""
    if dst == "default":
        dst_len = 0
    else:
        net = ipaddress.IPv4Interface(dst)  # the kernel, not us, rejects host bits past the prefix
        dst_len = net.network.prefixlen
        attrs += attr(RTA_DST, net.ip.packed)
    if via is not None:
        attrs += attr(RTA_GATEWAY, ipaddress.IPv4Address(via).packed)
    if oif is not None:
        attrs += attr(RTA_OIF, struct.pack("=I", oif))
    protocol = RTPROT_BOOT if proto is None else proto
    head = _RTMSG.pack(socket.AF_INET, dst_len, 0, 0, RT_TABLE_MAIN, protocol, scope_id, RTN_UNICAST, 0)
    what = f"{prefix} route add {dst}" + (f" via {via}" if via else "") + (f" dev {dev}" if dev else "")
    what += f" scope {scope}" if isinstance(scope, str) and scope != "universe" else ""
    what += f" proto {proto}" if proto is not None else ""
    return Request(RTM_NEWROUTE, NLM_F_CREATE | NLM_F_EXCL, head + attrs, what)


def _netns_label(fd: int) -> str:
    """How a namespace fd reads in a message: its /run/netns name when it has one."""
    try:
        target = os.readlink(f"/proc/self/fd/{fd}")
    except OSError:
        return f"<fd {fd}>"
    return os.path.basename(target) if target.startswith("/run/netns/") else target


def _open_socket() -> socket.socket:
    return open_socket(NETLINK_ROUTE)


class Rtnl:
    """A NETLINK_ROUTE socket bound to the network namespace it was opened in.

    Thread-safe (one request at a time); also a context manager that closes the socket.
    """

    def __init__(self) -> None:
        """Open in the calling thread's network namespace."""
        self._setup(_open_socket(), None)

    @classmethod
    def in_netns(cls, netns: str) -> Rtnl:
        """Open in the namespace /run/netns/<netns>; the socket stays there if the name is reused."""
        return cls._wrap(call_in_netns(netns, _open_socket), netns)

    @classmethod
    def in_netns_fd(cls, fd: int, name: str | None = None) -> Rtnl:
        """Open in the namespace of an open /proc/<pid>/ns/net or /run/netns/* fd; name is for messages."""
        return cls._wrap(call_in_netns_fd(fd, _open_socket, name), name)

    @classmethod
    def _wrap(cls, sock: socket.socket, netns: str | None) -> Rtnl:
        self = cls.__new__(cls)
        self._setup(sock, netns)
        return self

    def _setup(self, sock: socket.socket, netns: str | None) -> None:
        self._sock = sock
        self.netns = netns
        self._prefix = f"ip -n {netns}" if netns else "ip"
        self._lock = threading.Lock()
        self._seq = 1 + int.from_bytes(os.urandom(3), "little")
        self._batch: list[Request] | None = None
        self._batch_index: dict[str, int] = {}

    def close(self) -> None:
        self._sock.close()

    def __enter__(self) -> Rtnl:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # --- operations ---

    def add_veth(self, name: str, peer: str, peer_netns_fd: int | None = None, up: bool = True) -> None:
        """One RTM_NEWLINK: veth `name` here (up if asked) and `peer` in peer_netns_fd's namespace
        (here if None). The peer is left down (the kernel cannot open it during the creation):
        bring it up with set_up(peer) on an Rtnl of its namespace.
        """
        self._submit(veth_request(name, peer, peer_netns_fd, up, self._prefix))

    def set_up(self, name: str) -> None:
        self._submit(set_up_request(name, self._prefix))

    def add_address(self, name: str, cidr: str) -> None:
        """Add e.g. "10.244.1.5/32" to link `name`."""
        index = self._index_for(name, lambda: f"{self._prefix} addr add {cidr} dev {name}")
        self._submit(address_request(name, index, cidr, self._prefix))

    def add_route(self, dst: str, *, dev: str | None = None, via: str | None = None,
                  scope: str | None = None, proto: int | None = None) -> None:
        """Add a main-table route to dst ("10.244.1.5/32" or "default").

        scope is "link", "universe", "host"...; None does what `ip route add` does (link without
        `via`, universe with it). proto defaults to `ip`'s "boot".
        """
        def request(oif: int | None) -> Request:
            return route_request(dst, dev=dev, oif=oif, via=via, scope=scope, proto=proto, prefix=self._prefix)

        oif = None if dev is None else self._index_for(dev, lambda: request(None).what)
        self._submit(request(oif))

    def delete_link(self, name: str) -> bool:
        """Delete link `name` (a veth takes its peer along); False if there was none."""
        if self._batch is not None:
            raise RuntimeError("delete_link reports its result at once and cannot be part of a batch")
        try:
            self._exchange([delete_link_request(name, self._prefix)])
        except RtnlError as exc:
            if exc.errno == errno.ENODEV:
                return False
            raise
        return True

    def link_index(self, name: str) -> int | None:
        """The ifindex of link `name` in this namespace, None if there is none."""
        try:
            replies = self._exchange([get_link_request(name, self._prefix)])
        except RtnlError as exc:
            if exc.errno == errno.ENODEV:
                return None
            raise
        for kind, body in replies[0]:
            if kind == RTM_NEWLINK and len(body) >= _IFINFOMSG.size:
                return _IFINFOMSG.unpack_from(body)[2]
        return None

    @contextmanager
    def batch(self) -> Iterator[None]:
        """Send the add_*/set_up requests made inside in one sendmsg when the block ends.

        The kernel still handles them one by one, in order, and a failed one does not stop the
        next (netlink has no transactions); the first failure is raised at the end of the block.
        Links that add_address/add_route name must exist before the batch: their indexes are
        looked up at the call. Not reentrant, not for sharing between threads while open.
        """
        if self._batch is not None:
            raise RuntimeError("Rtnl batches do not nest")
        self._batch, self._batch_index = [], {}
        try:
            yield
            pending = self._batch
        finally:
            self._batch, self._batch_index = None, {}
        if pending:
            self._exchange(pending)

    # --- plumbing ---

    def _index_for(self, name: str, what: Callable[[], str]) -> int:
        """Index of link `name`, or ENODEV naming the operation `what()` that needed it."""
        if self._batch is not None and name in self._batch_index:
            return self._batch_index[name]
        index = self.link_index(name)
        if index is None:
            raise RtnlError(errno.ENODEV, what(), f"no link named {name}")
        if self._batch is not None:
            self._batch_index[name] = index
        return index

    def _submit(self, request: Request) -> None:
        if self._batch is not None:
            self._batch.append(request)
        else:
            self._exchange([request])

    def _exchange(self, requests: list[Request]) -> list[list[tuple[int, bytes]]]:
        """Send requests in one datagram, wait for every ack; the replies (type, body) of each.

        Raises RtnlError for the first request the kernel refused.
        """
        with self._lock:
            if self._seq + len(requests) >= 1 << 31:
                self._seq = 1
            first = self._seq
            self._seq += len(requests)
            seqs = range(first, first + len(requests))
            try:
                self._sock.send(b"".join(r.encode(seq) for seq, r in zip(seqs, requests, strict=True)))
            except OSError as exc:
                raise RtnlError(exc.errno or errno.EIO, requests[0].what, "sending the request failed") from exc
            try:
                acks, replies = read_acks(self._sock, seqs)
            except AckTimeout:
                raise RtnlError(errno.ETIMEDOUT, requests[0].what, "no acknowledgement from the kernel") from None
            except OSError as exc:
                raise RtnlError(exc.errno or errno.EIO, requests[0].what,
                                "reading the kernel's answer failed") from exc
        failures = sorted((seq - first, err, text) for seq, (err, text) in acks.items() if err)
        if failures:
            index, err, text = failures[0]
            if len(failures) > 1:
                text = (text + "; " if text else "") + f"{len(failures) - 1} later request(s) of the batch failed too"
            raise RtnlError(err, requests[index].what, text)
        return [replies.get(seq, []) for seq in seqs]
