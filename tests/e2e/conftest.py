"""Fixtures shared by the end-to-end tests."""

from __future__ import annotations

import pytest

from tests.support import Cluster, ControlPlane, unique_name, wait_for


@pytest.fixture(scope="module")
def cp():
    """A control plane without nodes (API server and controllers), one per test module; a module
    that needs other settings defines its own `cp`."""
    plane = ControlPlane()
    try:
        plane.start()
        yield plane
    finally:
        plane.cleanup()


@pytest.fixture(scope="module")
def cluster():
    """A two-node cluster, one per test module; a module that needs more nodes or other settings
    defines its own `cluster`."""
    c = Cluster(nodes=2).up()
    try:
        yield c
    finally:
        c.down()


@pytest.fixture
def kubectl(cp):
    return cp.kubectl


def _fresh_namespace(kubectl, prefix: str):
    """A fresh namespace, deleted afterwards. As on a real cluster, controllers give it the `default`
    ServiceAccount and the kube-root-ca.crt ConfigMap a moment after it is made: it is handed over
    once both are there (pods need the one, tests that watch ConfigMaps must not see the other)."""
    name = unique_name(prefix)
    kubectl("create", "namespace", name)
    try:
        for kind, obj in (("serviceaccount", "default"), ("configmap", "kube-root-ca.crt")):
            wait_for(lambda kind=kind, obj=obj: kubectl.run("get", kind, obj, "-n", name,
                                                            check=False).returncode == 0, 10)
        yield name
    finally:
        kubectl("delete", "namespace", name, "--wait=false", check=False)


@pytest.fixture
def ns(kubectl):
    """A fresh namespace of the module's control plane (see _fresh_namespace)."""
    yield from _fresh_namespace(kubectl, "ns")


@pytest.fixture
def cluster_ns(cluster):
    """A fresh namespace of the module's cluster (see _fresh_namespace)."""
    yield from _fresh_namespace(cluster.kubectl, "ns")
