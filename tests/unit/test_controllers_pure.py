"""The pure decisions inside the control loops: scheduling filters and spreading, rolling-update
arithmetic, which pods a ReplicaSet removes first, and how EndpointSlices resolve ports."""

from __future__ import annotations

from skiff.controllers import deployment, endpointslice, loadbalancer, replicaset
from skiff.scheduler import scheduler


def node(name: str, ready: bool = True, labels: dict | None = None, taints: list | None = None,
         unschedulable: bool = False) -> dict:
    return {"metadata": {"name": name, "labels": labels or {}},
            "spec": {"taints": taints or [], "unschedulable": unschedulable},
            "status": {"conditions": [{"type": "Ready", "status": "True" if ready else "False"}]}}


def pod(name: str, node_name: str | None = None, owner: str | None = None, **spec) -> dict:
    md: dict = {"name": name, "namespace": "default", "uid": f"uid-{name}", "creationTimestamp": "2026-01-01T00:00:00Z"}
    if owner:
        md["ownerReferences"] = [{"kind": "ReplicaSet", "name": owner, "uid": f"rs-{owner}", "controller": True}]
    s = dict(spec)
    if node_name:
        s["nodeName"] = node_name
    return {"metadata": md, "spec": s, "status": {"phase": "Running"}}


def test_scheduler_filters_readiness_selector_taints():
    nodes = [node("a", ready=False), node("b", labels={"disk": "ssd"}),
             node("c", taints=[{"key": "node-role.kubernetes.io/control-plane", "effect": "NoSchedule"}]),
             node("d", unschedulable=True), node("e")]
    ok, reasons = scheduler.filter_nodes(pod("p"), nodes)
    assert [n["metadata"]["name"] for n in ok] == ["b", "e"]
    assert reasons["node(s) were not ready"] == 1 and reasons["node(s) were unschedulable"] == 1
    assert any("untolerated taint" in r for r in reasons)
    ok, _ = scheduler.filter_nodes(pod("p", nodeSelector={"disk": "ssd"}), nodes)
    assert [n["metadata"]["name"] for n in ok] == ["b"]
    tolerant = pod("p", tolerations=[{"key": "node-role.kubernetes.io/control-plane", "operator": "Exists",
                                      "effect": "NoSchedule"}])
    ok, _ = scheduler.filter_nodes(tolerant, nodes)
    assert "c" in [n["metadata"]["name"] for n in ok]


def test_scheduler_honours_required_node_affinity():
    nodes = [node("a", labels={"zone": "z1", "gpus": "2"}), node("b", labels={"zone": "z2"}), node("c")]

    def fits(*terms) -> list[str]:
        affinity = {"nodeAffinity": {"requiredDuringSchedulingIgnoredDuringExecution": {"nodeSelectorTerms": list(terms)}}}
        ok, reasons = scheduler.filter_nodes(pod("p", affinity=affinity), nodes)
        if len(ok) < len(nodes):
            assert reasons == {"node(s) didn't match Pod's node affinity/selector": len(nodes) - len(ok)}
        return [n["metadata"]["name"] for n in ok]

    assert fits({"matchExpressions": [{"key": "zone", "operator": "In", "values": ["z1", "z2"]}]}) == ["a", "b"]
    assert fits({"matchExpressions": [{"key": "zone", "operator": "NotIn", "values": ["z1"]}]}) == ["b", "c"]
    assert fits({"matchExpressions": [{"key": "zone", "operator": "DoesNotExist"}]}) == ["c"]
    assert fits({"matchExpressions": [{"key": "gpus", "operator": "Gt", "values": ["1"]}]}) == ["a"]
    # terms are ORed, a term's expressions ANDed; matchFields names the node (what DaemonSets use)
    assert fits({"matchFields": [{"key": "metadata.name", "operator": "In", "values": ["c"]}]},
                {"matchExpressions": [{"key": "zone", "operator": "In", "values": ["z2"]}]}) == ["b", "c"]
    assert fits({"matchExpressions": [{"key": "zone", "operator": "Exists"}],
                 "matchFields": [{"key": "metadata.name", "operator": "NotIn", "values": ["a"]}]}) == ["b"]
    assert fits({}) == []  # an empty term matches no node
    preferred = {"nodeAffinity": {"preferredDuringSchedulingIgnoredDuringExecution": [
        {"weight": 1, "preference": {"matchExpressions": [{"key": "zone", "operator": "In", "values": ["z9"]}]}}]}}
    assert len(scheduler.filter_nodes(pod("p", affinity=preferred), nodes)[0]) == 3  # a preference filters nothing


def test_scheduler_prefers_the_nodes_a_pod_prefers_then_spreads():
    nodes = [node("a", labels={"zone": "z1"}), node("b", labels={"zone": "z2", "ssd": "yes"}), node("c")]
    busy_b = [pod("x1", "b", owner="web"), pod("x2", "b", owner="web")]

    def chosen(*prefs) -> str:
        affinity = {"nodeAffinity": {"preferredDuringSchedulingIgnoredDuringExecution": [
            {"weight": w, "preference": {"matchExpressions": [{"key": k, "operator": "Exists"}]}} for w, k in prefs]}}
        return scheduler.score(pod("new", owner="web", affinity=affinity), nodes, busy_b)["metadata"]["name"]

    assert chosen((10, "ssd")) == "b"  # preferred, though it already runs two of the same owner
    assert chosen((10, "ssd"), (20, "zone")) == "b"  # both terms: 30 against 20
    assert chosen((50, "ssd"), (10, "zone")) == "b"
    assert chosen((5, "ssd"), (10, "nothing")) == "b"
    assert chosen() == "a"  # no preference: spreading away from b, then the name


def test_scheduler_spreads_a_replicaset():
    nodes = [node("a"), node("b"), node("c")]
    existing = [pod("x1", "a", owner="web"), pod("x2", "b", owner="web"), pod("other", "c", owner="db"),
                pod("other2", "c", owner="db")]
    # c has the most pods overall but none of this ReplicaSet's: spreading by owner comes first.
    assert scheduler.score(pod("new", owner="web"), nodes, existing)["metadata"]["name"] == "c"


def test_rolling_update_fenceposts():
    d = {"spec": {"replicas": 10, "strategy": {"rollingUpdate": {"maxSurge": "25%", "maxUnavailable": "25%"}}}}
    assert deployment.resolve_fenceposts(d) == (3, 2)  # surge rounds up, unavailable rounds down
    d = {"spec": {"replicas": 3, "strategy": {"rollingUpdate": {"maxSurge": 0, "maxUnavailable": 0}}}}
    assert deployment.resolve_fenceposts(d) == (0, 1)  # never both zero
    d = {"spec": {"replicas": 4}}
    assert deployment.resolve_fenceposts(d) == (1, 1)


def test_template_hash_is_stable_and_ignores_its_own_label():
    t = {"metadata": {"labels": {"app": "web"}}, "spec": {"containers": [{"name": "c", "image": "nginx"}]}}
    h = deployment.template_hash(t)
    assert h == deployment.template_hash({**t}) and set(h) <= set("bcdfghjklmnpqrstvwxz2456789")
    assert deployment.template_hash(t, 1) != h
    labelled = {"metadata": {"labels": {"app": "web", "pod-template-hash": h}}, "spec": t["spec"]}
    assert deployment.templates_equal(labelled, t)


def test_replicaset_deletes_unscheduled_then_not_ready_first():
    running_ready = pod("r", "a")
    running_ready["status"]["conditions"] = [{"type": "Ready", "status": "True"}]
    running_not_ready = pod("n", "a")
    pending = pod("p", "a")
    pending["status"]["phase"] = "Pending"
    unscheduled = pod("u")
    order = [p["metadata"]["name"] for p in replicaset.pods_to_delete(
        [running_ready, running_not_ready, pending, unscheduled], 4)]
    assert order == ["u", "p", "n", "r"]


def test_endpointslice_resolves_named_ports_per_pod():
    svc = {"metadata": {"name": "web", "namespace": "default"},
           "spec": {"selector": {"app": "web"}, "ports": [{"name": "http", "port": 80, "targetPort": "http"}]}}
    a = pod("a", "n1", containers=[{"name": "c", "ports": [{"name": "http", "containerPort": 8080}]}])
    b = pod("b", "n2", containers=[{"name": "c", "ports": [{"name": "http", "containerPort": 9090}]}])
    for p, ip in ((a, "10.0.0.1"), (b, "10.0.0.2")):
        p["metadata"]["labels"] = {"app": "web"}
        p["status"].update({"podIP": ip, "conditions": [{"type": "Ready", "status": "True"}]})
    b["metadata"]["deletionTimestamp"] = "2026-01-01T00:00:01Z"
    groups = endpointslice.desired_groups(svc, [a, b])
    ports = sorted(ports[0]["port"] for ports, _ in groups.values())
    assert ports == [8080, 9090]  # different resolved ports: different slices
    eps = {ep["targetRef"]["name"]: ep for _, e in groups.values() for ep in e}
    assert eps["a"]["conditions"] == {"ready": True, "serving": True, "terminating": False}
    assert eps["b"]["conditions"] == {"ready": False, "serving": True, "terminating": True}
    assert eps["a"]["nodeName"] == "n1"
    assert not endpointslice.selects({"spec": {}}, a)  # a Service without a selector selects nothing


def test_load_balancer_pool_parsing():
    assert loadbalancer.parse_pool("172.18.255.200-172.18.255.202") == ["172.18.255.200", "172.18.255.201",
                                                                         "172.18.255.202"]
    assert loadbalancer.parse_pool("10.1.0.0/30") == ["10.1.0.1", "10.1.0.2"]
    assert loadbalancer.wants_lb({"spec": {"type": "LoadBalancer"}})
    assert not loadbalancer.wants_lb({"spec": {"type": "LoadBalancer", "loadBalancerClass": "other.io/lb"}})


def test_a_crashed_controller_makes_the_controller_manager_exit_to_be_restarted():
    import asyncio

    from skiff.controllers import manager

    async def crash() -> None:
        raise KeyError("boom")

    async def main() -> tuple[list[str], bool]:
        running = manager.Running(ctx=None, tasks=[])  # type: ignore[arg-type]
        stop = asyncio.Event()
        await manager._guard("skiff.controllers.example", crash(), running, stop.set)
        return running.crashed, stop.is_set()

    assert asyncio.run(main()) == (["skiff.controllers.example"], True)


def test_failed_scheduling_message_is_kube_schedulers():
    three = [node("a"), node("b"), node("c")]
    p = pod("p", nodeSelector={"disk": "ssd"})
    _, reasons = scheduler.filter_nodes(p, three)
    assert scheduler.fit_error_message(p, 3, reasons) == (
        "0/3 nodes are available: 3 node(s) didn't match Pod's node affinity/selector. "
        "preemption: 0/3 nodes are available: 3 Preemption is not helpful for scheduling.")
    # Items are "count reason" strings sorted as strings; a node counts under the first filter that
    # rejects it, in kube-scheduler's order (unschedulable, taints, then the selector).
    taint = {"key": "dedicated", "value": "gpu", "effect": "NoSchedule"}
    mixed = [node("a", taints=[taint]), node("b", unschedulable=True, taints=[taint]), node("c"), node("d")]
    _, reasons = scheduler.filter_nodes(p, mixed)
    assert scheduler.fit_error_message(p, 4, reasons) == (
        "0/4 nodes are available: 1 node(s) had untolerated taint {dedicated: gpu}, 1 node(s) were unschedulable, "
        "2 node(s) didn't match Pod's node affinity/selector. "
        "preemption: 0/4 nodes are available: 4 Preemption is not helpful for scheduling.")
    never = pod("p", nodeSelector={"disk": "ssd"}, preemptionPolicy="Never")
    assert scheduler.fit_error_message(never, 3, {"node(s) didn't match Pod's node affinity/selector": 3}) == (
        "0/3 nodes are available: 3 node(s) didn't match Pod's node affinity/selector. "
        "preemption: not eligible due to preemptionPolicy=Never.")
    assert scheduler.fit_error_message(p, 0, {}) == "no nodes available to schedule pods"
    # A cordoned node takes a pod that tolerates the unschedulable taint (as DaemonSet pods do).
    tolerant = pod("p", tolerations=[{"key": "node.kubernetes.io/unschedulable", "operator": "Exists"}])
    assert [n["metadata"]["name"] for n in scheduler.filter_nodes(tolerant, [node("d", unschedulable=True)])[0]] \
        == ["d"]
    assert scheduler.event_message("x" * 2000) == "x" * 1020 + " ..."


def test_unschedulable_condition_is_written_once_and_moves_only_on_a_status_change():
    p = pod("p")
    first = scheduler.unschedulable_condition(p, "0/1 nodes are available: m1.", "2026-01-01T00:00:00Z")
    assert first == {"type": "PodScheduled", "status": "False", "reason": "Unschedulable",
                     "message": "0/1 nodes are available: m1.", "lastProbeTime": None,
                     "lastTransitionTime": "2026-01-01T00:00:00Z"}
    p["status"]["conditions"] = [first]
    assert scheduler.unschedulable_condition(p, "0/1 nodes are available: m1.", "2026-01-01T00:05:00Z") is None
    changed = scheduler.unschedulable_condition(p, "0/2 nodes are available: m2.", "2026-01-01T00:05:00Z")
    assert changed["message"] == "0/2 nodes are available: m2."
    assert changed["lastTransitionTime"] == "2026-01-01T00:00:00Z"  # still False: the transition stays
    p["status"]["conditions"] = [{"type": "PodScheduled", "status": "True", "lastTransitionTime": "2026-01-01T00:00:00Z"}]
    assert scheduler.unschedulable_condition(p, "m", "2026-01-01T00:09:00Z")["lastTransitionTime"] == \
        "2026-01-01T00:09:00Z"


def test_only_node_changes_a_rejecting_filter_cares_about_requeue_a_parked_pod():
    p = pod("p", nodeSelector={"disk": "ssd"})
    plain, ssd = node("a"), node("a", labels={"disk": "ssd"})
    _, reasons = scheduler.filter_nodes(p, [plain])
    rejected = scheduler.diagnose(p, [plain]).rejected_by
    assert rejected == {"NodeAffinity"} and reasons
    heartbeat = {**plain, "status": {"conditions": [{"type": "Ready", "status": "True", "lastHeartbeatTime": "t2"}]}}
    assert not scheduler.node_change_may_help(p, rejected, plain, heartbeat)
    assert scheduler.node_change_may_help(p, rejected, plain, ssd)  # labelled disk=ssd
    assert not scheduler.node_change_may_help(p, rejected, ssd, {**ssd, "spec": {"taints": []}})  # matched before
    assert scheduler.node_change_may_help(p, rejected, None, node("new", labels={"disk": "ssd"}))
    assert not scheduler.node_change_may_help(p, rejected, None, node("new"))
    # A taint going away helps a pod the taint kept out, not one the selector keeps out.
    tainted = node("t", taints=[{"key": "k", "effect": "NoSchedule"}])
    assert scheduler.node_change_may_help(pod("q"), frozenset({"TaintToleration"}), tainted, node("t"))
    assert not scheduler.node_change_may_help(p, rejected, tainted, node("t"))
    assert scheduler.node_change_may_help(pod("q"), frozenset({"NodeReady"}), node("r", ready=False), node("r"))
    assert scheduler.node_change_may_help(pod("q"), frozenset(), None, node("first"))  # there were no nodes
    # The pod's own updates: the scheduler's status writes do not count, new tolerations do.
    withcond = {**p, "status": {"conditions": [{"type": "PodScheduled", "status": "False"}]}}
    assert not scheduler.pod_change_may_help(p, withcond)
    assert scheduler.pod_change_may_help(p, pod("p", nodeSelector={"disk": "ssd"},
                                                 tolerations=[{"operator": "Exists"}]))


def test_unschedulable_pool_backoff_and_leftover_flush():
    from skiff.scheduler import queue

    assert [queue.backoff_duration(n) for n in range(7)] == [0, 1, 2, 4, 8, 10, 10]
    now = [100.0]
    pool = queue.UnschedulablePods(clock=lambda: now[0])
    assert not pool.knows("ns/p")
    assert pool.attempt("ns/p") == 1
    pool.park("ns/p", {"NodeAffinity"})
    assert pool.parked() == [("ns/p", frozenset({"NodeAffinity"}))]
    now[0] += 0.25
    assert pool.release("ns/p") == 0.75  # backoff 1 s from the failure
    assert pool.release("ns/p") is None and not pool.is_parked("ns/p")  # released once only
    assert pool.backoff_over("ns/p", 1)
    now[0] += 1
    pool.attempt("ns/p")
    assert not pool.backoff_over("ns/p", 1)  # a stale timer from before this attempt does nothing
    pool.park("ns/p", {"NodeAffinity"})
    now[0] += 3
    assert pool.release("ns/p") == 0  # the 2 s backoff of the 2nd attempt is over
    pool.attempt("ns/p")
    pool.park("ns/p", {"NodeAffinity"})
    now[0] += queue.MAX_IN_UNSCHEDULABLE - 1
    assert pool.expired() == []
    now[0] += 2
    assert pool.expired() == ["ns/p"]
    pool.forget("ns/p")
    assert not pool.knows("ns/p") and pool.expired() == []
