"""EndpointSlice controller (and the legacy Endpoints beside it).

For every Service with a selector, lists the matching pods with their ready/serving/terminating
conditions, node and per-pod resolved target ports, in slices of at most 100 endpoints labelled
`kubernetes.io/service-name`. Services without a selector keep the slices their users write.
"""

from __future__ import annotations

import copy
import ipaddress
import logging

from skiff.api import meta
from skiff.client.informer import WorkQueue, run_workers
from skiff.client.rest import ClientError
from skiff.controllers.base import ENDPOINTS, PODS, SERVICES, SLICES, pod_is_ready, split_key

log = logging.getLogger("skiff.controllers.endpointslice")
MAX_PER_SLICE = 100
MANAGED_BY = "endpointslice-controller.k8s.io"
SERVICE_NAME = "kubernetes.io/service-name"
HEADLESS = "service.kubernetes.io/headless"
MANAGED_BY_LABEL = "endpointslice.kubernetes.io/managed-by"


def selects(service: dict, pod: dict) -> bool:
    sel = service.get("spec", {}).get("selector")
    if not sel:
        return False
    labels = pod["metadata"].get("labels") or {}
    return all(labels.get(k) == v for k, v in sel.items())


def resolve_port(port: dict, pod: dict) -> int | None:
    tp = port.get("targetPort", port.get("port"))
    if isinstance(tp, int):
        return tp
    if isinstance(tp, str) and tp.isdigit():
        return int(tp)
    proto = port.get("protocol", "TCP")
    for c in pod.get("spec", {}).get("containers") or []:
        for cp in c.get("ports") or []:
            if cp.get("name") == tp and cp.get("protocol", "TCP") == proto:
                return cp.get("containerPort")
    return None


def endpoint_for(pod: dict, service: dict) -> dict:
    terminating = bool(pod["metadata"].get("deletionTimestamp"))
    serving = pod_is_ready(pod)
    # publishNotReadyAddresses makes every pod "ready" (even a terminating one), but "serving" keeps
    # saying what the pod's readiness says, as upstream.
    ready = bool(service.get("spec", {}).get("publishNotReadyAddresses")) or (serving and not terminating)
    ep: dict = {
        "addresses": [pod["status"]["podIP"]],
        "conditions": {"ready": ready, "serving": serving, "terminating": terminating},
        "targetRef": {"kind": "Pod", "namespace": pod["metadata"]["namespace"], "name": pod["metadata"]["name"],
                      "uid": pod["metadata"]["uid"]},
    }
    if pod.get("spec", {}).get("nodeName"):
        ep["nodeName"] = pod["spec"]["nodeName"]
    spec = pod.get("spec", {})
    if spec.get("hostname") and spec.get("subdomain") == service["metadata"]["name"]:
        ep["hostname"] = spec["hostname"]
    return ep


def desired_groups(service: dict, pods: list[dict]) -> dict[tuple, tuple[list[dict], list[dict]]]:
    """Port signature -> (ports, endpoints). Pods whose named ports resolve differently land in
    different slices, as upstream does."""
    groups: dict[tuple, tuple[list[dict], list[dict]]] = {}
    svc_ports = service.get("spec", {}).get("ports") or []
    for pod in sorted(pods, key=lambda p: p["metadata"]["name"]):
        if not pod.get("status", {}).get("podIP") or pod.get("status", {}).get("phase") in ("Succeeded", "Failed"):
            continue
        ports = []
        for sp in svc_ports:
            n = resolve_port(sp, pod)
            if n is None:
                continue
            entry = {"name": sp.get("name", ""), "port": n, "protocol": sp.get("protocol", "TCP")}
            if sp.get("appProtocol"):
                entry["appProtocol"] = sp["appProtocol"]
            ports.append(entry)
        sig = tuple(sorted((p["name"], p["port"], p["protocol"]) for p in ports))
        groups.setdefault(sig, (ports, []))[1].append(endpoint_for(pod, service))
    if not groups:
        groups[()] = ([], [])
    return groups


def legacy_endpoints(service: dict, groups: dict[tuple, tuple[list[dict], list[dict]]]) -> dict:
    subsets = []
    for ports, eps in groups.values():
        if not eps:
            continue
        ready, not_ready = [], []
        for ep in eps:
            addr = {"ip": ep["addresses"][0], "targetRef": ep["targetRef"]}
            if ep.get("nodeName"):
                addr["nodeName"] = ep["nodeName"]
            if ep.get("hostname"):
                addr["hostname"] = ep["hostname"]
            (ready if ep["conditions"]["ready"] else not_ready).append(addr)
        s: dict = {"ports": [{k: v for k, v in p.items() if v != "" or k != "name"} for p in ports]}
        # Sorted by address as the endpoints controller leaves them, so `kubectl get ep` lists
        # 10.244.0.6 before 10.244.1.5 whatever order the pods came in.
        if ready:
            s["addresses"] = sorted(ready, key=_address_order)
        if not_ready:
            s["notReadyAddresses"] = sorted(not_ready, key=_address_order)
        subsets.append(s)
    md = service["metadata"]
    body: dict = {"apiVersion": "v1", "kind": "Endpoints",
                  "metadata": {"name": md["name"], "namespace": md["namespace"]}}
    labels = service_labels(service)
    if labels:
        body["metadata"]["labels"] = labels
    if subsets:
        body["subsets"] = subsets
    return body


def _address_order(addr: dict) -> tuple:
    return ipaddress.ip_address(addr["ip"]).packed, addr.get("targetRef", {}).get("uid", "")


def service_labels(service: dict) -> dict:
    """The labels the Endpoints and EndpointSlices of `service` carry besides their own: the
    Service's, and the headless marker for a Service without a ClusterIP."""
    labels = dict(service["metadata"].get("labels") or {})
    if service.get("spec", {}).get("clusterIP") == "None":
        labels[HEADLESS] = ""
    return labels


def managed_service_key(endpoint_slice: dict, manager: str) -> str | None:
    """`<namespace>/<service>` of a slice that `manager` keeps, else None."""
    labels = endpoint_slice["metadata"].get("labels") or {}
    if labels.get(MANAGED_BY_LABEL) == manager and labels.get(SERVICE_NAME):
        return f"{endpoint_slice['metadata']['namespace']}/{labels[SERVICE_NAME]}"
    return None


async def run(ctx) -> None:
    client = ctx.client
    services = ctx.informer(SERVICES)
    pods = ctx.informer(PODS)
    slices = ctx.informer(SLICES)
    endpoints = ctx.informer(ENDPOINTS)
    queue = WorkQueue()

    services.add_handler(lambda t, o, old: queue.add(meta.key_of(o)))

    def on_pod(etype: str, pod: dict, old: dict | None) -> None:
        ns = pod["metadata"]["namespace"]
        for svc in services.list(ns):
            if selects(svc, pod) or (old is not None and selects(svc, old)):
                queue.add(meta.key_of(svc))

    def on_slice(etype: str, sl: dict, old: dict | None) -> None:
        key = managed_service_key(sl, MANAGED_BY)
        if key:
            queue.add(key)

    pods.add_handler(on_pod)
    slices.add_handler(on_slice)
    await ctx.wait_synced(SERVICES, PODS, SLICES, ENDPOINTS)

    async def sync(key: str) -> None:
        ns, name = split_key(key)
        svc = services.get(key)
        ours = [s for s in slices.list(ns) if (s["metadata"].get("labels") or {}).get(SERVICE_NAME) == name
                and (s["metadata"].get("labels") or {}).get(MANAGED_BY_LABEL) == MANAGED_BY]
        if svc is None or not svc.get("spec", {}).get("selector") or svc["spec"].get("type") == "ExternalName":
            for s in ours:
                await _delete(SLICES, ns, s["metadata"]["name"])
            if svc is None or svc.get("spec", {}).get("type") == "ExternalName":
                ep = endpoints.get(key)
                if ep is not None and (svc is None or svc["spec"].get("type") == "ExternalName"):
                    await _delete(ENDPOINTS, ns, name)
            return
        matching = [p for p in pods.list(ns) if selects(svc, p)]
        groups = desired_groups(svc, matching)
        wanted: list[tuple[list[dict], list[dict]]] = []
        for ports, eps in groups.values():
            for i in range(0, max(len(eps), 1), MAX_PER_SLICE):
                wanted.append((ports, eps[i:i + MAX_PER_SLICE]))
        reuse = sorted(ours, key=lambda s: s["metadata"]["name"])
        labels = {**service_labels(svc), SERVICE_NAME: name, MANAGED_BY_LABEL: MANAGED_BY}
        for ports, eps in wanted:
            body_spec = {"addressType": "IPv4", "endpoints": eps, "ports": ports}
            existing = reuse.pop(0) if reuse else None
            if existing is not None:
                same = (existing.get("endpoints") or []) == eps and (existing.get("ports") or []) == ports \
                    and (existing["metadata"].get("labels") or {}) == labels
                if same:
                    continue
                new = copy.deepcopy(existing)
                new.update(body_spec)
                new["metadata"]["labels"] = labels
                await client.replace(SLICES, ns, existing["metadata"]["name"], new)
            else:
                body = {"apiVersion": "discovery.k8s.io/v1", "kind": "EndpointSlice",
                        "metadata": {"generateName": f"{name}-", "namespace": ns, "labels": labels,
                                     "ownerReferences": [meta.owner_reference(svc)]},
                        **body_spec}
                await client.create(SLICES, ns, body, field_manager="endpointslice-controller")
        for extra in reuse:
            await _delete(SLICES, ns, extra["metadata"]["name"])
        desired_ep = legacy_endpoints(svc, groups)
        cur = endpoints.get(key)
        if cur is None:
            try:
                await client.create(ENDPOINTS, ns, desired_ep, field_manager="endpoint-controller")
            except ClientError as e:
                if e.code != 409:
                    raise
        elif (cur.get("subsets") or []) != desired_ep.get("subsets", []) or \
                (cur["metadata"].get("labels") or {}) != desired_ep["metadata"].get("labels", {}):
            new = copy.deepcopy(cur)
            new.pop("subsets", None)
            new["metadata"].pop("labels", None)
            new.update({k: v for k, v in desired_ep.items() if k == "subsets"})
            new["metadata"].update({k: v for k, v in desired_ep["metadata"].items() if k == "labels"})
            await client.replace(ENDPOINTS, ns, name, new)

    async def _delete(info, ns, name) -> None:
        try:
            await client.delete(info, ns, name)
        except ClientError as e:
            if e.code != 404:
                raise

    await run_workers(queue, sync, workers=4, name="endpointslice")
