"""Ruleset -> `nft -f` text: a full transaction, or a partial one computed from two rulesets.

The partial transaction touches only chains whose rules changed (flush + refill), elements that
were added, removed or re-pointed, and objects that disappeared; like kube-proxy's partial sync
its size is proportional to what changed, not to the number of Services.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field

from skiff.proxy.model import Chain, Ruleset

# Keep single commands at a size nft parses comfortably.
ELEMENT_BATCH = 2000


@dataclass
class RulesetDiff:
    new_sets: list[str] = field(default_factory=list)
    new_chains: list[str] = field(default_factory=list)
    changed_chains: list[str] = field(default_factory=list)  # includes new chains with rules
    element_deletes: dict[str, list[str]] = field(default_factory=dict)
    element_adds: dict[str, list[tuple[str, str]]] = field(default_factory=dict)
    stale_chains: list[str] = field(default_factory=list)
    stale_sets: list[str] = field(default_factory=list)

    def is_empty(self) -> bool:
        return not (
            self.new_sets
            or self.new_chains
            or self.changed_chains
            or self.element_deletes
            or self.element_adds
            or self.stale_chains
            or self.stale_sets
        )

    def touched_names(self) -> set[str]:
        """Every chain and set name that the partial transaction mentions (for tests and logs)."""
        names = set(self.new_sets) | set(self.new_chains) | set(self.changed_chains)
        names |= set(self.stale_chains) | set(self.stale_sets)
        names |= set(self.element_deletes) | set(self.element_adds)
        return names


def _chain_decl(table: str, c: Chain) -> str:
    if c.hook:
        return f"add chain ip {table} {c.name} {{ {c.hook} ; }}"
    return f"add chain ip {table} {c.name}"


def _elements(table: str, verb: str, set_name: str, items: list[str]) -> list[str]:
    out = []
    for i in range(0, len(items), ELEMENT_BATCH):
        out.append(f"{verb} element ip {table} {set_name} {{ {', '.join(items[i:i + ELEMENT_BATCH])} }}")
    return out


def _element_text(key: str, value: str) -> str:
    return f"{key} : {value}" if value else key


def render_full(rs: Ruleset, table: str) -> str:
    """One transaction that replaces the table: creating it first makes the delete safe when absent."""
    lines = [f"add table ip {table}", f"delete table ip {table}", f"add table ip {table}"]
    for name in sorted(rs.sets):
        lines.append(f"add {'map' if rs.sets[name].is_map else 'set'} ip {table} {name} {rs.sets[name].body()}")
    ordered = sorted(rs.chains.values(), key=lambda c: (c.hook is None, c.name))
    for c in ordered:
        lines.append(_chain_decl(table, c))
    for c in ordered:
        for rule in c.rules:
            lines.append(f"add rule ip {table} {c.name} {rule}")
    for name in sorted(rs.elements):
        elems = rs.elements[name]
        if elems:
            items = [_element_text(k, elems[k]) for k in sorted(elems)]
            lines.extend(_elements(table, "add", name, items))
    return "\n".join(lines) + "\n"


def diff(old: Ruleset, new: Ruleset) -> RulesetDiff | None:
    """What turns `old` into `new`, or None when only a full sync can (a set or base chain changed shape).

    When `new` was patched from `old` (new.delta.base is old), only the names its Delta lists are
    compared; otherwise every chain, set and element is.
    """
    d = RulesetDiff()
    if old is new:
        return d
    delta = new.delta if new.delta is not None and new.delta.base is old else None
    if delta is None:
        set_names: Iterable[str] = old.sets.keys() | new.sets.keys()
        chain_names: Iterable[str] = old.chains.keys() | new.chains.keys()
        element_keys: dict[str, Iterable[str] | None] = dict.fromkeys(old.elements.keys() | new.elements.keys())
    else:
        set_names, chain_names = delta.sets, delta.chains
        element_keys = {name: keys for name, keys in delta.elements.items()}
        element_keys.update(dict.fromkeys(delta.sets))
    for name in set_names:
        s, prev = new.sets.get(name), old.sets.get(name)
        if s is None:
            if prev is not None:
                d.stale_sets.append(name)
        elif prev is None:
            d.new_sets.append(name)
        elif prev != s:
            return None
    for name in chain_names:
        c, prev = new.chains.get(name), old.chains.get(name)
        if c is None:
            if prev is None:
                continue
            if prev.hook:
                return None
            d.stale_chains.append(name)
        elif prev is None:
            if c.hook:
                return None
            d.new_chains.append(name)
            d.changed_chains.append(name)
        elif prev is c:
            continue
        elif prev.hook != c.hook:
            return None
        elif prev.rules != c.rules:
            d.changed_chains.append(name)
    stale_sets = set(d.stale_sets)
    for name, keys in element_keys.items():
        if name in stale_sets:
            continue
        if name not in new.elements:
            if name in old.elements:
                return None
            continue
        elems, prev = new.elements[name], old.elements.get(name, {})
        if elems is prev:
            continue
        if keys is None:
            if prev == elems:
                continue
            keys = elems.keys() | prev.keys()
        adds = [(k, elems[k]) for k in keys if k in elems and prev.get(k) != elems[k]]
        # A re-pointed map element must be deleted before it can be added with its new verdict.
        dels = [k for k in keys if k in prev and (k not in elems or prev[k] != elems[k])]
        if adds:
            d.element_adds[name] = sorted(adds)
        if dels:
            d.element_deletes[name] = sorted(dels)
    for lst in (d.new_sets, d.new_chains, d.changed_chains, d.stale_chains, d.stale_sets):
        lst.sort()
    return d


def render_diff(d: RulesetDiff, new: Ruleset, table: str) -> str:
    """The partial transaction. Order matters: objects must exist before rules reference them, and
    references must be gone before the objects they point to are deleted."""
    lines: list[str] = []
    for name in d.new_sets:
        s = new.sets[name]
        lines.append(f"add {'map' if s.is_map else 'set'} ip {table} {name} {s.body()}")
    for name in d.new_chains:
        lines.append(_chain_decl(table, new.chains[name]))
    for name in d.changed_chains:
        if name not in d.new_chains:
            lines.append(f"flush chain ip {table} {name}")
        for rule in new.chains[name].rules:
            lines.append(f"add rule ip {table} {name} {rule}")
    for name in sorted(d.element_deletes):
        lines.extend(_elements(table, "delete", name, d.element_deletes[name]))
    for name in sorted(d.element_adds):
        lines.extend(_elements(table, "add", name, [_element_text(k, v) for k, v in d.element_adds[name]]))
    for name in d.stale_chains:
        lines.append(f"flush chain ip {table} {name}")
    for name in d.stale_chains:
        lines.append(f"delete chain ip {table} {name}")
    for name in d.stale_sets:
        lines.append(f"delete set ip {table} {name}")
    return "\n".join(lines) + ("\n" if lines else "")
