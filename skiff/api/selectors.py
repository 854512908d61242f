"""Label and field selectors: parsing the query strings and matching objects.

Shared by the API server (list/watch filtering) and by clients (informer-side matching).
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from skiff.api.errors import bad_request


@dataclass(frozen=True)
class Requirement:
    key: str
    op: str  # "=", "!=", "in", "notin", "exists", "!"
    values: tuple[str, ...] = ()

    def matches(self, labels: dict[str, str]) -> bool:
        present = self.key in labels
        if self.op == "exists":
            return present
        if self.op == "!":
            return not present
        if self.op in ("=", "in"):
            return present and labels[self.key] in self.values
        if self.op in ("!=", "notin"):
            return not present or labels[self.key] not in self.values
        return False


_SET_RE = re.compile(r"^\s*([^\s!=]+)\s+(in|notin)\s+\(([^)]*)\)\s*$")


def _split_top(text: str) -> list[str]:
    """Split on commas that are not inside parentheses."""
    parts, depth, cur = [], 0, []
    for ch in text:
        if ch == "(":
            depth += 1
        elif ch == ")":
            depth -= 1
        if ch == "," and depth == 0:
            parts.append("".join(cur))
            cur = []
        else:
            cur.append(ch)
    parts.append("".join(cur))
    return [p for p in (s.strip() for s in parts) if p]


def parse_label_selector(text: str | None) -> list[Requirement]:
    if not text:
        return []
    reqs: list[Requirement] = []
    for part in _split_top(text):
        m = _SET_RE.match(part)
        if m:
            vals = tuple(v.strip() for v in m.group(3).split(",") if v.strip())
            reqs.append(Requirement(m.group(1), m.group(2), vals))
        elif "!=" in part:
            k, v = part.split("!=", 1)
            reqs.append(Requirement(k.strip(), "!=", (v.strip(),)))
        elif "==" in part:
            k, v = part.split("==", 1)
            reqs.append(Requirement(k.strip(), "=", (v.strip(),)))
        elif "=" in part:
            k, v = part.split("=", 1)
            reqs.append(Requirement(k.strip(), "=", (v.strip(),)))
        elif part.startswith("!"):
            reqs.append(Requirement(part[1:].strip(), "!"))
        else:
            if not re.match(r"^[A-Za-z0-9._/-]+$", part):
                raise bad_request(f'unable to parse requirement: found \'{part}\', expected: identifier')
            reqs.append(Requirement(part, "exists"))
    return reqs


def labels_match(reqs: list[Requirement], labels: dict[str, str] | None) -> bool:
    labels = labels or {}
    return all(r.matches(labels) for r in reqs)


def selector_string(sel: dict | None) -> str:
    """Render a LabelSelector as `a=b,c in (d)`, as kubectl and Scale.status.selector show it."""
    if not sel:
        return ""
    parts = [f"{k}={v}" for k, v in sorted((sel.get("matchLabels") or {}).items())]
    for e in sel.get("matchExpressions") or []:
        op = e["operator"]
        if op == "In":
            parts.append(f"{e['key']} in ({','.join(sorted(e.get('values') or []))})")
        elif op == "NotIn":
            parts.append(f"{e['key']} notin ({','.join(sorted(e.get('values') or []))})")
        elif op == "Exists":
            parts.append(e["key"])
        else:
            parts.append("!" + e["key"])
    return ",".join(parts)


# ---- field selectors -------------------------------------------------------------------------

def _get_path(obj: dict, path: str) -> Any:
    cur: Any = obj
    for part in path.split("."):
        if not isinstance(cur, dict):
            return None
        cur = cur.get(part)
    return cur


def parse_field_selector(text: str | None, supported: Callable[[str], bool] | None = None
                         ) -> list[tuple[str, str, str]]:
    """-> [(field, op, value)], op "=" or "!=". Unsupported fields give kube-apiserver's 400."""
    if not text:
        return []
    out = []
    for part in _split_top(text):
        if "!=" in part:
            k, v = part.split("!=", 1)
            op = "!="
        elif "==" in part:
            k, v = part.split("==", 1)
            op = "="
        elif "=" in part:
            k, v = part.split("=", 1)
            op = "="
        else:
            raise bad_request(f'invalid selector: \'{part}\'; can\'t understand \'{part}\'')
        k = k.strip()
        if supported is not None and not supported(k):
            raise bad_request(f'field label not supported: {k}')
        out.append((k, op, v.strip()))
    return out


def fields_match(reqs: list[tuple[str, str, str]], obj: dict) -> bool:
    for field, op, value in reqs:
        actual = _get_path(obj, field)
        actual_s = "" if actual is None else (str(actual).lower() if isinstance(actual, bool) else str(actual))
        if (actual_s == value) != (op == "="):
            return False
    return True
