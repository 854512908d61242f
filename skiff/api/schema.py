"""The official Kubernetes 1.33 type definitions, as shipped by the kubernetes-validate package.

They are JSON Schema (draft 2020) converted from kube-apiserver's OpenAPI, and keep the
`x-kubernetes-*` extensions (patch merge keys and strategies, list types, GVKs). Loaded once,
lazily: reading the 1.4 MB file costs about 20 ms.
"""

from __future__ import annotations

import functools
import json
from importlib import resources as _pkg

KUBERNETES_VERSION = "v1.33.0"


@functools.cache
def definitions() -> dict[str, dict]:
    """Definition name (e.g. `io.k8s.api.core.v1.Service`) -> JSON schema. Refs look like `#/$defs/<name>`."""
    root = _pkg.files("kubernetes_validate") / "kubernetes-json-schema" / f"{KUBERNETES_VERSION}-local"
    with (root / "_definitions.json").open("rb") as f:
        return json.load(f)["$defs"]


@functools.cache
def _gvk_index() -> dict[tuple[str, str, str], str]:
    index: dict[tuple[str, str, str], str] = {}
    for name, schema in definitions().items():
        for gvk in schema.get("x-kubernetes-group-version-kind", []):
            index.setdefault((gvk.get("group", ""), gvk["version"], gvk["kind"]), name)
    return index


def definition_name(group: str, version: str, kind: str) -> str | None:
    """The definition that describes a kind, e.g. ("", "v1", "Service") -> io.k8s.api.core.v1.Service."""
    return _gvk_index().get((group, version, kind))


def ref_name(ref: str) -> str:
    """`#/$defs/io.k8s.api.core.v1.Service` -> `io.k8s.api.core.v1.Service`."""
    return ref.rsplit("/", 1)[-1]


def resolve(schema: dict) -> dict:
    """Follow a `$ref` (one level, which is all the definitions use)."""
    ref = schema.get("$ref")
    return definitions()[ref_name(ref)] if ref else schema
