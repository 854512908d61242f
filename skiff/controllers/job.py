"""Job controller: runs a Job's pods to completion, as kube-controller-manager's job and
ttl-after-finished controllers do.

`plan` is the pure core (a Job, its pods and the time in; the pods to create and delete, the status,
the Events and when to look again out); `run` applies it. What it covers: `completions` and
`parallelism` (also the work-queue form without completions), `completionMode: Indexed` (an index
per pod in its annotation, label, hostname and `JOB_COMPLETION_INDEX`), `backoffLimit` with the
controller's exponential back-off before a failed pod is replaced (10 s, doubling, at most 6 min;
container restarts count too under `restartPolicy: OnFailure`), `activeDeadlineSeconds`, `suspend`
and `ttlSecondsAfterFinished`. Counts are kept in the status, so they survive the deletion of
finished pods (upstream tracks them with pod finalizers; here the controller remembers the status
it computed and which pods it counted, and after a restart takes the status's counts as covering
the earliest finished pods). Not covered: podFailurePolicy, successPolicy and backoffLimitPerIndex (their Jobs
run as if the field were unset).
"""

from __future__ import annotations

import copy
import logging
import time
from collections.abc import Iterable
from dataclasses import dataclass, field

from skiff.api import meta
from skiff.client.informer import WorkQueue, run_workers
from skiff.client.rest import ClientError
from skiff.controllers.base import JOBS, PODS, EventRecorder, pod_is_ready, replace_status, split_key
from skiff.controllers.podcontrol import Expectations, create_and_delete, pod_handler
from skiff.controllers.replicaset import owned_pods

log = logging.getLogger("skiff.controllers.job")

INDEX_KEY = "batch.kubernetes.io/job-completion-index"
INDEX_ENV = "JOB_COMPLETION_INDEX"
BACKOFF_INITIAL = 10.0
BACKOFF_MAX = 360.0
BURST = 100


@dataclass
class Plan:
    create: list[int | None] = field(default_factory=list)  # a completion index per new pod (None: NonIndexed)
    delete: list[str] = field(default_factory=list)  # pod names
    status: dict = field(default_factory=dict)
    events: list[tuple[str, str, str]] = field(default_factory=list)  # (type, reason, message)
    requeue_after: float | None = None
    delete_job: bool = False  # its ttlSecondsAfterFinished has passed
    counted: list[str] = field(default_factory=list)  # uids of the finished pods the status counts


def _ts(t: float) -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(t))


def _time(value: str | None) -> float | None:
    parsed = meta.parse_time(value) if value else None
    return parsed.timestamp() if parsed else None


def _condition(status: dict, kind: str) -> dict | None:
    return next((c for c in status.get("conditions") or [] if c.get("type") == kind and c.get("status") == "True"),
                None)


def _set_condition(status: dict, kind: str, reason: str, message: str, now: float, value: str = "True") -> None:
    conditions = status.setdefault("conditions", [])
    old = next((c for c in conditions if c.get("type") == kind), None)
    if old is not None and old.get("status") == value:
        return
    new = {"type": kind, "status": value, "lastProbeTime": _ts(now), "lastTransitionTime": _ts(now),
           "reason": reason, "message": message}
    if old is None:
        conditions.append(new)
    else:
        conditions[conditions.index(old)] = new


def pod_index(pod: dict) -> int | None:
    value = (pod["metadata"].get("annotations") or {}).get(INDEX_KEY)
    try:
        return int(value) if value is not None else None
    except ValueError:
        return None


def format_indexes(indexes: set[int]) -> str:
    """`0-2,5`: the form of status.completedIndexes."""
    parts, run = [], []
    for i in sorted(indexes):
        if run and i == run[-1] + 1:
            run.append(i)
            continue
        if run:
            parts.append(f"{run[0]}-{run[-1]}" if len(run) > 1 else str(run[0]))
        run = [i]
    if run:
        parts.append(f"{run[0]}-{run[-1]}" if len(run) > 1 else str(run[0]))
    return ",".join(parts)


def parse_indexes(text: str | None) -> set[int]:
    found: set[int] = set()
    for part in (text or "").split(","):
        if not part:
            continue
        first, _, last = part.partition("-")
        found.update(range(int(first), int(last or first) + 1))
    return found


def _finished_at(pod: dict) -> float:
    latest = 0.0
    for cs in (pod.get("status") or {}).get("containerStatuses") or []:
        latest = max(latest, _time((cs.get("state") or {}).get("terminated", {}).get("finishedAt")) or 0.0)
    return latest or (_time(pod["metadata"].get("creationTimestamp")) or 0.0)


def plan(job: dict, pods: list[dict], now: float, counted: Iterable[str] = ()) -> Plan:
    """What the controller does next for `job`, given the pods it owns and the finished ones its
    status already counts (the previous Plan's `counted`)."""
    spec, old_status = job.get("spec") or {}, job.get("status") or {}
    out = Plan(status=copy.deepcopy(old_status))
    status = out.status
    indexed = spec.get("completionMode") == "Indexed"
    completions = spec.get("completions")
    parallelism = spec.get("parallelism", 1)
    never = ((spec.get("template") or {}).get("spec") or {}).get("restartPolicy") == "Never"

    terminating = [p for p in pods if p["metadata"].get("deletionTimestamp")]
    alive = [p for p in pods if not p["metadata"].get("deletionTimestamp")]
    succeeded_pods = [p for p in alive if (p.get("status") or {}).get("phase") == "Succeeded"]
    failed_pods = [p for p in pods if (p.get("status") or {}).get("phase") == "Failed"]
    active = [p for p in alive if (p.get("status") or {}).get("phase") not in ("Succeeded", "Failed")]

    # Counts only grow: the pods behind them may be deleted once counted.
    counted = set(counted)
    done_indexes = parse_indexes(old_status.get("completedIndexes"))
    succeeded, failed = old_status.get("succeeded", 0), old_status.get("failed", 0)
    for p in succeeded_pods:
        uid = p["metadata"]["uid"]
        if uid not in counted:
            counted.add(uid)
            index = pod_index(p)
            if indexed and index is not None:
                if index not in done_indexes:
                    done_indexes.add(index)
                    succeeded += 1
            else:
                succeeded += 1
    last_failure = 0.0
    for p in failed_pods:
        last_failure = max(last_failure, _finished_at(p))
        uid = p["metadata"]["uid"]
        if uid not in counted:
            counted.add(uid)
            failed += 1
    restarts = 0 if never else sum(cs.get("restartCount", 0) for p in active
                                   for cs in (p.get("status") or {}).get("containerStatuses") or [])

    finished = _condition(old_status, "Complete") or _condition(old_status, "Failed")
    suspended = spec.get("suspend") is True
    if not finished and not suspended and not status.get("startTime"):
        status["startTime"] = _ts(now)
    started = _time(status.get("startTime"))

    if not finished:
        if completions is not None:
            complete = succeeded >= completions
        else:  # a work queue: done once one pod succeeded and none is left running
            complete = succeeded > 0 and not active
        deadline = spec.get("activeDeadlineSeconds")
        if complete:
            message = "Reached expected number of succeeded pods"
            _set_condition(status, "SuccessCriteriaMet", "CompletionsReached", message, now)
            _set_condition(status, "Complete", "CompletionsReached", message, now)
            status["completionTime"] = _ts(now)
            out.events.append(("Normal", "Completed", "Job completed"))
        elif failed + restarts > spec.get("backoffLimit", 6):
            message = "Job has reached the specified backoff limit"
            _set_condition(status, "FailureTarget", "BackoffLimitExceeded", message, now)
            _set_condition(status, "Failed", "BackoffLimitExceeded", message, now)
            out.events.append(("Warning", "BackoffLimitExceeded", message))
        elif deadline is not None and started is not None and not suspended and now - started >= deadline:
            message = "Job was active longer than specified deadline"
            _set_condition(status, "FailureTarget", "DeadlineExceeded", message, now)
            _set_condition(status, "Failed", "DeadlineExceeded", message, now)
            out.events.append(("Warning", "DeadlineExceeded", message))
        finished = _condition(status, "Complete") or _condition(status, "Failed")

    if finished or suspended:
        # Nothing runs any more: a failed or suspended Job's pods are deleted (a complete one has none).
        out.delete = [p["metadata"]["name"] for p in active]
        if suspended and not finished:
            _set_condition(status, "Suspended", "JobSuspended", "Job suspended", now)
    else:
        if _condition(status, "Suspended"):
            _set_condition(status, "Suspended", "JobResumed", "Job resumed", now, value="False")
        if completions is not None and indexed:
            running = {pod_index(p) for p in active}
            todo = [i for i in range(completions) if i not in done_indexes and i not in running]
            want = max(0, min(parallelism - len(active), len(todo)))
            new: list[int | None] = list(todo[:want])
        else:
            remaining = (completions - succeeded) if completions is not None else (0 if succeeded else parallelism)
            want_active = max(0, min(parallelism, remaining))
            new = [None] * max(0, want_active - len(active))
            if len(active) > want_active:  # parallelism lowered: the newest go first
                newest = sorted(active, key=lambda p: p["metadata"].get("creationTimestamp") or "", reverse=True)
                out.delete = [p["metadata"]["name"] for p in newest[:len(active) - want_active]]
        if new and failed:
            # The controller waits before replacing failed pods: 10 s, doubling per failure, at most 6 min.
            wait_until = last_failure + min(BACKOFF_MAX, BACKOFF_INITIAL * 2 ** (failed - 1))
            if now < wait_until:
                out.requeue_after = wait_until - now
                new = []
        out.create = new[:BURST]
        deadline = spec.get("activeDeadlineSeconds")
        if deadline is not None and started is not None:
            left = started + deadline - now
            out.requeue_after = min(out.requeue_after or left, left)

    status["active"] = len(active)
    status["uncountedTerminatedPods"] = {}
    status["ready"] = sum(1 for p in active if pod_is_ready(p))
    status["terminating"] = len(terminating)
    for key, value in (("succeeded", succeeded), ("failed", failed)):
        status[key] = value
    if indexed:
        status["completedIndexes"] = format_indexes(done_indexes)
    for key in ("active", "succeeded", "failed"):
        if not status.get(key):
            status.pop(key, None)
    if indexed and not status.get("completedIndexes"):
        status.pop("completedIndexes", None)
    out.counted = sorted(counted)

    ttl = spec.get("ttlSecondsAfterFinished")
    ended = _condition(status, "Complete") or _condition(status, "Failed")
    if ttl is not None and ended:
        expires = (_time(ended.get("lastTransitionTime")) or now) + ttl
        if now >= expires:
            out.delete_job = True
        else:
            out.requeue_after = min(out.requeue_after or expires - now, expires - now)
    return out


def already_counted(job: dict, pods: list[dict]) -> list[str]:
    """The finished pods a Job's status counts already, when the controller has no memory of them (it
    restarted): the earliest finished, as many as the counts say."""
    status = job.get("status") or {}
    uids: list[str] = []
    for phase, count in (("Succeeded", status.get("succeeded", 0)), ("Failed", status.get("failed", 0))):
        done = sorted((p for p in pods if (p.get("status") or {}).get("phase") == phase), key=_finished_at)
        uids += [p["metadata"]["uid"] for p in done[:count]]
    return uids


def pod_for(job: dict, index: int | None) -> dict:
    """A pod of `job` (for completion `index` in Indexed mode), as the controller creates it."""
    tmpl = copy.deepcopy(job["spec"]["template"])
    md = tmpl.get("metadata") or {}
    name = job["metadata"]["name"]
    labels = dict(md.get("labels") or {})
    annotations = dict(md.get("annotations") or {})
    spec = tmpl.get("spec") or {}
    generate = name + "-"
    if index is not None:
        generate = f"{name}-{index}-"
        annotations[INDEX_KEY] = str(index)
        labels[INDEX_KEY] = str(index)
        spec.setdefault("hostname", f"{name}-{index}")
        for c in [*(spec.get("initContainers") or []), *(spec.get("containers") or [])]:
            env = c.setdefault("env", [])
            if not any(e.get("name") == INDEX_ENV for e in env):
                env.append({"name": INDEX_ENV, "valueFrom": {"fieldRef": {
                    "apiVersion": "v1", "fieldPath": f"metadata.annotations['{INDEX_KEY}']"}}})
    pod_md = {"generateName": generate, "namespace": job["metadata"]["namespace"], "labels": labels,
              "ownerReferences": [meta.owner_reference(job)]}
    if annotations:
        pod_md["annotations"] = annotations
    return {"apiVersion": "v1", "kind": "Pod", "metadata": pod_md, "spec": spec}


async def run(ctx) -> None:
    client = ctx.client
    jobs = ctx.informer(JOBS)
    pods = ctx.informer(PODS)
    queue = WorkQueue()
    exp = Expectations()
    recorder = EventRecorder(client, "job-controller")
    # Job uid -> the status last computed for it and the uids of the finished pods its counts
    # include: the informer's copy may not show that status yet, and counting a pod again from a
    # stale copy would run it again.
    known: dict[str, tuple[dict, list[str]]] = {}

    def on_job(etype: str, job: dict, old: dict | None) -> None:
        if etype == "DELETED":
            known.pop(job["metadata"]["uid"], None)
        queue.add(meta.key_of(job))

    jobs.add_handler(on_job)

    pods.add_handler(pod_handler("Job", exp, queue.add))
    await ctx.wait_synced(JOBS, PODS)

    async def sync(key: str) -> None:
        job = jobs.get(key)
        if job is None or job["metadata"].get("deletionTimestamp"):
            return
        if not exp.satisfied(key):
            queue.add_after(key, 0.2)
            return
        ns, _ = split_key(key)
        uid = job["metadata"]["uid"]
        owned = owned_pods(job, pods.list(ns))
        if uid not in known:
            known[uid] = (copy.deepcopy(job.get("status") or {}), already_counted(job, owned))
        status, counted = known[uid]
        p = plan({**job, "status": status}, owned, time.time(), counted)
        known[uid] = (copy.deepcopy(p.status), p.counted)
        if p.delete_job:
            try:
                await client.delete(JOBS, ns, job["metadata"]["name"], propagation="Background")
            except ClientError as e:
                if e.code != 404:
                    raise
            return
        await create_and_delete(client, recorder, exp, key, job, [pod_for(job, i) for i in p.create], p.delete,
                                "job-controller")
        for etype, reason, message in p.events:
            await recorder.record(job, etype, reason, message)
        if p.status != (job.get("status") or {}):
            new = copy.deepcopy(job)
            new["status"] = p.status
            await replace_status(client, JOBS, new, queue)
        if p.requeue_after is not None:
            queue.add_after(key, max(0.05, p.requeue_after))

    await run_workers(queue, sync, workers=4, name="job")
