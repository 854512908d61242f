"""The scheduler: binds pending pods to Ready nodes.

Filters as kube-scheduler does for the fields Skiff supports (unschedulable, NoSchedule taints and
tolerations, node readiness, nodeSelector and required node affinity), then scores by preferred node
affinity (the highest summed weight of matching terms), then by spreading: fewest pods of the same
owner on the node first, then fewest pods overall.

A pod that fits no node gets one FailedScheduling event per attempt and the PodScheduled=False
condition (written only when it changes), then waits in the unschedulable pool (skiff.scheduler.queue)
until a node change could make it fit, as kube-scheduler's queueing hints decide, or 5 minutes pass.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass

from skiff.api import meta
from skiff.client.informer import WorkQueue, run_workers
from skiff.client.rest import ClientError
from skiff.controllers.base import NODES, PODS, BackgroundEvents, EventRecorder, split_key
from skiff.scheduler.queue import FLUSH_PERIOD, UnschedulablePods

log = logging.getLogger("skiff.scheduler")
# Bindings in flight at once: enough to keep the API server busy during a burst of new pods.
BIND_CONCURRENCY = 16
# An Event's message is cut to this length (the API's limit for Event notes), as kube-scheduler does.
EVENT_MESSAGE_LIMIT = 1024
UNSCHEDULABLE_TAINT = {"key": "node.kubernetes.io/unschedulable", "effect": "NoSchedule"}
NO_NODES = "no nodes available to schedule pods"


def node_is_ready(node: dict) -> bool:
    c = meta.get_condition(node, "Ready")
    return bool(c and c.get("status") == "True")


def tolerates(pod: dict, taint: dict) -> bool:
    for t in pod.get("spec", {}).get("tolerations") or []:
        if t.get("effect") and t["effect"] != taint.get("effect"):
            continue
        op = t.get("operator", "Equal")
        if op == "Exists" and (not t.get("key") or t["key"] == taint.get("key")):
            return True
        if op == "Equal" and t.get("key") == taint.get("key") and t.get("value", "") == taint.get("value", ""):
            return True
    return False


# Each filter returns why `node` cannot take `pod`, or None when it can.

def _unschedulable(pod: dict, node: dict) -> str | None:
    if node.get("spec", {}).get("unschedulable") and not tolerates(pod, UNSCHEDULABLE_TAINT):
        return "node(s) were unschedulable"
    return None


def _taints(pod: dict, node: dict) -> str | None:
    for t in node.get("spec", {}).get("taints") or []:
        if t.get("effect") in ("NoSchedule", "NoExecute") and not tolerates(pod, t):
            return f"node(s) had untolerated taint {{{t['key']}: {t.get('value', '')}}}"
    return None


def _ready(pod: dict, node: dict) -> str | None:
    # Stands in for the not-ready taint kube's node lifecycle controller would add, hence its place
    # among the taint-like filters, before the selector.
    return None if node_is_ready(node) else "node(s) were not ready"


def _requirement_holds(req: dict, values_of: Callable[[str], str | None]) -> bool:
    """One NodeSelectorRequirement: In, NotIn, Exists, DoesNotExist, Gt and Lt (integers)."""
    value, op, wanted = values_of(req.get("key", "")), req.get("operator"), req.get("values") or []
    if op == "In":
        return value is not None and value in wanted
    if op == "NotIn":
        return value is None or value not in wanted
    if op == "Exists":
        return value is not None
    if op == "DoesNotExist":
        return value is None
    if op in ("Gt", "Lt") and value is not None and len(wanted) == 1:
        try:
            have, bound = int(value), int(wanted[0])
        except ValueError:
            return False
        return have > bound if op == "Gt" else have < bound
    return False


def _term_matches(term: dict, node: dict) -> bool:
    """A NodeSelectorTerm: all its label expressions and field expressions (only metadata.name
    exists); an empty term matches nothing."""
    exprs, field_exprs = term.get("matchExpressions") or [], term.get("matchFields") or []
    if not exprs and not field_exprs:
        return False
    labels = node["metadata"].get("labels") or {}
    fields = {"metadata.name": node["metadata"].get("name")}
    return all(_requirement_holds(r, labels.get) for r in exprs) and \
        all(_requirement_holds(r, fields.get) for r in field_exprs)


def preferred_weight(pod: dict, node: dict) -> int:
    """preferredDuringSchedulingIgnoredDuringExecution: the summed weights of the terms `node` matches."""
    affinity = ((pod.get("spec") or {}).get("affinity") or {}).get("nodeAffinity") or {}
    return sum(int(p.get("weight") or 0) for p in affinity.get("preferredDuringSchedulingIgnoredDuringExecution") or []
               if _term_matches(p.get("preference") or {}, node))


def node_affinity_matches(pod: dict, node: dict) -> bool:
    """requiredDuringSchedulingIgnoredDuringExecution: any one term, all of a term's label
    expressions and field expressions (only metadata.name exists)."""
    affinity = ((pod.get("spec") or {}).get("affinity") or {}).get("nodeAffinity") or {}
    required = affinity.get("requiredDuringSchedulingIgnoredDuringExecution")
    if not required:
        return True
    return any(_term_matches(term, node) for term in required.get("nodeSelectorTerms") or [])


def node_selection_matches(pod: dict, node: dict) -> bool:
    """The pod's nodeSelector and required node affinity both admit `node`."""
    labels = node["metadata"].get("labels") or {}
    return all(labels.get(k) == v for k, v in (pod.get("spec", {}).get("nodeSelector") or {}).items()) and \
        node_affinity_matches(pod, node)


def _selector(pod: dict, node: dict) -> str | None:
    return None if node_selection_matches(pod, node) else "node(s) didn't match Pod's node affinity/selector"


# In kube-scheduler's plugin order (NodeUnschedulable, TaintToleration, NodeAffinity): a node is
# counted under the first filter that rejects it, so the message's counts come out the same.
FILTERS: list[tuple[str, Callable[[dict, dict], str | None]]] = [
    ("NodeUnschedulable", _unschedulable),
    ("TaintToleration", _taints),
    ("NodeReady", _ready),
    ("NodeAffinity", _selector),
]


@dataclass
class Diagnosis:
    feasible: list[dict]
    reasons: dict[str, int]  # reason -> number of nodes rejected for it
    rejected_by: frozenset[str]  # names of the filters that rejected at least one node


def diagnose(pod: dict, nodes: list[dict]) -> Diagnosis:
    reasons: dict[str, int] = {}
    rejected_by: set[str] = set()
    ok = []
    for node in nodes:
        for name, check in FILTERS:
            why = check(pod, node)
            if why is not None:
                reasons[why] = reasons.get(why, 0) + 1
                rejected_by.add(name)
                break
        else:
            ok.append(node)
    return Diagnosis(ok, reasons, frozenset(rejected_by))


def filter_nodes(pod: dict, nodes: list[dict]) -> tuple[list[dict], dict[str, int]]:
    """-> (feasible nodes, reason -> count of nodes rejected for it), for FailedScheduling messages."""
    d = diagnose(pod, nodes)
    return d.feasible, d.reasons


def fit_error_message(pod: dict, total: int, reasons: dict[str, int]) -> str:
    """The FailedScheduling message kube-scheduler 1.33 writes when no node fits.

    "count reason" items sorted as strings, then what preemption found. Every Skiff filter rejects a
    node for a reason that evicting pods cannot cure, so preemption reports each node as not helpful
    (or declines outright for a pod with preemptionPolicy Never)."""
    if total == 0:
        return NO_NODES
    histogram = sorted(f"{n} {r}" for r, n in reasons.items())
    msg = f"0/{total} nodes are available: {', '.join(histogram)}."
    if pod.get("spec", {}).get("preemptionPolicy") == "Never":
        return f"{msg} preemption: not eligible due to preemptionPolicy=Never."
    return f"{msg} preemption: 0/{total} nodes are available: {total} Preemption is not helpful for scheduling."


def event_message(msg: str) -> str:
    if len(msg) <= EVENT_MESSAGE_LIMIT:
        return msg
    return msg[:EVENT_MESSAGE_LIMIT - 4] + " ..."


def unschedulable_condition(pod: dict, message: str, now: str) -> dict | None:
    """The PodScheduled condition to write after a failed attempt, or None when the pod already has
    it: rewriting an unchanged condition only produces pod updates. lastTransitionTime moves only
    when the status does."""
    cur = meta.get_condition(pod, "PodScheduled")
    want = {"type": "PodScheduled", "status": "False", "reason": "Unschedulable", "message": message,
            "lastProbeTime": None}
    if cur is not None and all(cur.get(k) == v for k, v in want.items()):
        return None
    since = cur.get("lastTransitionTime") if cur is not None and cur.get("status") == "False" else None
    return {**want, "lastTransitionTime": since or now}


def node_change_may_help(pod: dict, rejected_by: frozenset[str], old: dict | None, new: dict) -> bool:
    """Whether a node added (old None) or updated could let a parked pod fit, after kube-scheduler's
    queueing hints: one of the filters that rejected the pod now passes on the node and did not
    before. Heartbeats and other changes the filters do not read never requeue a pod."""
    if not rejected_by:
        return True  # rejected without a filter's verdict (there were no nodes): any node may do
    for name, check in FILTERS:
        if name in rejected_by and check(pod, new) is None and (old is None or check(pod, old) is not None):
            return True
    return False


def pod_change_may_help(old: dict, new: dict) -> bool:
    """An update of the parked pod itself: of what the filters read, only tolerations can change on
    an existing pod (nodeSelector is immutable), and the scheduler's own status writes must not count."""
    return (old.get("spec", {}).get("tolerations") or []) != (new.get("spec", {}).get("tolerations") or [])


def score(pod: dict, nodes: list[dict], pods: list[dict]) -> dict:
    owner = meta.controller_ref(pod)
    owner_uid = owner.get("uid") if owner else None

    def key(node: dict) -> tuple[int, int, int, str]:
        name = node["metadata"]["name"]
        on_node = [p for p in pods if p.get("spec", {}).get("nodeName") == name
                   and p.get("status", {}).get("phase") not in ("Succeeded", "Failed")]
        same = sum(1 for p in on_node if owner_uid and (meta.controller_ref(p) or {}).get("uid") == owner_uid)
        # Preferred node affinity first: on nodes alike in everything else (as here), it is what
        # decides among kube-scheduler's scores too.
        return -preferred_weight(pod, node), same, len(on_node), name
    return min(nodes, key=key)


async def run(ctx) -> None:
    client = ctx.client
    pods = ctx.informer(PODS)
    nodes = ctx.informer(NODES)
    queue = WorkQueue()
    recorder = EventRecorder(client, "default-scheduler")
    pool = UnschedulablePods()
    # Bindings made but not yet seen in the cache count towards spreading immediately.
    assumed: dict[str, str] = {}
    binds: set[asyncio.Task] = set()
    # Scheduled events wait while bindings are in flight: binding is what the pods wait for.
    events = BackgroundEvents(recorder, busy=lambda: bool(binds))
    binding_slots = asyncio.Semaphore(BIND_CONCURRENCY)
    loop = asyncio.get_running_loop()

    def pending(pod: dict) -> bool:
        spec = pod.get("spec", {})
        return (not spec.get("nodeName") and spec.get("schedulerName", "default-scheduler") == "default-scheduler"
                and not pod["metadata"].get("deletionTimestamp"))

    def requeue(key: str) -> None:
        """Out of the unschedulable pool, into the work queue once its backoff is over."""
        delay = pool.release(key)
        if delay is None:
            return
        if delay <= 0:
            queue.add(key)
            return
        attempts = pool.attempts(key)

        def backoff_over() -> None:
            if pool.backoff_over(key, attempts):  # not tried, parked again or gone meanwhile
                queue.add(key)
        loop.call_later(delay, backoff_over)

    def on_pod(etype: str, pod: dict, old: dict | None) -> None:
        key = meta.key_of(pod)
        if etype == "DELETED" or pod.get("spec", {}).get("nodeName"):
            assumed.pop(key, None)
        if etype == "DELETED" or not pending(pod):
            pool.forget(key)
            return
        if old is not None and old["metadata"].get("uid") != pod["metadata"].get("uid"):
            pool.forget(key)  # deleted and created again between two lists: a new pod
        if not pool.knows(key):
            queue.add(key)
        elif old is not None and pool.is_parked(key) and pod_change_may_help(old, pod):
            requeue(key)
        # Any other update of a pod already tried (its status, labels, the scheduler's own condition
        # write) leaves it where it is: requeueing on those is what made a busy loop.

    def on_node(etype: str, node: dict, old: dict | None) -> None:
        if etype == "DELETED":
            return  # one node fewer never makes a pod fit
        for key, rejected_by in pool.parked():
            pod = pods.get(key)
            if pod is not None and node_change_may_help(pod, rejected_by, old if etype == "MODIFIED" else None,
                                                        node):
                requeue(key)

    pods.add_handler(on_pod)
    nodes.add_handler(on_node)
    await ctx.wait_synced(PODS, NODES)

    async def flush_leftovers() -> None:
        # A pod no event has helped is tried again now and then anyway: something the filters do not
        # watch may have changed.
        while True:
            await asyncio.sleep(FLUSH_PERIOD)
            for key in pool.expired():
                requeue(key)

    async def schedule(key: str) -> None:
        pod = pods.get(key)
        if pod is None or not pending(pod) or key in assumed:
            return
        pool.attempt(key)
        # The scoring below reads the cache and the assumptions; no await may come between the two.
        all_nodes = nodes.list()
        diag = diagnose(pod, all_nodes)
        if not diag.feasible:
            # Parked before the first await, so a node event from here on finds it and requeues it.
            pool.park(key, diag.rejected_by)
            msg = fit_error_message(pod, len(all_nodes), diag.reasons)
            await recorder.record(pod, "Warning", "FailedScheduling", event_message(msg))
            cond = unschedulable_condition(pod, msg, meta.now_rfc3339())
            if cond is not None:
                try:
                    await client.patch(PODS, pod["metadata"]["namespace"], pod["metadata"]["name"],
                                       {"status": {"conditions": [cond]}}, "strategic", sub="status")
                except ClientError:
                    pass
            return
        view = list(pods.list())
        for k, node_name in assumed.items():
            p = pods.get(k)
            if p is not None:
                view.append({**p, "spec": {**p.get("spec", {}), "nodeName": node_name}})
        node = score(pod, diag.feasible, view)
        node_name = node["metadata"]["name"]
        # Assume the binding before it is written, as kube-scheduler does, so that a pod scheduled
        # concurrently already counts this one when spreading; then bind in the background, as
        # kube-scheduler's binding cycle does, so the next pod is placed without waiting for the API.
        assumed[key] = node_name
        task = loop.create_task(bind(key, pod, node_name), name=f"bind-{key}")
        binds.add(task)
        task.add_done_callback(binds.discard)

    async def bind(key: str, pod: dict, node_name: str) -> None:
        ns, name = split_key(key)
        binding = {"apiVersion": "v1", "kind": "Binding", "metadata": {"name": name, "namespace": ns},
                   "target": {"apiVersion": "v1", "kind": "Node", "name": node_name}}
        async with binding_slots:
            # Stamped before the write: the kubelet may see the binding, and record its own first
            # events, before this POST returns, and `kubectl get events` must still list Scheduled first.
            bound_at = time.time()
            try:
                await client.request("POST", client.path(PODS, ns, name, "binding"), body=binding)
            except Exception as e:
                assumed.pop(key, None)
                if not (isinstance(e, ClientError) and e.code in (404, 409)):  # gone, or bound elsewhere
                    log.warning("binding %s to %s failed: %s", key, node_name, e)
                    queue.add_rate_limited(key)
                return
        events.record(pod, "Normal", "Scheduled", f"Successfully assigned {ns}/{name} to {node_name}", at=bound_at)

    await asyncio.gather(run_workers(queue, schedule, workers=2, name="scheduler"), flush_leftovers())
