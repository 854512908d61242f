"""Deployment controller: Deployment -> ReplicaSets with pod-template-hash, revisions, rolling update
(maxSurge/maxUnavailable) or Recreate, and status with the Available and Progressing conditions."""

from __future__ import annotations

import copy
import functools
import json
import logging
import math
from dataclasses import dataclass

from skiff.api import meta
from skiff.api.protobuf_schema import MESSAGES
from skiff.api.quantity import parse_quantity
from skiff.client.informer import WorkQueue, run_workers
from skiff.client.rest import ClientError
from skiff.controllers.base import DEPLOYMENTS, PODS, REPLICASETS, EventRecorder, replace_status, split_key

log = logging.getLogger("skiff.controllers.deployment")
REVISION = "deployment.kubernetes.io/revision"
REVISION_HISTORY = "deployment.kubernetes.io/revision-history"
DESIRED_REPLICAS = "deployment.kubernetes.io/desired-replicas"
MAX_REPLICAS = "deployment.kubernetes.io/max-replicas"
HASH_LABEL = "pod-template-hash"
_SAFE = "bcdfghjklmnpqrstvwxz2456789"
# Deployment annotations that are the controller's or kubectl's bookkeeping, never copied to a
# ReplicaSet (kubectl rollout undo skips the same set when it copies them back).
SKIP_ANNOTATIONS = frozenset({"kubectl.kubernetes.io/last-applied-configuration", REVISION, REVISION_HISTORY,
                              DESIRED_REPLICAS, MAX_REPLICAS, "deprecated.deployment.rollback.to"})
# Upstream caps revision-history so that a ReplicaSet rolled back to many times keeps a bounded annotation.
MAX_REVISION_HISTORY_CHARS = 2000


# ---- template equality -------------------------------------------------------------------------
#
# Upstream compares templates as decoded Go structs, so JSON spellings that decode to the same struct
# are equal: `"creationTimestamp": null` (what kubectl prints for every template, and sends back in
# `rollout undo`) and no creationTimestamp at all; `"resources": {}` and no resources; `[]`/`{}` and an
# absent list or map; `"hostNetwork": false` and no hostNetwork. A Go pointer keeps an explicit zero
# (`automountServiceAccountToken: false` is not the same as unset), and Quantities compare by value.
# The field layout (pointer, omitempty, inline) comes from the protobuf schema, which records it.

@dataclass(frozen=True)
class _Field:
    type: str
    repeated: bool
    pointer: bool


@functools.cache
def _json_fields(message: str) -> dict[str, _Field]:
    out: dict[str, _Field] = {}
    for item in MESSAGES[message].split(","):
        _num, name, typ, flags = item.split(" ")
        if "i" in flags:
            out.update(_json_fields(typ))  # an inline struct's fields sit in its parent's JSON object
        else:
            out[name] = _Field(typ, "r" in flags, "p" in flags)
    return out


_ABSENT = object()


def _is_zero(v: object) -> bool:
    if isinstance(v, bool):
        return v is False
    if isinstance(v, (int, float)):
        return v == 0
    return v == "" or v == {}


def _plain(v: object) -> object:
    """A value the schema does not describe: only nulls can be dropped without knowing the Go type."""
    if isinstance(v, dict):
        return {k: _plain(x) for k, x in v.items() if x is not None}
    if isinstance(v, list):
        return [_plain(x) for x in v]
    return v


def _canon_value(typ: str, v: object) -> object:
    if typ in MESSAGES and isinstance(v, dict):
        return _canon_message(typ, v)
    if typ == "resource.Quantity" and isinstance(v, (str, int, float)):
        try:
            return str(parse_quantity(v).normalize())
        except ValueError:
            return v
    return _plain(v)


def _canon_field(f: _Field, v: object) -> object:
    if v is None:
        return _ABSENT
    if f.repeated:
        if not isinstance(v, list):
            return _plain(v)
        return [_canon_value(f.type, x) for x in v] if v else _ABSENT
    if f.type.startswith("map:"):
        if not isinstance(v, dict):
            return _plain(v)
        value_type = f.type.split(":", 2)[2]
        return {k: _canon_value(value_type, x) for k, x in v.items()} if v else _ABSENT
    out = _canon_value(f.type, v)
    if not f.pointer and _is_zero(out):
        return _ABSENT
    return out


def _canon_message(message: str, obj: dict) -> dict:
    fields = _json_fields(message)
    out = {}
    for key, v in obj.items():
        f = fields.get(key)
        c = _plain(v) if f is None else _canon_field(f, v)
        if c is not _ABSENT and c is not None:
            out[key] = c
    return out


def semantic_template(template: dict) -> dict:
    """The pod template as the fields it means, without the pod-template-hash label: two templates
    are the same to the controller exactly when these are equal."""
    t = dict(template or {})
    labels = (t.get("metadata") or {}).get("labels")
    if isinstance(labels, dict) and HASH_LABEL in labels:
        t["metadata"] = {**t["metadata"], "labels": {k: v for k, v in labels.items() if k != HASH_LABEL}}
    return _canon_message("core.v1.PodTemplateSpec", t)


def template_hash(template: dict, collision_count: int = 0) -> str:
    """A short, stable name suffix from the pod template, in the same alphabet kube uses. Computed on
    the semantic form, so a template and its null-vs-absent respelling get one name."""
    data = json.dumps(semantic_template(template), sort_keys=True, separators=(",", ":")).encode()
    h = 0x811C9DC5
    for b in data + str(collision_count).encode():
        h = ((h ^ b) * 0x01000193) & 0xFFFFFFFF
    return "".join(_SAFE[ord(c) % len(_SAFE)] for c in str(h))


def templates_equal(a: dict, b: dict) -> bool:
    return semantic_template(a) == semantic_template(b)


def find_new_replicaset(owned: list[dict], template: dict) -> dict | None:
    """The ReplicaSet running `template`. Should there be several (one made by an older controller
    that compared templates more strictly), the oldest wins, as upstream, so the choice is stable."""
    want = semantic_template(template)
    ordered = sorted(owned, key=lambda rs: (rs["metadata"].get("creationTimestamp") or "", rs["metadata"]["name"]))
    return next((rs for rs in ordered if semantic_template(rs["spec"]["template"]) == want), None)


# ---- revisions -----------------------------------------------------------------------------------

def revision_of(rs: dict) -> int:
    try:
        return int((rs["metadata"].get("annotations") or {}).get(REVISION, "0"))
    except ValueError:
        return 0


def new_rs_annotations(d: dict, current: dict | None, new_revision: int) -> dict:
    """The annotations the Deployment's current ReplicaSet should carry: the Deployment's own (less
    bookkeeping), and a revision raised to `new_revision` if below it. A ReplicaSet that had a
    revision and is raised to a new one is being rolled back to: its old number joins revision-history."""
    out = dict(current or {})
    for k, v in ((d.get("metadata") or {}).get("annotations") or {}).items():
        if k not in SKIP_ANNOTATIONS:
            out[k] = v
    old = out.get(REVISION)
    try:
        old_n = int(old) if old is not None else 0
    except ValueError:
        return out  # not ours to renumber; upstream leaves an unparsable revision alone too
    if old_n < new_revision:
        out[REVISION] = str(new_revision)
        if old is not None:
            history = [r for r in (out.get(REVISION_HISTORY) or "").split(",") if r] + [old]
            while len(",".join(history)) > MAX_REVISION_HISTORY_CHARS and len(history) > 1:
                history.pop(0)
            out[REVISION_HISTORY] = ",".join(history)
    return out


def resolve_fenceposts(d: dict) -> tuple[int, int]:
    """(maxSurge, maxUnavailable) as absolute numbers: surge rounds up, unavailable down; never both 0."""
    replicas = d["spec"].get("replicas", 1)
    ru = (d["spec"].get("strategy") or {}).get("rollingUpdate") or {}

    def value(v, round_up: bool) -> int:
        if v is None:
            v = "25%"
        if isinstance(v, str) and v.endswith("%"):
            x = int(v[:-1]) * replicas / 100
            return math.ceil(x) if round_up else math.floor(x)
        return int(v)
    surge, unavail = value(ru.get("maxSurge"), True), value(ru.get("maxUnavailable"), False)
    if surge == 0 and unavail == 0:
        unavail = 1
    return surge, unavail


async def run(ctx) -> None:
    client = ctx.client
    deps = ctx.informer(DEPLOYMENTS)
    rss = ctx.informer(REPLICASETS)
    pods = ctx.informer(PODS)
    queue = WorkQueue()
    recorder = EventRecorder(client, "deployment-controller")

    deps.add_handler(lambda t, o, old: queue.add(meta.key_of(o)))

    def on_rs(etype: str, rs: dict, old: dict | None) -> None:
        ref = meta.controller_ref(rs)
        if ref and ref.get("kind") == "Deployment":
            queue.add(f"{rs['metadata']['namespace']}/{ref['name']}")

    def on_pod(etype: str, pod: dict, old: dict | None) -> None:
        # Recreate waits for old pods to be gone.
        if etype == "DELETED":
            ref = meta.controller_ref(pod)
            if ref and ref.get("kind") == "ReplicaSet":
                rs = rss.get(f"{pod['metadata']['namespace']}/{ref['name']}")
                dref = meta.controller_ref(rs) if rs else None
                if dref and dref.get("kind") == "Deployment":
                    queue.add(f"{pod['metadata']['namespace']}/{dref['name']}")

    rss.add_handler(on_rs)
    pods.add_handler(on_pod)
    await ctx.wait_synced(DEPLOYMENTS, REPLICASETS, PODS)

    async def scale(rs: dict, replicas: int, d: dict) -> dict:
        if rs["spec"].get("replicas") == replicas:
            return rs
        old_n = rs["spec"].get("replicas", 0)
        surge, _ = resolve_fenceposts(d)
        body = {"metadata": {"annotations": {
            "deployment.kubernetes.io/desired-replicas": str(d["spec"].get("replicas", 1)),
            "deployment.kubernetes.io/max-replicas": str(d["spec"].get("replicas", 1) + surge)}},
            "spec": {"replicas": replicas}}
        new = await client.patch(REPLICASETS, rs["metadata"]["namespace"], rs["metadata"]["name"], body)
        verb = "up" if replicas > old_n else "down"
        await recorder.record(d, "Normal", "ScalingReplicaSet",
                              f"Scaled {verb} replica set {rs['metadata']['name']} from {old_n} to {replicas}")
        return new

    async def sync(key: str) -> None:
        d = deps.get(key)
        if d is None or d["metadata"].get("deletionTimestamp"):
            return
        ns, name = split_key(key)
        uid = d["metadata"]["uid"]
        owned = [rs for rs in rss.list(ns) if (meta.controller_ref(rs) or {}).get("uid") == uid]
        spec = d["spec"]
        replicas = spec.get("replicas", 1)
        template = spec["template"]
        new_rs = find_new_replicaset(owned, template)
        olds = [rs for rs in owned if rs is not new_rs]
        new_revision = max((revision_of(rs) for rs in olds), default=0) + 1
        if new_rs is not None:
            # Also when paused: a ReplicaSet found again (rollout undo) takes the next revision at once.
            new_rs = await sync_new_rs(d, new_rs, new_revision)
            d = await sync_revision(d, new_rs)
        if spec.get("paused"):
            await update_status(d, new_rs, olds)
            return
        strategy = (spec.get("strategy") or {}).get("type", "RollingUpdate")
        if new_rs is None:
            if strategy == "Recreate":
                initial = 0
            else:
                surge, _ = resolve_fenceposts(d)
                current = sum(rs["spec"].get("replicas", 0) for rs in olds)
                initial = max(0, min(replicas, replicas + surge - current))
            new_rs = await create_new_rs(d, initial, new_revision)
            if new_rs is None:
                return
            await recorder.record(d, "Normal", "ScalingReplicaSet",
                                  f"Scaled up replica set {new_rs['metadata']['name']} from 0 to {initial}")
            d = await sync_revision(d, new_rs)
        if strategy == "Recreate":
            for rs in olds:
                if rs["spec"].get("replicas", 0) != 0:
                    await scale(rs, 0, d)
            old_pods = [p for p in pods.list(ns) if (meta.controller_ref(p) or {}).get("uid") in
                        {rs["metadata"]["uid"] for rs in olds}]
            if not old_pods:
                new_rs = await scale(new_rs, replicas, d)
        else:
            new_rs = await rolling(d, new_rs, olds)
        await update_status(d, new_rs, olds)
        await cleanup(d, olds)

    async def create_new_rs(d: dict, initial: int, new_revision: int) -> dict | None:
        """Create the ReplicaSet for d's template; None when a hash collision means trying again later."""
        ns, name = d["metadata"]["namespace"], d["metadata"]["name"]
        spec = d["spec"]
        replicas = spec.get("replicas", 1)
        h = template_hash(spec["template"], (d.get("status") or {}).get("collisionCount", 0))
        tmpl = copy.deepcopy(spec["template"])
        tmpl.setdefault("metadata", {}).setdefault("labels", {})[HASH_LABEL] = h
        selector = copy.deepcopy(spec["selector"])
        selector.setdefault("matchLabels", {})[HASH_LABEL] = h
        annotations = new_rs_annotations(d, {}, new_revision)
        annotations.update({DESIRED_REPLICAS: str(replicas),
                            MAX_REPLICAS: str(replicas + resolve_fenceposts(d)[0])})
        body = {"apiVersion": "apps/v1", "kind": "ReplicaSet",
                "metadata": {"name": f"{name}-{h}", "namespace": ns, "labels": tmpl["metadata"]["labels"],
                             "annotations": annotations, "ownerReferences": [meta.owner_reference(d)]},
                "spec": {"replicas": initial, "minReadySeconds": spec.get("minReadySeconds", 0),
                         "selector": selector, "template": tmpl}}
        try:
            return await client.create(REPLICASETS, ns, body, field_manager="deployment-controller")
        except ClientError as e:
            if e.code != 409:
                raise
        # The name is taken. If by our own ReplicaSet for this very template, the informer has just
        # not shown it to us yet; only a different template is a real hash collision.
        try:
            existing = await client.get(REPLICASETS, ns, body["metadata"]["name"])
        except ClientError as e:
            if e.code != 404:
                raise
            queue.add_after(f"{ns}/{name}", 0.1)
            return None
        if ((meta.controller_ref(existing) or {}).get("uid") == d["metadata"]["uid"]
                and templates_equal(existing["spec"]["template"], spec["template"])):
            queue.add_after(f"{ns}/{name}", 0.1)
            return None
        cc = (d.get("status") or {}).get("collisionCount", 0) + 1
        await client.patch(DEPLOYMENTS, ns, name, {"status": {"collisionCount": cc}}, sub="status")
        return None

    async def sync_new_rs(d: dict, rs: dict, new_revision: int) -> dict:
        """Bring the current ReplicaSet's annotations (revision, history, the Deployment's own) and
        minReadySeconds up to date with d."""
        annotations = rs["metadata"].get("annotations") or {}
        want = new_rs_annotations(d, annotations, new_revision)
        min_ready = d["spec"].get("minReadySeconds", 0)
        body: dict = {}
        if want != annotations:
            body["metadata"] = {"annotations": {k: v for k, v in want.items() if annotations.get(k) != v}}
        if rs["spec"].get("minReadySeconds", 0) != min_ready:
            body["spec"] = {"minReadySeconds": min_ready}
        if not body:
            return rs
        return await client.patch(REPLICASETS, rs["metadata"]["namespace"], rs["metadata"]["name"], body)

    async def sync_revision(d: dict, rs: dict) -> dict:
        """The Deployment carries its current ReplicaSet's revision, as `kubectl describe` and
        `rollout undo` expect. An annotation is metadata: writing it leaves generation alone."""
        rev = (rs["metadata"].get("annotations") or {}).get(REVISION)
        if rev is None or (d["metadata"].get("annotations") or {}).get(REVISION) == rev:
            return d
        md = d["metadata"]
        try:
            new = await client.patch(DEPLOYMENTS, md["namespace"], md["name"],
                                     {"metadata": {"annotations": {REVISION: rev}}})
        except ClientError as e:
            if e.code == 404:
                return d
            raise
        if new["metadata"].get("generation") != md.get("generation"):
            # The spec moved on meanwhile; this pass worked from the old one, so it must not report the
            # new generation as observed. The update event brings the next pass.
            return d
        return new

    async def rolling(d: dict, new_rs: dict, olds: list[dict]) -> dict:
        replicas = d["spec"].get("replicas", 1)
        surge, unavail = resolve_fenceposts(d)
        all_rs = [new_rs, *olds]
        total = sum(rs["spec"].get("replicas", 0) for rs in all_rs)
        new_n = new_rs["spec"].get("replicas", 0)
        if not olds or all(rs["spec"].get("replicas", 0) == 0 for rs in olds):
            return await scale(new_rs, replicas, d)
        if new_n < replicas:
            up = min(replicas + surge - total, replicas - new_n)
            if up > 0:
                new_rs = await scale(new_rs, new_n + up, d)
                total += up
        # Scale old ReplicaSets down as far as availability allows: first their unhealthy pods.
        min_available = replicas - unavail
        available = sum((rs.get("status") or {}).get("availableReplicas", 0) for rs in all_rs)
        new_unavailable = new_rs["spec"].get("replicas", 0) - (new_rs.get("status") or {}).get("availableReplicas", 0)
        budget = available - min_available - max(0, new_unavailable)
        olds_sorted = sorted(olds, key=lambda rs: rs["metadata"].get("creationTimestamp", ""))
        for rs in olds_sorted:
            cur = rs["spec"].get("replicas", 0)
            if cur == 0:
                continue
            unhealthy = cur - (rs.get("status") or {}).get("availableReplicas", 0)
            cut = max(0, unhealthy)
            if budget > 0:
                cut = min(cur, cut + budget)
                budget -= max(0, cut - max(0, unhealthy))
            cut = min(cut, cur, max(0, total - min_available))
            if cut > 0:
                await scale(rs, cur - cut, d)
                total -= cut
        return new_rs

    async def update_status(d: dict, new_rs: dict | None, olds: list[dict]) -> None:
        all_rs = [r for r in [new_rs, *olds] if r]
        replicas = d["spec"].get("replicas", 1)
        _, unavail = resolve_fenceposts(d)
        st = lambda rs, k: (rs.get("status") or {}).get(k, 0)  # noqa: E731
        total = sum(st(rs, "replicas") for rs in all_rs)
        updated = st(new_rs, "replicas") if new_rs else 0
        ready = sum(st(rs, "readyReplicas") for rs in all_rs)
        avail = sum(st(rs, "availableReplicas") for rs in all_rs)
        now = meta.now_rfc3339()
        old_conds = {c["type"]: c for c in (d.get("status") or {}).get("conditions") or []}

        def cond(ctype: str, status: str, reason: str, message: str) -> dict:
            prev = old_conds.get(ctype)
            c = {"type": ctype, "status": status, "lastUpdateTime": now, "lastTransitionTime": now,
                 "reason": reason, "message": message}
            if prev and prev.get("status") == status:
                c["lastTransitionTime"] = prev.get("lastTransitionTime", now)
                if prev.get("reason") == reason and prev.get("message") == message:
                    c["lastUpdateTime"] = prev.get("lastUpdateTime", now)
            return c
        if avail >= replicas - unavail:
            available_c = cond("Available", "True", "MinimumReplicasAvailable", "Deployment has minimum availability.")
        else:
            available_c = cond("Available", "False", "MinimumReplicasUnavailable",
                               "Deployment does not have minimum availability.")
        rs_name = new_rs["metadata"]["name"] if new_rs else ""
        complete = (new_rs is not None and updated == replicas and total == replicas and avail >= replicas
                    and st(new_rs, "availableReplicas") >= replicas)
        if complete:
            progressing = cond("Progressing", "True", "NewReplicaSetAvailable",
                               f'ReplicaSet "{rs_name}" has successfully progressed.')
        elif "Progressing" not in old_conds:
            progressing = cond("Progressing", "True", "NewReplicaSetCreated", f'Created new replica set "{rs_name}"')
        else:
            progressing = cond("Progressing", "True", "ReplicaSetUpdated", f'ReplicaSet "{rs_name}" is progressing.')
        status = {"observedGeneration": d["metadata"].get("generation", 1), "replicas": total,
                  "updatedReplicas": updated, "readyReplicas": ready, "availableReplicas": avail,
                  "unavailableReplicas": max(0, replicas - avail), "conditions": [available_c, progressing]}
        if (d.get("status") or {}).get("collisionCount"):
            status["collisionCount"] = d["status"]["collisionCount"]
        for k in ("replicas", "updatedReplicas", "readyReplicas", "availableReplicas", "unavailableReplicas"):
            if status[k] == 0:
                status.pop(k)
        if status != d.get("status"):
            new = copy.deepcopy(d)
            new["status"] = status
            await replace_status(client, DEPLOYMENTS, new, queue)

    async def cleanup(d: dict, olds: list[dict]) -> None:
        limit = d["spec"].get("revisionHistoryLimit", 10)
        idle = sorted([rs for rs in olds if rs["spec"].get("replicas", 0) == 0 and
                       (rs.get("status") or {}).get("replicas", 0) == 0], key=revision_of)
        for rs in idle[:max(0, len(idle) - limit)]:
            try:
                await client.delete(REPLICASETS, rs["metadata"]["namespace"], rs["metadata"]["name"])
            except ClientError as e:
                if e.code != 404:
                    raise

    await run_workers(queue, sync, workers=2, name="deployment")
