"""Kubernetes resource quantities (`500m`, `128Mi`, `1e3`) as exact numbers, for comparing and
dividing them the way kube's resource.Quantity does."""

from __future__ import annotations

import re
from decimal import Decimal, InvalidOperation

_SUFFIXES = {
    "n": Decimal("1e-9"), "u": Decimal("1e-6"), "m": Decimal("1e-3"), "": Decimal(1),
    "k": Decimal(10) ** 3, "M": Decimal(10) ** 6, "G": Decimal(10) ** 9, "T": Decimal(10) ** 12,
    "P": Decimal(10) ** 15, "E": Decimal(10) ** 18,
    "Ki": Decimal(2) ** 10, "Mi": Decimal(2) ** 20, "Gi": Decimal(2) ** 30, "Ti": Decimal(2) ** 40,
    "Pi": Decimal(2) ** 50, "Ei": Decimal(2) ** 60,
}
_QUANTITY = re.compile(r"^([+-]?[0-9.]+(?:[eE][+-]?[0-9]+)?)([a-zA-Z]*)$")


def parse_quantity(q: str | int | float) -> Decimal:
    """The quantity's value; ValueError if it is not one."""
    m = _QUANTITY.match(str(q).strip())
    if not m or m.group(2) not in _SUFFIXES:
        raise ValueError(f"invalid quantity {q!r}")
    try:
        return Decimal(m.group(1)) * _SUFFIXES[m.group(2)]
    except InvalidOperation as e:
        raise ValueError(f"invalid quantity {q!r}") from e
