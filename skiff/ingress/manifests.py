"""The objects `skiff up` creates so the cluster has an Ingress controller, as ingress-nginx's
deploy manifest does: its namespace, the IngressClass (default), the Deployment and its
LoadBalancer Service (whose address becomes every served Ingress's status)."""

from __future__ import annotations

from typing import Any

NAMESPACE = "skiff-system"
NAME = "skiff-ingress"
CLASS_NAME = "skiff"
CONTROLLER = "skiff.dev/ingress-controller"
IMAGE = "skiff/ingress-controller"
HEALTH_PORT = 10254
LABELS = {"app.kubernetes.io/name": NAME, "app.kubernetes.io/component": "controller",
          "app.kubernetes.io/part-of": "skiff"}


def system_objects(cfg: Any = None) -> list[dict]:
    """cfg (ClusterConfig) is accepted for symmetry with the other components; nothing here depends
    on the cluster's ranges."""
    probe = {"httpGet": {"path": "/healthz", "port": HEALTH_PORT, "scheme": "HTTP"},
             "periodSeconds": 2, "timeoutSeconds": 1, "failureThreshold": 3}
    return [
        {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": NAMESPACE}},
        {"apiVersion": "networking.k8s.io/v1", "kind": "IngressClass",
         "metadata": {"name": CLASS_NAME, "labels": dict(LABELS),
                      "annotations": {"ingressclass.kubernetes.io/is-default-class": "true"}},
         "spec": {"controller": CONTROLLER}},
        {"apiVersion": "apps/v1", "kind": "Deployment",
         "metadata": {"name": NAME, "namespace": NAMESPACE, "labels": dict(LABELS)},
         "spec": {"replicas": 1, "selector": {"matchLabels": dict(LABELS)},
                  "template": {"metadata": {"labels": dict(LABELS)},
                               "spec": {"containers": [{
                                   "name": "controller", "image": IMAGE,
                                   "args": ["--http-port", "80", "--https-port", "443",
                                            "--ingress-class", CLASS_NAME,
                                            "--publish-service", f"{NAMESPACE}/{NAME}"],
                                   "env": [{"name": "POD_NAMESPACE",
                                            "valueFrom": {"fieldRef": {"fieldPath": "metadata.namespace"}}}],
                                   "ports": [{"name": "http", "containerPort": 80, "protocol": "TCP"},
                                             {"name": "https", "containerPort": 443, "protocol": "TCP"},
                                             {"name": "health", "containerPort": HEALTH_PORT,
                                              "protocol": "TCP"}],
                                   "readinessProbe": probe,
                                   "livenessProbe": {**probe, "initialDelaySeconds": 5, "periodSeconds": 10},
                               }]}}}},
        {"apiVersion": "v1", "kind": "Service",
         "metadata": {"name": NAME, "namespace": NAMESPACE, "labels": dict(LABELS)},
         "spec": {"type": "LoadBalancer", "selector": dict(LABELS),
                  "ports": [{"name": "http", "port": 80, "targetPort": 80, "protocol": "TCP"},
                            {"name": "https", "port": 443, "targetPort": 443, "protocol": "TCP"}]}},
    ]
