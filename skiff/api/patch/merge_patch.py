"""RFC 7386 JSON merge patch (`application/merge-patch+json`), as evanphx/json-patch applies it.

Objects merge key by key, `null` deletes, anything else (lists included) replaces. Nulls nested inside
a newly added object are dropped, so they never reach storage.
"""

from __future__ import annotations

import copy
from typing import Any

from skiff.api.patch.failures import malformed

INVALID_PATCH = "Invalid JSON Patch"


def _prune_nulls(value: Any) -> Any:
    if isinstance(value, dict):
        return {k: _prune_nulls(v) for k, v in value.items() if v is not None}
    if isinstance(value, list):
        return [_prune_nulls(v) if v is not None else None for v in value]
    return value


def _merge(current: Any, patch: Any) -> Any:
    if not isinstance(patch, dict):
        return copy.deepcopy(patch)
    if not isinstance(current, dict):
        return _prune_nulls(patch)
    for key, value in patch.items():
        if value is None:
            current.pop(key, None)
        elif current.get(key) is None:
            current[key] = _prune_nulls(value)
        else:
            current[key] = _merge(current[key], value)
    return current


def apply_merge_patch(obj: dict, patch: Any) -> dict:
    """Merge `patch` into a copy of `obj`. A patch that is not a JSON object is a 400 `Invalid JSON Patch`."""
    if not isinstance(patch, dict):
        raise malformed(INVALID_PATCH)
    return _merge(copy.deepcopy(obj), patch)
