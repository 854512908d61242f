"""What the official schema says about one position inside an object, for patching and field ownership.

Both strategic merge patch (patch strategies and merge keys, from Go struct tags) and server-side apply
(list types and map types, from structured-merge-diff) walk the same definitions from a kind's root, so
the walk lives here. A position the schema does not describe (a CRD, an unknown field) gets an "untyped"
node: maps merge granularly, lists are atomic, exactly how structured-merge-diff deduces types.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from skiff.api import schema as _schema

# Where the 1.33 definitions omit a list-map key's default, the Go types still default it; without it an
# applied port without `protocol` would get a different identity from the stored, defaulted one.
_MAP_KEY_DEFAULTS = {"protocol": "TCP"}


@dataclass(frozen=True)
class Node:
    """The schema of one value plus the extensions its parent attached to it."""

    schema: dict | None = None
    name: str = ""
    patch_strategies: tuple[str, ...] = ()
    merge_key: str = ""
    list_type: str = ""
    list_map_keys: tuple[str, ...] = ()
    map_type: str = ""
    _props: dict = field(default_factory=dict, compare=False, repr=False)

    @property
    def typed(self) -> bool:
        return self.schema is not None

    @property
    def patch_strategy(self) -> str:
        """The strategy other than retainKeys ("merge", "replace" or "")."""
        rest = [s for s in self.patch_strategies if s != "retainKeys"]
        return rest[0] if rest else ""

    @property
    def is_struct(self) -> bool:
        return bool(self._props)

    def declares(self, key: str) -> bool:
        """Whether `key` is a named field of a struct (as opposed to a key of a map)."""
        return key in self._props

    @property
    def atomic_map(self) -> bool:
        return self.map_type == "atomic"

    @property
    def ssa_list_type(self) -> str:
        """`map`, `set` or `atomic`: how server-side apply identifies list items.

        Older definitions only carry patch tags, which schema conversion turns into the same thing.
        """
        if self.list_type:
            return self.list_type
        if self.patch_strategy == "merge":
            return "map" if self.merge_key else "set"
        return "atomic"

    @property
    def ssa_map_keys(self) -> tuple[str, ...]:
        if self.list_map_keys:
            return self.list_map_keys
        return (self.merge_key,) if self.merge_key else ()

    def child(self, key: str) -> Node:
        """The node of a map entry or struct field."""
        if self.schema is None:
            return UNTYPED
        prop = self._props.get(key)
        if prop is not None:
            return from_property(prop, key)
        extra = self.schema.get("additionalProperties")
        if isinstance(extra, dict):
            return from_property(extra, key)
        return UNTYPED

    def item(self) -> Node:
        """The node of a list element."""
        if self.schema is None:
            return UNTYPED
        items = self.schema.get("items")
        if isinstance(items, dict):
            return from_property(items, self.name)
        return UNTYPED


UNTYPED = Node()


_NODE_CACHE: dict[tuple[int, str], Node] = {}


def from_property(prop: dict, name: str = "") -> Node:
    """A node from a property schema: the extensions may sit on the property or on the referenced definition.

    Memoized by the schema dict's identity: the definitions are loaded once and never mutated, and
    the write path walks the same few schemas for every request."""
    key = (id(prop), name)
    node = _NODE_CACHE.get(key)
    if node is None:
        node = _NODE_CACHE[key] = _from_property(prop, name)
    return node


def _from_property(prop: dict, name: str = "") -> Node:
    resolved = _schema.resolve(prop) if "$ref" in prop else prop

    def ext(key: str):
        value = prop.get(key)
        return value if value is not None else resolved.get(key)

    strategies = ext("x-kubernetes-patch-strategy") or ""
    return Node(
        schema=resolved,
        name=_schema.ref_name(prop["$ref"]) if "$ref" in prop else name,
        patch_strategies=tuple(s for s in strategies.split(",") if s) if isinstance(strategies, str) else (),
        merge_key=ext("x-kubernetes-patch-merge-key") or "",
        list_type=ext("x-kubernetes-list-type") if isinstance(ext("x-kubernetes-list-type"), str) else "",
        list_map_keys=tuple(ext("x-kubernetes-list-map-keys") or ()),
        map_type=ext("x-kubernetes-map-type") if isinstance(ext("x-kubernetes-map-type"), str) else "",
        _props=resolved.get("properties") or {},
    )


def root(group: str, version: str, kind: str) -> Node | None:
    """The node of a whole object of this kind, or None when the schema does not know the kind."""
    name = _schema.definition_name(group, version, kind)
    if name is None:
        return None
    return from_property({"$ref": f"#/$defs/{name}"}, name)


def map_key_value(item: dict, key: str):
    """The value of a list-map key field, with the defaults the Go types apply."""
    if key in item:
        return item[key]
    return _MAP_KEY_DEFAULTS.get(key)
