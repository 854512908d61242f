"""Strategic merge patch (`application/strategic-merge-patch+json`), driven by the official schema.

The semantics follow apimachinery's `strategicpatch` as the apiserver runs it (parallel lists merged,
unmatched nulls ignored):
- maps merge key by key and `null` deletes a key;
- lists whose field has patch strategy `merge` merge: lists of objects by the patch merge key (containers
  and env by name, container ports by containerPort, Service ports by port), lists of scalars by value
  (a union, e.g. finalizers); every other list is replaced;
- directives: `$patch: replace|delete` on a map, `{"$patch": "delete", <key>: ...}` and
  `{"$patch": "replace"}` elements in a merging list, `$retainKeys`, `$setElementOrder/<field>` (the final
  order of a merging list) and `$deleteFromPrimitiveList/<field>`.
A kind the schema does not know falls back to a JSON merge patch.
"""

from __future__ import annotations

import copy
from typing import Any

from skiff.api.errors import APIError
from skiff.api.patch import typeinfo
from skiff.api.patch.failures import go_equal, go_type, go_value, malformed, unexpected, unprocessable
from skiff.api.patch.merge_patch import apply_merge_patch
from skiff.api.patch.typeinfo import Node

DIRECTIVE = "$patch"
RETAIN_KEYS = "$retainKeys"
SET_ELEMENT_ORDER = "$setElementOrder"
DELETE_FROM_PRIMITIVE_LIST = "$deleteFromPrimitiveList"

# mergepatch's sentinel errors that the patch handler answers as 400.
BAD_PRIMITIVE_LIST = "invalid patch format of primitive list"
BAD_RETAIN_KEYS = "invalid patch format of retainKeys"
BAD_SET_ELEMENT_ORDER = "invalid patch format of setElementOrder list"

_SLICE_TYPE = "[]interface {}"
_MAP_TYPE = "map[string]interface {}"

_DROP = object()


def apply_strategic_merge_patch(obj: dict, patch: Any, group: str, version: str, kind: str) -> dict:
    """Apply a strategic merge patch to a copy of `obj` (the stored object of group/version/kind)."""
    node = typeinfo.root(group, version, kind)
    if node is None:
        return apply_merge_patch(obj, patch)
    if not isinstance(patch, dict):
        if patch is None:
            patch = {}
        else:
            kind_word = {_SLICE_TYPE: "array", "int64": "number", "float64": "number"}.get(
                go_type(patch), go_type(patch))
            raise malformed(f"json: cannot unmarshal {kind_word} into Go value of type map[string]interface {{}}")
    return _merge_map(copy.deepcopy(obj), copy.deepcopy(patch), node)


# ---- errors with upstream's wording ---------------------------------------------------------------------

def _no_merge_key(item: dict, key: str) -> APIError:
    return unexpected(f"map: {go_value(item)} does not contain declared merge key: {key}")


def _bad_arg_type(expected: str, actual: Any) -> APIError:
    return unexpected(f"expected a {expected}, but received a {go_type(actual)}")


def _bad_patch_type(directive: Any, item: dict) -> APIError:
    return unexpected(f"unknown patch type: {go_value(directive)} in map: {go_value(item)}")


# ---- helpers ---------------------------------------------------------------------------------------------

def _clean(value: Any) -> Any:
    """A patch value as it is stored: maps carrying `$patch` vanish, nulls and directive keys are dropped.

    Upstream keeps the other directive keys and nulls and lets typed decoding discard them; the stored
    result is the same.
    """
    if isinstance(value, dict):
        if DIRECTIVE in value:
            return _DROP
        out = {}
        for k, v in value.items():
            if v is None or k == RETAIN_KEYS or k.startswith(SET_ELEMENT_ORDER + "/") \
                    or k.startswith(DELETE_FROM_PRIMITIVE_LIST + "/"):
                continue
            cleaned = _clean(v)
            if cleaned is not _DROP:
                out[k] = cleaned
        return out
    if isinstance(value, list):
        return [c for c in (_clean(v) for v in value) if c is not _DROP]
    return value


def _set_cleaned(original: dict, key: str, value: Any) -> None:
    cleaned = _clean(value)
    if cleaned is _DROP:
        original.pop(key, None)
    else:
        original[key] = cleaned


def _extract_key(key: str, prefix: str) -> str:
    head, sep, rest = key.partition("/")
    if not sep or head != prefix:
        raise malformed(BAD_PRIMITIVE_LIST if prefix == DELETE_FROM_PRIMITIVE_LIST else BAD_SET_ELEMENT_ORDER)
    return rest


def _element_kind(*lists: list) -> str:
    """The Go type shared by every element (`sliceElementType`)."""
    seen = None
    for lst in lists:
        for v in lst:
            t = go_type(v)
            if seen is None:
                if t == _SLICE_TYPE:
                    raise unprocessable()  # lists of lists are not supported
                seen = t
            elif t != seen:
                raise unexpected("list element types are not identical: " + go_value(list(lists)))
    if seen is None:
        raise unexpected("no elements in any of the given slices")
    return seen


def _find(items: list, key: str, value: Any) -> int:
    for i, item in enumerate(items):
        if not isinstance(item, dict):
            raise unexpected(f"value for key {i} is not a map")
        if key in item and go_equal(item[key], value):
            return i
    return -1


def _identity(item: Any, merge_key: str, is_map: bool) -> tuple:
    if is_map:
        value = item.get(merge_key) if isinstance(item, dict) else None
    else:
        value = item
    return (go_type(value), _freeze(value))


def _freeze(value: Any) -> Any:
    if isinstance(value, dict):
        return tuple(sorted((k, _freeze(v)) for k, v in value.items()))
    if isinstance(value, list):
        return tuple(_freeze(v) for v in value)
    return value


def _partition(merged: list, by: list, merge_key: str, is_map: bool) -> tuple[list, list]:
    """Split into (items present in `by`, server-only items)."""
    if is_map:
        for item in merged:
            if not isinstance(item, dict):
                raise _bad_arg_type(_MAP_TYPE, item)
            if merge_key not in item:
                raise _no_merge_key(item, merge_key)
    wanted = {_identity(v, merge_key, is_map) for v in by}
    inside = [v for v in merged if _identity(v, merge_key, is_map) in wanted]
    outside = [v for v in merged if _identity(v, merge_key, is_map) not in wanted]
    return inside, outside


def _sort_by(items: list, order: list, merge_key: str, is_map: bool) -> list:
    deletions: list = []
    if is_map:
        for lst in (items, order):
            for item in lst:
                if not isinstance(item, dict):
                    raise _bad_arg_type(_MAP_TYPE, item)
                if merge_key not in item:
                    raise _no_merge_key(item, merge_key)
        deletions = [v for v in items if v.get(DIRECTIVE) == "delete"]
        items = [v for v in items if v.get(DIRECTIVE) != "delete"]
    positions = {}
    for i, v in enumerate(order):
        positions.setdefault(_identity(v, merge_key, is_map), i)
    ranked = sorted(items, key=lambda v: positions.get(_identity(v, merge_key, is_map), len(order)))
    return ranked + deletions


def _normalize_order(patch_items: list, server_only: list, patch_order: list, server_order: list,
                     merge_key: str, is_map: bool) -> list:
    """Patch items keep the patch's order; server-only items keep their live positions between them."""
    patch_items = _sort_by(patch_items, patch_order, merge_key, is_map)
    server_only = _sort_by(server_only, server_order, merge_key, is_map)
    live_pos = {}
    for i, v in enumerate(server_order):
        live_pos.setdefault(_identity(v, merge_key, is_map), i)
    out: list = []
    i = j = 0
    while i < len(server_only) or j < len(patch_items):
        if j >= len(patch_items):
            out.append(server_only[i])
            i += 1
        elif i >= len(server_only):
            out.append(patch_items[j])
            j += 1
        else:
            li = live_pos.get(_identity(server_only[i], merge_key, is_map))
            ri = live_pos.get(_identity(patch_items[j], merge_key, is_map))
            if li is not None and ri is not None and li < ri:
                out.append(server_only[i])
                i += 1
            else:
                out.append(patch_items[j])
                j += 1
    return out


# ---- maps --------------------------------------------------------------------------------------------------

def _merge_map(original: dict | None, patch: dict, node: Node) -> dict:
    if DIRECTIVE in patch:
        directive = patch[DIRECTIVE]
        if directive == "replace":
            del patch[DIRECTIVE]
            return _clean(patch)
        if directive == "delete":
            return {}
        raise _bad_patch_type(directive, patch)
    if original is None:
        original = {}
    _apply_retain_keys(original, patch)
    _apply_element_order(original, patch, node)

    for key, patch_value in list(patch.items()):
        is_delete_list = False
        if key.startswith(DELETE_FROM_PRIMITIVE_LIST):
            key = _extract_key(key, DELETE_FROM_PRIMITIVE_LIST)
            is_delete_list = True
        if patch_value is None:
            original.pop(key, None)
            continue
        if key not in original:
            if not is_delete_list:
                _set_cleaned(original, key, patch_value)
            continue
        current = original[key]
        if go_type(current) != go_type(patch_value):
            if not is_delete_list:
                _set_cleaned(original, key, patch_value)
            continue
        child = node.child(key)
        if isinstance(current, dict):
            if child.patch_strategy == "replace":
                _set_cleaned(original, key, patch_value)
            else:
                original[key] = _merge_map(current, patch_value, child)
        elif isinstance(current, list):
            original[key] = _merge_list_field(current, patch_value, child, is_delete_list)
        else:
            _set_cleaned(original, key, patch_value)
    return original


def _apply_retain_keys(original: dict, patch: dict) -> None:
    if RETAIN_KEYS not in patch:
        return
    retain = patch.pop(RETAIN_KEYS)
    if not isinstance(retain, list):
        raise malformed(BAD_RETAIN_KEYS)
    keep = {_freeze(v) for v in retain}
    for key, value in patch.items():
        if value is None or key.startswith(DELETE_FROM_PRIMITIVE_LIST) or key.startswith(SET_ELEMENT_ORDER):
            continue
        if key not in keep:
            raise malformed(BAD_RETAIN_KEYS)
    for key in list(original):
        if key not in keep:
            del original[key]


def _apply_element_order(original: dict, patch: dict, node: Node) -> None:
    """`$setElementOrder/<field>`: merge that field's list now and give it the requested order."""
    for directive_key in [k for k in patch if k.startswith(SET_ELEMENT_ORDER)]:
        order = patch.pop(directive_key)
        if not isinstance(order, list):
            raise _bad_arg_type(_SLICE_TYPE, order)
        field = _extract_key(directive_key, SET_ELEMENT_ORDER)
        found_original, found_patch = field in original, field in patch
        original_list = original.get(field) if found_original else []
        patch_list = patch.get(field) if found_patch else []
        if found_original and not isinstance(original_list, list):
            raise _bad_arg_type(_SLICE_TYPE, original_list)
        if found_patch and not isinstance(patch_list, list):
            raise _bad_arg_type(_SLICE_TYPE, patch_list)
        child = node.child(field)
        merge_key = child.merge_key
        _validate_order(patch_list, order, merge_key)
        if found_original and not found_patch:
            merged = original_list
        elif found_patch and not found_original:
            merged = _clean(patch_list)
        elif found_original and found_patch:
            merged = _merge_list_field(original_list, patch_list, child, False)
        else:
            continue
        is_map = bool(merge_key)
        inside, outside = _partition(merged, order, merge_key, is_map)
        _element_kind(original_list, patch_list)
        original[field] = _normalize_order(inside, outside, order, original_list, merge_key, is_map)
        patch.pop(field, None)


def _validate_order(patch_list: list, order: list, merge_key: str) -> None:
    """Every patch item must appear in `$setElementOrder`, in the same relative order."""
    if not order or not patch_list:
        return
    items = patch_list
    if merge_key:
        for v in patch_list:
            if not isinstance(v, dict):
                raise _bad_arg_type(_MAP_TYPE, v)
        items = [v for v in patch_list if v.get(DIRECTIVE) != "delete"]
    p = o = 0
    while p < len(items) and o < len(order):
        item = items[p]
        if isinstance(item, dict) and DIRECTIVE in item:
            p += 1
            continue
        if merge_key:
            if not isinstance(order[o], dict):
                raise _bad_arg_type(_MAP_TYPE, order[o])
            if merge_key not in item:
                raise _no_merge_key(item, merge_key)
            if merge_key not in order[o]:
                raise _no_merge_key(order[o], merge_key)
            same = go_equal(item[merge_key], order[o][merge_key])
        else:
            same = go_equal(item, order[o])
        if same:
            p += 1
        o += 1
    if p < len(items):
        raise unexpected(f"The order in patch list:\n{go_value(patch_list)}\n doesn't match "
                         f"{SET_ELEMENT_ORDER} list:\n{go_value(order)}\n")


# ---- lists -------------------------------------------------------------------------------------------------

def _merge_list_field(current: list, patch_value: list, child: Node, is_delete_list: bool) -> list:
    if child.patch_strategy == "merge" or is_delete_list:
        return _merge_list(current, patch_value, child, is_delete_list)
    return _clean(patch_value)


def _merge_list(original: list, patch: list, node: Node, is_delete_list: bool) -> list:
    if not original and not patch:
        return original
    kind = _element_kind(original, patch)
    merge_key = node.merge_key
    original = list(original)
    if kind != _MAP_TYPE:
        if is_delete_list:
            doomed = {_identity(v, "", False) for v in patch}
            return [v for v in original if _identity(v, "", False) not in doomed]
        merged: list = []
        seen = set()
        for v in original + patch:
            ident = _identity(v, "", False)
            if ident not in seen:
                seen.add(ident)
                merged.append(v)
        inside, outside = _partition(merged, patch, "", False)
        return _normalize_order(inside, outside, patch, original, "", False)

    if not merge_key:
        raise unexpected(f"cannot merge lists without merge key for {node.name}")
    original, patch = _apply_list_directives(original, patch, merge_key)
    item_node = node.item()
    merged = list(original)
    for item in patch:
        if merge_key not in item:
            raise _no_merge_key(item, merge_key)
        at = _find(merged, merge_key, item[merge_key])
        if at >= 0:
            merged[at] = _merge_map(merged[at], item, item_node)
        else:
            cleaned = _clean(item)
            if cleaned is not _DROP:
                merged.append(cleaned)
    inside, outside = _partition(merged, patch, merge_key, True)
    return _normalize_order(inside, outside, patch, original, merge_key, True)


def _apply_list_directives(original: list, patch: list, merge_key: str) -> tuple[list, list]:
    """Handle `$patch` elements: deletions by merge key, or replacing the whole list."""
    plain = []
    replace = False
    for item in patch:
        if DIRECTIVE not in item:
            plain.append(item)
            continue
        directive = item[DIRECTIVE]
        if directive == "delete":
            if merge_key not in item:
                raise _no_merge_key(item, merge_key)
            original = [v for v in original
                        if not (isinstance(v, dict) and merge_key in v and go_equal(v[merge_key], item[merge_key]))]
        elif directive == "replace":
            replace = True
        elif directive == "merge":
            raise unexpected("merging lists cannot yet be specified in the patch")
        else:
            raise _bad_patch_type(directive, item)
    if replace:
        return [c for c in (_clean(v) for v in plain) if c is not _DROP], []
    return original, plain
