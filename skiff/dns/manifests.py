"""The cluster DNS add-on as API objects, shaped like the ones kubeadm installs for CoreDNS:
ServiceAccount `coredns`, ConfigMap `coredns` (the Corefile, mounted at /etc/coredns and read with
-conf, so that editing it changes the server as the docs describe), Deployment `coredns` and
Service `kube-dns` in kube-system, labelled `k8s-app: kube-dns`, so that tutorials that inspect
them find what they expect.

There is no RBAC API in Skiff, so the ClusterRole/ClusterRoleBinding are left out, and no
metrics port (9153), since the server exports no Prometheus metrics.
"""

from __future__ import annotations

from skiff.config import ClusterConfig

NAMESPACE = "kube-system"
LABELS = {"k8s-app": "kube-dns"}
IMAGE = "skiff/dns"
HEALTH_PORT = 8080
READY_PORT = 8181
# As the Corefile kubeadm and kind install (`kubernetes ... { ttl 30 }`); CoreDNS's own default is 5.
TTL = 30


def dns_args(cfg: ClusterConfig) -> list[str]:
    args = ["--domain", cfg.cluster_domain, "--service-cidr", cfg.service_cidr, "--pod-cidr", cfg.pod_cidr,
            "--dns-ip", cfg.dns_service_ip, "--ttl", str(TTL)]
    for upstream in cfg.dns_upstreams:
        args += ["--upstream", upstream]
    return args


def deployment(cfg: ClusterConfig, replicas: int = 2) -> dict:
    container = {
        "name": "coredns",
        "image": IMAGE,
        "imagePullPolicy": "IfNotPresent",
        "args": [*dns_args(cfg), "-conf", "/etc/coredns/Corefile"],
        "volumeMounts": [{"name": "config-volume", "mountPath": "/etc/coredns", "readOnly": True}],
        "ports": [
            {"name": "dns", "containerPort": 53, "protocol": "UDP"},
            {"name": "dns-tcp", "containerPort": 53, "protocol": "TCP"},
        ],
        "livenessProbe": {
            "httpGet": {"path": "/health", "port": HEALTH_PORT, "scheme": "HTTP"},
            "initialDelaySeconds": 60, "timeoutSeconds": 5, "successThreshold": 1, "failureThreshold": 5,
        },
        "readinessProbe": {
            "httpGet": {"path": "/ready", "port": READY_PORT, "scheme": "HTTP"},
            "periodSeconds": 1, "timeoutSeconds": 1, "successThreshold": 1, "failureThreshold": 3,
        },
        "resources": {"requests": {"cpu": "100m", "memory": "70Mi"}, "limits": {"memory": "170Mi"}},
    }
    return {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {"name": "coredns", "namespace": NAMESPACE, "labels": dict(LABELS)},
        "spec": {
            "replicas": replicas,
            "selector": {"matchLabels": dict(LABELS)},
            "strategy": {"type": "RollingUpdate", "rollingUpdate": {"maxUnavailable": 1}},
            "template": {
                "metadata": {"labels": dict(LABELS)},
                "spec": {
                    "serviceAccountName": "coredns",
                    # The server forwards to the node's resolvers, so it must not use itself.
                    "dnsPolicy": "Default",
                    "nodeSelector": {"kubernetes.io/os": "linux"},
                    "tolerations": [
                        {"key": "CriticalAddonsOnly", "operator": "Exists"},
                        {"key": "node-role.kubernetes.io/control-plane", "effect": "NoSchedule"},
                    ],
                    "affinity": {"podAntiAffinity": {"preferredDuringSchedulingIgnoredDuringExecution": [{
                        "weight": 100,
                        "podAffinityTerm": {
                            "labelSelector": {"matchExpressions": [
                                {"key": "k8s-app", "operator": "In", "values": ["kube-dns"]}]},
                            "topologyKey": "kubernetes.io/hostname",
                        },
                    }]}},
                    # Longer than the lame-duck period (5 s), so answers never stop abruptly.
                    "terminationGracePeriodSeconds": 30,
                    "containers": [container],
                    "volumes": [{"name": "config-volume", "configMap": {
                        "name": "coredns", "items": [{"key": "Corefile", "path": "Corefile"}]}}],
                },
            },
        },
    }


def service(cfg: ClusterConfig) -> dict:
    ip = cfg.dns_service_ip
    return {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": {
            "name": "kube-dns",
            "namespace": NAMESPACE,
            "labels": {**LABELS, "kubernetes.io/cluster-service": "true", "kubernetes.io/name": "CoreDNS"},
        },
        "spec": {
            "selector": dict(LABELS),
            "clusterIP": ip,
            "clusterIPs": [ip],
            "ports": [
                {"name": "dns", "port": 53, "protocol": "UDP", "targetPort": 53},
                {"name": "dns-tcp", "port": 53, "protocol": "TCP", "targetPort": 53},
            ],
        },
    }


def service_account() -> dict:
    return {"apiVersion": "v1", "kind": "ServiceAccount",
            "metadata": {"name": "coredns", "namespace": NAMESPACE}}


def corefile(domain: str, ttl: int, upstreams: list[str]) -> str:
    """The Corefile kubeadm (and kind) install, with Skiff's upstreams (or the pod's resolv.conf).
    Here rather than in skiff.dns.corefile, which needs dnspython: `skiff up` imports this module."""
    forward = " ".join(upstreams) if upstreams else "/etc/resolv.conf"
    return f""".:53 {{
    errors
    health {{
       lameduck 5s
    }}
    ready
    kubernetes {domain} in-addr.arpa ip6.arpa {{
       pods insecure
       fallthrough in-addr.arpa ip6.arpa
       ttl {ttl}
    }}
    prometheus :9153
    forward . {forward} {{
       max_concurrent 1000
    }}
    cache 30 {{
       disable success {domain}
       disable denial {domain}
    }}
    loop
    reload
    loadbalance
}}
"""


def config_map(cfg: ClusterConfig) -> dict:
    return {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "coredns", "namespace": NAMESPACE},
            "data": {"Corefile": corefile(cfg.cluster_domain, TTL, list(cfg.dns_upstreams))}}


def system_objects(cfg: ClusterConfig, replicas: int = 2) -> list[dict]:
    """Objects to create at cluster start, in creation order."""
    return [service_account(), config_map(cfg), service(cfg), deployment(cfg, replicas)]
