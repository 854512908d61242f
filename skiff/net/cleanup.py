"""Removing everything a cluster put into the kernel, found by name alone (works after a crash).

Order matters: processes first (a namespace lives on while a process is inside it, and with it
its veths), then links on the host, then the namespaces, then the tagged routes and the
/etc/netns files that gave pods their resolv.conf and hosts.
"""

from __future__ import annotations

import asyncio
import json
import os
import shutil

from skiff.net import names
from skiff.net.ipcmd import ip_batch_sync, run_sync
from skiff.net.ns import ETC_NETNS_DIR, PIN_ROOT, kill_netns_processes, list_netns, remove_pin_dir


def cluster_netns(cluster: str) -> list[str]:
    return [ns for ns in list_netns() if names.belongs_to_cluster(cluster, ns)]


def cluster_links(cluster: str) -> list[str]:
    """Host links of the cluster: named with its tag *and* carrying its alias."""
    prefix, alias = names.link_prefix(cluster), names.link_alias(cluster)
    found = []
    for link in sorted(os.listdir("/sys/class/net")):
        if not link.startswith(prefix):
            continue
        try:
            with open(f"/sys/class/net/{link}/ifalias") as f:
                if f.read().strip() == alias:
                    found.append(link)
        except FileNotFoundError:
            continue
    return found


def cluster_service_routes(cluster: str) -> list[str]:
    _, out, _ = run_sync(["ip", "-4", "-j", "route", "show", "table", "main", "type", "unreachable"])
    metric = names.service_route_metric(cluster)
    return [
        route["dst"]
        for route in json.loads(out or "[]")
        if route.get("metric") == metric and str(route.get("protocol")) == str(names.ROUTE_PROTO)
    ]


def destroy_cluster_network_sync(cluster_name: str) -> None:
    """Remove the cluster's namespaces, links, routes, /etc/netns entries and processes."""
    namespaces = cluster_netns(cluster_name)
    kill_netns_processes(namespaces)
    links = cluster_links(cluster_name)
    bridges = [link for link in links if link == names.bridge_name(cluster_name)]
    # The bridge last: deleting it also removes every macvlan on it at once, the nodes' eth0 in
    # their namespaces included, while a deleted namespace would release its devices only later.
    ip_batch_sync([f"link del {link}" for link in links if link not in bridges] +
                  [f"link del {link}" for link in bridges], force=True)
    # Pods before nodes, so a node's pod veths are gone with the pod namespaces.
    namespaces.sort(key=lambda ns: (not names.is_pod_netns(ns), ns))
    ip_batch_sync([f"netns del {ns}" for ns in namespaces], force=True)
    metric = names.service_route_metric(cluster_name)
    ip_batch_sync([f"route del unreachable {dst} metric {metric}" for dst in cluster_service_routes(cluster_name)],
                  force=True)
    for ns in namespaces:
        shutil.rmtree(os.path.join(ETC_NETNS_DIR, ns), ignore_errors=True)
    # A crash between writing /etc/netns/<pod> and `ip netns add` leaves a directory without a netns.
    if os.path.isdir(ETC_NETNS_DIR):
        for entry in os.listdir(ETC_NETNS_DIR):
            if names.belongs_to_cluster(cluster_name, entry):
                shutil.rmtree(os.path.join(ETC_NETNS_DIR, entry), ignore_errors=True)
    # Pin directories of the nodes' pod namespaces (their pins were detached with the namespaces'
    # processes above, or go now with the tmpfs).
    if os.path.isdir(PIN_ROOT):
        for entry in os.listdir(PIN_ROOT):
            if names.belongs_to_cluster(cluster_name, entry):
                remove_pin_dir(entry)
    # The batches above ignore "already gone"; anything still here failed for a real reason.
    left = cluster_netns(cluster_name) + cluster_links(cluster_name) + cluster_service_routes(cluster_name)
    if left:
        raise RuntimeError(f"could not remove {', '.join(left)} of cluster {cluster_name!r}; run `skiff down` again")


async def destroy_cluster_network(cluster_name: str) -> None:
    """Async form of destroy_cluster_network_sync; safe to run twice and after a crash."""
    await asyncio.to_thread(destroy_cluster_network_sync, cluster_name)
