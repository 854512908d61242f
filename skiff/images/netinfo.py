"""What a container sees of itself: its hostname and its interfaces' addresses."""

from __future__ import annotations

import os
import socket
import struct

_RTM_GETADDR = 22
_RTM_NEWADDR = 20
_NLMSG_DONE = 3
_NLMSG_ERROR = 2
_NLM_F_REQUEST = 0x1
_NLM_F_DUMP = 0x300
_IFA_ADDRESS = 1
_IFA_LOCAL = 2


def hostname() -> str:
    """The pod's hostname. Container runtimes export HOSTNAME; without a UTS namespace the
    kernel's name would be the machine's, so the variable wins."""
    return os.environ.get("HOSTNAME") or socket.gethostname()


def interface_addresses() -> list[str]:
    """Every address of every interface, ordered like Go's `net.Interfaces()` + `Addrs()`:
    by interface index, IPv4 before IPv6 (the kernel's dump order). One netlink dump, no
    subprocess, so it is cheap enough to call per request like traefik/whoami does."""
    try:
        sock = socket.socket(socket.AF_NETLINK, socket.SOCK_RAW, socket.NETLINK_ROUTE)
    except OSError:
        return []
    found: list[tuple[int, int, str]] = []
    try:
        sock.settimeout(1.0)
        request = struct.pack("=IHHII", 24, _RTM_GETADDR, _NLM_F_REQUEST | _NLM_F_DUMP, 1, 0)
        request += struct.pack("=BBBBI", socket.AF_UNSPEC, 0, 0, 0, 0)
        sock.send(request)
        order = 0
        done = False
        while not done:
            data = sock.recv(65536)
            if not data:
                break
            pos = 0
            while pos + 16 <= len(data):
                length, kind = struct.unpack_from("=IH", data, pos)
                if length < 16:
                    done = True
                    break
                if kind in (_NLMSG_DONE, _NLMSG_ERROR):
                    done = True
                    break
                if kind == _RTM_NEWADDR:
                    family, _plen, _flags, _scope, index = struct.unpack_from("=BBBBI", data, pos + 16)
                    attrs: dict[int, bytes] = {}
                    apos = pos + 24
                    while apos + 4 <= pos + length:
                        alen, atype = struct.unpack_from("=HH", data, apos)
                        if alen < 4:
                            break
                        attrs[atype] = data[apos + 4:apos + alen]
                        apos += (alen + 3) & ~3
                    raw = attrs.get(_IFA_LOCAL) if family == socket.AF_INET else None
                    raw = raw or attrs.get(_IFA_ADDRESS)
                    if raw is not None and family in (socket.AF_INET, socket.AF_INET6):
                        found.append((index, order, socket.inet_ntop(family, raw)))
                        order += 1
                pos += (length + 3) & ~3
    except OSError:
        return []
    finally:
        sock.close()
    found.sort()
    return [address for _, _, address in found]
