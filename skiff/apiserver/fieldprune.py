"""Drop unknown fields from an object, given their paths (`spec.foo`, `spec.ports[0].bogus`).

kube-apiserver loses unknown fields when it decodes JSON into its Go types; Skiff stores JSON, so it
removes them explicitly to keep the same observable behaviour.
"""

from __future__ import annotations

import re

_TOKEN = re.compile(r"([^.\[\]]+)|\[(\d+)\]")


def _tokens(path: str) -> list[str | int]:
    return [int(idx) if idx else name for name, idx in _TOKEN.findall(path)]


def prune(obj: dict, paths: list[str]) -> None:
    for path in paths:
        toks = _tokens(path)
        cur: object = obj
        for tok in toks[:-1]:
            if isinstance(tok, int):
                cur = cur[tok] if isinstance(cur, list) and tok < len(cur) else None
            else:
                cur = cur.get(tok) if isinstance(cur, dict) else None
            if cur is None:
                break
        last = toks[-1] if toks else None
        if isinstance(cur, dict) and isinstance(last, str):
            cur.pop(last, None)
