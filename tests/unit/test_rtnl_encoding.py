"""The bytes skiff.net.rtnl sends, decoded back field by field (no root, no kernel involved)."""

from __future__ import annotations

import errno
import struct

from skiff.net.rtnl import (
    RtnlError,
    address_request,
    route_request,
    set_up_request,
    veth_request,
)

NLMSGHDR = struct.Struct("=IHHII")
IFINFOMSG = struct.Struct("=BxHiII")
RTMSG = struct.Struct("=BBBBBBBBI")
IFADDRMSG = struct.Struct("=BBBBI")


def attrs(data: bytes) -> list[tuple[int, bool, bytes]]:
    """(type, NLA_F_NESTED set, payload) of each attribute; checks lengths and 4-byte padding."""
    out = []
    pos = 0
    while pos < len(data):
        length, kind = struct.unpack_from("=HH", data, pos)
        assert length >= 4 and pos + length <= len(data)
        out.append((kind & 0x3FFF, bool(kind & 0x8000), data[pos + 4: pos + length]))
        pos += (length + 3) & ~3
    assert pos == len(data)
    return out


def header(msg: bytes) -> tuple[int, int, int, int, int]:
    length, kind, flags, seq, pid = NLMSGHDR.unpack_from(msg)
    assert length == len(msg)
    return length, kind, flags, seq, pid


def test_veth_with_peer_in_another_namespace():
    msg = veth_request("vethab12cd34", "eth0", peer_netns_fd=7, up=True).encode(42)
    _, kind, flags, seq, pid = header(msg)
    assert (kind, seq, pid) == (16, 42, 0)  # RTM_NEWLINK
    assert flags == 0x01 | 0x04 | 0x400 | 0x200  # REQUEST | ACK | CREATE | EXCL, as `ip link add`
    family, _type, index, ifi_flags, change = IFINFOMSG.unpack_from(msg, 16)
    assert (family, index, ifi_flags, change) == (0, 0, 1, 1)  # IFF_UP, and only IFF_UP changes
    top = attrs(msg[32:])
    # IFLA_IFNAME, IFLA_NUM_TX_QUEUES, IFLA_NUM_RX_QUEUES, IFLA_LINKINFO
    assert [(k, n) for k, n, _ in top] == [(3, False), (31, False), (32, False), (18, True)]
    assert top[0][2] == b"vethab12cd34\0"
    # One queue each way, so the kernel need not cut a queue per CPU down to one under the RTNL lock.
    assert top[1][2] == top[2][2] == struct.pack("=I", 1)
    kind_attr, data_attr = attrs(top[3][2])
    assert kind_attr == (1, False, b"veth\0")  # IFLA_INFO_KIND
    assert data_attr[:2] == (2, True)  # IFLA_INFO_DATA
    [(peer_kind, _, peer)] = attrs(data_attr[2])
    assert peer_kind == 1  # VETH_INFO_PEER: an ifinfomsg of the peer's own, then its attributes
    assert IFINFOMSG.unpack_from(peer) == (0, 0, 0, 0, 0)  # the peer cannot be brought up here
    one = struct.pack("=I", 1)
    assert attrs(peer[16:]) == [(3, False, b"eth0\0"), (31, False, one), (32, False, one),
                                (28, False, struct.pack("=I", 7))]  # IFLA_NET_NS_FD
    assert len(msg) == 16 + 16 + 20 + 16 + 76  # header, ifinfomsg, name, queues, linkinfo


def test_veth_down_in_the_same_namespace():
    msg = veth_request("a", "b", up=False).encode(1)
    assert IFINFOMSG.unpack_from(msg, 16) == (0, 0, 0, 0, 0)
    data = attrs(attrs(attrs(msg[32:])[-1][2])[1][2])[0][2]
    assert [k for k, _, _ in attrs(data[16:])] == [3, 31, 32]  # no namespace attribute
    assert veth_request("a", "b", up=False).what == "ip link add a type veth peer name b"


def test_route_to_a_pod_on_its_veth():
    req = route_request("10.244.1.5/32", dev="vethab12cd34", oif=9, scope="link", proto=95, prefix="ip -n node1")
    msg = req.encode(0x01020304)
    assert msg == bytes.fromhex(
        "2c000000" "1800" "0506" "04030201" "00000000"  # len 44, RTM_NEWROUTE, REQUEST|ACK|CREATE|EXCL, seq
        "02" "20" "00" "00" "fe" "5f" "fd" "01" "00000000"  # AF_INET /32, main table, proto 95, scope link, unicast
        "0800" "0100" "0af40105"  # RTA_DST 10.244.1.5
        "0800" "0400" "09000000"  # RTA_OIF 9
    )
    assert req.what == "ip -n node1 route add 10.244.1.5/32 dev vethab12cd34 scope link proto 95"


def test_default_route_via_a_gateway_takes_ip_defaults():
    req = route_request("default", dev="eth0", oif=2, via="10.244.1.1")
    msg = req.encode(5)
    family, dst_len, src_len, tos, table, proto, scope, rtype, rflags = RTMSG.unpack_from(msg, 16)
    assert (family, dst_len, table, proto, scope, rtype) == (2, 0, 254, 3, 0, 1)  # proto boot, scope universe
    assert attrs(msg[28:]) == [(5, False, bytes([10, 244, 1, 1])), (4, False, struct.pack("=I", 2))]
    assert req.what == "ip route add default via 10.244.1.1 dev eth0"
    # Like `ip route add`: a route without a gateway defaults to scope link.
    assert RTMSG.unpack_from(route_request("10.1.0.0/16", dev="x", oif=3).encode(1), 16)[6] == 253


def test_address_and_link_up():
    msg = address_request("eth0", 2, "10.244.1.5/32").encode(9)
    assert header(msg)[1:3] == (20, 0x605)  # RTM_NEWADDR, REQUEST|ACK|CREATE|EXCL
    assert IFADDRMSG.unpack_from(msg, 16) == (2, 32, 0, 0, 2)  # AF_INET, /32, scope global, ifindex 2
    assert attrs(msg[24:]) == [(2, False, bytes([10, 244, 1, 5])), (1, False, bytes([10, 244, 1, 5]))]
    assert IFADDRMSG.unpack_from(address_request("lo", 1, "127.0.0.2/8").encode(1), 16)[3] == 254  # host

    msg = set_up_request("lo").encode(3)
    assert header(msg)[1:3] == (16, 0x05)  # RTM_NEWLINK without CREATE: change an existing link only
    assert IFINFOMSG.unpack_from(msg, 16) == (0, 0, 0, 1, 1)
    assert attrs(msg[32:]) == [(3, False, b"lo\0")]


def test_error_is_an_oserror_naming_the_operation():
    exc = RtnlError(errno.EEXIST, "ip addr add 10.244.1.5/32 dev eth0", "ipv4: Address already assigned")
    assert isinstance(exc, OSError) and exc.errno == errno.EEXIST
    assert str(exc) == "ip addr add 10.244.1.5/32 dev eth0: File exists (ipv4: Address already assigned)"
