"""EndpointSlice mirroring, as kube-controller-manager's controller of that name: a Service without a
selector whose users write a v1 Endpoints object by hand (the classic "point a Service at a database
outside the cluster") gets EndpointSlices that mirror it, which is what the service proxy and cluster
DNS read. Endpoints labelled `endpointslice.kubernetes.io/skip-mirror: "true"` are left alone, and the
mirrored slices go when the Endpoints, the Service or its selectorlessness do."""

from __future__ import annotations

import copy
import ipaddress
import logging

from skiff.api import meta
from skiff.client.informer import WorkQueue, run_workers
from skiff.client.rest import ClientError
from skiff.controllers.base import ENDPOINTS, SERVICES, SLICES
from skiff.controllers.endpointslice import MANAGED_BY_LABEL, MAX_PER_SLICE, SERVICE_NAME, managed_service_key

log = logging.getLogger("skiff.controllers.endpointslicemirroring")
MIRRORING = "endpointslicemirroring-controller.k8s.io"
SKIP_MIRROR = "endpointslice.kubernetes.io/skip-mirror"
# Endpoints labels that are bookkeeping of their own, not copied onto the slices.
_NOT_COPIED = {SKIP_MIRROR, MANAGED_BY_LABEL}
_NOT_COPIED_ANNOTATIONS = {"endpoints.kubernetes.io/last-change-trigger-time",
                           "kubectl.kubernetes.io/last-applied-configuration"}


def wants_mirror(service: dict | None, endpoints: dict | None) -> bool:
    return (service is not None and endpoints is not None and not (service.get("spec") or {}).get("selector")
            and (endpoints["metadata"].get("labels") or {}).get(SKIP_MIRROR) != "true")


def _endpoint(address: dict, ready: bool) -> dict:
    ep: dict = {"addresses": [address["ip"]], "conditions": {"ready": ready}}
    for key in ("hostname", "nodeName", "targetRef"):
        if address.get(key):
            ep[key] = address[key]
    return ep


def mirrored_slices(endpoints: dict) -> list[dict]:
    """Endpoints -> the EndpointSlice bodies (addressType, endpoints, ports, labels, annotations) that
    mirror it: one group per subset and address family, at most MAX_PER_SLICE endpoints a slice."""
    md = endpoints["metadata"]
    labels = {k: v for k, v in (md.get("labels") or {}).items() if k not in _NOT_COPIED}
    labels.update({SERVICE_NAME: md["name"], MANAGED_BY_LABEL: MIRRORING})
    annotations = {k: v for k, v in (md.get("annotations") or {}).items() if k not in _NOT_COPIED_ANNOTATIONS}
    out = []
    for subset in endpoints.get("subsets") or []:
        ports = [{k: p[k] for k in ("name", "port", "protocol", "appProtocol") if p.get(k) is not None}
                 for p in subset.get("ports") or []]
        by_family: dict[str, list[dict]] = {}
        for addrs, ready in ((subset.get("addresses") or [], True), (subset.get("notReadyAddresses") or [], False)):
            for a in addrs:
                try:
                    family = "IPv6" if ipaddress.ip_address(a.get("ip", "")).version == 6 else "IPv4"
                except ValueError:
                    continue  # the API server refuses these; nothing to mirror
                by_family.setdefault(family, []).append(_endpoint(a, ready))
        for family, eps in sorted(by_family.items()):
            for i in range(0, len(eps), MAX_PER_SLICE):
                body = {"addressType": family, "endpoints": eps[i:i + MAX_PER_SLICE], "ports": ports,
                        "metadata": {"labels": labels}}
                if annotations:
                    body["metadata"]["annotations"] = annotations
                out.append(body)
    return out


async def run(ctx) -> None:
    client = ctx.client
    services = ctx.informer(SERVICES)
    endpoints = ctx.informer(ENDPOINTS)
    slices = ctx.informer(SLICES)
    queue = WorkQueue()
    services.add_handler(lambda t, o, old: queue.add(meta.key_of(o)))
    endpoints.add_handler(lambda t, o, old: queue.add(meta.key_of(o)))

    def on_slice(etype: str, sl: dict, old: dict | None) -> None:
        key = managed_service_key(sl, MIRRORING)
        if key:
            queue.add(key)

    slices.add_handler(on_slice)
    await ctx.wait_synced(SERVICES, ENDPOINTS, SLICES)

    async def sync(key: str) -> None:
        ns, _, name = key.partition("/")
        svc, ep = services.get(key), endpoints.get(key)
        ours = sorted((s for s in slices.list(ns)
                       if (s["metadata"].get("labels") or {}).get(SERVICE_NAME) == name
                       and (s["metadata"].get("labels") or {}).get(MANAGED_BY_LABEL) == MIRRORING),
                      key=lambda s: s["metadata"]["name"])
        wanted = mirrored_slices(ep) if wants_mirror(svc, ep) else []
        for body in wanted:
            existing = ours.pop(0) if ours else None
            if existing is not None and existing.get("addressType") != body["addressType"]:
                await _delete(ns, existing["metadata"]["name"])  # addressType is immutable: a new slice
                existing = None
            if existing is None:
                new = {"apiVersion": "discovery.k8s.io/v1", "kind": "EndpointSlice", **copy.deepcopy(body)}
                new["metadata"].update({"generateName": f"{name}-", "namespace": ns,
                                        "ownerReferences": [meta.owner_reference(ep)]})
                await client.create(SLICES, ns, new, field_manager="endpointslicemirroring-controller")
                continue
            current = {k: existing.get(k) for k in ("addressType", "endpoints", "ports")}
            current["metadata"] = {k: existing["metadata"][k] for k in ("labels", "annotations")
                                   if existing["metadata"].get(k)}
            if current == body:
                continue
            new = copy.deepcopy(existing)
            new.update({k: copy.deepcopy(body[k]) for k in ("endpoints", "ports")})
            new["metadata"]["labels"] = dict(body["metadata"]["labels"])
            new["metadata"].pop("annotations", None)
            if body["metadata"].get("annotations"):
                new["metadata"]["annotations"] = dict(body["metadata"]["annotations"])
            await client.replace(SLICES, ns, existing["metadata"]["name"], new)
        for extra in ours:
            await _delete(ns, extra["metadata"]["name"])

    async def _delete(ns: str, name: str) -> None:
        try:
            await client.delete(SLICES, ns, name)
        except ClientError as e:
            if e.code != 404:
                raise

    await run_workers(queue, sync, workers=2, name="endpointslicemirroring")
