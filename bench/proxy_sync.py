"""Proxy sync cost at scale: full sync of 5,000 Services / 25,000 endpoints vs one endpoint change.

Run as root: .venv/bin/python bench/proxy_sync.py [--services N] [--endpoints-per-service M] [--changes K]
Creates a scratch network namespace with a random name and deletes it at the end.
Prints the full-sync time, the partial-sync times (median and p99, split into computing the
desired ruleset with RulesetBuilder.update, which rebuilds only the Service marked dirty as the
node agent's informer handlers do, and applying the diff), and their ratio to the full sync.
"""

from __future__ import annotations

import argparse
import asyncio
import copy
import ipaddress
import os
import secrets
import statistics
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.cluster_workloads import pct  # noqa: E402
from skiff.proxy.model import NodeContext  # noqa: E402
from skiff.proxy.nft import NftApplier  # noqa: E402
from skiff.proxy.rules import RulesetBuilder, slice_service_key  # noqa: E402

POD_CIDR = "10.77.0.0/16"
SERVICE_CIDR = "10.78.0.0/16"


def make_objects(n_services: int, eps_per_service: int) -> tuple[list[dict], list[dict]]:
    svc_net = ipaddress.ip_network(SERVICE_CIDR)
    pod_net = ipaddress.ip_network(POD_CIDR)
    services, slices = [], []
    pod_index = 2
    for i in range(n_services):
        name = f"svc{i}"
        kind = ("ClusterIP", "NodePort", "LoadBalancer")[i % 3]
        port = {"name": "http", "port": 80, "protocol": "TCP", "targetPort": 8080}
        if kind != "ClusterIP":
            port["nodePort"] = 30000 + i
        svc = {
            "metadata": {"namespace": f"ns{i % 50}", "name": name, "resourceVersion": "1"},
            "spec": {"type": kind, "clusterIP": str(svc_net[i + 10]), "ports": [port]},
            "status": {},
        }
        if kind == "LoadBalancer":
            svc["status"] = {"loadBalancer": {"ingress": [{"ip": str(ipaddress.ip_address("10.79.0.0") + i)}]}}
        services.append(svc)
        eps = []
        for _ in range(eps_per_service):
            eps.append(
                {
                    "addresses": [str(pod_net[pod_index])],
                    "nodeName": f"node{pod_index % 3}",
                    "conditions": {"ready": True},
                }
            )
            pod_index += 1
        slices.append(
            {
                "metadata": {
                    "namespace": f"ns{i % 50}",
                    "name": f"{name}-abcde",
                    "resourceVersion": "1",
                    "labels": {"kubernetes.io/service-name": name},
                },
                "addressType": "IPv4",
                "ports": [{"name": "http", "port": 8080, "protocol": "TCP"}],
                "endpoints": eps,
            }
        )
    return services, slices


async def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--services", type=int, default=5000)
    ap.add_argument("--endpoints-per-service", type=int, default=5)
    ap.add_argument("--changes", type=int, default=20)
    args = ap.parse_args()
    if os.geteuid() != 0:
        sys.exit("needs root (creates a network namespace)")

    services, slices = make_objects(args.services, args.endpoints_per_service)
    node = NodeContext("node0", ("172.31.250.2",), POD_CIDR, service_cidr=SERVICE_CIDR)
    ns = f"skbench-{secrets.token_hex(3)}"
    subprocess.run(["ip", "netns", "add", ns], check=True)
    try:
        applier = NftApplier("skiff-proxy", netns=ns)
        builder = RulesetBuilder(node)
        t0 = time.perf_counter()
        rs = builder.build(services, slices)
        build_full = time.perf_counter() - t0
        res = await applier.sync(rs)
        assert res.kind == "full"
        apply_full = res.seconds
        print(
            f"objects: {len(services)} services, {sum(len(s['endpoints']) for s in slices)} endpoints; "
            f"{len(rs.chains)} chains, {sum(len(e) for e in rs.elements.values())} map/set elements"
        )
        print(f"full sync:    build {build_full * 1000:8.1f} ms   apply {apply_full * 1000:8.1f} ms")

        services_by_key = {(s["metadata"]["namespace"], s["metadata"]["name"]): s for s in services}
        slices_by_service = {slice_service_key(es): [es] for es in slices}
        builds, applies, totals, sizes, vias = [], [], [], [], []
        next_ip = ipaddress.ip_network(POD_CIDR)[60000]
        for k in range(args.changes):
            # One endpoint of one Service is replaced (a pod restarted with a new IP).
            idx = (k * 997) % len(slices)
            new_slice = copy.deepcopy(slices[idx])
            new_slice["endpoints"][k % len(new_slice["endpoints"])]["addresses"] = [str(next_ip + k)]
            new_slice["metadata"]["resourceVersion"] = str(2 + k)
            slices[idx] = new_slice
            # As the node agent's proxy loop does: its informer handlers mark the one Service dirty.
            key = slice_service_key(new_slice)
            slices_by_service[key] = [new_slice]
            t0 = time.perf_counter()
            rs = builder.update([key], services_by_key.get, lambda k: slices_by_service.get(k, []))
            t1 = time.perf_counter()
            res = await applier.sync(rs)
            t2 = time.perf_counter()
            assert res.kind == "partial", res.kind
            builds.append(t1 - t0)
            applies.append(t2 - t1)
            totals.append(t2 - t0)
            sizes.append(res.transaction.count("\n"))
            vias.append(res.via)

        def line(label: str, vals: list[float]) -> str:
            return f"{label:<18} median {statistics.median(vals) * 1000:7.1f} ms   p99 {pct(vals, 0.99) * 1000:7.1f} ms"

        paths = ", ".join(f"{vias.count(v)} via {v}" for v in sorted(set(vias)))
        print(
            f"partial sync over {args.changes} one-endpoint changes "
            f"({statistics.median(sizes):.0f} nft lines each; {paths}):"
        )
        print(line("  build", builds))
        print(line(f"  apply ({'/'.join(sorted(set(vias)))})", applies))
        print(line("  total", totals))
        full_total = build_full + apply_full
        print(
            f"ratio partial/full: apply {statistics.median(applies) / apply_full:.4f}  "
            f"total {statistics.median(totals) / full_total:.4f}  "
            f"(full is {full_total / statistics.median(totals):.0f}x slower)"
        )
        target = statistics.median(applies) < 0.1
        print(f"target partial apply < 100 ms: {'met' if target else 'NOT met'}")
    finally:
        subprocess.run(["ip", "netns", "del", ns], check=False)


if __name__ == "__main__":
    asyncio.run(main())
