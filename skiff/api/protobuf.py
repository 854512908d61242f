"""Decode the protobuf request bodies kubectl's typed clients send into the JSON dicts the API serves.

From client-go 0.32 on, `kubectl create deployment|service|namespace|secret|configmap|ingress` (and
`drain`'s evictions) POST `application/vnd.kubernetes.protobuf` and never fall back to JSON. The body
is the 4-byte magic `k8s\\0` followed by a `runtime.Unknown` whose TypeMeta names the kind and whose
`raw` bytes are the typed message.

The result is what Go's encoding/json would print for the same Go struct, because that is what the
rest of Skiff expects from a JSON client: gogo-protobuf writes every non-pointer field (zeros
included), so zero scalars are dropped where the Go field is `omitempty` and not a pointer; present
sub-messages stay (`"resources": {}`, like Go); a zero `metav1.Time` becomes null
(`"creationTimestamp": null`); `json:",inline"` structs are merged into their parent.
"""

from __future__ import annotations

import base64
import datetime as _dt
import functools
import json
import struct
from dataclasses import dataclass
from typing import Any

from skiff.api.errors import APIError, bad_request
from skiff.api.protobuf_schema import MESSAGES

MAGIC = b"k8s\x00"
CONTENT_TYPE = "application/vnd.kubernetes.protobuf"

# apiVersion group/version -> prefix of the message keys in protobuf_schema.
_PACKAGES = {
    "v1": "core.v1",
    "apps/v1": "apps.v1",
    "batch/v1": "batch.v1",
    "networking.k8s.io/v1": "networking.v1",
    "discovery.k8s.io/v1": "discovery.v1",
    "coordination.k8s.io/v1": "coordination.v1",
    "events.k8s.io/v1": "events.v1",
    "policy/v1": "policy.v1",
    "authorization.k8s.io/v1": "authorization.v1",
    "authentication.k8s.io/v1": "authentication.v1",
    "autoscaling/v1": "autoscaling.v1",
    "meta.k8s.io/v1": "meta.v1",
}
# Kinds that live in meta/v1 but are posted under any group version (DeleteOptions in a delete body).
_META_KINDS = {"DeleteOptions"}

_GO_ZERO_TIME = -62135596800  # 0001-01-01T00:00:00Z, Go's time.Time{} in Unix seconds
_EPOCH = _dt.datetime(1970, 1, 1, tzinfo=_dt.UTC)

_VARINT, _I64, _LEN, _I32 = 0, 1, 2, 5
_VARINT_TYPES = {"int32", "int64", "bool"}


class _Garbled(Exception):
    """Raised inside the decoder; turned into a 400 at the public boundary."""


@dataclass(frozen=True)
class _Field:
    json: str
    type: str
    repeated: bool
    pointer: bool
    omitempty: bool
    inline: bool


@functools.cache
def _fields(message: str) -> dict[int, _Field]:
    spec = MESSAGES[message]
    out: dict[int, _Field] = {}
    for item in spec.split(","):
        num, name, typ, flags = item.split(" ")
        out[int(num)] = _Field(name, typ, "r" in flags, "p" in flags, "o" in flags, "i" in flags)
    return out


def message_for(api_version: str, kind: str) -> str | None:
    """The schema key for a kind (`apps/v1`, `Deployment` -> `apps.v1.Deployment`), None if unknown."""
    if kind in _META_KINDS:
        return "meta.v1." + kind
    pkg = _PACKAGES.get(api_version)
    if pkg is None or f"{pkg}.{kind}" not in MESSAGES:
        return None
    return f"{pkg}.{kind}"


def decode(body: bytes) -> dict:
    """A `k8s\\0` + runtime.Unknown body -> the object as a JSON-style dict with apiVersion and kind.

    Raises APIError 400 for a body that is not a Kubernetes protobuf envelope, is truncated or
    garbled, or names a kind Skiff has no protobuf schema for."""
    if not body.startswith(MAGIC):
        raise bad_request("the body of the request is not a Kubernetes protobuf object: missing the "
                          "\"k8s\\x00\" prefix")
    try:
        api_version, kind, raw, encoding = _read_unknown(memoryview(body)[len(MAGIC):])
    except _Garbled as e:
        raise bad_request(f"unable to decode the protobuf request body: {e}") from None
    if encoding:
        raise bad_request(f"unsupported protobuf content encoding {encoding!r}")
    if not kind:
        raise bad_request("Object 'Kind' is missing in the protobuf request body")
    message = message_for(api_version, kind)
    if message is None:
        raise APIError(415, "UnsupportedMediaType",
                       f'no protobuf decoding for kind "{kind}" in version "{api_version}": '
                       f"send it as application/json")
    obj: dict[str, Any] = {"kind": kind, "apiVersion": api_version}
    obj.update(decode_message(message, raw))
    return obj


def decode_message(message: str, data: bytes) -> dict:
    """Decode one typed message (no envelope), e.g. ("apps.v1.Deployment", raw) -> dict."""
    try:
        return _message(message, memoryview(data))
    except _Garbled as e:
        raise bad_request(f"unable to decode the protobuf request body: {e}") from None


# --- wire format --------------------------------------------------------------------------------


def _varint(buf: memoryview, pos: int) -> tuple[int, int]:
    result = 0
    shift = 0
    while True:
        if pos >= len(buf):
            raise _Garbled("truncated varint")
        b = buf[pos]
        pos += 1
        result |= (b & 0x7F) << shift
        if not b & 0x80:
            return result, pos
        shift += 7
        if shift >= 70:
            raise _Garbled("varint too long")


def _fields_of(buf: memoryview):
    """Yield (field number, wire type, value) where value is an int (varint/fixed) or a memoryview."""
    pos = 0
    n = len(buf)
    while pos < n:
        key, pos = _varint(buf, pos)
        num, wire = key >> 3, key & 7
        if num == 0:
            raise _Garbled("field number 0")
        if wire == _VARINT:
            value, pos = _varint(buf, pos)
            yield num, wire, value
        elif wire == _LEN:
            length, pos = _varint(buf, pos)
            if pos + length > n:
                raise _Garbled(f"field {num} runs past the end of its message")
            yield num, wire, buf[pos:pos + length]
            pos += length
        elif wire == _I64:
            if pos + 8 > n:
                raise _Garbled("truncated fixed64")
            yield num, wire, buf[pos:pos + 8]
            pos += 8
        elif wire == _I32:
            if pos + 4 > n:
                raise _Garbled("truncated fixed32")
            yield num, wire, buf[pos:pos + 4]
            pos += 4
        else:
            raise _Garbled(f"unsupported wire type {wire} for field {num}")


def _signed(value: int, bits: int) -> int:
    value &= (1 << bits) - 1
    return value - (1 << bits) if value >> (bits - 1) else value


def _scalar(typ: str, wire: int, value: Any) -> Any:
    if typ in _VARINT_TYPES:
        if wire != _VARINT:
            raise _Garbled(f"expected a varint for a {typ}")
        if typ == "bool":
            return value != 0
        return _signed(value, 32 if typ == "int32" else 64)
    if typ == "double":
        if wire != _I64:
            raise _Garbled("expected fixed64 for a double")
        return struct.unpack("<d", value)[0]
    if typ == "float":
        if wire != _I32:
            raise _Garbled("expected fixed32 for a float")
        return struct.unpack("<f", value)[0]
    if wire != _LEN:
        raise _Garbled(f"expected length-delimited data for a {typ}")
    if typ == "bytes":
        return base64.b64encode(bytes(value)).decode("ascii")
    if typ == "string":
        try:
            return bytes(value).decode("utf-8")
        except UnicodeDecodeError:
            raise _Garbled("a string field is not valid UTF-8") from None
    return _typed(typ, value)


def _packed(typ: str, data: memoryview) -> list:
    """proto2 does not pack by default, but a packed repeated scalar is legal on the wire."""
    out = []
    pos = 0
    while pos < len(data):
        value, pos = _varint(data, pos)
        out.append(_scalar(typ, _VARINT, value))
    return out


_ZEROS = ("", 0, False)


def _message(message: str, buf: memoryview) -> dict:
    fields = _fields(message)
    out: dict[str, Any] = {}
    for num, wire, value in _fields_of(buf):
        f = fields.get(num)
        if f is None:
            continue  # a field newer than our schema: proto semantics say skip it
        if f.type.startswith("map:"):
            if wire != _LEN:
                raise _Garbled(f"{message}.{f.json}: map entry is not length-delimited")
            key, val = _map_entry(f.type, value)
            out.setdefault(f.json, {})[key] = val
            continue
        if f.repeated and f.type in _VARINT_TYPES and wire == _LEN:
            out.setdefault(f.json, []).extend(_packed(f.type, value))
            continue
        decoded = _scalar(f.type, wire, value)
        if f.inline:
            out.update(decoded)
        elif f.repeated:
            out.setdefault(f.json, []).append(decoded)
        else:
            out[f.json] = decoded
    for f in fields.values():
        # JSON omitempty: gogo writes non-pointer zero scalars, Go's JSON encoder would not.
        if (f.omitempty and not f.pointer and not f.repeated and f.json in out
                and f.type in ("string", "int32", "int64", "bool", "bytes", "double", "float")
                and out[f.json] in _ZEROS):
            del out[f.json]
    return out


def _map_entry(typ: str, data: memoryview) -> tuple[str, Any]:
    _, key_type, value_type = typ.split(":", 2)
    key: Any = ""
    value: Any = None
    for num, wire, raw in _fields_of(data):
        if num == 1:
            key = _scalar(key_type, wire, raw)
        elif num == 2:
            value = _scalar(value_type, wire, raw)
    if value is None:
        # An entry without a value carries the zero value of its type.
        value = {"string": "", "bytes": "", "resource.Quantity": "0"}.get(value_type, {})
    return str(key), value


# --- messages with their own JSON form ------------------------------------------------------------


def _typed(typ: str, data: memoryview) -> Any:
    special = _SPECIAL.get(typ)
    if special is not None:
        return special(data)
    if typ not in MESSAGES:
        raise _Garbled(f"no schema for message {typ}")
    return _message(typ, data)


def _ints(data: memoryview) -> dict[int, int]:
    """A message made only of varints (Timestamp, Duration): field number -> raw value."""
    out: dict[int, int] = {}
    for num, wire, value in _fields_of(data):
        if wire != _VARINT:
            raise _Garbled(f"expected a varint in field {num} of a timestamp or duration")
        out[num] = value
    return out


def _time(data: memoryview, micro: bool) -> str | None:
    # metav1.Time marshals its zero value as an empty message (and JSON shows it as null).
    if len(data) == 0:
        return None
    f = _ints(data)
    seconds = _signed(f.get(1, 0), 64)
    nanos = _signed(f.get(2, 0), 32)
    if seconds == _GO_ZERO_TIME and nanos == 0:
        return None
    try:
        t = _EPOCH + _dt.timedelta(seconds=seconds)
    except OverflowError:
        raise _Garbled("timestamp out of range") from None
    text = t.strftime("%Y-%m-%dT%H:%M:%S")
    if micro:
        text += f".{nanos // 1000:06d}"
    return text + "Z"


def go_duration(ns: int) -> str:
    """Format nanoseconds like Go's time.Duration.String() (`1m30s`, `1.5s`, `0s`)."""
    if ns == 0:
        return "0s"
    sign = "-" if ns < 0 else ""
    ns = abs(ns)
    if ns < 1_000_000_000:
        for unit, size in (("ms", 1_000_000), ("µs", 1_000), ("ns", 1)):
            if ns >= size:
                return sign + _frac(ns, size) + unit
    hours, rem = divmod(ns, 3_600_000_000_000)
    minutes, rem = divmod(rem, 60_000_000_000)
    text = _frac(rem, 1_000_000_000) + "s"
    if hours or minutes:
        text = f"{minutes}m" + text
    if hours:
        text = f"{hours}h" + text
    return sign + text


def _frac(value: int, size: int) -> str:
    whole, part = divmod(value, size)
    if not part:
        return str(whole)
    digits = len(str(size)) - 1
    return f"{whole}." + f"{part:0{digits}d}".rstrip("0")


def _int_or_string(data: memoryview) -> int | str:
    kind = 0
    int_val = 0
    str_val = ""
    for num, wire, value in _fields_of(data):
        if num == 1:
            kind = _scalar("int64", wire, value)
        elif num == 2:
            int_val = _scalar("int32", wire, value)
        elif num == 3:
            str_val = _scalar("string", wire, value)
    return str_val if kind == 1 else int_val


def _embedded_json(data: memoryview) -> Any:
    raw = b""
    for num, wire, value in _fields_of(data):
        if num == 1 and wire == _LEN:
            raw = bytes(value)
    if not raw:
        return None
    try:
        return json.loads(raw)
    except ValueError:
        raise _Garbled("embedded raw object is not JSON") from None


def _quantity(data: memoryview) -> str:
    text = "0"
    for num, wire, value in _fields_of(data):
        if num == 1:
            text = _scalar("string", wire, value)
    return text


def _duration(data: memoryview) -> str:
    return go_duration(_signed(_ints(data).get(1, 0), 64))


_SPECIAL = {
    "meta.v1.Time": lambda d: _time(d, micro=False),
    "meta.v1.MicroTime": lambda d: _time(d, micro=True),
    "meta.v1.Duration": _duration,
    "meta.v1.FieldsV1": _embedded_json,
    "runtime.RawExtension": _embedded_json,
    "intstr.IntOrString": _int_or_string,
    "resource.Quantity": _quantity,
}


def _read_unknown(buf: memoryview) -> tuple[str, str, bytes, str]:
    api_version = kind = encoding = ""
    raw = b""
    for num, wire, value in _fields_of(buf):
        if num == 1:
            if wire != _LEN:
                raise _Garbled("runtime.Unknown typeMeta is not a message")
            for tnum, twire, tvalue in _fields_of(value):
                if tnum == 1:
                    api_version = _scalar("string", twire, tvalue)
                elif tnum == 2:
                    kind = _scalar("string", twire, tvalue)
        elif num == 2:
            if wire != _LEN:
                raise _Garbled("runtime.Unknown raw is not bytes")
            raw = bytes(value)
        elif num == 3:
            encoding = _scalar("string", wire, value)
    return api_version, kind, raw, encoding
