"""The proxy's rule strings, elements and affinity sets -> nf_tables netlink encodings.

Only the shapes that rules.py emits in its per-Service chains are understood; anything else
compiles to None and the caller sends the whole transaction through `nft` instead. Each shape
produces the same bytecode nft 1.0.6 generates for it (checked with `nft --debug=netlink`), so
`nft list` prints rules added either way identically.
"""

from __future__ import annotations

import functools
import ipaddress
import struct

from skiff.net.netlink import attr, attr_be32, attr_be64, attr_str, nested
from skiff.proxy.model import NamedSet
from skiff.proxy.netlink import NFTA_LIST_ELEM, Expr

# enum nft_registers: the verdict register and the first 16-byte data registers.
NFT_REG_VERDICT = 0
NFT_REG_1 = 1
NFT_REG_2 = 2

# Verdict codes (linux/netfilter.h NF_DROP/NF_ACCEPT, enum nft_verdicts).
NF_DROP = 0
NF_ACCEPT = 1
NFT_JUMP = -3
NFT_GOTO = -4

# enum nft_data_attributes / nft_verdict_attributes
NFTA_DATA_VALUE = 1
NFTA_DATA_VERDICT = 2
NFTA_VERDICT_CODE = 1
NFTA_VERDICT_CHAIN = 2

# Per-expression attributes.
NFTA_IMMEDIATE_DREG, NFTA_IMMEDIATE_DATA = 1, 2
NFTA_CMP_SREG, NFTA_CMP_OP, NFTA_CMP_DATA = 1, 2, 3
NFT_CMP_EQ, NFT_CMP_NEQ = 0, 1
NFTA_PAYLOAD_DREG, NFTA_PAYLOAD_BASE, NFTA_PAYLOAD_OFFSET, NFTA_PAYLOAD_LEN = 1, 2, 3, 4
NFT_PAYLOAD_NETWORK_HEADER = 1
NFTA_BITWISE_SREG, NFTA_BITWISE_DREG, NFTA_BITWISE_LEN, NFTA_BITWISE_MASK, NFTA_BITWISE_XOR = 1, 2, 3, 4, 5
NFTA_LOOKUP_SET, NFTA_LOOKUP_SREG = 1, 2
NFTA_DYNSET_SET_NAME, NFTA_DYNSET_OP, NFTA_DYNSET_SREG_KEY = 1, 3, 4
NFT_DYNSET_OP_UPDATE = 1
NFTA_META_DREG, NFTA_META_KEY = 1, 2
NFT_META_L4PROTO = 16
NFTA_NG_DREG, NFTA_NG_MODULUS, NFTA_NG_TYPE, NFTA_NG_OFFSET = 1, 2, 3, 4
NFT_NG_RANDOM = 1
NFTA_NAT_TYPE, NFTA_NAT_FAMILY, NFTA_NAT_REG_ADDR_MIN, NFTA_NAT_REG_PROTO_MIN, NFTA_NAT_FLAGS = 1, 2, 3, 5, 7
NFT_NAT_DNAT = 1
NFPROTO_IPV4 = 2
NF_NAT_RANGE_PROTO_SPECIFIED = 0x2
NFTA_FIB_DREG, NFTA_FIB_RESULT, NFTA_FIB_FLAGS = 1, 2, 3
NFT_FIB_RESULT_ADDRTYPE = 3
NFTA_FIB_F_SADDR = 1
RTN_LOCAL = 2

# Sets: enum nft_set_attributes, enum nft_set_flags, enum nft_set_elem_attributes.
NFTA_SET_FLAGS, NFTA_SET_KEY_TYPE, NFTA_SET_KEY_LEN, NFTA_SET_TIMEOUT, NFTA_SET_USERDATA = 3, 4, 5, 11, 13
NFT_SET_TIMEOUT = 0x10
NFT_SET_EVAL = 0x20
NFTA_SET_ELEM_KEY, NFTA_SET_ELEM_DATA = 1, 2
# nft's own type number for ipv4_addr, and its set userdata "key byte order = big endian" record,
# which is what lets `nft list` print the key type as nft would.
NFT_TYPE_IPADDR = 7
NFT_UDATA_SET_KEYBYTEORDER = 0
NFT_BYTEORDER_BIG_ENDIAN = 2

_IP_FIELD_OFFSET = {"saddr": 12, "daddr": 16}
_PROTOCOLS = {"tcp": 6, "udp": 17, "sctp": 132}
_SET_FLAGS = {"dynamic": NFT_SET_EVAL, "timeout": NFT_SET_TIMEOUT}


# --- expression builders --------------------------------------------------------------------


def _value(data: bytes) -> bytes:
    return attr(NFTA_DATA_VALUE, data)


def _host_u32(value: int) -> bytes:
    # Register values nft computes from meta/numgen/fib are in host byte order.
    return struct.pack("=I", value)


def _payload(offset: int, length: int) -> Expr:
    return Expr("payload", attr_be32(NFTA_PAYLOAD_DREG, NFT_REG_1) + attr_be32(NFTA_PAYLOAD_BASE, NFT_PAYLOAD_NETWORK_HEADER)
                + attr_be32(NFTA_PAYLOAD_OFFSET, offset) + attr_be32(NFTA_PAYLOAD_LEN, length))


def _cmp(op: int, data: bytes) -> Expr:
    return Expr("cmp", attr_be32(NFTA_CMP_SREG, NFT_REG_1) + attr_be32(NFTA_CMP_OP, op)
                + nested(NFTA_CMP_DATA, _value(data)))


def _bitwise(mask: bytes) -> Expr:
    return Expr("bitwise", attr_be32(NFTA_BITWISE_SREG, NFT_REG_1) + attr_be32(NFTA_BITWISE_DREG, NFT_REG_1)
                + attr_be32(NFTA_BITWISE_LEN, len(mask)) + nested(NFTA_BITWISE_MASK, _value(mask))
                + nested(NFTA_BITWISE_XOR, _value(bytes(len(mask)))))


def _immediate(reg: int, data: bytes) -> Expr:
    return Expr("immediate", attr_be32(NFTA_IMMEDIATE_DREG, reg) + data)


def verdict_data(code: int, chain: str | None = None) -> bytes:
    """An NFTA_DATA_VERDICT attribute: the value of a verdict map element or an immediate."""
    parts = attr_be32(NFTA_VERDICT_CODE, code)
    if chain is not None:
        parts += attr_str(NFTA_VERDICT_CHAIN, chain)
    return nested(NFTA_DATA_VERDICT, parts)


def _parse_verdict(tokens: list[str]) -> bytes | None:
    """`goto X`, `jump X`, `drop`, `accept` -> NFTA_DATA_VERDICT, else None."""
    if len(tokens) == 1 and tokens[0] in ("drop", "accept"):
        return verdict_data(NF_DROP if tokens[0] == "drop" else NF_ACCEPT)
    if len(tokens) == 2 and tokens[0] in ("goto", "jump") and _plain_name(tokens[1]):
        return verdict_data(NFT_GOTO if tokens[0] == "goto" else NFT_JUMP, tokens[1])
    return None


def _plain_name(name: str) -> bool:
    # Quoted names, variables and set references mean nft syntax we do not reproduce.
    return bool(name) and name[0] not in "\"'$@{" and len(name.encode()) < 256


def _ipv4(text: str) -> bytes | None:
    try:
        return ipaddress.IPv4Address(text).packed
    except ValueError:
        return None


def _address_match(offset: int, value: str, op: int) -> list[Expr] | None:
    """`ip saddr|daddr [!=] A.B.C.D[/len]` the way nft encodes it: a byte-aligned prefix loads and
    compares only its bytes; any other prefix loads the address and masks it first."""
    if "/" not in value:
        packed = _ipv4(value)
        return None if packed is None else [_payload(offset, 4), _cmp(op, packed)]
    try:
        net = ipaddress.IPv4Network(value, strict=True)
    except ValueError:
        return None
    plen = net.prefixlen
    if plen % 8 == 0 and plen > 0:
        return [_payload(offset, plen // 8), _cmp(op, net.network_address.packed[: plen // 8])]
    return [_payload(offset, 4), _bitwise(net.netmask.packed), _cmp(op, net.network_address.packed)]


# --- rules ------------------------------------------------------------------------------------


@functools.lru_cache(maxsize=8192)
def compile_rule(rule: str) -> tuple[Expr, ...] | None:
    """A rule of a per-Service chain as nf_tables expressions, or None if its shape is not known.

    Matches (any number, in order): `ip saddr|daddr [!=] <ip or cidr>`, `ip saddr|daddr @<set>`,
    `numgen random mod <n> == <k>`, `fib saddr type local`, `meta l4proto tcp|udp|sctp`.
    Then at most one final statement: `goto|jump <chain>`, `drop`, `accept`,
    `update @<set> { ip saddr|daddr }`, or `dnat to <ip>:<port>` after a `meta l4proto` match.
    """
    tokens = rule.split()
    exprs: list[Expr] = []
    l4proto = False
    i = 0
    while i < len(tokens):
        t = tokens[i:]
        if t[0] == "ip" and len(t) >= 3 and t[1] in _IP_FIELD_OFFSET:
            offset = _IP_FIELD_OFFSET[t[1]]
            if t[2].startswith("@"):
                if not _plain_name(t[2][1:]):
                    return None
                lookup = Expr("lookup", attr_be32(NFTA_LOOKUP_SREG, NFT_REG_1) + attr_str(NFTA_LOOKUP_SET, t[2][1:]))
                exprs += [_payload(offset, 4), lookup]
                i += 3
                continue
            negated = t[2] == "!="
            if negated and len(t) < 4:
                return None
            matched = _address_match(offset, t[3] if negated else t[2], NFT_CMP_NEQ if negated else NFT_CMP_EQ)
            if matched is None:
                return None  # e.g. an anonymous set `{ a, b }`: left to nft
            exprs += matched
            i += 4 if negated else 3
        elif t[:3] == ["numgen", "random", "mod"] and len(t) >= 6 and t[4] == "==":
            if not (t[3].isdigit() and t[5].isdigit()) or not 0 <= int(t[5]) < int(t[3]):
                return None
            numgen = Expr("numgen", attr_be32(NFTA_NG_DREG, NFT_REG_1) + attr_be32(NFTA_NG_MODULUS, int(t[3]))
                          + attr_be32(NFTA_NG_TYPE, NFT_NG_RANDOM) + attr_be32(NFTA_NG_OFFSET, 0))
            exprs += [numgen, _cmp(NFT_CMP_EQ, _host_u32(int(t[5])))]
            i += 6
        elif t[:4] == ["fib", "saddr", "type", "local"]:
            fib = Expr("fib", attr_be32(NFTA_FIB_DREG, NFT_REG_1) + attr_be32(NFTA_FIB_RESULT, NFT_FIB_RESULT_ADDRTYPE)
                       + attr_be32(NFTA_FIB_FLAGS, NFTA_FIB_F_SADDR))
            exprs += [fib, _cmp(NFT_CMP_EQ, _host_u32(RTN_LOCAL))]
            i += 4
        elif t[:2] == ["meta", "l4proto"] and len(t) >= 3 and t[2] in _PROTOCOLS:
            meta = Expr("meta", attr_be32(NFTA_META_DREG, NFT_REG_1) + attr_be32(NFTA_META_KEY, NFT_META_L4PROTO))
            exprs += [meta, _cmp(NFT_CMP_EQ, bytes([_PROTOCOLS[t[2]]]))]
            l4proto = True
            i += 3
        else:
            final = _final_statement(t, l4proto)
            if final is None:
                return None
            exprs += final
            break
    return tuple(exprs)


def _final_statement(t: list[str], l4proto: bool) -> list[Expr] | None:
    verdict = _parse_verdict(t)
    if verdict is not None:
        return [_immediate(NFT_REG_VERDICT, nested(NFTA_IMMEDIATE_DATA, verdict))]
    if len(t) == 6 and t[0] == "update" and t[1].startswith("@") and t[2] == "{" and t[3] == "ip" \
            and t[4] in _IP_FIELD_OFFSET and t[5] == "}" and _plain_name(t[1][1:]):
        dynset = Expr("dynset", attr_be32(NFTA_DYNSET_SREG_KEY, NFT_REG_1)
                      + attr_be32(NFTA_DYNSET_OP, NFT_DYNSET_OP_UPDATE) + attr_str(NFTA_DYNSET_SET_NAME, t[1][1:]))
        return [_payload(_IP_FIELD_OFFSET[t[4]], 4), dynset]
    if len(t) == 3 and t[:2] == ["dnat", "to"] and l4proto:
        host, sep, port = t[2].rpartition(":")
        packed = _ipv4(host)
        if not sep or packed is None or not port.isdigit() or int(port) > 0xFFFF:
            return None
        nat = Expr("nat", attr_be32(NFTA_NAT_TYPE, NFT_NAT_DNAT) + attr_be32(NFTA_NAT_FAMILY, NFPROTO_IPV4)
                   + attr_be32(NFTA_NAT_REG_ADDR_MIN, NFT_REG_1) + attr_be32(NFTA_NAT_REG_PROTO_MIN, NFT_REG_2)
                   + attr_be32(NFTA_NAT_FLAGS, NF_NAT_RANGE_PROTO_SPECIFIED))
        return [
            _immediate(NFT_REG_1, nested(NFTA_IMMEDIATE_DATA, _value(packed))),
            _immediate(NFT_REG_2, nested(NFTA_IMMEDIATE_DATA, _value(struct.pack(">H", int(port))))),
            nat,
        ]
    return None


# --- set elements and set declarations ------------------------------------------------------


def _key_field(kind: str, text: str) -> bytes | None:
    if kind == "ipv4_addr":
        return _ipv4(text)
    if kind == "inet_proto":
        if text in _PROTOCOLS:
            return bytes([_PROTOCOLS[text]])
        return bytes([int(text)]) if text.isdigit() and int(text) < 256 else None
    if kind == "inet_service":
        return struct.pack(">H", int(text)) if text.isdigit() and int(text) <= 0xFFFF else None
    return None


def encode_key(key_type: str, key: str) -> bytes | None:
    """The kernel's key bytes for `key` in a set of `key_type` (e.g. "ipv4_addr . inet_proto . inet_service").

    In a concatenation every field takes a multiple of 4 bytes (nft pads each one with zeros).
    """
    kinds = [k.strip() for k in key_type.split(" . ")]
    values = [v.strip() for v in key.split(" . ")]
    if len(kinds) != len(values):
        return None
    fields = []
    for kind, value in zip(kinds, values, strict=True):
        encoded = _key_field(kind, value)
        if encoded is None:
            return None
        fields.append(encoded + b"\0" * (-len(encoded) % 4) if len(kinds) > 1 else encoded)
    return b"".join(fields)


def encode_map_value(value: str) -> bytes | None:
    """A verdict map element's value (`goto X`, `jump X`, `drop`, `accept`) as NFTA_SET_ELEM_DATA."""
    verdict = _parse_verdict(value.split())
    return None if verdict is None else nested(NFTA_SET_ELEM_DATA, verdict)


def compile_element(s: NamedSet, key: str, value: str = "") -> bytes | None:
    """One NFTA_LIST_ELEM for set/map `s`; value is "" for plain sets (and deletes, which need only the key)."""
    if s.value_type not in (None, "verdict"):
        return None
    raw = encode_key(s.key_type, key)
    if raw is None:
        return None
    body = nested(NFTA_SET_ELEM_KEY, _value(raw))
    if value:
        if s.value_type is None:
            return None
        data = encode_map_value(value)
        if data is None:
            return None
        body += data
    return nested(NFTA_LIST_ELEM, body)


def compile_set(s: NamedSet) -> bytes | None:
    """NEWSET attributes (besides table, name, id) for a session-affinity style set:
    `type ipv4_addr`, flags from {dynamic, timeout}, optional timeout. Other sets: None."""
    if s.key_type != "ipv4_addr" or s.value_type is not None or s.comment or not set(s.flags) <= set(_SET_FLAGS):
        return None
    flags = 0
    for f in s.flags:
        flags |= _SET_FLAGS[f]
    if s.timeout is not None:
        flags |= NFT_SET_TIMEOUT
    out = attr_be32(NFTA_SET_FLAGS, flags) + attr_be32(NFTA_SET_KEY_TYPE, NFT_TYPE_IPADDR) + attr_be32(NFTA_SET_KEY_LEN, 4)
    if s.timeout is not None:
        out += attr_be64(NFTA_SET_TIMEOUT, s.timeout * 1000)
    # nftnl userdata TLV: type (u8), length (u8), value (u32, host order).
    udata = bytes([NFT_UDATA_SET_KEYBYTEORDER, 4]) + _host_u32(NFT_BYTEORDER_BIG_ENDIAN)
    return out + attr(NFTA_SET_USERDATA, udata)
