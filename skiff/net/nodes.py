"""Building a cluster's network in the kernel: node network links, node namespaces, routes, sysctls.

    plan = await create_cluster_network(cfg)      # `skiff up`, as root, in the host namespaces
    netns = node_netns(cfg, 0)                    # "skiff-demo-control-plane"
    argv = run_in_netns_argv(netns, [...agent...])  # start that node's agent inside it

Undone by skiff.net.cleanup.destroy_cluster_network(cfg.name).
"""

from __future__ import annotations

import asyncio
import json

from skiff.config import ClusterConfig
from skiff.net import names
from skiff.net.cleanup import destroy_cluster_network_sync
from skiff.net.ipcmd import ip_batch, run
from skiff.net.ns import ensure_pin_dir, netns_exists, set_sysctls
from skiff.net.plan import ClusterNetworkPlan, overlapping_routes, plan_cluster_network


class NetworkConflict(RuntimeError):
    """The machine already uses an address range or link name the cluster needs."""


def node_netns(cfg: ClusterConfig, index: int) -> str:
    """Name of node `index`'s (0-based) network namespace."""
    return names.node_netns_name(cfg.node_name(index))


def _link_alias(link: str) -> str | None:
    try:
        with open(f"/sys/class/net/{link}/ifalias") as f:
            return f.read().strip()
    except FileNotFoundError:
        return None


def cluster_network_exists(cfg: ClusterConfig) -> bool:
    plan = plan_cluster_network(cfg)
    alias = names.link_alias(cfg.name)
    return _link_alias(plan.bridge) == alias and _link_alias(plan.host_link) == alias and all(
        netns_exists(n.netns) for n in plan.nodes
    )


async def create_cluster_network(cfg: ClusterConfig) -> ClusterNetworkPlan:
    """Create the cluster's network, or leave it alone if it is already complete.

    A partial network (an earlier crash half-way) is removed and built again. Raises
    NetworkConflict when the cluster's ranges are already routed elsewhere on this machine.
    """
    plan = plan_cluster_network(cfg)
    alias = _link_alias(plan.bridge)
    if alias is not None and alias != names.link_alias(cfg.name):
        raise NetworkConflict(
            f"link {plan.bridge} already exists and belongs to {alias or 'something else'}; "
            f"choose another cluster name"
        )
    if cluster_network_exists(cfg):
        return plan
    if alias is not None or any(netns_exists(n.netns) for n in plan.nodes):
        await asyncio.to_thread(destroy_cluster_network_sync, cfg.name)

    _, out, _ = await run(["ip", "-4", "-j", "route", "show", "table", "main"])
    conflicts = overlapping_routes(cfg, json.loads(out or "[]"))
    if conflicts:
        raise NetworkConflict(
            "; ".join(conflicts) + ". Pick free ranges for the cluster (node, pod and service CIDRs)."
        )

    try:
        await ip_batch(plan.host_lines)
        await asyncio.gather(
            *(ip_batch(n.lines, n.netns) for n in plan.nodes),
            *(asyncio.to_thread(set_sysctls, n.netns, n.sysctls) for n in plan.nodes),
        )
        for n in plan.nodes:
            ensure_pin_dir(n.netns)  # where the node's pod sandboxes pin their namespaces
    except BaseException:
        await asyncio.to_thread(destroy_cluster_network_sync, cfg.name)
        raise
    return plan

