"""NetworkPolicy (networking.k8s.io/v1) enforced by the nodes, proved with real connections and
driven only through the real kubectl, in the manner of the upstream e2e suite
(kubernetes test/e2e/network/netpol, see /work/shared/reference/netpol.md section 1).

Model, small so that the module stays fast: namespaces x and y (unique names, plus labels),
pods x/a, x/b and y/a (label pod=a|b), each serving TCP 80, TCP 81 and UDP 80 with agnhost
serve-hostname, one container per port (container ports named serve-80-tcp, serve-81-tcp,
serve-80-udp), and one ClusterIP Service per pod. x/a runs on one node, x/b and y/a on the other,
so both pod-to-pod paths (same node and across nodes) are exercised. Pods are made once per module.

A probe is one `kubectl exec <from> -- /agnhost connect <ip>:<port> --timeout=1s --protocol=...`
(exit 0: connected; UDP needs the server's reply), to the target's ClusterIP, so that policy must
hold after the Service's DNAT, and for some cells to the target's pod IP. Each test states only the
(from, to, port, protocol) cells it needs; they are probed concurrently and polled until observed
equals expected, within 10 s. The allowed cells are probed half a second after the blocked ones
and count only from a round in which every blocked cell was blocked, so that they are judged with
the policy in force. A failure prints the expected and observed matrices. Pod -> itself is never
probed (upstream ignores it, KK #95879). Each test's policies (and pod labels) are removed
afterwards, even on failure, and the cells it left blocked are awaited reachable again.
A further pod in x, x/ready, runs netexec with an httpGet readinessProbe (traffic from the kubelet).

Upstream case numbers (netpol.md section 1.4) are in each test's docstring.
"""

from __future__ import annotations

import ipaddress
import json
import os
import re
import subprocess
import time
from concurrent.futures import ThreadPoolExecutor, wait
from dataclasses import dataclass

import pytest

from tests.support import is_ready, unique_name, wait_for

pytestmark = pytest.mark.skipif(os.geteuid() != 0, reason="needs root for network namespaces")

AGNHOST = "registry.k8s.io/e2e-test-images/agnhost:2.53"
PODS = ("x/a", "x/b", "y/a")
PLACEMENT = {"x/a": 0, "x/b": 1, "y/a": 1}  # index of the node each pod runs on
SERVERS = ((80, "TCP"), (81, "TCP"), (80, "UDP"))  # one container per (port, protocol), as upstream
CLIENT_CONTAINER = "cont-80-tcp"  # probes run in the first container, as upstream
READY_POD = "x/ready"  # a netexec pod with an httpGet readinessProbe (kubelet traffic under policy)
PROBE_TIMEOUT_S = 1
DEADLINE_S = 10.0
WORKERS = 12  # cells probed at once (upstream: 3): a blocked probe waits out its 1 s timeout
ALLOWED_AFTER_S = 0.5  # how long after the blocked cells' probes the allowed cells' ones start
NAME_LABEL = "kubernetes.io/metadata.name"


# ---- cells and expectations ----------------------------------------------------------------------

@dataclass(frozen=True, order=True)
class Cell:
    """One connection to try: from pod `src` to pod `dst` (keys like "x/a"), on `port`/`protocol`,
    addressed to the target's ClusterIP (via="svc") or its pod IP (via="pod")."""
    src: str
    dst: str
    port: int = 80
    protocol: str = "tcp"
    via: str = "svc"

    def __str__(self) -> str:
        return f"{self.src} -> {self.dst} {self.protocol.upper()}/{self.port} via {self.via}"


def allow(src: str, dst: str, port: int = 80, protocol: str = "tcp", via: str = "svc") -> tuple[Cell, bool]:
    return Cell(src, dst, port, protocol, via), True


def deny(src: str, dst: str, port: int = 80, protocol: str = "tcp", via: str = "svc") -> tuple[Cell, bool]:
    return Cell(src, dst, port, protocol, via), False


def full_matrix(port: int = 80, protocol: str = "tcp", via: str = "svc") -> list[tuple[Cell, bool]]:
    """Every pod to every other pod, reachable (the state without policies)."""
    return [allow(s, d, port, protocol, via) for s in PODS for d in PODS if s != d]


_MARK = {True: ".", False: "X", None: "E"}
_WORD = {True: "connected", False: "blocked", None: "probe error"}


def _grid(srcs: list[str], dsts: list[str], group: dict[tuple[str, str], Cell], mark) -> list[str]:
    """One matrix: a row per source pod, a column per destination pod."""
    width = max(len(k) for k in srcs + dsts) + 1
    rows = ["".ljust(width) + "".join(k.rjust(width) for k in dsts)]
    for s in srcs:
        cells = [mark(group[(s, d)]) if (s, d) in group else "-" for d in dsts]
        rows.append(s.ljust(width) + "".join(m.rjust(width) for m in cells))
    return rows


def render(expected: dict[Cell, bool], observed: dict[Cell, bool | None]) -> str:
    """Expected, observed and comparison matrices per (protocol, port, address), upstream style:
    '.' connected, 'X' blocked, 'E' probe error, '-' not probed; comparison '!' where they differ."""
    srcs, dsts = sorted({c.src for c in expected}), sorted({c.dst for c in expected})
    out = []
    for proto, port, via in sorted({(c.protocol, c.port, c.via) for c in expected}):
        group = {(c.src, c.dst): c for c in expected if (c.protocol, c.port, c.via) == (proto, port, via)}
        exp = _grid(srcs, dsts, group, lambda c: _MARK[expected[c]])
        obs = _grid(srcs, dsts, group, lambda c: _MARK[observed[c]] if c in observed else "?")
        cmp = _grid(srcs, dsts, group, lambda c: "." if observed.get(c) is expected[c] else "!")
        pad = max(len(r) for r in exp) + 4
        out.append(f"{proto.upper()}/{port} via {'ClusterIP' if via == 'svc' else 'pod IP'}:")
        out.append("expected".ljust(pad) + "observed".ljust(pad) + "comparison")
        out += [e.ljust(pad) + o.ljust(pad) + c for e, o, c in zip(exp, obs, cmp, strict=True)]
        out.append("")
    return "\n".join(out)


# ---- the model: namespaces, pods, services, probes -----------------------------------------------

@dataclass
class Pod:
    key: str
    ns: str
    name: str
    ip: str
    svc_ip: str | None
    node: str


def probe_argv(ip: str, port: int, protocol: str) -> list[str]:
    """Upstream's probe: exit 0 when connected (for UDP, when the server answered)."""
    return ["/agnhost", "connect", f"{ip}:{port}", f"--timeout={PROBE_TIMEOUT_S}s", f"--protocol={protocol}"]


def server_pod(name: str, node: str) -> dict:
    containers = []
    for port, proto in SERVERS:
        containers.append({
            "name": f"cont-{port}-{proto.lower()}", "image": AGNHOST,
            "args": ["serve-hostname", f"--{proto.lower()}", "--http=false", "--port", str(port)],
            "ports": [{"containerPort": port, "name": f"serve-{port}-{proto.lower()}", "protocol": proto}]})
    return {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": name, "labels": {"pod": name}},
            "spec": {"nodeName": node, "terminationGracePeriodSeconds": 0, "containers": containers}}


def server_service(name: str) -> dict:
    return {"apiVersion": "v1", "kind": "Service", "metadata": {"name": f"s-{name}"},
            "spec": {"selector": {"pod": name}, "ports": [
                {"name": f"service-port-{proto.lower()}-{port}", "port": port, "targetPort": port,
                 "protocol": proto} for port, proto in SERVERS]}}


def readiness_pod(name: str) -> dict:
    return {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": name, "labels": {"role": "readiness"}},
            "spec": {"terminationGracePeriodSeconds": 0, "containers": [{
                "name": CLIENT_CONTAINER, "image": AGNHOST, "args": ["netexec", "--http-port=8080"],
                "ports": [{"containerPort": 8080, "name": "http"}],
                "readinessProbe": {"httpGet": {"path": "/healthz", "port": 8080}, "periodSeconds": 1,
                                   "timeoutSeconds": 1, "failureThreshold": 2}}]}}


class Net:
    """The module's namespaces and pods, and the probes between them."""

    def __init__(self, cluster) -> None:
        self.cluster = cluster
        self.k = cluster.kubectl
        self.ns = {"x": unique_name("netpol-x-"), "y": unique_name("netpol-y-")}
        self.pods: dict[str, Pod] = {}
        self.errors: dict[Cell, str] = {}
        self.pool = ThreadPoolExecutor(WORKERS)

    @property
    def X(self) -> str:  # the namespaces' real names, under upstream's names for them
        return self.ns["x"]

    @property
    def Y(self) -> str:
        return self.ns["y"]

    def setup(self) -> None:
        k = self.k
        nodes = sorted(n["metadata"]["name"] for n in json.loads(k("get", "nodes", "-o", "json"))["items"])
        docs = [{"apiVersion": "v1", "kind": "Namespace",
                 "metadata": {"name": real, "labels": {"netpol-e2e": "true", "netpol-ns": short}}}
                for short, real in self.ns.items()]
        k("apply", "-f", "-", input="\n---\n".join(json.dumps(d) for d in docs))
        for real in self.ns.values():  # pods need the namespace's default ServiceAccount
            wait_for(lambda real=real: k.run("get", "serviceaccount", "default", "-n", real,
                                             check=False).returncode == 0, 10)
        docs = []
        for key in PODS:
            short, name = key.split("/")
            for d in (server_pod(name, nodes[PLACEMENT[key] % len(nodes)]), server_service(name)):
                d["metadata"]["namespace"] = self.ns[short]
                docs.append(d)
        ready = readiness_pod(READY_POD.split("/")[1])
        ready["metadata"]["namespace"] = self.X
        docs.append(ready)
        k("apply", "-f", "-", input="\n---\n".join(json.dumps(d) for d in docs))

        def all_ready() -> list[dict] | None:
            items = [p for real in self.ns.values()
                     for p in json.loads(k("get", "pods", "-n", real, "-o", "json"))["items"]]
            return items if len(items) == len(PODS) + 1 and all(is_ready(p) for p in items) else None
        try:
            items = wait_for(all_ready, 30, 0.2)
        except AssertionError:
            for real in self.ns.values():
                print(k("get", "pods", "-n", real, "-o", "wide", check=False))
                print(k("get", "events", "-n", real, check=False))
            raise
        short_of = {real: short for short, real in self.ns.items()}
        svcs = {(s["metadata"]["namespace"], s["metadata"]["name"]): s["spec"]["clusterIP"]
                for real in self.ns.values()
                for s in json.loads(k("get", "services", "-n", real, "-o", "json"))["items"]}
        for p in items:
            ns, name = p["metadata"]["namespace"], p["metadata"]["name"]
            key = f"{short_of[ns]}/{name}"
            self.pods[key] = Pod(key, ns, name, p["status"]["podIP"], svcs.get((ns, f"s-{name}")),
                                 p["spec"]["nodeName"])
        tool = self.exec("x/a", *probe_argv("127.0.0.1", 80, "tcp"))
        assert tool.returncode == 0, ("`kubectl exec -- /agnhost connect` does not work", tool.stderr)
        # As upstream's waitForHTTPServers: everything reachable before any policy.
        self.expect(*full_matrix(80), *full_matrix(80, "udp"), timeout=30)

    def teardown(self) -> None:
        self.pool.shutdown(wait=True)
        for real in self.ns.values():
            self.k.run("delete", "namespace", real, "--wait=false", check=False)

    def describe(self) -> str:
        return "\n".join(f"  {p.key} = {p.ns}/{p.name} ip {p.ip} clusterIP {p.svc_ip} on {p.node}"
                         for p in self.pods.values())

    def exec(self, key: str, *argv: str, timeout: float = 20) -> subprocess.CompletedProcess:
        p = self.pods[key]
        return self.k.run("exec", "-n", p.ns, p.name, "-c", CLIENT_CONTAINER, "--", *argv, check=False,
                          timeout=timeout)

    def probe(self, cell: Cell) -> bool | None:
        """True: connected; False: the connection failed (blocked); None: the probe itself failed."""
        assert cell.src != cell.dst, "pod -> itself is not probed"
        dst = self.pods[cell.dst]
        ip = dst.svc_ip if cell.via == "svc" else dst.ip
        assert ip, f"{cell.dst} has no {'ClusterIP' if cell.via == 'svc' else 'pod IP'}"
        try:
            r = self.exec(cell.src, *probe_argv(ip, cell.port, cell.protocol), timeout=15)
        except subprocess.TimeoutExpired:
            self.errors[cell] = "kubectl exec timed out"
            return None
        if r.returncode == 0:
            self.errors.pop(cell, None)
            return True
        self.errors[cell] = r.stderr.strip().splitlines()[-1] if r.stderr.strip() else f"exit {r.returncode}"
        return False if "command terminated with exit code" in r.stderr else None

    def expect(self, *pairs: tuple[Cell, bool], timeout: float = DEADLINE_S) -> float:
        """Poll the cells until each is observed as expected, within `timeout`. Returns the seconds
        it took; fails with the matrices."""
        expected = dict(pairs)
        observed: dict[Cell, bool | None] = {}
        t0 = time.monotonic()
        deadline = t0 + timeout
        blocked = [c for c, v in expected.items() if not v]
        allowed = [c for c, v in expected.items() if v]
        while True:
            # The allowed cells are tried a moment after the blocked ones, and what they show counts
            # only once every blocked cell was seen blocked: a connection made before the policy is
            # in force proves nothing about it.
            pending = {c: self.pool.submit(self.probe, c) for c in blocked}
            if pending:
                wait(pending.values(), timeout=ALLOWED_AFTER_S)
            pending |= {c: self.pool.submit(self.probe, c) for c in allowed}
            seen = {c: f.result() for c, f in pending.items()}
            observed.update(seen)
            blocked = [c for c in blocked if seen[c] is not False]
            if not blocked:
                allowed = [c for c in allowed if seen[c] is not True]
            if not (blocked or allowed) or time.monotonic() > deadline:
                break
            time.sleep(0.05)
        took = time.monotonic() - t0
        wrong = sorted(c for c in expected if observed.get(c) is not expected[c])
        if wrong:
            details = "\n".join(f"  {c}: expected {_WORD[expected[c]]}, observed {_WORD[observed.get(c)]}"
                                + (f" ({self.errors[c]})" if c in self.errors and observed.get(c) is not True else "")
                                for c in wrong)
            raise AssertionError(f"reachability not as expected after {took:.1f}s (deadline {timeout:g}s)\n"
                                 f"{render(expected, observed)}\nmismatches:\n{details}\npods:\n{self.describe()}")
        print(f"{len(expected)} cells as expected after {took:.2f}s")
        return took


class Session:
    """One test's policies and pod labels, removed at its end (even on failure), after which the
    cells it last expected blocked must all be reachable again."""

    def __init__(self, net: Net) -> None:
        self.net = net
        self.k = net.k
        self.policies: list[tuple[str, str]] = []
        self.labels: list[tuple[str, str]] = []
        self.blocked: set[Cell] = set()  # cells this test last expected blocked

    def apply(self, short_ns: str, *policies: dict) -> None:
        ns = self.net.ns[short_ns]
        self.k("apply", "-n", ns, "-f", "-", input="\n---\n".join(json.dumps(p) for p in policies))
        for p in policies:
            if (ns, p["metadata"]["name"]) not in self.policies:
                self.policies.append((ns, p["metadata"]["name"]))

    def delete(self, short_ns: str, name: str) -> None:
        ns = self.net.ns[short_ns]
        self.k("delete", "networkpolicy", name, "-n", ns)
        self.policies.remove((ns, name))

    def label(self, key: str, label: str, value: str) -> None:
        p = self.net.pods[key]
        self.k("label", "pod", p.name, "-n", p.ns, f"{label}={value}", "--overwrite")
        self.labels.append((key, label))

    def expect(self, *pairs: tuple[Cell, bool], timeout: float = DEADLINE_S) -> float:
        for c, v in pairs:
            (self.blocked.discard if v else self.blocked.add)(c)
        return self.net.expect(*pairs, timeout=timeout)

    def close(self) -> None:
        for ns in dict.fromkeys(ns for ns, _ in self.policies):
            self.k.run("delete", "networkpolicy", "-n", ns, "--ignore-not-found",
                       *(name for n, name in self.policies if n == ns), check=False)
        for key, label in self.labels:
            p = self.net.pods[key]
            self.k.run("label", "pod", p.name, "-n", p.ns, f"{label}-", check=False)
        if self.blocked:
            self.net.expect(*((c, True) for c in sorted(self.blocked)))


@pytest.fixture(scope="module")
def net(cluster):
    n = Net(cluster)
    try:
        n.setup()
        yield n
    finally:
        n.teardown()


@pytest.fixture
def s(net):
    session = Session(net)
    try:
        yield session
    finally:
        session.close()


def policy(name: str, pod_selector: dict | None = None, *, ingress: list | None = None,
           egress: list | None = None, types: list[str] | None = None) -> dict:
    spec: dict = {"podSelector": pod_selector or {}}
    if ingress is not None:
        spec["ingress"] = ingress
    if egress is not None:
        spec["egress"] = egress
    if types is not None:
        spec["policyTypes"] = types
    return {"apiVersion": "networking.k8s.io/v1", "kind": "NetworkPolicy", "metadata": {"name": name},
            "spec": spec}


def labels(**kv: str) -> dict:
    return {"matchLabels": kv}


def ns_named(name: str) -> dict:
    return {"matchLabels": {NAME_LABEL: name}}


# ---- the cases ---------------------------------------------------------------------------------

def test_default_deny_ingress_isolates_the_pods_but_not_from_their_node(net, s):
    """#1: podSelector {} with no ingress rules isolates every pod of x for ingress, from its own
    namespace and from others, by ClusterIP and by pod IP; egress from x is untouched. Traffic from
    the node a pod runs on is always allowed: the kubelet's httpGet readinessProbe (every second,
    failureThreshold 2) keeps reaching the isolated x/ready, which stays Ready throughout."""
    pod = net.pods[READY_POD]

    def probes_served() -> int:
        return net.k("logs", "-n", pod.ns, pod.name).count("GET /healthz")

    s.apply("x", policy("default-deny-ingress", types=["Ingress"]))
    s.expect(deny("y/a", "x/a"), deny("x/b", "x/a"), deny("y/a", "x/b", via="pod"),
             deny("y/a", READY_POD, 8080, via="pod"), allow("x/a", "y/a"))
    # The blocked probes began at least a second ago, isolated; blocked kubelet probes (1 s timeout,
    # every second) would have made the pod unready 3 s after it was isolated, at the latest.
    served = probes_served()
    end = time.monotonic() + 2.5
    while time.monotonic() < end:
        obj = json.loads(net.k("get", "pod", "-n", pod.ns, pod.name, "-o", "json"))
        assert is_ready(obj), ("pod became unready under default-deny-ingress", obj["status"].get("conditions"))
        time.sleep(0.3)
    assert probes_served() >= served + 2, "the kubelet's probes did not reach the pod"


def test_default_deny_all_then_deleting_it_restores_traffic(net, s):
    """#2 and #33: Ingress+Egress with no rules cuts x off both ways; deleting the policy restores all."""
    s.apply("x", policy("default-deny-all", types=["Ingress", "Egress"]))
    cells = (Cell("y/a", "x/a"), Cell("x/a", "y/a"), Cell("x/a", "x/b", via="pod"), Cell("x/a", "y/a", 80, "udp"))
    s.expect(*((c, False) for c in cells))
    s.delete("x", "default-deny-all")
    s.expect(*((c, True) for c in cells))


def test_ingress_peers_by_pod_selector_and_by_namespace_selector(net, s):
    """#3: x/a accepts only pods labelled pod=b of its own namespace (policyTypes left to the
    server's defaulting): y/a's pod=a label does not count, it is in another namespace.
    #6 / #41: x/b accepts only pods of namespace y, selected by kubernetes.io/metadata.name."""
    s.apply("x", policy("x-a-from-b", labels(pod="a"), ingress=[{"from": [{"podSelector": labels(pod="b")}]}]),
            policy("x-b-from-y", labels(pod="b"), types=["Ingress"],
                   ingress=[{"from": [{"namespaceSelector": ns_named(net.Y)}]}]))
    s.expect(deny("y/a", "x/a", via="pod"), deny("x/a", "x/b"), allow("x/b", "x/a"), allow("y/a", "x/b"))


def test_two_peers_are_or_one_peer_with_both_selectors_is_and(net, s):
    """#9 vs #10 (and #13): separate peers are OR-ed, both selectors in one peer are AND-ed; each
    step is an update of the same policy."""
    not_x = {"matchExpressions": [{"key": NAME_LABEL, "operator": "NotIn", "values": [net.X]}]}
    s.apply("x", policy("x-a-peers", labels(pod="a"), types=["Ingress"], ingress=[{"from": [
        {"namespaceSelector": not_x}, {"podSelector": labels(pod="b")}]}]))
    s.expect(allow("x/b", "x/a"), allow("y/a", "x/a"))
    # One peer: pods labelled pod=b in namespaces other than x: neither x/b nor y/a.
    s.apply("x", policy("x-a-peers", labels(pod="a"), types=["Ingress"], ingress=[{"from": [
        {"namespaceSelector": not_x, "podSelector": labels(pod="b")}]}]))
    s.expect(deny("x/b", "x/a"), deny("y/a", "x/a"))
    # One peer: pods labelled pod=a in namespace y: y/a only.
    s.apply("x", policy("x-a-peers", labels(pod="a"), types=["Ingress"], ingress=[{"from": [
        {"namespaceSelector": ns_named(net.Y), "podSelector": labels(pod="a")}]}]))
    s.expect(deny("x/b", "x/a"), allow("y/a", "x/a"))


def test_ingress_on_one_numbered_port(net, s):
    """#14: x/a accepts namespace y on TCP 81 only."""
    s.apply("x", policy("x-a-from-y-on-81", labels(pod="a"), types=["Ingress"], ingress=[{
        "from": [{"namespaceSelector": ns_named(net.Y)}], "ports": [{"port": 81, "protocol": "TCP"}]}]))
    s.expect(deny("y/a", "x/a", 80), deny("x/b", "x/a", 81), allow("y/a", "x/a", 81))


def test_ingress_on_one_named_port(net, s):
    """#17: all of x accepts anyone on the port named serve-81-tcp (81) and nothing on 80."""
    s.apply("x", policy("x-on-serve-81-tcp", types=["Ingress"], ingress=[{"ports": [{"port": "serve-81-tcp"}]}]))
    s.expect(deny("y/a", "x/a", 80), deny("x/a", "x/b", 80, via="pod"),
             allow("y/a", "x/a", 81), allow("x/a", "x/b", 81, via="pod"))


def test_egress_on_one_named_port(net, s):
    """#19: pods of x may connect only to the destination's port named serve-80-tcp (TCP 80, not
    UDP 80); ingress into x is not affected."""
    s.apply("x", policy("x-egress-serve-80-tcp", types=["Egress"], egress=[{"ports": [{"port": "serve-80-tcp"}]}]))
    s.expect(deny("x/a", "y/a", 81), deny("x/b", "x/a", 81), deny("x/a", "y/a", 80, "udp"),
             allow("x/a", "y/a", 80), allow("y/a", "x/a", 81))


def test_an_updated_policy_is_enforced(net, s):
    """#20: allow-all ingress for x, then the same policy updated to no ingress rules."""
    s.apply("x", policy("x-ingress", types=["Ingress"], ingress=[{}]))
    s.expect(allow("y/a", "x/a", 81), allow("x/a", "x/b", 81))
    s.apply("x", policy("x-ingress", types=["Ingress"], ingress=[]))
    s.expect(deny("y/a", "x/a", 81), deny("x/a", "x/b", 81), allow("x/b", "y/a", 81))


def test_allow_from_a_pod_once_it_is_relabelled(net, s):
    """#22: x/a accepts pods labelled pod=b,pod2=updated: x/b only once it gets pod2=updated."""
    s.apply("x", policy("x-a-from-updated", labels(pod="a"), types=["Ingress"],
                        ingress=[{"from": [{"podSelector": labels(pod="b", pod2="updated")}]}]))
    s.expect(deny("x/b", "x/a"), deny("y/a", "x/a"))
    s.label("x/b", "pod2", "updated")
    s.expect(deny("y/a", "x/a"), allow("x/b", "x/a"))


def test_deny_egress_from_one_pod(net, s):
    """#25: x/a may connect nowhere; others may still connect to it."""
    s.apply("x", policy("x-a-no-egress", labels(pod="a"), types=["Egress"]))
    s.expect(deny("x/a", "x/b"), deny("x/a", "y/a", via="pod"), allow("x/b", "x/a"))


def test_client_egress_deny_wins_over_server_ingress_allow(net, s):
    """#28: x/a may connect only to y/a; x/b accepts x/a, yet x/a cannot reach it: a connection
    needs egress allowed at the client and ingress allowed at the server."""
    s.apply("x", policy("x-a-egress-to-y-a", labels(pod="a"), types=["Egress"], egress=[{"to": [
                {"namespaceSelector": ns_named(net.Y), "podSelector": labels(pod="a")}]}]),
            policy("x-b-from-x-a", labels(pod="b"), types=["Ingress"],
                   ingress=[{"from": [{"podSelector": labels(pod="a")}]}]))
    s.apply("y", policy("y-a-from-x-a", labels(pod="a"), types=["Ingress"], ingress=[{"from": [
        {"namespaceSelector": ns_named(net.X), "podSelector": labels(pod="a")}]}]))
    s.expect(deny("x/a", "x/b"), deny("x/b", "y/a"), allow("x/a", "y/a"), allow("x/b", "x/a"))


def test_egress_ip_block_with_except_matches_pod_ips_after_dnat(net, s):
    """#35 then #36 (and #34): x/a egress to a CIDR holding every pod except y/a, then the same
    policy updated to y/a's /32 alone (the address that was excepted); probed by ClusterIP, so the
    block must match the backend pod IP after the Service's DNAT."""
    ya, xb = net.pods["y/a"].ip, net.pods["x/b"].ip
    wide = str(ipaddress.ip_network(f"{ya}/16", strict=False))
    assert ipaddress.ip_address(xb) in ipaddress.ip_network(wide), (wide, xb)
    s.apply("x", policy("x-a-egress-cidr", labels(pod="a"), types=["Egress"],
                        egress=[{"to": [{"ipBlock": {"cidr": wide, "except": [f"{ya}/32"]}}]}]))
    s.expect(deny("x/a", "y/a"), deny("x/a", "y/a", via="pod"), allow("x/a", "x/b"))
    s.apply("x", policy("x-a-egress-cidr", labels(pod="a"), types=["Egress"],
                        egress=[{"to": [{"ipBlock": {"cidr": f"{ya}/32"}}]}]))
    s.expect(deny("x/a", "x/b"), allow("x/a", "y/a"), allow("x/a", "y/a", via="pod"))


def test_protocol_is_part_of_every_port_match(net, s):
    """#40 then #30: allowing only UDP 80 into x/a does not open TCP (and still isolates the pod);
    updated to TCP with no port, all TCP ports open and UDP closes."""
    s.apply("x", policy("x-a-one-protocol", labels(pod="a"), types=["Ingress"],
                        ingress=[{"ports": [{"protocol": "UDP", "port": 80}]}]))
    s.expect(deny("y/a", "x/a", 80), deny("x/b", "x/a", 81), allow("y/a", "x/a", 80, "udp"))
    s.apply("x", policy("x-a-one-protocol", labels(pod="a"), types=["Ingress"],
                        ingress=[{"ports": [{"protocol": "TCP"}]}]))
    s.expect(deny("y/a", "x/a", 80, "udp"), allow("y/a", "x/a", 80), allow("x/b", "x/a", 81))


def test_default_deny_egress_with_the_documented_dns_rule_still_resolves(cluster, net, s):
    """Default-deny egress blocks DNS too; the documented allow rule (UDP and TCP 53 to the kube-dns
    pods of kube-system) brings names back, which holds only if policy sees the DNS Service's
    backends after DNAT, while all other egress stays blocked."""
    cluster.wait_dns()
    kube = net.k("get", "service", "kubernetes", "-n", "default", "-o", "jsonpath={.spec.clusterIP}")
    name = "kubernetes.default.svc.cluster.local"
    dig = ("dig", "+time=1", "+tries=1", "+short")
    s.apply("x", policy("default-deny-egress", types=["Egress"]))
    # DNS goes unanswered like any other egress (dig exits 9: no reply), polled alongside the cells.
    unanswered = net.pool.submit(wait_for, lambda: net.exec("x/a", *dig, name).returncode == 9, DEADLINE_S, 0)
    s.expect(deny("x/a", "y/a"), deny("x/a", "x/b", via="pod"))
    unanswered.result()

    dns_peer = {"namespaceSelector": ns_named("kube-system"), "podSelector": labels(**{"k8s-app": "kube-dns"})}
    s.apply("x", policy("default-deny-egress", types=["Egress"], egress=[{
        "to": [dns_peer], "ports": [{"protocol": "UDP", "port": 53}, {"protocol": "TCP", "port": 53}]}]))
    answered = net.pool.submit(wait_for, lambda: net.exec("x/a", *dig, name).stdout.split() == [kube],
                               DEADLINE_S, 0.2)
    s.expect(deny("x/a", "y/a"), deny("x/a", "x/b", via="pod"), deny("x/a", "y/a", 80, "udp"))
    answered.result()
    # The short name through the pod's search path, A records only: `getent hosts` would also ask
    # for AAAA, whose empty answers walk the search list down to `kubernetes.default.`, which the
    # cluster DNS forwards to its upstream, out of the nodes' reach here.
    out = net.exec("x/a", "getent", "ahostsv4", "kubernetes.default")
    assert out.returncode == 0 and out.stdout.split()[:3] == [kube, "STREAM", name], (out.stdout, out.stderr)
    tcp = net.exec("x/a", *dig, "+tcp", name)
    assert tcp.stdout.split() == [kube], ("DNS over TCP", tcp.stdout, tcp.stderr)


def test_kubectl_get_networkpolicy_shows_the_pod_selector(net, s):
    """`kubectl get networkpolicy` prints NAME, POD-SELECTOR (the selector as a label query,
    `<none>` when empty) and AGE, as kube-apiserver's table printer does. The policies allow all,
    so no traffic changes."""
    s.apply("x", policy("allow-all", ingress=[{}]),
            policy("allow-to-a", {"matchLabels": {"pod": "a"},
                                  "matchExpressions": [{"key": "tier", "operator": "NotIn", "values": ["db"]}]},
                   ingress=[{}]))
    out = net.k("get", "networkpolicy", "-n", net.X)
    lines = out.splitlines()
    assert lines[0].split() == ["NAME", "POD-SELECTOR", "AGE"], out
    assert re.fullmatch(r"allow-all\s+<none>\s+\d+s", lines[1]), out
    assert re.fullmatch(r"allow-to-a\s+pod=a,tier notin \(db\)\s+\d+s", lines[2]), out
    assert lines[1].index("<none>") == lines[0].index("POD-SELECTOR"), out
    # The short name, and one object by name.
    one = net.k("get", "netpol", "allow-to-a", "-n", net.X).splitlines()
    assert one[0].split() == ["NAME", "POD-SELECTOR", "AGE"] and one[1].startswith("allow-to-a "), one


def test_a_new_pod_is_isolated_from_its_first_packet(net, s):
    """Once a policy is in force, pods created after it are isolated before they start (the DOC's
    "Pod lifecycle"): a pod under default-deny egress that connects the moment it starts is blocked,
    every time. Without waiting for its node's table the first connection got through."""
    s.apply("x", policy("deny-egress-of-new", labels(role="new"), types=["Egress"]))
    # The policy is in force for an existing pod first: labelling x/b makes it the policy's.
    s.label("x/b", "role", "new")
    s.expect(deny("x/b", "y/a", via="pod"))
    target = net.pods["y/a"]
    names = [f"first-{i}" for i in range(3)]
    docs = [{"apiVersion": "v1", "kind": "Pod",
             "metadata": {"name": n, "namespace": net.X, "labels": {"role": "new"}},
             "spec": {"restartPolicy": "Never", "terminationGracePeriodSeconds": 0,
                      "nodeName": net.pods["x/a" if i % 2 else "x/b"].node,
                      "containers": [{"name": "c", "image": AGNHOST, "command": ["/agnhost", "connect",
                                      f"{target.ip}:80", "--timeout=1s"]}]}} for i, n in enumerate(names)]
    net.k("apply", "-f", "-", input="\n---\n".join(json.dumps(d) for d in docs))
    try:
        def phases() -> dict | None:
            got = {n: json.loads(net.k("get", "pod", n, "-n", net.X, "-o", "json"))["status"].get("phase")
                   for n in names}
            return got if all(p in ("Succeeded", "Failed") for p in got.values()) else None
        # agnhost connect exits 1 (pod Failed) when its connection times out, 0 (Succeeded) when it connects.
        assert wait_for(phases, 20, 0.3) == dict.fromkeys(names, "Failed")
        for n in names:
            assert net.k("logs", n, "-n", net.X).strip().startswith("TIMEOUT"), n
    finally:
        net.k.run("delete", "pod", "-n", net.X, *names, "--wait=false", check=False)
