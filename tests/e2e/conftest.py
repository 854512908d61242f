"""Fixtures shared by the end-to-end tests."""

from __future__ import annotations

import pytest

from tests.support import Cluster, ControlPlane


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
