import base64

import pytest

from skiff.node.envvars import (
    EnvError,
    container_env,
    expand,
    expand_command,
    field_ref_value,
    service_env,
    services_for_pod,
)


def svc(name, ns, ip, ports):
    return {"metadata": {"name": name, "namespace": ns}, "spec": {"clusterIP": ip, "ports": ports}}


KUBERNETES = svc("kubernetes", "default", "10.96.0.1", [{"name": "https", "port": 443, "protocol": "TCP"}])
WEB = svc("my-web", "shop", "10.96.5.6", [{"name": "http", "port": 80, "protocol": "TCP"},
                                          {"name": "dns-udp", "port": 53, "protocol": "UDP"}])
HEADLESS = svc("headless", "shop", "None", [{"port": 80}])
OTHER_NS = svc("db", "other", "10.96.7.7", [{"port": 5432}])

POD = {"metadata": {"name": "p", "namespace": "shop", "uid": "u-1", "labels": {"app": "web"},
                    "annotations": {"team": "a"}},
       "spec": {"nodeName": "n1", "serviceAccountName": "default"},
       "status": {"podIP": "10.244.1.5", "podIPs": [{"ip": "10.244.1.5"}], "hostIP": "172.18.0.3"}}


def test_service_links_names_and_values():
    env = service_env([WEB])
    assert env["MY_WEB_SERVICE_HOST"] == "10.96.5.6"
    assert env["MY_WEB_SERVICE_PORT"] == "80"
    assert env["MY_WEB_SERVICE_PORT_HTTP"] == "80"
    assert env["MY_WEB_SERVICE_PORT_DNS_UDP"] == "53"
    assert env["MY_WEB_PORT"] == "tcp://10.96.5.6:80"
    assert env["MY_WEB_PORT_80_TCP"] == "tcp://10.96.5.6:80"
    assert env["MY_WEB_PORT_80_TCP_PROTO"] == "tcp"
    assert env["MY_WEB_PORT_80_TCP_PORT"] == "80"
    assert env["MY_WEB_PORT_80_TCP_ADDR"] == "10.96.5.6"
    assert env["MY_WEB_PORT_53_UDP"] == "udp://10.96.5.6:53"


def test_services_for_pod_namespace_headless_and_links_off():
    all_svcs = [KUBERNETES, WEB, HEADLESS, OTHER_NS]
    names = [s["metadata"]["name"] for s in services_for_pod(all_svcs, "shop", True)]
    assert names == ["kubernetes", "my-web"]
    names = [s["metadata"]["name"] for s in services_for_pod(all_svcs, "shop", False)]
    assert names == ["kubernetes"]
    env = container_env({**POD, "spec": {**POD["spec"], "enableServiceLinks": False}}, {"name": "c"},
                        all_svcs, {}, {})
    assert env["KUBERNETES_SERVICE_HOST"] == "10.96.0.1"
    assert env["KUBERNETES_SERVICE_PORT_HTTPS"] == "443"
    assert "MY_WEB_SERVICE_HOST" not in env


def test_field_refs():
    assert field_ref_value(POD, "metadata.name") == "p"
    assert field_ref_value(POD, "metadata.namespace") == "shop"
    assert field_ref_value(POD, "metadata.uid") == "u-1"
    assert field_ref_value(POD, "metadata.labels['app']") == "web"
    assert field_ref_value(POD, "metadata.annotations['team']") == "a"
    assert field_ref_value(POD, "metadata.labels['missing']") == ""
    assert field_ref_value(POD, "spec.nodeName") == "n1"
    assert field_ref_value(POD, "spec.serviceAccountName") == "default"
    assert field_ref_value(POD, "status.podIP") == "10.244.1.5"
    assert field_ref_value(POD, "status.podIPs") == "10.244.1.5"
    assert field_ref_value(POD, "status.hostIP") == "172.18.0.3"


def test_env_precedence_configmaps_secrets_and_expansion():
    c = {"name": "c",
         "envFrom": [{"configMapRef": {"name": "cfg"}, "prefix": "CFG_"}, {"secretRef": {"name": "sec"}}],
         "env": [{"name": "GREETING", "value": "hi $(CFG_who) at $(MY_WEB_SERVICE_HOST) $$(x) $(NOPE)"},
                 {"name": "PASSWORD", "valueFrom": {"secretKeyRef": {"name": "sec", "key": "password"}}},
                 {"name": "MODE", "valueFrom": {"configMapKeyRef": {"name": "cfg", "key": "mode"}}},
                 {"name": "OPT", "valueFrom": {"configMapKeyRef": {"name": "gone", "key": "k", "optional": True}}},
                 {"name": "MY_WEB_SERVICE_HOST", "value": "overridden"},
                 {"name": "MEM", "valueFrom": {"resourceFieldRef": {"resource": "limits.memory",
                                                                   "divisor": "1Mi"}}}],
         "resources": {"limits": {"memory": "128Mi"}}}
    cms = {"cfg": {"data": {"who": "bob", "mode": "fast"}}, "gone": None}
    secs = {"sec": {"data": {"password": base64.b64encode(b"s3cret").decode()}}}
    env = container_env(POD, c, [KUBERNETES, WEB], cms, secs)
    assert env["CFG_who"] == "bob"
    assert env["password"] == "s3cret"
    assert env["GREETING"] == "hi bob at 10.96.5.6 $(x) $(NOPE)"
    assert env["PASSWORD"] == "s3cret" and env["MODE"] == "fast"
    assert "OPT" not in env
    assert env["MY_WEB_SERVICE_HOST"] == "overridden"  # the container's own definition wins
    assert env["MEM"] == "128"


def test_missing_references_fail_like_kubelet():
    c = {"name": "c", "env": [{"name": "X", "valueFrom": {"configMapKeyRef": {"name": "cfg", "key": "k"}}}]}
    with pytest.raises(EnvError, match='configmap "cfg" not found'):
        container_env(POD, c, [], {"cfg": None}, {})
    with pytest.raises(EnvError, match="couldn't find key k in ConfigMap shop/cfg"):
        container_env(POD, c, [], {"cfg": {"data": {}}}, {})


def test_expand_and_command():
    assert expand("$(A)-$(B)-$$-$(", {"A": "1"}) == "1-$(B)-$-$("
    cmd, args = expand_command({"command": ["echo", "$(MSG)"], "args": ["$(HOSTX)"]}, {"MSG": "hello"})
    assert cmd == ["echo", "hello"] and args == ["$(HOSTX)"]
