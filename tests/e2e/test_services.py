"""Services in the kernel, with real packets (issue: ClusterIP, NodePort and LoadBalancer).

Everything is checked from the host shell or from pods, as the tutorial does; "unreachable" is
checked with `ip route get`, never with packets to the outside.
"""

from __future__ import annotations

import json
import os
import re
import signal
import socket
import subprocess
import threading
import time

import pytest

from tests.support import SEED, Cluster, curl, free_port, wait_for

pytestmark = pytest.mark.skipif(os.geteuid() != 0, reason="needs root for network namespaces")


@pytest.fixture(scope="module")
def cluster():
    c = Cluster(nodes=3).up()
    try:
        c.kubectl("apply", "-f", str(SEED))
        yield c
    finally:
        c.down()



def ready_pods(k, selector: str) -> list[dict]:
    items = json.loads(k("get", "pods", "-l", selector, "-o", "json"))["items"]
    return [p for p in items if not p["metadata"].get("deletionTimestamp") and any(
        c["type"] == "Ready" and c["status"] == "True" for c in p["status"].get("conditions") or [])]


def svc(k, name: str) -> dict:
    return json.loads(k("get", "svc", name, "-o", "json"))


def hostnames(url: str, n: int) -> list[str]:
    out = []
    for _ in range(n):
        r = curl(url)
        m = re.search(r"Hostname: (\S+)", r.stdout)
        out.append(m.group(1) if m else r.stdout.strip())
    return out


def lb_route_via(ip: str) -> str | None:
    """The node the host routes a LoadBalancer address to."""
    m = re.search(r"via (\S+)", subprocess.run(["ip", "route", "show", f"{ip}/32"], capture_output=True,
                                               text=True).stdout)
    return m.group(1) if m else None


def test_nodeport_on_every_node_spreads(cluster):
    k = cluster.kubectl
    wait_for(lambda: len(ready_pods(k, "app=my-app")) == 3)
    cfg = cluster.cfg
    # The rules reach every node within a moment of the endpoints being ready (network programming).
    wait_for(lambda: curl(f"http://{cfg.node_ip(0)}:30008/").returncode == 0, 10)
    for i in range(cfg.nodes):
        names = hostnames(f"http://{cfg.node_ip(i)}:30008/", 30 if i == 0 else 5)
        assert all(n.startswith("my-app-") for n in names), names
        if i == 0:
            assert len(set(names)) >= 2, names

    # `kubectl get ep` lists the pods by address, with the warning Kubernetes 1.33 gives for v1 Endpoints.
    ep = k.run("get", "ep", "teva-nodeport-service")
    assert "Warning: v1 Endpoints is deprecated in v1.33+; use discovery.k8s.io/v1 EndpointSlice" in ep.stderr
    addrs = ep.stdout.splitlines()[1].split()[1].split(",")
    ips = [tuple(int(o) for o in a.split(":")[0].split(".")) for a in addrs]
    assert len(ips) == 3 and ips == sorted(ips), addrs


def test_cluster_ip_from_pod_and_unreachable_from_host(cluster):
    k = cluster.kubectl
    wait_for(lambda: len(ready_pods(k, "app=backend")) == 2 and ready_pods(k, "app=my-app"))
    ip = svc(k, "backend-service")["spec"]["clusterIP"]
    pod = ready_pods(k, "app=my-app")[0]["metadata"]["name"]
    out = k("exec", pod, "--", "curl", "-s", "--max-time", "3", f"http://{ip}:8080/hostname")
    assert out.startswith("backend-"), out
    # The README's way, which works on any cluster: a throwaway curl pod, by the Service's DNS name.
    r = k.run("run", "curl", "--rm", "-i", "--restart=Never", "--image=curlimages/curl", "--",
              "-s", "--max-time", "3", "http://backend-service:8080/hostname")
    assert r.stdout.startswith("backend-") and 'pod "curl" deleted' in r.stdout, (r.stdout, r.stderr)
    route = subprocess.run(["ip", "route", "get", ip], capture_output=True, text=True)
    assert route.returncode != 0 or "unreachable" in route.stdout, route.stdout
    assert "unreachable" in (route.stdout + route.stderr) or "No route to host" in route.stderr


def test_a_service_without_selector_reaches_what_its_hand_written_endpoints_name(cluster):
    # The classic "Service in front of something outside": a selectorless Service and a v1 Endpoints
    # object of the same name. Its EndpointSlice is mirrored, so the proxy and DNS follow it.
    k = cluster.kubectl
    wait_for(lambda: len(ready_pods(k, "app=backend")) == 2 and ready_pods(k, "app=my-app"))
    target = ready_pods(k, "app=backend")[0]
    k("apply", "-f", "-", input=json.dumps({"apiVersion": "v1", "kind": "List", "items": [
        {"apiVersion": "v1", "kind": "Service", "metadata": {"name": "outside"},
         "spec": {"ports": [{"port": 80, "targetPort": 8080}]}},
        {"apiVersion": "v1", "kind": "Endpoints", "metadata": {"name": "outside"},
         "subsets": [{"addresses": [{"ip": target["status"]["podIP"]}], "ports": [{"port": 8080}]}]}]}))
    try:
        slices = wait_for(lambda: json.loads(k("get", "endpointslices", "-l", "kubernetes.io/service-name=outside",
                                               "-o", "json"))["items"] or None, 5)
        assert slices[0]["metadata"]["labels"]["endpointslice.kubernetes.io/managed-by"] == \
            "endpointslicemirroring-controller.k8s.io"
        pod = ready_pods(k, "app=my-app")[0]["metadata"]["name"]
        out = wait_for(lambda: k.run("exec", pod, "--", "curl", "-s", "--max-time", "2",
                                     "http://outside.default.svc.cluster.local/hostname", check=False).stdout or None, 5)
        assert out == target["metadata"]["name"]
        k("delete", "endpoints", "outside")
        wait_for(lambda: "No resources found" in k.run("get", "endpointslices", "-l",
                                                       "kubernetes.io/service-name=outside").stderr, 5)
    finally:
        k("delete", "service,endpoints", "outside", "--ignore-not-found")


def test_kubectl_proxy_reaches_a_pod_and_a_service_as_the_basics_tutorial_does(cluster):
    k = cluster.kubectl
    wait_for(lambda: len(ready_pods(k, "app=my-app")) == 3)
    pod = ready_pods(k, "app=my-app")[0]["metadata"]["name"]
    port = free_port()
    proxy = k.popen("proxy", f"--port={port}")
    try:
        base = f"http://127.0.0.1:{port}/api/v1/namespaces/default"
        r = wait_for(lambda: (lambda r: r if r.returncode == 0 else None)(curl(f"{base}/pods/{pod}:8080/proxy/")), 10)
        assert f"Hostname: {pod}" in r.stdout
        names = {re.search(r"Hostname: (\S+)", curl(f"{base}/services/teva-nodeport-service:80/proxy/").stdout).group(1)
                 for _ in range(20)}
        assert len(names) >= 2 and all(n.startswith("my-app-") for n in names), names
        r = curl(f"{base}/services/backend-service/proxy/hostname")
        assert r.stdout.startswith("backend-"), r.stdout
        r = curl(f"{base}/services/no-such-service/proxy/", "-w", "%{http_code}")
        assert r.stdout.endswith("404") and '"services \\"no-such-service\\" not found"' in r.stdout
    finally:
        proxy.terminate()
        proxy.wait(5)


def test_load_balancer_gets_address_and_answers(cluster):
    k = cluster.kubectl
    name = "lb-fresh"
    t0 = time.monotonic()
    k("create", "service", "loadbalancer", name, "--tcp=80:8080")
    k("patch", "svc", name, "-p", '{"spec":{"selector":{"app":"lb-backend"}}}')
    ip = wait_for(lambda: (svc(k, name)["status"].get("loadBalancer", {}).get("ingress") or [{}])[0].get("ip"),
                  5, 0.02)
    assert time.monotonic() - t0 < 1.0 + 0.5  # kubectl's own start-up is part of this
    row = k("get", "svc", name).splitlines()[1].split()
    assert row[3] == ip
    wait_for(lambda: len(ready_pods(k, "app=lb-backend")) == 3, 15)
    r = wait_for(lambda: (lambda r: r if r.returncode == 0 else None)(curl(f"http://{ip}/")), 5)
    assert "Hostname: backend-deployment-" in r.stdout
    seed_ip = wait_for(lambda: (svc(k, "backend")["status"].get("loadBalancer", {}).get("ingress") or [{}])[0]
                       .get("ip"), 5)
    assert "Hostname:" in curl(f"http://{seed_ip}/").stdout
    k("delete", "svc", name)


def test_session_affinity_pins_client(cluster):
    k = cluster.kubectl
    k("apply", "-f", "-", input="""
apiVersion: v1
kind: Service
metadata: {name: sticky}
spec:
  type: NodePort
  selector: {app: my-app}
  sessionAffinity: ClientIP
  ports: [{port: 80, targetPort: 8080}]
""")
    port = svc(k, "sticky")["spec"]["ports"][0]["nodePort"]
    node_ip = cluster.cfg.node_ip(0)
    time.sleep(0.3)
    names = hostnames(f"http://{node_ip}:{port}/", 15)
    assert len(set(names)) == 1, names


def test_external_traffic_policy_local_preserves_client_ip(cluster):
    k = cluster.kubectl
    k("apply", "-f", "-", input="""
apiVersion: apps/v1
kind: Deployment
metadata: {name: echo}
spec:
  replicas: 1
  selector: {matchLabels: {app: echo}}
  template:
    metadata: {labels: {app: echo}}
    spec:
      containers:
      - name: agnhost
        image: registry.k8s.io/e2e-test-images/agnhost:2.53
        args: ["netexec", "--http-port=8080"]
---
apiVersion: v1
kind: Service
metadata: {name: echo-local}
spec:
  type: NodePort
  externalTrafficPolicy: Local
  selector: {app: echo}
  ports: [{port: 80, targetPort: 8080}]
""")
    pod = wait_for(lambda: (ready_pods(k, "app=echo") or [None])[0], 10)
    port = svc(k, "echo-local")["spec"]["ports"][0]["nodePort"]
    cfg = cluster.cfg
    node_ip = {n["metadata"]["name"]: n["status"]["addresses"][0]["address"]
               for n in json.loads(k("get", "nodes", "-o", "json"))["items"]}[pod["spec"]["nodeName"]]
    r = wait_for(lambda: (lambda r: r if r.returncode == 0 else None)(curl(f"http://{node_ip}:{port}/clientip")), 5)
    assert r.stdout.split(":")[0] == cfg.host_ip, r.stdout
    other = next(cfg.node_ip(i) for i in range(cfg.nodes) if cfg.node_ip(i) != node_ip)
    assert curl(f"http://{other}:{port}/clientip", timeout=1).returncode != 0  # no local endpoint: dropped


def test_a_terminating_pod_stays_ready_and_its_endpoint_serving(cluster):
    # As on a real cluster: out of rotation at once (ready=false, terminating), but still "serving",
    # the fallback when no endpoint is ready, until its process exits.
    k = cluster.kubectl
    k("apply", "-f", "-", input="""
apiVersion: v1
kind: Pod
metadata: {name: lingering, labels: {app: lingering}}
spec:
  containers:
  - name: c
    image: busybox
    command: [sh, -c, "trap '' TERM; while true; do sleep 0.2; done"]
---
apiVersion: v1
kind: Service
metadata: {name: lingering}
spec:
  selector: {app: lingering}
  ports: [{port: 80}]
""")
    try:
        wait_for(lambda: ready_pods(k, "app=lingering"), 10)

        def conditions() -> dict | None:
            items = json.loads(k("get", "endpointslices", "-l", "kubernetes.io/service-name=lingering", "-o", "json"))
            eps = [e for sl in items["items"] for e in sl.get("endpoints") or []]
            return eps[0]["conditions"] if eps else None

        assert wait_for(conditions, 5) == {"ready": True, "serving": True, "terminating": False}
        k("delete", "pod", "lingering", "--grace-period=5", "--wait=false")
        wait_for(lambda: conditions() == {"ready": False, "serving": True, "terminating": True}, 3)
        row = k("get", "pod", "lingering", "--no-headers").split()
        assert row[1:3] == ["1/1", "Terminating"], row
    finally:
        k("delete", "pod/lingering", "service/lingering", "--now", "--ignore-not-found")


def test_no_endpoints_refuses_fast(cluster):
    k = cluster.kubectl
    k("create", "deployment", "empty", "--image=gcr.io/google-samples/hello-app:1.0", "--replicas=1")
    k("expose", "deployment", "empty", "--port=80", "--target-port=8080", "--type=NodePort")
    wait_for(lambda: ready_pods(k, "app=empty"), 10)
    k("scale", "deployment/empty", "--replicas=0")
    wait_for(lambda: not json.loads(k("get", "pods", "-l", "app=empty", "-o", "json"))["items"], 15)
    port = svc(k, "empty")["spec"]["ports"][0]["nodePort"]
    host = cluster.cfg.node_ip(1)
    time.sleep(0.3)
    t0 = time.monotonic()
    with pytest.raises(ConnectionRefusedError):
        socket.create_connection((host, port), timeout=2)
    assert time.monotonic() - t0 < 0.1


def test_scale_up_receives_traffic_and_deleted_pod_leaves_rotation(cluster):
    k = cluster.kubectl
    k("scale", "deployment/my-app", "--replicas=5")
    wait_for(lambda: len(ready_pods(k, "app=my-app")) == 5, 10)
    ready_at = time.monotonic()
    want = {p["metadata"]["name"] for p in ready_pods(k, "app=my-app")}
    seen: set[str] = set()
    url = f"http://{cluster.cfg.node_ip(0)}:30008/"
    while time.monotonic() - ready_at < 3 and seen != want:
        seen.update(hostnames(url, 5))
    assert seen == want
    victim = sorted(want)[0]
    k("delete", "pod", victim, "--wait=false")
    time.sleep(0.5)
    assert victim not in hostnames(url, 20)
    k("scale", "deployment/my-app", "--replicas=3")


def test_rolling_update_under_load_fails_nothing(cluster):
    k = cluster.kubectl
    wait_for(lambda: len(ready_pods(k, "app=my-app")) >= 3, 15)
    url = f"http://{cluster.cfg.node_ip(0)}:30008/"
    failures: list[str] = []
    count = [0]
    stop = threading.Event()

    def load():
        while not stop.is_set():
            r = curl(url, timeout=3)
            count[0] += 1
            if r.returncode != 0 or "Hello" not in r.stdout:
                failures.append(r.stderr or r.stdout)
    threads = [threading.Thread(target=load) for _ in range(2)]
    for t in threads:
        t.start()
    try:
        time.sleep(0.5)
        k("set", "image", "deployment/my-app", "hello=gcr.io/google-samples/hello-app:2.0")
        k("rollout", "status", "deployment/my-app", "--timeout=60s")
        time.sleep(1.0)
    finally:
        stop.set()
        for t in threads:
            t.join()
    assert count[0] > 20 and not failures, f"{len(failures)} of {count[0]} failed: {failures[:3]}"
    assert "Version: 2.0.0" in curl(url).stdout


def test_load_balancer_is_routed_to_a_node_with_an_endpoint_and_stays_there(cluster):
    """Cluster policy: any node serves, but the route goes to the endpoint's node once the first
    endpoint is ready (one hop less); a rolling update that moves the pod keeps the route."""
    k, cfg = cluster.kubectl, cluster.cfg

    def manifest(node: str) -> str:
        return f"""
apiVersion: apps/v1
kind: Deployment
metadata: {{name: pinned}}
spec:
  replicas: 1
  selector: {{matchLabels: {{app: pinned}}}}
  template:
    metadata: {{labels: {{app: pinned}}}}
    spec:
      nodeName: {node}
      containers:
      - {{name: hello, image: "gcr.io/google-samples/hello-app:1.0", ports: [{{containerPort: 8080}}]}}
---
apiVersion: v1
kind: Service
metadata: {{name: pinned}}
spec:
  type: LoadBalancer
  selector: {{app: pinned}}
  ports: [{{port: 80, targetPort: 8080}}]
"""
    last = cfg.nodes - 1
    k("apply", "-f", "-", input=manifest(cfg.node_name(last)))
    try:
        ip = wait_for(lambda: (svc(k, "pinned")["status"].get("loadBalancer", {}).get("ingress") or [{}])[0]
                      .get("ip"), 5)
        wait_for(lambda: lb_route_via(ip) == cfg.node_ip(last), 15, 0.05)
        assert "Hostname: pinned-" in wait_for(lambda: (lambda r: r.stdout if r.returncode == 0 else None)(
            curl(f"http://{ip}/", timeout=2)), 10, 0.1)
        # The pod moves to another node without a moment with no endpoint: the route stays.
        k("apply", "-f", "-", input=manifest(cfg.node_name(0)))
        k("rollout", "status", "deployment/pinned", "--timeout=30s")
        pods = ready_pods(k, "app=pinned")
        assert [p["spec"]["nodeName"] for p in pods] == [cfg.node_name(0)]
        assert lb_route_via(ip) == cfg.node_ip(last)
        assert "Hostname: pinned-" in curl(f"http://{ip}/").stdout
    finally:
        k("delete", "deployment/pinned", "service/pinned", "--wait=false", check=False)


def test_load_balancer_survives_loss_of_its_node(cluster):
    k = cluster.kubectl
    wait_for(lambda: len(ready_pods(k, "app=lb-backend")) == 3, 15)
    ip = wait_for(lambda: (svc(k, "backend")["status"].get("loadBalancer", {}).get("ingress") or [{}])[0]
                  .get("ip"), 5)
    carrier = wait_for(lambda: lb_route_via(ip), 5)
    cfg = cluster.cfg
    index = next(i for i in range(cfg.nodes) if cfg.node_ip(i) == carrier)
    pid = cluster.agent_pid(cfg.node_name(index))
    os.killpg(pid, signal.SIGSTOP)
    try:
        wait_for(lambda: lb_route_via(ip) not in (None, carrier), 15, 0.1)
        r = wait_for(lambda: (lambda r: r if r.returncode == 0 and "Hostname:" in r.stdout else None)(
            curl(f"http://{ip}/", timeout=2)), 10, 0.1)
        assert "Hostname: backend-deployment-" in r.stdout
    finally:
        os.killpg(pid, signal.SIGCONT)
    cluster.wait_node(cfg.node_name(index), "Ready")
