"""Ingress status: every Ingress we serve gets the LoadBalancer address(es) of our own Service.

Like ingress-nginx's `--publish-service`, the address written to `status.loadBalancer.ingress` is
what the LoadBalancer Service in front of the controller got, so `kubectl get ingress` shows the IP
a user can curl. Ingresses we stop serving get their status cleared.
"""

from __future__ import annotations

from collections.abc import Iterable


def published_addresses(service: dict | None) -> list[dict]:
    """`status.loadBalancer.ingress` of our Service, as Ingress status entries (ip or hostname)."""
    out = []
    for entry in (((service or {}).get("status") or {}).get("loadBalancer") or {}).get("ingress") or []:
        e = {k: entry[k] for k in ("ip", "hostname") if entry.get(k)}
        if e:
            out.append(e)
    return out


def _current(ingress: dict) -> list[dict]:
    return (((ingress.get("status") or {}).get("loadBalancer") or {}).get("ingress")) or []


def status_patches(ingresses: Iterable[dict], served: Iterable[str], addresses: list[dict],
                   previously_served: Iterable[str] = ()) -> list[tuple[str, str, dict]]:
    """(namespace, name, merge patch for the status subresource) for every Ingress whose status is off.

    An Ingress we don't serve is cleared when we served it before (in this process) or when it
    still shows exactly our addresses (we served it before a restart)."""
    served = set(served)
    before = set(previously_served)
    want = sorted(addresses, key=lambda e: (e.get("ip", ""), e.get("hostname", "")))
    patches = []
    for ing in ingresses:
        md = ing.get("metadata") or {}
        key = f"{md.get('namespace', '')}/{md.get('name', '')}"
        cur = sorted(({k: e[k] for k in ("ip", "hostname") if e.get(k)} for e in _current(ing)),
                     key=lambda e: (e.get("ip", ""), e.get("hostname", "")))
        if key in served:
            if cur != want:
                patches.append((md.get("namespace", ""), md.get("name", ""),
                                {"status": {"loadBalancer": {"ingress": want or None}}}))
        elif cur and (key in before or (want and cur == want)):
            patches.append((md.get("namespace", ""), md.get("name", ""),
                            {"status": {"loadBalancer": {"ingress": None}}}))
    return patches
