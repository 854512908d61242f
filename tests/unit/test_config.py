"""`skiff up` settings are checked before anything is created: each problem names its flag and
the fix, and a bad flag leaves nothing behind."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from skiff.config import ClusterConfig, pool_range

REPO = Path(__file__).resolve().parents[2]


def test_the_defaults_are_fine():
    assert ClusterConfig().problems() == []
    assert ClusterConfig(nodes=1, node_cidr="172.30.5.0/29", pod_cidr="10.50.0.0/24", service_cidr="10.60.0.0/28",
                         lb_pool="172.30.5.5-172.30.5.6", dns_upstreams=["192.0.2.53:5353"]).problems() == []


@pytest.mark.parametrize("settings, problem", [
    ({"node_cidr": "172.18.0.0/33"}, "--node-cidr 172.18.0.0/33: not an IPv4 network in CIDR notation, e.g. 172.18.0.0/16"),
    ({"node_cidr": "172.18.0.5/16"}, "(host bits set: use the network address)"),
    ({"nodes": 0}, "--nodes must be at least 1"),
    ({"node_cidr": "172.30.0.0/29", "nodes": 6}, "--node-cidr 172.30.0.0/29 has room for 5 nodes, not 6"),
    ({"pod_cidr": "10.244.0.0/24", "nodes": 2},
     "--pod-cidr 10.244.0.0/24 has 1 /24 range, and each node needs one for its pods: use a /23 or larger"),
    ({"nodes": 300}, "use a /15 or larger for 300 nodes"),
    ({"service_cidr": "10.0.0.0/8", "pod_cidr": "172.20.0.0/16"},
     "--service-cidr 10.0.0.0/8 is too large: the mask must be >= 12"),
    ({"service_cidr": "10.96.0.0/29"}, "--service-cidr 10.96.0.0/29 is too small"),
    ({"pod_cidr": "10.96.0.0/16"}, "--pod-cidr 10.96.0.0/16 and --service-cidr 10.96.0.0/12 overlap"),
    ({"lb_pool": "172.18.255.250-172.18.255.200"}, "--lb-pool 172.18.255.250-172.18.255.200: not an address range"),
    ({"lb_pool": "10.244.7.0/28"}, "--lb-pool 10.244.7.0/28 overlaps --pod-cidr 10.244.0.0/16"),
    ({"lb_pool": "172.18.0.3-172.18.0.9"},
     "--lb-pool 172.18.0.3-172.18.0.9 includes 172.18.0.3, which the host or a node uses: start the pool above 172.18.0.4"),
    ({"dns_upstreams": ["dns.example.test"]}, "--dns-upstream dns.example.test: not IP[:PORT]"),
    ({"node_grace_seconds": 0}, "--node-grace must be more than 0 seconds"),
])
def test_each_problem_names_its_flag_and_the_fix(settings, problem):
    problems = ClusterConfig(**settings).problems()
    assert any(problem in p for p in problems), problems


def test_pool_forms():
    assert [str(a) for a in pool_range("172.18.255.200-172.18.255.202")] == ["172.18.255.200", "172.18.255.202"]
    assert [str(a) for a in pool_range("10.1.0.0/29")] == ["10.1.0.1", "10.1.0.6"]


def test_skiff_up_refuses_bad_flags_before_creating_anything(tmp_path):
    env = {**os.environ, "SKIFF_HOME": str(tmp_path), "KUBECONFIG": str(tmp_path / "kubeconfig")}
    proc = subprocess.run([sys.executable, "-m", "skiff", "up", "--name", "badflags", "--pod-cidr", "10.0.0.0/30",
                           "--lb-pool", "nope"], capture_output=True, text=True, env=env, cwd=REPO, timeout=30)
    assert proc.returncode == 1
    assert proc.stderr.startswith("ERROR: --pod-cidr 10.0.0.0/30 has 0 /24 ranges")
    assert "--lb-pool nope: not an address range" in proc.stderr and "Traceback" not in proc.stderr
    assert list(tmp_path.iterdir()) == []
