"""Names of everything a cluster creates in the kernel, derived from the cluster's name.

Every namespace, link and route carries the cluster's identity so that `skiff down` and crash
cleanup can find them without any state file:

- node network namespace: ``skiff-<node name>``; node names already start with ``<cluster>-``
  (``demo-control-plane``, ``demo-worker``, ``demo-worker2``), giving ``skiff-demo-worker``.
- pod network namespace: ``<node netns>.<namespace>.<pod name>.<uid prefix>``. The dot cannot occur
  in cluster or node names, so the part before the first dot always names the node exactly.
- host links: ``sk<tag>br`` (the node network's parent bridge) and ``sk<tag>h`` (the host's macvlan
  on it), where the tag is 5 hex digits of sha1(cluster name), because link names are limited to
  15 bytes. Both also carry the link alias ``skiff:<cluster>``, so a tag collision between two
  clusters is detected instead of one cluster deleting the other's links. A node's ``eth0`` is
  created inside its namespace and goes with it.
- host routes are tagged with protocol `ROUTE_PROTO`; the unreachable service route also has a
  per-cluster metric, so that two clusters sharing a service range each own their own route.
"""

from __future__ import annotations

import hashlib
import re

NETNS_PREFIX = "skiff-"
# Routing protocol id for routes Skiff installs (iproute2 leaves 95 unassigned).
ROUTE_PROTO = 95
IFNAMSIZ = 15
# Linux limits a file name to 255 bytes; /run/netns/<name> and /etc/netns/<name> must fit.
_MAX_NETNS_NAME = 200


def cluster_tag(cluster: str) -> str:
    return hashlib.sha1(cluster.encode()).hexdigest()[:5]


def link_alias(cluster: str) -> str:
    return f"skiff:{cluster}"


def link_prefix(cluster: str) -> str:
    return f"sk{cluster_tag(cluster)}"


def bridge_name(cluster: str) -> str:
    return f"{link_prefix(cluster)}br"


def host_link_name(cluster: str) -> str:
    """The host's macvlan on the node network, which carries the host's address and routes."""
    return f"{link_prefix(cluster)}h"


def service_route_metric(cluster: str) -> int:
    return 1_000_000 + int(cluster_tag(cluster), 16)


def node_netns_name(node_name: str) -> str:
    return f"{NETNS_PREFIX}{node_name}"


def pod_netns_name(node_netns: str, namespace: str, pod_name: str, pod_uid: str) -> str:
    uid = re.sub(r"[^0-9a-zA-Z]", "", pod_uid)[:8] or "0"
    readable = f"{node_netns}.{namespace}.{pod_name}"[: _MAX_NETNS_NAME - len(uid) - 1]
    return f"{readable}.{uid}"


def pod_veth_name(pod_netns: str) -> str:
    """Node-side end of a pod's veth; only has to be unique inside its node's namespace."""
    return "veth" + hashlib.sha1(pod_netns.encode()).hexdigest()[:8]


def node_of_netns(netns: str) -> str:
    """The node netns a pod netns belongs to (a node netns maps to itself)."""
    return netns.split(".", 1)[0]


def is_pod_netns(netns: str) -> bool:
    return "." in netns


def belongs_to_cluster(cluster: str, netns: str) -> bool:
    """True for the node and pod namespaces of `cluster`, and for no other cluster's.

    Matches the node names ClusterConfig.node_name produces; since "-worker<digits>" and
    "-control-plane" are fixed suffixes, cluster "a" never claims cluster "a-worker"'s namespaces.
    """
    node_part = node_of_netns(netns)
    return re.fullmatch(rf"{re.escape(NETNS_PREFIX + cluster)}-(control-plane|worker\d*)", node_part) is not None
