"""Field ownership (`metadata.managedFields`) and server-side apply.

A workable approximation of structured-merge-diff as kube-apiserver uses it:
- a field set is a set of paths; a path is a tuple of FieldsV1 path elements (`f:spec`, `k:{"name":"x"}`,
  `v:"finalizer"`, `i:0`), serialised as the nested `fieldsV1` objects with `.` marking a node that is itself
  a member;
- an apply (`server_side_apply`) merges the applied configuration into the live object following the list
  types of the schema (`map` lists merge by their keys, `set` lists by value, `atomic` lists replace),
  makes the applier own exactly the fields it applied, removes fields it applied before and omits now
  unless someone else owns them, and refuses to change a value another manager owns unless forced;
- any other write (`update_managed_fields`) makes its manager own what it added or changed and takes
  those fields from the others, which is what later makes an apply conflict with `kubectl create`.
Not modelled: version conversion of sets, the 10-manager cap, `before-first-apply`, last-applied
annotation interop, unions, duplicate list keys.
"""

from __future__ import annotations

import functools
import json
from typing import Any

from skiff.api.clone import clone
from skiff.api.errors import APIError, bad_request
from skiff.api.patch import typeinfo
from skiff.api.patch.typeinfo import UNTYPED, Node

Path = tuple[str, ...]

# Fields nobody owns: structured-merge-diff strips them before recording a set (stripmeta.go).
_STRIPPED: frozenset[Path] = frozenset({
    ("f:apiVersion",), ("f:kind",), ("f:metadata",),
    *(("f:metadata", f"f:{name}") for name in (
        "name", "namespace", "creationTimestamp", "selfLink", "uid", "clusterName", "generation",
        "managedFields", "resourceVersion")),
})

_MISSING = object()


# ---- path elements --------------------------------------------------------------------------------------

def _json(value: Any) -> str:
    return json.dumps(value, separators=(",", ":"), sort_keys=True, ensure_ascii=False)


def _item_element(item: Any, node: Node) -> str | None:
    """The path element naming a list item, or None when the list is atomic."""
    list_type = node.ssa_list_type
    if list_type == "map" and isinstance(item, dict):
        keys = {}
        for key in node.ssa_map_keys:
            value = typeinfo.map_key_value(item, key)
            if value is not None:
                keys[key] = value
        return "k:" + _json(keys)
    if list_type == "set":
        return "v:" + _json(item)
    return None


def _element_matches(item: Any, element: str) -> bool:
    kind, _, body = element.partition(":")
    if kind == "v":
        return _json(item) == _json(json.loads(body))
    if kind == "k" and isinstance(item, dict):
        keys = json.loads(body)
        return all(typeinfo.map_key_value(item, k) == v for k, v in keys.items())
    return False


def path_string(path: Path) -> str:
    """How conflicts print a path: `.spec.template.spec.containers[name="nginx"].image`."""
    out = []
    for element in path:
        kind, _, body = element.partition(":")
        if kind == "f":
            out.append("." + body)
        elif kind == "k":
            keys = json.loads(body)
            out.append("[" + ",".join(f"{k}={_json(v)}" for k, v in keys.items()) + "]")
        elif kind == "v":
            out.append(f"[={body}]")
        else:
            out.append(f"[{body}]")
    return "".join(out)


# ---- FieldsV1 <-> sets ----------------------------------------------------------------------------------

# Every write decodes and re-encodes every manager's `fieldsV1`, and most of them did not change
# since the last write of the object: the same few sets go back and forth many times, so both
# directions are memoized (on the JSON text one way, on the frozen set the other).
_dumps_plain = json.JSONEncoder(separators=(",", ":")).encode


@functools.lru_cache(maxsize=2048)
def _set_of_fields_text(text: str) -> frozenset[Path]:
    return frozenset(_fields_to_set(json.loads(text)))


@functools.lru_cache(maxsize=2048)
def _fields_text_of_set(paths: frozenset[Path]) -> str:
    return _dumps_plain(_set_to_fields(paths))


def fields_to_set(fields: dict | None) -> set[Path]:
    """Decode a `fieldsV1` object into a set of paths."""
    if not isinstance(fields, dict) or not fields:
        return _fields_to_set(fields)
    try:
        text = _dumps_plain(fields)
    except (TypeError, ValueError):
        return _fields_to_set(fields)
    return set(_set_of_fields_text(text))


def _fields_to_set(fields: dict | None) -> set[Path]:
    out: set[Path] = set()

    def walk(node: dict, prefix: Path) -> None:
        for key, child in node.items():
            if key == ".":
                out.add(prefix)
                continue
            path = prefix + (key,)
            if not child:
                out.add(path)
            else:
                walk(child, path)

    walk(fields or {}, ())
    out.discard(())
    return out


def _element_order(element: str) -> tuple:
    rank = {"f": 0, "k": 1, "v": 2, "i": 3}.get(element[:1], 4)
    body = element[2:]
    return (rank, int(body) if rank == 3 and body.isdigit() else body)


def set_to_fields(paths: set[Path]) -> dict:
    """Encode a set of paths as `fieldsV1` (children sorted, `.` first), as the apiserver stores it."""
    # A fresh tree each time: the caller puts it into an object.
    return json.loads(_fields_text_of_set(frozenset(paths)))


def _set_to_fields(paths: set[Path]) -> dict:
    tree: dict = {}
    members: set[Path] = set()
    for path in paths:
        node = tree
        for element in path:
            node = node.setdefault(element, {})
        members.add(path)

    def emit(node: dict, prefix: Path) -> dict:
        out: dict = {}
        if node and prefix in members:
            out["."] = {}
        for element in sorted(node, key=_element_order):
            out[element] = emit(node[element], prefix + (element,))
        return out

    return emit(tree, ())


# ---- walking values along the schema ----------------------------------------------------------------------

def field_set(obj: Any, node: Node = UNTYPED) -> set[Path]:
    """The fields an applied configuration specifies (`TypedValue.ToFieldSet`)."""
    out: set[Path] = set()

    def walk(value: Any, node: Node, path: Path) -> None:
        if isinstance(value, dict):
            if node.atomic_map:
                out.add(path)
                return
            for key, child_value in value.items():
                child_path = path + (f"f:{key}",)
                walk(child_value, node.child(key), child_path)
                if child_value is None or child_value == {} or not node.declares(key):
                    out.add(child_path)
        elif isinstance(value, list):
            if node.ssa_list_type == "atomic":
                out.add(path)
                return
            item_node = node.item()
            for item in value:
                element = _item_element(item, node)
                if element is None:
                    out.add(path)
                    return
                walk(item, item_node, path + (element,))
                out.add(path + (element,))
        else:
            out.add(path)

    walk(obj, node, ())
    out.discard(())
    return out


def compare(old: Any, new: Any, node: Node = UNTYPED) -> tuple[set[Path], set[Path], set[Path]]:
    """(added, modified, removed) paths between two objects (`TypedValue.Compare`)."""
    added: set[Path] = set()
    modified: set[Path] = set()
    removed: set[Path] = set()

    def leaf(lhs: Any, rhs: Any, path: Path) -> None:
        if lhs is _MISSING:
            added.add(path)
        elif rhs is _MISSING:
            removed.add(path)
        elif _json(lhs) != _json(rhs):
            modified.add(path)

    def walk(lhs: Any, rhs: Any, node: Node, path: Path) -> None:
        shape = _shape(rhs if rhs is not _MISSING else lhs)
        other = _shape(lhs if rhs is not _MISSING else rhs)
        if other is not None and other != shape:
            leaf(lhs, rhs, path)
            return
        if shape == "map":
            lmap = lhs if isinstance(lhs, dict) else {}
            rmap = rhs if isinstance(rhs, dict) else {}
            if node.atomic_map or (not lmap and not rmap):
                leaf(lhs, rhs, path)
                return
            for key in list(lmap) + [k for k in rmap if k not in lmap]:
                walk(lmap.get(key, _MISSING), rmap.get(key, _MISSING), node.child(key), path + (f"f:{key}",))
        elif shape == "list":
            llist = lhs if isinstance(lhs, list) else []
            rlist = rhs if isinstance(rhs, list) else []
            if node.ssa_list_type == "atomic" or (not llist and not rlist):
                leaf(lhs, rhs, path)
                return
            lindex = _index(llist, node)
            rindex = _index(rlist, node)
            if lindex is None or rindex is None:
                leaf(lhs, rhs, path)
                return
            item_node = node.item()
            for element in list(lindex) + [e for e in rindex if e not in lindex]:
                walk(lindex.get(element, _MISSING), rindex.get(element, _MISSING), item_node, path + (element,))
        else:
            leaf(lhs, rhs, path)
            return
        if lhs is _MISSING:
            added.add(path)
        elif rhs is _MISSING:
            removed.add(path)

    walk(old, new, node, ())
    for s in (added, modified, removed):
        s.discard(())
    return added, modified, removed


def _shape(value: Any) -> str | None:
    if value is _MISSING:
        return None
    if isinstance(value, dict):
        return "map"
    if isinstance(value, list):
        return "list"
    return "scalar"


def _index(items: list, node: Node) -> dict[str, Any] | None:
    out: dict[str, Any] = {}
    for item in items:
        element = _item_element(item, node)
        if element is None:
            return None
        out.setdefault(element, item)
    return out


def merge(live: Any, config: Any, node: Node = UNTYPED) -> Any:
    """The applied configuration merged into the live object (`TypedValue.Merge`)."""
    if config is _MISSING:
        return clone(live)
    if live is _MISSING or live is None:
        return _without_nulls(config)
    if isinstance(live, dict) and isinstance(config, dict) and not node.atomic_map:
        out = clone(live)
        for key, value in config.items():
            if value is None:
                out.pop(key, None)
            else:
                out[key] = merge(live.get(key, _MISSING), value, node.child(key))
        return out
    if isinstance(live, list) and isinstance(config, list) and node.ssa_list_type != "atomic":
        lindex, rindex = _index(live, node), _index(config, node)
        if lindex is not None and rindex is not None:
            return _merge_items(live, config, node)
    return _without_nulls(config)


def _merge_items(live: list, config: list, node: Node) -> list:
    """Shared items follow the configuration's order; live-only items keep their place around them."""
    item_node = node.item()
    live_elements = [_item_element(v, node) for v in live]
    config_elements = [_item_element(v, node) for v in config]
    config_by_element = dict(zip(config_elements, config, strict=True))
    live_by_element = dict(zip(live_elements, live, strict=True))
    out: list = []
    done: set = set()
    li = ri = 0
    while li < len(live) or ri < len(config):
        if li < len(live):
            element = live_elements[li]
            if element not in config_by_element:
                out.append(clone(live[li]))
                li += 1
                continue
            if element in done:
                li += 1
                continue
        if ri < len(config):
            element = config_elements[ri]
            if element not in done:
                done.add(element)
                out.append(merge(live_by_element.get(element, _MISSING), config[ri], item_node))
            ri += 1
            continue
        li += 1
    return out


def _without_nulls(value: Any) -> Any:
    if isinstance(value, dict):
        return {k: _without_nulls(v) for k, v in value.items() if v is not None}
    if isinstance(value, list):
        return [_without_nulls(v) for v in value]
    return value


def _remove(obj: dict, paths: set[Path], keep: set[Path]) -> None:
    """Remove the nodes at `paths` unless a path in `keep` is at or below them; drop containers left empty."""
    keep_prefixes = {p[:i] for p in keep for i in range(len(p) + 1)}
    # Parents first: once a list item is gone its fields need no visit, and an item stripped of its key
    # fields could no longer be found.
    for path in sorted(paths, key=len):
        if path in keep_prefixes:
            continue
        chain: list = [obj]
        for element in path:
            nxt = _step(chain[-1], element)
            if nxt is _MISSING:
                break
            chain.append(nxt)
        else:
            _delete(chain[-2], path[-1], chain[-1])
            for depth in range(len(path) - 1, 0, -1):
                if chain[depth] or path[:depth] in keep:
                    break
                _delete(chain[depth - 1], path[depth - 1], chain[depth])


def _step(container: Any, element: str) -> Any:
    if element.startswith("f:") and isinstance(container, dict):
        return container.get(element[2:], _MISSING)
    if isinstance(container, list):
        for item in container:
            if _element_matches(item, element):
                return item
    return _MISSING


def _delete(container: Any, element: str, child: Any) -> None:
    """Remove `child` from `container`; list items go by identity, since their key fields may be gone."""
    if isinstance(container, dict):
        container.pop(element[2:], None)
    elif isinstance(container, list):
        container[:] = [v for v in container if v is not child]


# ---- managers ----------------------------------------------------------------------------------------------

class _Manager:
    """One managedFields entry, decoded."""

    def __init__(self, entry: dict):
        self.manager = entry.get("manager", "")
        self.operation = entry.get("operation", "")
        self.api_version = entry.get("apiVersion", "")
        self.subresource = entry.get("subresource", "")
        self.time = entry.get("time")
        self.fields = fields_to_set(entry.get("fieldsV1"))

    @property
    def identity(self) -> tuple:
        # Appliers keep one entry across API versions; updaters get one per version (BuildManagerIdentifier).
        version = "" if self.operation == "Apply" else self.api_version
        return (self.manager, self.operation, version, self.subresource)

    def describe(self) -> str:
        name = json.dumps(self.manager)
        if self.subresource:
            name += f" with subresource {json.dumps(self.subresource)}"
        # The identity printed is the one managers are keyed by, which never includes the time.
        if self.operation == "Update":
            name += f" using {self.api_version}"
        return name

    def entry(self) -> dict:
        out: dict[str, Any] = {"manager": self.manager, "operation": self.operation,
                               "apiVersion": self.api_version}
        if self.time:
            out["time"] = self.time
        out["fieldsType"] = "FieldsV1"
        out["fieldsV1"] = set_to_fields(self.fields)
        if self.subresource:
            out["subresource"] = self.subresource
        return out


def _decode(obj: dict | None) -> list[_Manager]:
    entries = ((obj or {}).get("metadata") or {}).get("managedFields") or []
    managers: dict[tuple, _Manager] = {}
    for entry in entries:
        if isinstance(entry, dict) and entry.get("manager") is not None:
            m = _Manager(entry)
            managers[m.identity] = m
    return list(managers.values())


def _encode(obj: dict, managers: list[_Manager]) -> dict:
    kept = [m for m in managers if m.fields]
    kept.sort(key=lambda m: (m.operation, m.time or "", m.manager, m.api_version, m.subresource))
    meta = obj.setdefault("metadata", {})
    if kept:
        meta["managedFields"] = [m.entry() for m in kept]
    else:
        meta.pop("managedFields", None)
    return obj


def _api_version(group: str, version: str) -> str:
    return f"{group}/{version}" if group else version


def _owned(paths: set[Path], ignored: tuple[str, ...]) -> set[Path]:
    return {p for p in paths if p not in _STRIPPED and not (p and p[0][2:] in ignored)}


def _without_meta(obj: dict | None) -> dict:
    out = clone(obj) if obj else {}
    meta = out.get("metadata")
    if isinstance(meta, dict):
        meta.pop("managedFields", None)
    return out


def _node(group: str, version: str, kind: str) -> Node:
    return typeinfo.root(group, version, kind) or UNTYPED


def _conflict_error(conflicts: list[tuple[_Manager, Path]]) -> APIError:
    causes = [{"reason": "FieldManagerConflict", "message": f"conflict with {m.describe()}",
               "field": path_string(p)} for m, p in conflicts]
    if len(conflicts) == 1:
        m, p = conflicts[0]
        message = f"Apply failed with 1 conflict: conflict with {m.describe()}: {path_string(p)}"
    else:
        by_manager: dict[str, list[str]] = {}
        for m, p in conflicts:
            by_manager.setdefault(m.describe(), []).append(path_string(p))
        lines = []
        for name in sorted(by_manager):
            lines.append(f"conflicts with {name}:")
            lines.extend(f"- {p}" for p in by_manager[name])
        message = f"Apply failed with {len(conflicts)} conflicts: " + "\n".join(lines)
    return APIError(409, "Conflict", message, {"causes": causes})


# ---- the two operations ----------------------------------------------------------------------------------

def server_side_apply(live: dict | None, applied: dict, manager: str, force: bool, group: str, version: str,
                      kind: str, now: str, ignored_fields: tuple[str, ...] = ("status",)) -> dict:
    """Apply `applied` (an apply configuration) for `manager` onto `live` (None: the object does not exist).

    Returns the new object with `metadata.managedFields` updated. `ignored_fields` are top-level fields
    this endpoint does not own (the main resource ignores `status`, as kube-apiserver's reset fields do).
    Raises a 409 Conflict when the change would overwrite a value another manager owns and not `force`.
    """
    if not isinstance(applied, dict):
        raise bad_request("error decoding YAML: the apply configuration must be an object")
    if ((applied.get("metadata") or {}).get("managedFields")) is not None:
        raise bad_request("metadata.managedFields must be nil")
    node = _node(group, version, kind)
    managers = _decode(live)
    current = _without_meta(live)
    config = clone(applied)

    applied_set = _owned(field_set(config, node), ignored_fields)
    ident = (manager, "Apply", "", "")
    previous = next((m for m in managers if m.identity == ident), None)
    last_set = previous.fields if previous else set()
    if previous is None:
        previous = _Manager({"manager": manager, "operation": "Apply"})
        managers.append(previous)
    previous.api_version = _api_version(group, version)
    previous.fields = applied_set

    merged = merge(current, config, node)
    if last_set - applied_set:
        owned_by_anyone = set().union(*(m.fields for m in managers))
        _remove(merged, last_set - applied_set, owned_by_anyone)

    added, modified, removed = compare(current, merged, node)
    changed = added | modified
    conflicts: list[tuple[_Manager, Path]] = []
    for m in managers:
        if m is previous:
            continue
        clash = m.fields & changed
        conflicts.extend((m, p) for p in sorted(clash, key=_path_order))
    if conflicts and not force:
        raise _conflict_error(conflicts)
    for m in managers:
        if m is previous:
            continue
        m.fields = m.fields - changed - removed
    previous.time = now
    return _encode(merged, managers)


def update_managed_fields(old: dict | None, new: dict, manager: str, operation: str = "Update", *,
                          group: str, version: str, kind: str, now: str, subresource: str = "",
                          ignored_fields: tuple[str, ...] = (), merge_patch: dict | None = None,
                          copy: bool = True) -> dict:
    """Record a non-apply write (create, update, patch) by `manager` in `new`'s managedFields.

    `old` is the stored object (None for a create). Managed fields the client sent in `new` replace the
    stored ones, as kube-apiserver allows; otherwise they are carried over from `old`. Returns a copy,
    or `new` itself when not `copy`.

    `merge_patch`: the JSON merge patch (RFC 7386) that turned `old` into `new`. Only the fields it
    names can differ, so only those are compared (see `_merge_patch_scope`).
    """
    node = _node(group, version, kind)
    sent = _decode(new)
    managers = sent if sent else _decode(old)
    scoped = bool(old) and _merge_patch_scope(merge_patch)
    if scoped:
        before, after = _project(old, merge_patch), _project(new, merge_patch)
    else:
        before = _without_meta(old) if old else _empty_like(new)
        after = _without_meta(new)
    added, modified, removed = compare(before, after, node)
    added = _owned(added, ignored_fields)
    modified = _owned(modified, ignored_fields)
    removed = _owned(removed, ignored_fields)
    result = clone(new) if copy else new
    if not (added or modified or removed):
        return _encode(result, managers)
    api_version = _api_version(group, version)
    ident = (manager, operation, api_version if operation != "Apply" else "", subresource)
    mine = next((m for m in managers if m.identity == ident), None)
    if mine is None:
        mine = _Manager({"manager": manager, "operation": operation, "apiVersion": api_version,
                         "subresource": subresource})
        managers.append(mine)
    for m in managers:
        if m is not mine:
            m.fields = m.fields - added - modified - removed
    mine.fields = (mine.fields - removed) | added | modified
    mine.time = now
    return _encode(result, managers)


def _merge_patch_scope(patch: Any) -> bool:
    """Whether comparing only what `patch` names gives the full comparison's answer.

    A merge patch leaves every key it does not name as it was, and a subtree that is equal on both
    sides adds nothing to `compare`; so the projections of old and new on the patch's keys (see
    `_project`) compare like the whole objects. managedFields is left out of both sides of the full
    comparison; a patch that writes it also changes whose fields are recorded, so it takes the full path.
    """
    if not isinstance(patch, dict):
        return False
    md = patch.get("metadata", _MISSING)
    return md is _MISSING or (isinstance(md, dict) and "managedFields" not in md)


def _project(value: Any, patch: Any) -> Any:
    """`value` restricted to the keys `patch` names, in `value`'s order; whole below a non-object patch.

    Keys absent from `value` stay absent: `compare` only visits keys present on one side at least."""
    if not isinstance(patch, dict) or not isinstance(value, dict):
        return value
    return {k: _project(v, patch[k]) for k, v in value.items() if k in patch}


def check_decodable(old: dict | None, new: dict) -> None:
    """Raise what update_managed_fields(old, new, ...) would raise, and nothing else: decoding the
    managedFields it starts from is all that can fail (its comparisons work on any JSON)."""
    if not _decode(new):
        _decode(old)


def _empty_like(new: dict) -> dict:
    """The zero object a create is compared with.

    Upstream compares with the Go zero value, in which non-pointer structs (metadata, spec, a pod
    template's metadata and spec) already exist, so they are never "added" and carry no `.` entry.
    """
    zero: dict = {k: {} for k in ("metadata", "spec") if isinstance(new.get(k), dict)}
    template = (new.get("spec") or {}).get("template") if isinstance(new.get("spec"), dict) else None
    if isinstance(template, dict):
        zero["spec"]["template"] = {k: {} for k in ("metadata", "spec") if isinstance(template.get(k), dict)}
    return zero


def _path_order(path: Path) -> tuple:
    return tuple(_element_order(e) for e in path)


def managers_of(obj: dict) -> dict[str, set[Path]]:
    """Manager name -> owned paths, merged across operations (handy for callers and tests)."""
    out: dict[str, set[Path]] = {}
    for m in _decode(obj):
        out.setdefault(m.manager, set()).update(m.fields)
    return out
