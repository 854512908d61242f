"""Small helpers for object metadata, shared by the API server, controllers and agents."""

from __future__ import annotations

import datetime as dt
import random
import uuid
from typing import Any

# generateName suffixes use the same alphabet as apimachinery (no vowels, no confusable digits).
_ALPHABET = "bcdfghjklmnpqrstvwxz2456789"


def now_rfc3339() -> str:
    return dt.datetime.now(dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def rfc3339(t: float) -> str:
    """A Unix time as Kubernetes writes timestamps (seconds, UTC)."""
    return dt.datetime.fromtimestamp(t, dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def now_micro() -> str:
    return dt.datetime.now(dt.UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def parse_time(value: str | None) -> dt.datetime | None:
    if not value:
        return None
    v = value.replace("Z", "+00:00")
    try:
        return dt.datetime.fromisoformat(v)
    except ValueError:
        return None


def random_suffix(n: int = 5) -> str:
    return "".join(random.choice(_ALPHABET) for _ in range(n))


def new_uid() -> str:
    return str(uuid.uuid4())


def key_of(obj: dict) -> str:
    md = obj.get("metadata", {})
    ns = md.get("namespace")
    return f"{ns}/{md.get('name')}" if ns else md.get("name", "")


def controller_ref(obj: dict) -> dict | None:
    for ref in obj.get("metadata", {}).get("ownerReferences") or []:
        if ref.get("controller"):
            return ref
    return None


def owner_reference(owner: dict, controller: bool = True, block: bool = True) -> dict[str, Any]:
    return {
        "apiVersion": owner["apiVersion"],
        "kind": owner["kind"],
        "name": owner["metadata"]["name"],
        "uid": owner["metadata"]["uid"],
        "controller": controller,
        "blockOwnerDeletion": block,
    }


def get_condition(obj: dict, ctype: str) -> dict | None:
    for c in obj.get("status", {}).get("conditions") or []:
        if c.get("type") == ctype:
            return c
    return None
