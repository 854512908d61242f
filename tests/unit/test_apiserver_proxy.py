"""Where the API server's pods/proxy and services/proxy send a request (skiff.apiserver.proxy)."""

from __future__ import annotations

import pytest

from skiff.apiserver.handlers import parse_target
from skiff.apiserver.proxy import pod_port, service_endpoints, split_scheme_name_port


def test_ids_name_a_scheme_and_a_port_or_not():
    assert split_scheme_name_port("web") == ("http", "web", "")
    assert split_scheme_name_port("web:8080") == ("http", "web", "8080")
    assert split_scheme_name_port("https:web:443") == ("https", "web", "443")
    for bad in ("ftp:web:21", ":80", "a:b:c:d"):
        with pytest.raises(ValueError):
            split_scheme_name_port(bad)


def test_the_proxied_path_keeps_its_slashes_even_for_a_pod_named_proxy():
    t = parse_target("", "v1", "namespaces/default/pods/proxy/proxy/a/b/")
    assert (t.name, t.subresource, t.path) == ("proxy", "proxy", "a/b/")
    assert parse_target("", "v1", "namespaces/default/services/web:80/proxy").path == ""


def test_a_pod_without_a_port_is_reached_on_its_first_declared_one():
    pod = {"spec": {"containers": [{"name": "a"}, {"name": "b", "ports": [{"containerPort": 8080}]}]}}
    assert pod_port(pod, "") == "8080" and pod_port(pod, "9000") == "9000"
    assert pod_port({"spec": {"containers": [{"name": "a"}]}}, "") == ""


def test_a_service_port_by_number_or_name_leads_to_its_ready_endpoints_target_port():
    svc = {"spec": {"ports": [{"name": "http", "port": 80}, {"name": "metrics", "port": 9090}]}}
    slices = [{"ports": [{"name": "http", "port": 8080}, {"name": "metrics", "port": 9100}],
               "endpoints": [{"addresses": ["10.244.0.5"], "conditions": {"ready": True}},
                             {"addresses": ["10.244.1.6"], "conditions": {"ready": False}}]}]
    assert service_endpoints(svc, slices, "80") == [("10.244.0.5", 8080)]
    assert service_endpoints(svc, slices, "metrics") == [("10.244.0.5", 9100)]
    assert service_endpoints(svc, slices, "81") == []
