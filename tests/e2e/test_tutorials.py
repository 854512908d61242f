"""Well-known tutorials, step by step as they are written, with the real kubectl: the Kubernetes
Basics tutorial (kubernetes-bootcamp) and minikube's hello-minikube (kicbase/echo-server).

Needs root: `skiff up` creates network namespaces, links and nftables tables.
"""

from __future__ import annotations

import json
import os
import re
import sys
import time

import pytest

from tests.support import curl, free_port, is_ready, wait_for

pytestmark = pytest.mark.skipif(os.geteuid() != 0, reason="needs root for network namespaces")


def ready_pods(k, selector: str) -> list[dict]:
    return [p for p in json.loads(k("get", "pods", "-l", selector, "-o", "json"))["items"]
            if is_ready(p) and not p["metadata"].get("deletionTimestamp")]


def answered(url: str) -> str | None:
    r = curl(url)
    return r.stdout if r.returncode == 0 and r.stdout else None


def test_kubernetes_basics(cluster):
    k = cluster.kubectl
    # Module 2: deploy, then reach the pod through kubectl proxy.
    k("create", "deployment", "kubernetes-bootcamp", "--image=gcr.io/google-samples/kubernetes-bootcamp:v1")
    pod = wait_for(lambda: ready_pods(k, "app=kubernetes-bootcamp"), 15)[0]["metadata"]["name"]
    port = free_port()
    proxy = k.popen("proxy", f"--port={port}")
    try:
        out = wait_for(lambda: answered(f"http://localhost:{port}/api/v1/namespaces/default/pods/{pod}:8080/proxy/"),
                       10)
        assert out == f"Hello Kubernetes bootcamp! | Running on: {pod} | v=1\n"
    finally:
        proxy.terminate()
        proxy.wait(5)
    # Module 3: logs and exec.
    assert "Kubernetes Bootcamp App Started At: " in k("logs", pod)
    assert "Running On: " + pod + " | Total Requests: 1 |" in k("logs", pod)
    assert k("exec", pod, "--", "curl", "-s", "http://localhost:8080").endswith(f"{pod} | v=1\n")
    # Module 4: a NodePort Service, reached on a node's IP.
    k("expose", "deployment/kubernetes-bootcamp", "--type=NodePort", "--port", "8080")
    node_port = k("get", "services/kubernetes-bootcamp", "-o", "go-template={{(index .spec.ports 0).nodePort}}")
    url = f"http://{cluster.cfg.node_ip(1)}:{node_port}"
    assert wait_for(lambda: answered(url), 10).startswith("Hello Kubernetes bootcamp! | Running on: kubernetes-bootcamp-")
    # Module 5: scale to 4; the Service spreads over the replicas.
    k("scale", "deployments/kubernetes-bootcamp", "--replicas=4")
    wait_for(lambda: len(ready_pods(k, "app=kubernetes-bootcamp")) == 4, 15)
    seen = {re.search(r"Running on: (\S+)", answered(url) or "").group(1) for _ in range(30)}
    assert len(seen) >= 2, seen
    # Module 6: update to v2, then to a tag that does not exist, and roll back.
    k("set", "image", "deployments/kubernetes-bootcamp", "kubernetes-bootcamp=docker.io/jocatalin/kubernetes-bootcamp:v2")
    assert "successfully rolled out" in k("rollout", "status", "deployments/kubernetes-bootcamp", "--timeout=60s")
    assert wait_for(lambda: (answered(url) or "").endswith("| v=2\n") or None, 10)
    k("set", "image", "deployments/kubernetes-bootcamp", "kubernetes-bootcamp=gcr.io/google-samples/kubernetes-bootcamp:v10")
    wait_for(lambda: "ImagePullBackOff" in k("get", "pods") or "ErrImagePull" in k("get", "pods"), 15)
    k("rollout", "undo", "deployments/kubernetes-bootcamp")
    assert "successfully rolled out" in k("rollout", "status", "deployments/kubernetes-bootcamp", "--timeout=60s")
    # As on Kubernetes, a container without a readiness probe (and, here, no declared port to wait for)
    # is Ready once started, so the newest pod may not listen yet for the first request or two.
    assert wait_for(lambda: (answered(url) or "").endswith("| v=2\n") or None, 10)


def test_hello_minikube(cluster):
    k = cluster.kubectl
    k("create", "deployment", "hello-minikube", "--image=kicbase/echo-server:1.0")
    k("expose", "deployment", "hello-minikube", "--type=NodePort", "--port=8080")
    pod = wait_for(lambda: ready_pods(k, "app=hello-minikube"), 15)[0]["metadata"]["name"]
    node_port = k("get", "svc", "hello-minikube", "-o", "jsonpath={.spec.ports[0].nodePort}")
    host = f"{cluster.cfg.node_ip(0)}:{node_port}"
    out = wait_for(lambda: answered(f"http://{host}/hello?x=1"), 10)
    assert out.startswith(f"Request served by {pod}\n\nHTTP/1.1 GET /hello?x=1\n\nHost: {host}\nAccept: */*\nUser-Agent: curl/")
    assert k("logs", pod).strip() == "Echo server listening on port 8080."
    # `kubectl get events` lists them in the order they happened, the scheduler's first.
    reasons = k("get", "events", "--field-selector", f"involvedObject.name={pod}", "-o", "jsonpath={.items[*].reason}")
    assert reasons.split()[:4] == ["Scheduled", "Pulled", "Created", "Started"], reasons


def test_using_source_ip(cluster):
    # kubernetes.io's "Using Source IP" tutorial, NodePort part: masqueraded by default, the client's
    # own address with externalTrafficPolicy Local, and only from the node that has the endpoint.
    k = cluster.kubectl
    k("create", "deployment", "source-ip-app", "--image=registry.k8s.io/echoserver:1.10")
    k("expose", "deployment", "source-ip-app", "--name=nodeport", "--port=80", "--target-port=8080", "--type=NodePort")
    pod = wait_for(lambda: ready_pods(k, "app=source-ip-app"), 15)[0]
    node_port = k("get", "-o", "jsonpath={.spec.ports[0].nodePort}", "services", "nodeport")
    nodes = [cluster.cfg.node_ip(i) for i in range(cluster.nodes)]

    def client_address(node: str) -> str | None:
        out = answered(f"http://{node}:{node_port}")
        m = re.search(r"^\tclient_address=(\S+)$", out or "", re.M)
        return m.group(1) if m else None

    host = str(cluster.cfg.host_ip)
    for node in nodes:
        seen = wait_for(lambda node=node: client_address(node), 10)
        assert seen != host  # SNAT: the node (or its pod gateway) talks to the pod
    out = answered(f"http://{nodes[0]}:{node_port}")
    assert out.startswith(f"\n\nHostname: {pod['metadata']['name']}\n\nPod Information:\n\t-no pod information available-")
    k("patch", "svc", "nodeport", "-p", '{"spec":{"externalTrafficPolicy":"Local"}}')
    local = next(i for i, n in enumerate(nodes) if cluster.cfg.node_name(i) == pod["spec"]["nodeName"])
    assert wait_for(lambda: client_address(nodes[local]) == host or None, 10)
    other = nodes[1 - local]
    r = curl(f"http://{other}:{node_port}", "--connect-timeout", "1")
    assert r.returncode != 0  # that node has no endpoint: it drops, as in the tutorial


TERMINATION_TUTORIAL = """
apiVersion: apps/v1
kind: Deployment
metadata:
  name: nginx-deployment
  labels:
    app: nginx
spec:
  replicas: 1
  selector:
    matchLabels:
      app: nginx
  template:
    metadata:
      labels:
        app: nginx
    spec:
      terminationGracePeriodSeconds: 120 # extra long grace period
      containers:
      - name: nginx
        image: nginx:latest
        ports:
        - containerPort: 80
        lifecycle:
          preStop:
            exec:
              command: [
                "/bin/sh", "-c", "sleep 180"
              ]
---
apiVersion: v1
kind: Service
metadata:
  name: nginx-service
spec:
  selector:
    app: nginx
  ports:
    - protocol: TCP
      port: 80
      targetPort: 80
"""


def test_termination_behavior_for_pods_and_their_endpoints(cluster):
    # kubernetes.io's "Explore Termination Behavior for Pods And Their Endpoints": the preStop hook
    # keeps the deleted pod Terminating, and its endpoint stays serving (but not ready) meanwhile.
    k = cluster.kubectl
    k("apply", "-f", "-", input=TERMINATION_TUTORIAL)
    old = wait_for(lambda: ready_pods(k, "app=nginx"), 15)[0]["metadata"]["name"]
    k("delete", "pod", old, "--wait=false")

    def conditions() -> dict:
        slices = json.loads(k("get", "endpointslice", "-o", "json", "-l", "kubernetes.io/service-name=nginx-service"))
        return {e["targetRef"]["name"]: e["conditions"] for s in slices["items"] for e in s.get("endpoints") or []}

    def replaced() -> dict | None:
        c = conditions()
        return c if len(c) == 2 and any(v["ready"] for n, v in c.items() if n != old) else None

    c = wait_for(replaced, 15)
    assert c[old] == {"ready": False, "serving": True, "terminating": True}
    time.sleep(3)  # the preStop hook still holds it: without one, nginx would have stopped by now
    row = k("get", "pod", old, "--no-headers").split()
    assert row[1:3] == ["1/1", "Terminating"], row
    reasons = k("get", "events", "--field-selector", f"involvedObject.name={old}", "-o", "jsonpath={.items[*].reason}")
    assert "Killing" in reasons.split() and "FailedPreStopHook" not in reasons.split()
    k("delete", "pod", old, "--grace-period=1")  # a shorter grace cuts the hook short
    k("delete", "-f", "-", input=TERMINATION_TUTORIAL)


ACCESS_API_SCRIPT = r"""
APISERVER=https://kubernetes.default.svc
SERVICEACCOUNT=/var/run/secrets/kubernetes.io/serviceaccount
NAMESPACE=$(cat ${SERVICEACCOUNT}/namespace)
TOKEN=$(cat ${SERVICEACCOUNT}/token)
CACERT=${SERVICEACCOUNT}/ca.crt
curl -sS --cacert ${CACERT} --header "Authorization: Bearer ${TOKEN}" -X GET ${APISERVER}/api
echo; echo "namespace=${NAMESPACE}"
"""

IN_CLUSTER_CLIENT = """
from kubernetes import client, config
config.load_incluster_config()
pods = client.CoreV1Api().list_namespaced_pod(open(
    "/var/run/secrets/kubernetes.io/serviceaccount/namespace").read())
print(sorted(p.metadata.name for p in pods.items))
"""


def test_access_the_kubernetes_api_from_a_pod(cluster):
    """"Accessing the Kubernetes API from a Pod": the mounted ServiceAccount token, CA and namespace
    reach https://kubernetes.default.svc without any setup, and so does an in-cluster client."""
    k = cluster.kubectl
    cluster.wait_dns()
    k("run", "api-curl", "--image=curlimages/curl", "--restart=Never", "--command", "--", "sh", "-c",
      ACCESS_API_SCRIPT)
    wait_for(lambda: k("get", "pod", "api-curl", "-o", "jsonpath={.status.phase}") == "Succeeded", 20)
    out = k("logs", "api-curl")
    assert "namespace=" in out, out
    api = json.loads(out.rpartition("namespace=")[0])
    assert api["kind"] == "APIVersions" and api["versions"] == ["v1"], out
    assert "namespace=default" in out
    # The official Python client's in-cluster configuration, run as a pod's command.
    k("run", "api-client", "--image=python:3.11", "--restart=Never", "--command", "--",
      sys.executable, "-c", IN_CLUSTER_CLIENT)
    wait_for(lambda: k("get", "pod", "api-client", "-o", "jsonpath={.status.phase}") in ("Succeeded", "Failed"), 30)
    assert "'api-client'" in k("logs", "api-client") and "'api-curl'" in k("logs", "api-client")
    k("delete", "pod", "api-curl", "api-client", "--grace-period=0")
