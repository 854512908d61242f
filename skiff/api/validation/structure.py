"""Structural checks of a request body against the official schema, with kube-apiserver's messages.

kube-apiserver decodes a JSON body into the Go type of the kind. Two things can go wrong there, and
both answer 400 BadRequest with `<Kind> in version "<v>" cannot be handled as a <Kind>: <error>`:

- a value of the wrong JSON type (`"port": "80"`): the decoder's first type error, worded like Go's
  `encoding/json` (`json: cannot unmarshal string into Go struct field ServicePort.spec.ports.port of
  type int32`). Fields of wrong type stop nothing else, so only the first is reported;
- with `fieldValidation=Strict`, fields the type does not have (`strict decoding error: unknown field
  "spec.foo", unknown field "spec.bar"`). With `Warn`, each becomes a warning instead. Type errors win:
  unknown fields are reported only when the body decoded.

This module finds both by walking the object next to its schema (`skiff.api.schema`); it never sees
Go types, so the Go type names in messages come from the schema (struct names, int32/int64, maps,
slices) plus a table of the named string types that matter for the kinds Skiff serves.
"""

from __future__ import annotations

import base64
import binascii
import calendar
import functools
import json
import re
from typing import Any

from skiff.api import schema

INT_OR_STRING = "io.k8s.apimachinery.pkg.util.intstr.IntOrString"
QUANTITY = "io.k8s.apimachinery.pkg.api.resource.Quantity"
TIME = "io.k8s.apimachinery.pkg.apis.meta.v1.Time"
MICRO_TIME = "io.k8s.apimachinery.pkg.apis.meta.v1.MicroTime"

_MAX_STRICT_ERRORS = 100  # the decoder stops collecting there


# ---------------------------------------------------------------------------------------------
# Messages


def decode_error(kind: str, version: str, detail: str) -> str:
    """kube-apiserver's wrapper around every body decoding failure (a 400 BadRequest)."""
    return f'{kind} in version "{version}" cannot be handled as a {kind}: {detail}'


def unknown_field_warning(path: str) -> str:
    """The text of one `Warning` header for `fieldValidation=Warn`, and one item of a strict error."""
    return f"unknown field {json.dumps(path)}"


def duplicate_field_warning(path: str) -> str:
    return f"duplicate field {json.dumps(path)}"


def strict_decoding_error(kind: str, version: str, paths: list[str]) -> str:
    """The 400 message for `fieldValidation=Strict` with unknown fields at `paths`."""
    items = ", ".join(unknown_field_warning(p) for p in paths)
    return decode_error(kind, version, f"strict decoding error: {items}")


# ---------------------------------------------------------------------------------------------
# Schema helpers


def _root(group: str, version: str, kind: str) -> tuple[str, dict] | None:
    name = schema.definition_name(group, version, kind)
    if name is None:
        return None
    return name, schema.definitions()[name]


# Per schema node memos, keyed by id() and holding the node itself so that the id stays its own.
# Schema nodes live as long as the loaded definitions; the checks visit the same few hundred of them
# for every object, so resolving a node once instead of on every visit is most of a check's cost.
_DEREF: dict[int, tuple[dict, str | None, dict]] = {}
_TYPES: dict[int, tuple[dict, frozenset[str]]] = {}
_ROOTS: dict[str, dict] = {}
_MEMO_LIMIT = 50_000  # error messages resolve a few temporary nodes too: never let those pile up


def _deref(node: dict) -> tuple[str | None, dict]:
    """(definition name or None, the schema to check against)."""
    hit = _DEREF.get(id(node))
    if hit is not None and hit[0] is node:
        return hit[1], hit[2]
    ref = node.get("$ref")
    if ref:
        name = schema.ref_name(ref)
        out: tuple[str | None, dict] = (name, schema.definitions()[name])
    else:
        out = (None, node)
    if len(_DEREF) >= _MEMO_LIMIT:
        _DEREF.clear()
    _DEREF[id(node)] = (node, *out)
    return out


def _types(node: dict) -> frozenset[str]:
    hit = _TYPES.get(id(node))
    if hit is not None and hit[0] is node:
        return hit[1]
    t = node.get("type")
    out = frozenset() if t is None else frozenset(x for x in (t if isinstance(t, list) else [t]) if x != "null")
    if len(_TYPES) >= _MEMO_LIMIT:
        _TYPES.clear()
    _TYPES[id(node)] = (node, out)
    return out


def _root_ref(name: str) -> dict:
    """The `$ref` node of a root definition, one per name so that the memos above can key on it."""
    node = _ROOTS.get(name)
    if node is None:
        node = _ROOTS[name] = {"$ref": "#/$defs/" + name}
    return node


def _is_opaque(node: dict) -> bool:
    """Raw JSON holders (RawExtension, FieldsV1, JSON): the Go type accepts anything."""
    return "properties" not in node and "additionalProperties" not in node and not (_types(node) - {"object"})


# ---------------------------------------------------------------------------------------------
# Unknown fields


def unknown_fields(obj: dict, group: str, version: str, kind: str) -> list[str]:
    """Paths of the fields in `obj` that the kind's schema does not have, in the order the decoder
    meets them: `spec.foo`, `spec.ports[0].bogus`, `metadata.labelz`. Maps (labels, selector, data)
    take any key. Unknown kinds give []."""
    root = _root(group, version, kind)
    if root is None or not isinstance(obj, dict):
        return []
    found: list[str] = []
    _walk_unknown(obj, root[1], "", found)
    seen: set[str] = set()
    out = []
    for p in found:
        if p not in seen:
            seen.add(p)
            out.append(p)
    return out[:_MAX_STRICT_ERRORS]


def _join(path: str, key: str) -> str:
    return f"{path}.{key}" if path else key


def _walk_unknown(value: Any, node: dict, path: str, found: list[str]) -> None:
    name, node = _deref(node)
    if name in (INT_OR_STRING, QUANTITY, TIME, MICRO_TIME):
        return
    if isinstance(value, dict):
        props = node.get("properties")
        if props is not None:
            for key, sub in value.items():
                if key in props:
                    _walk_unknown(sub, props[key], _join(path, key), found)
                else:
                    found.append(_join(path, key))
        elif isinstance(node.get("additionalProperties"), dict):
            for key, sub in value.items():
                _walk_unknown(sub, node["additionalProperties"], _join(path, key), found)
    elif isinstance(value, list) and isinstance(node.get("items"), dict):
        for i, item in enumerate(value):
            _walk_unknown(item, node["items"], f"{path}[{i}]", found)


# ---------------------------------------------------------------------------------------------
# Type errors

# Named Go string types of the fields Skiff's kinds use, keyed by (struct, field). Go's error message
# names the field's type, and `protocol` is a `v1.Protocol`, not a `string`.
_NAMED_STRINGS: dict[tuple[str, str], str] = {
    ("ServicePort", "protocol"): "v1.Protocol",
    ("ContainerPort", "protocol"): "v1.Protocol",
    ("EndpointPort", "protocol"): "v1.Protocol",
    ("ServiceSpec", "type"): "v1.ServiceType",
    ("ServiceSpec", "sessionAffinity"): "v1.ServiceAffinity",
    ("ServiceSpec", "externalTrafficPolicy"): "v1.ServiceExternalTrafficPolicy",
    ("ServiceSpec", "internalTrafficPolicy"): "v1.ServiceInternalTrafficPolicy",
    ("ServiceSpec", "ipFamilies"): "v1.IPFamily",
    ("ServiceSpec", "ipFamilyPolicy"): "v1.IPFamilyPolicy",
    ("Container", "imagePullPolicy"): "v1.PullPolicy",
    ("Container", "terminationMessagePolicy"): "v1.TerminationMessagePolicy",
    ("PodSpec", "restartPolicy"): "v1.RestartPolicy",
    ("PodSpec", "dnsPolicy"): "v1.DNSPolicy",
    ("PodStatus", "phase"): "v1.PodPhase",
    ("PodCondition", "type"): "v1.PodConditionType",
    ("PodCondition", "status"): "v1.ConditionStatus",
    ("NodeCondition", "status"): "v1.ConditionStatus",
    ("NodeCondition", "type"): "v1.NodeConditionType",
    ("NodeAddress", "type"): "v1.NodeAddressType",
    ("NamespaceStatus", "phase"): "v1.NamespacePhase",
    ("Secret", "type"): "v1.SecretType",
    ("HTTPGetAction", "scheme"): "v1.URIScheme",
    ("Taint", "effect"): "v1.TaintEffect",
    ("Toleration", "effect"): "v1.TaintEffect",
    ("Toleration", "operator"): "v1.TolerationOperator",
    ("DeploymentStrategy", "type"): "v1.DeploymentStrategyType",
    ("DeploymentCondition", "type"): "v1.DeploymentConditionType",
    ("DeploymentCondition", "status"): "v1.ConditionStatus",
    ("ReplicaSetCondition", "type"): "v1.ReplicaSetConditionType",
    ("ReplicaSetCondition", "status"): "v1.ConditionStatus",
    ("HTTPIngressPath", "pathType"): "v1.PathType",
    ("EndpointSlice", "addressType"): "v1.AddressType",
    ("LabelSelectorRequirement", "operator"): "v1.LabelSelectorOperator",
    ("ObjectMeta", "uid"): "types.UID",
    ("OwnerReference", "uid"): "types.UID",
    ("ManagedFieldsEntry", "operation"): "v1.ManagedFieldsOperationType",
}
# Named map types: ResourceList is map[ResourceName]Quantity.
_NAMED_MAPS = {("ResourceRequirements", "limits"): "v1.ResourceList",
               ("ResourceRequirements", "requests"): "v1.ResourceList"}
_INT_RANGES = {"int32": (-(2**31), 2**31 - 1), "int64": (-(2**63), 2**63 - 1), "int": (-(2**63), 2**63 - 1)}


def _struct_name(def_name: str) -> str:
    return def_name.rsplit(".", 1)[-1]


def _go_pkg_type(def_name: str) -> str:
    """`io.k8s.api.core.v1.ServiceSpec` -> `v1.ServiceSpec` (Go prints package name + type name)."""
    parts = def_name.rsplit(".", 2)
    return f"{parts[-2]}.{parts[-1]}"


def _go_type(node: dict, struct: str, field: str) -> str:
    name, target = _deref(node)
    if name is not None:
        if name == INT_OR_STRING:
            return "intstr.IntOrString"
        if name == QUANTITY:
            return "resource.Quantity"
        if name in (TIME, MICRO_TIME):
            return _go_pkg_type(name)
        return _go_pkg_type(name)
    types = _types(target)
    if "array" in types:
        return "[]" + _go_type(target.get("items", {}), struct, field)
    if "object" in types:
        if (struct, field) in _NAMED_MAPS:
            return _NAMED_MAPS[(struct, field)]
        ap = target.get("additionalProperties")
        if isinstance(ap, dict):
            return "map[string]" + _go_type(ap, struct, field)
        return "map[string]interface {}"
    if "string" in types:
        if target.get("format") == "byte":
            return "[]uint8"
        return _NAMED_STRINGS.get((struct, field), "string")
    if "integer" in types:
        return {"int32": "int32", "int64": "int64"}.get(target.get("format", ""), "int")
    if "number" in types:
        return "float64"
    if "boolean" in types:
        return "bool"
    return "interface {}"


def _json_kind(value: Any) -> str:
    if isinstance(value, bool):
        return "bool"
    if isinstance(value, str):
        return "string"
    if isinstance(value, (int, float)):
        return "number"
    if isinstance(value, list):
        return "array"
    if isinstance(value, dict):
        return "object"
    return "null"


def _number_text(value: int | float) -> str:
    return str(value) if isinstance(value, int) else repr(value)


class _Fatal(Exception):
    """A custom unmarshaler (IntOrString, Quantity, Time) failed: decoding stops there and this error
    replaces any earlier one, as in encoding/json."""


class _TypeChecker:
    def __init__(self) -> None:
        self.saved: str | None = None

    def save(self, msg: str) -> None:
        if self.saved is None:
            self.saved = msg

    @staticmethod
    def type_error(value_desc: str, go_type: str, struct: str, fields: list[str]) -> str:
        if struct or fields:
            return (f"json: cannot unmarshal {value_desc} into Go struct field {struct}.{'.'.join(fields)} "
                    f"of type {go_type}")
        return f"json: cannot unmarshal {value_desc} into Go value of type {go_type}"

    def check(self, value: Any, node: dict, struct: str, fields: list[str], field: str) -> None:
        if value is None:
            return  # null decodes into anything
        name, target = _deref(node)
        if name == INT_OR_STRING:
            self._int_or_string(value, struct, fields)
            return
        if name == QUANTITY:
            self._quantity(value)
            return
        if name in (TIME, MICRO_TIME):
            self._time(value, struct, fields, micro=name == MICRO_TIME)
            return
        if name is not None and _is_opaque(target):
            return
        types = _types(target)
        if not types and name is None:
            return  # untyped schema: interface{}
        # The Go type name only appears in messages (and picks an integer's range): worked out on demand.
        if isinstance(value, dict):
            if "object" not in types:
                self.save(self.type_error("object", _go_type(node, struct, field), struct, fields))
                return
            props = target.get("properties")
            if props is not None:
                inner_struct = _struct_name(name) if name else struct
                for key, sub in value.items():
                    if key in props:
                        self.check(sub, props[key], inner_struct, [*fields, key], key)
                return
            ap = target.get("additionalProperties")
            if isinstance(ap, dict):
                for sub in value.values():
                    self.check(sub, ap, struct, fields, field)
            return
        if isinstance(value, list):
            if "array" not in types:
                self.save(self.type_error("array", _go_type(node, struct, field), struct, fields))
                return
            items = target.get("items")
            if isinstance(items, dict):
                for item in value:
                    self.check(item, items, struct, fields, field)
            return
        # Scalars.
        kind = _json_kind(value)
        if kind == "string" and "string" in types:
            if target.get("format") == "byte":
                err = _base64_error(value)
                if err:
                    self.save(err)
        elif kind == "number" and "integer" in types:
            go_type = _go_type(node, struct, field)
            lo, hi = _INT_RANGES.get(go_type, _INT_RANGES["int"])
            if not isinstance(value, int) or not lo <= value <= hi:
                self.save(self.type_error(f"number {_number_text(value)}", go_type, struct, fields))
        elif kind == "number" and "number" in types:
            pass
        elif kind == "bool" and "boolean" in types:
            pass
        else:
            self.save(self.type_error(kind, _go_type(node, struct, field), struct, fields))

    def _int_or_string(self, value: Any, struct: str, fields: list[str]) -> None:
        # A JSON string is the string half; anything else must decode as an int32.
        if isinstance(value, str):
            return
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise _Fatal(self.type_error(_json_kind(value), "int32", struct, fields))
        lo, hi = _INT_RANGES["int32"]
        if not isinstance(value, int) or not lo <= value <= hi:
            raise _Fatal(self.type_error(f"number {_number_text(value)}", "int32", struct, fields))

    def _quantity(self, value: Any) -> None:
        if isinstance(value, str):
            text = value.strip()
        elif isinstance(value, bool):
            text = "true" if value else "false"
        elif isinstance(value, (int, float)):
            text = _number_text(value)
        else:
            text = json.dumps(value)
        err = quantity_error(text)
        if err:
            raise _Fatal(err)

    def _time(self, value: Any, struct: str, fields: list[str], micro: bool) -> None:
        if not isinstance(value, str):
            raise _Fatal(self.type_error(_json_kind(value), "string", struct, fields))
        err = _time_error(value, micro)
        if err:
            raise _Fatal(err)


def type_errors(obj: dict, group: str, version: str, kind: str) -> str | None:
    """The decode error kube-apiserver would answer for the first value of the wrong type, as the full
    BadRequest message, or None when every value fits its field. Unknown fields are ignored here."""
    root = _root(group, version, kind)
    if root is None or not isinstance(obj, dict):
        return None
    checker = _TypeChecker()
    try:
        checker.check(obj, _root_ref(root[0]), "", [], "")
    except _Fatal as fatal:
        return decode_error(kind, version, str(fatal))
    if checker.saved is not None:
        return decode_error(kind, version, checker.saved)
    return None


# ---------------------------------------------------------------------------------------------
# Custom value formats: Quantity, base64 bytes, RFC 3339 times

_QUANTITY_SHAPE = re.compile(r"[+-]?[0-9]*(\.[0-9]*)?[eEinumkKMGTP]*[+-]?[0-9]*")
_QUANTITY_NUMBER = re.compile(r"[+-]?[0-9]*(\.[0-9]*)?")
_QUANTITY_SUFFIXES = {"", "Ki", "Mi", "Gi", "Ti", "Pi", "Ei", "n", "u", "m", "k", "M", "G", "T", "P", "E"}
QUANTITY_FORMAT_ERROR = ("quantities must match the regular expression "
                         "'^([+-]?[0-9.]+)([eEinumkKMGTP]*[-+]?[0-9]*)$'")
QUANTITY_SUFFIX_ERROR = "unable to parse quantity's suffix"


def quantity_error(text: str) -> str | None:
    """Why `text` is not a Quantity (apimachinery's ParseQuantity errors), or None."""
    if text == "" or not _QUANTITY_SHAPE.fullmatch(text):
        return QUANTITY_FORMAT_ERROR
    number = _QUANTITY_NUMBER.match(text)
    suffix = text[number.end():] if number else text
    if suffix in _QUANTITY_SUFFIXES or re.fullmatch(r"[eE][+-]?[0-9]+", suffix):
        return None
    return QUANTITY_SUFFIX_ERROR


_B64 = set("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/")


def _base64_error(text: str) -> str | None:
    """Go's StdEncoding (padded) decode error, `illegal base64 data at input byte N`, or None."""
    data = text.replace("\r", "").replace("\n", "")
    try:
        base64.b64decode(data, validate=True)
        if len(data) % 4 == 0:
            return None
    except (binascii.Error, ValueError):
        pass
    for i, ch in enumerate(data):
        if ch == "=":
            # Padding may only close the final quantum.
            if i < len(data) - 2 or (i % 4) < 2:
                return f"illegal base64 data at input byte {i}"
            continue
        if ch not in _B64:
            return f"illegal base64 data at input byte {i}"
    return f"illegal base64 data at input byte {len(data) - len(data) % 4 if len(data) % 4 else len(data)}"


@functools.lru_cache(maxsize=4096)
def _time_error(value: str, micro: bool) -> str | None:
    """go_time_parse_error, remembered: an object carries the same few timestamps write after write."""
    return go_time_parse_error(value, micro)


RFC3339 = "2006-01-02T15:04:05Z07:00"
RFC3339_MICRO = "2006-01-02T15:04:05.000000Z07:00"


def _q(s: str) -> str:
    return json.dumps(s, ensure_ascii=False)


def go_time_parse_error(value: str, micro: bool = False) -> str | None:
    """Go's `time.Parse(RFC3339[Micro], value)` error text, or None when it parses.

    metav1.Time and MicroTime decode with it, so a bad timestamp reads like Go's ParseError.
    """
    layout = RFC3339_MICRO if micro else RFC3339

    def fail(elem_layout: str, rest: str) -> str:
        return f"parsing time {_q(value)} as {_q(layout)}: cannot parse {_q(rest)} as {_q(elem_layout)}"

    def range_fail(what: str) -> str:
        return f"parsing time {_q(value)}: {what} out of range"

    def digits(s: str, n: int, fixed: bool) -> tuple[int, str] | None:
        if not s[:1].isdigit():
            return None
        if fixed:
            if len(s) < n or not s[:n].isdigit():
                return None
            return int(s[:n]), s[n:]
        m = 2 if s[1:2].isdigit() else 1
        return int(s[:m]), s[m:]

    rest = value
    parsed: dict[str, int] = {}
    steps = [("2006", "year", 4, True), ("-", None, 0, False), ("01", "month", 2, True), ("-", None, 0, False),
             ("02", "day", 2, True), ("T", None, 0, False), ("15", "hour", 2, False), (":", None, 0, False),
             ("04", "minute", 2, True), (":", None, 0, False), ("05", "second", 2, True)]
    for elem, what, n, fixed in steps:
        if what is None:
            if not rest.startswith(elem):
                return fail(elem, rest)
            rest = rest[len(elem):]
            continue
        if what == "year" and (len(rest) < 4 or not rest[:4].isdigit()):
            return fail(elem, rest)
        got = digits(rest, n, fixed)
        if got is None:
            return fail(elem, rest)
        parsed[what], rest = got
        limits = {"month": (1, 12), "day": (0, 31), "hour": (0, 23), "minute": (0, 59), "second": (0, 59)}
        if what in limits and not limits[what][0] <= parsed[what] <= limits[what][1]:
            return range_fail(what)
    if micro:
        if len(rest) < 7 or rest[0] not in ".," or not rest[1:7].isdigit():
            return fail(".000000", rest)
        rest = rest[7:]
    elif len(rest) >= 2 and rest[0] in ".," and rest[1].isdigit():
        i = 2
        while i < len(rest) and rest[i].isdigit():
            i += 1
        rest = rest[i:]
    if rest.startswith("Z"):
        rest = rest[1:]
    else:
        tz = rest
        if len(tz) < 6 or tz[3] != ":" or tz[0] not in "+-" or not (tz[1:3].isdigit() and tz[4:6].isdigit()):
            return fail("Z07:00", rest)
        if int(tz[1:3]) > 24:
            return range_fail("time zone offset hour")
        if int(tz[4:6]) > 60:
            return range_fail("time zone offset minute")
        rest = rest[6:]
    if rest:
        return f"parsing time {_q(value)}: extra text: {_q(rest)}"
    days = calendar.monthrange(parsed["year"], parsed["month"])[1]
    if not 1 <= parsed["day"] <= days:
        return range_fail("day")
    return None
