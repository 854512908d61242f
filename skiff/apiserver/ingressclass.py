"""The DefaultIngressClass admission step: an Ingress created without a class gets the cluster's
default IngressClass, so `kubectl get ingress` shows which controller serves it, as on a cluster
where kube-apiserver's default-on DefaultIngressClass plugin does the same."""

from __future__ import annotations

from typing import TYPE_CHECKING

from skiff.api.resources import lookup

if TYPE_CHECKING:
    from skiff.apiserver.registry import Registry

INGRESSES = lookup("networking.k8s.io", "v1", "ingresses")
INGRESS_CLASSES = lookup("networking.k8s.io", "v1", "ingressclasses")
IS_DEFAULT = "ingressclass.kubernetes.io/is-default-class"
LEGACY_CLASS_ANNOTATION = "kubernetes.io/ingress.class"


def default_class(classes: list[dict]) -> str | None:
    """The default IngressClass's name: of those marked default, the newest (ties: the first name)."""
    marked = [c["metadata"] for c in classes if (c["metadata"].get("annotations") or {}).get(IS_DEFAULT) == "true"]
    if not marked:
        return None
    newest = max(m.get("creationTimestamp", "") for m in marked)
    return min(m["name"] for m in marked if m.get("creationTimestamp", "") == newest)


def needs_class(ingress: dict) -> bool:
    """An Ingress names its class either way already (the field, or the annotation that predates it)."""
    return ("ingressClassName" not in (ingress.get("spec") or {})
            and LEGACY_CLASS_ANNOTATION not in (ingress["metadata"].get("annotations") or {}))


async def admit_create(registry: Registry, ingress: dict) -> None:
    if needs_class(ingress):
        classes, _, _ = await registry.list(INGRESS_CLASSES, None)
        name = default_class(classes)
        if name is not None:
            ingress.setdefault("spec", {})["ingressClassName"] = name
