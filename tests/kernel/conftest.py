"""Fixtures shared by the kernel tests."""

from __future__ import annotations

import os
import sys

import pytest

from skiff.net import names
from skiff.net.cleanup import destroy_cluster_network_sync
from skiff.net.nodes import create_cluster_network
from skiff.net.ns import list_netns

sys.path.insert(0, os.path.dirname(__file__))
from test_node_network import leftovers, random_config  # noqa: E402


async def _cluster_network(nodes: int):
    """A cluster network of `nodes` nodes on random ranges, removed afterwards (and checked to be gone)."""
    cfg = random_config(nodes=nodes)
    try:
        await create_cluster_network(cfg)
        yield cfg
    finally:
        destroy_cluster_network_sync(cfg.name)
        assert leftovers(cfg) == []
        assert not [ns for ns in list_netns()
                    if names.belongs_to_cluster(cfg.name, ns) or names.cluster_tag(cfg.name) in ns or cfg.name in ns]


@pytest.fixture
async def network():
    """A one-node cluster network."""
    async for cfg in _cluster_network(1):
        yield cfg


@pytest.fixture
async def cluster():
    """A two-node cluster network (for traffic between nodes)."""
    async for cfg in _cluster_network(2):
        yield cfg
