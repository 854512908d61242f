"""Generic REST storage: Kubernetes object semantics on top of the key-value store.

resourceVersion is the store's mod_revision (never stored inside the value, as in kube-apiserver
with etcd); uid, creationTimestamp and generation are set here; finalizers and deletionTimestamp
implement two-phase deletion.
"""

from __future__ import annotations

import base64
import json
import time
from collections import OrderedDict
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field

from skiff.api import errors, meta, selectors
from skiff.api.clone import clone
from skiff.api.errors import APIError
from skiff.api.resources import ResourceInfo, lookup
from skiff.apiserver import strategy
from skiff.store import WatchOverflow
from skiff.store.interface import Compacted, KeyExists, KeyNotFound, KeyValue, RevisionConflict, Store

NAMESPACES = lookup("", "v1", "namespaces")

# Field selectors kube-apiserver supports beyond metadata.name/namespace, per kind.
_FIELD_LABELS: dict[str, set[str]] = {
    "Pod": {"spec.nodeName", "spec.restartPolicy", "spec.schedulerName", "spec.serviceAccountName",
            "spec.hostNetwork", "status.phase", "status.podIP", "status.nominatedNodeName"},
    "Event": {"involvedObject.kind", "involvedObject.namespace", "involvedObject.name", "involvedObject.uid",
              "involvedObject.apiVersion", "involvedObject.resourceVersion", "involvedObject.fieldPath",
              "reason", "reportingComponent", "source", "type", "regarding.kind", "regarding.name",
              "regarding.namespace", "regarding.uid"},
    "Namespace": {"status.phase"},
    "Secret": {"type"},
    "Node": {"spec.unschedulable"},
    "ReplicaSet": {"status.replicas"},
}


# What json.dumps(obj, separators=(",", ":")) uses, built once.
_dumps = json.JSONEncoder(separators=(",", ":")).encode


def _encode_split(obj: dict) -> tuple[bytes, tuple[str, str] | None]:
    """The stored value (the object's JSON without metadata.resourceVersion), and that same JSON cut
    where metadata ends, so that the JSON of the object with its resourceVersion (last in metadata,
    where this function leaves it) is one splice away instead of a second serialization.
    The cut is None for objects whose top level the splice cannot reproduce exactly."""
    md = obj["metadata"]
    rv = md.pop("resourceVersion", None)
    try:
        if any(type(k) is not str for k in obj):
            return _dumps(obj).encode(), None
        before: list[str] = []
        after: list[str] = []
        md_json = ""
        for k, v in obj.items():
            if k == "metadata":
                md_json = _dumps(v)
            else:
                (after if md_json else before).append(_dumps(k) + ":" + _dumps(v))
        before.append('"metadata":' + md_json[:-1])
        head = "{" + ",".join(before)
        tail = "}" + "".join("," + a for a in after) + "}"
        return (head + tail).encode(), (head, tail)
    finally:
        if rv is not None:
            md["resourceVersion"] = rv


def _with_resource_version(cut: tuple[str, str], rv: str) -> bytes:
    head, tail = cut
    sep = "" if head.endswith("{") else ","
    return (head + sep + '"resourceVersion":' + _dumps(rv) + tail).encode()


class _WrittenJSON:
    """The JSON (with resourceVersion) of objects this registry just wrote, by revision, so that the
    response to the write and every watcher's event reuse it instead of serializing the object again.

    The response path also checks object identity (`of`): only the very dict that was written,
    returned unchanged to its handler, may use the stored bytes."""

    def __init__(self, size: int = 1024, objects: int = 64) -> None:
        self._json: OrderedDict[int, bytes] = OrderedDict()
        self._objects: OrderedDict[int, dict] = OrderedDict()
        self._size = size
        self._objects_size = objects

    def remember(self, revision: int, obj: dict, body: bytes) -> None:
        self._json[revision] = body
        if len(self._json) > self._size:
            self._json.popitem(last=False)
        self._objects[revision] = obj
        if len(self._objects) > self._objects_size:
            self._objects.popitem(last=False)

    def at(self, revision: int) -> bytes | None:
        return self._json.get(revision)

    def of(self, obj: dict) -> bytes | None:
        try:
            revision = int(obj["metadata"]["resourceVersion"])
        except (KeyError, TypeError, ValueError):
            return None
        if self._objects.get(revision) is not obj:
            return None
        return self._json.get(revision)


def decode(kv: KeyValue) -> dict:
    obj = json.loads(kv.value)
    obj["metadata"]["resourceVersion"] = str(kv.mod_revision)
    return obj


class _RevisionCache:
    """Decoded objects of recent watch events, shared by every watcher that sees the same event.

    Every pod write reaches a dozen watchers (controllers, each node agent, kubectl -w); decoding
    it once instead of once per watcher is what kube-apiserver's watch cache does too. Consumers
    must treat the objects as read-only.
    """

    def __init__(self, size: int = 4096) -> None:
        self._items: OrderedDict[int, dict] = OrderedDict()
        self._size = size

    def get(self, kv: KeyValue) -> dict:
        """The object of the write at kv.mod_revision (what decode(kv) returns)."""
        obj = self._items.get(kv.mod_revision)
        if obj is None:
            obj = self._items[kv.mod_revision] = decode(kv)
            if len(self._items) > self._size:
                self._items.popitem(last=False)
        return obj


@dataclass
class Selection:
    labels: list[selectors.Requirement] = field(default_factory=list)
    fields: list[tuple[str, str, str]] = field(default_factory=list)

    def matches(self, obj: dict) -> bool:
        if self.labels and not selectors.labels_match(self.labels, obj["metadata"].get("labels")):
            return False
        return not self.fields or selectors.fields_match(self.fields, obj)

    @property
    def empty(self) -> bool:
        return not self.labels and not self.fields


def make_selection(info: ResourceInfo, label_selector: str | None, field_selector: str | None) -> Selection:
    allowed = _FIELD_LABELS.get(info.kind, set())

    def supported(k: str) -> bool:
        return k in ("metadata.name", "metadata.namespace") or k in allowed

    return Selection(selectors.parse_label_selector(label_selector),
                     selectors.parse_field_selector(field_selector, supported))


UNDELETABLE_NAMESPACES = frozenset({"default", "kube-system", "kube-public"})

# Hooks the API server wires in: admission steps that need state beyond one object.
AdmitFn = Callable[[ResourceInfo, dict, dict | None, bool], Awaitable[Callable[[], None] | None]]
ReleaseFn = Callable[[ResourceInfo, dict], Awaitable[None]]


class Registry:
    def __init__(self, store: Store):
        self.store = store
        # admit(info, new, old, dry_run) may mutate new and returns an undo callback (for a failed write).
        self.admit: AdmitFn | None = None
        # on_deleted(info, obj) runs after an object is really removed (releases allocations).
        self.on_deleted: ReleaseFn | None = None
        self._decoded = _RevisionCache()
        self._written = _WrittenJSON()

    def written_json(self, obj: dict) -> bytes | None:
        """The JSON of `obj` if it is an object a write of this registry just returned, unchanged."""
        return self._written.of(obj)

    def revision_json(self, revision: int) -> bytes | None:
        """The JSON (with resourceVersion) of the object this registry wrote at `revision`, if recent."""
        return self._written.at(revision)

    def _remember(self, revision: int, obj: dict, cut: tuple[str, str] | None) -> None:
        if cut is not None:
            self._written.remember(revision, obj, _with_resource_version(cut, str(revision)))

    # ---- reads ---------------------------------------------------------------------------
    async def get(self, info: ResourceInfo, namespace: str | None, name: str) -> dict:
        kv = await self.store.get(info.storage_key(namespace, name))
        if kv is None:
            raise errors.not_found(info, name)
        return decode(kv)

    async def list(self, info: ResourceInfo, namespace: str | None, sel: Selection | None = None,
                   limit: int = 0, continue_token: str | None = None) -> tuple[list[dict], str, str | None]:
        """Returns (items, resourceVersion, continue token or None)."""
        prefix = info.storage_prefix(namespace)
        revision, start = 0, ""
        if continue_token:
            try:
                tok = json.loads(base64.b64decode(continue_token))
                revision, start = int(tok["rv"]), tok["start"]
            except (ValueError, KeyError, TypeError) as e:
                raise errors.bad_request(f"invalid continue token: {e}") from None
        try:
            kvs, rev = await self.store.list(prefix, revision)
        except Compacted:
            raise errors.gone("The provided continue parameter is too old to display a consistent list "
                              "result. You can start a new list without the continue parameter.") from None
        items: list[dict] = []
        token = None
        items_last_key = ""
        for kv in kvs:
            if start and kv.key <= start:
                continue
            obj = decode(kv)
            if sel is not None and not sel.matches(obj):
                continue
            if limit and len(items) >= limit:
                token = base64.b64encode(json.dumps({"rv": rev, "start": items_last_key}).encode()).decode()
                break
            items.append(obj)
            items_last_key = kv.key
        return items, str(rev), token

    # ---- writes --------------------------------------------------------------------------
    async def _require_namespace(self, info: ResourceInfo, namespace: str | None, creating: bool,
                                 name: str = "") -> None:
        if not info.namespaced or namespace is None:
            return
        kv = await self.store.get(NAMESPACES.storage_key(None, namespace))
        if kv is None:
            raise errors.not_found(NAMESPACES, namespace)
        if creating and json.loads(kv.value)["metadata"].get("deletionTimestamp"):
            raise APIError(403, "Forbidden", f"{info.plural} \"{name}\" is forbidden: unable to create new "
                           f"content in namespace {namespace} because it is being terminated",
                           {"name": name, "group": info.group, "kind": info.plural,
                            "causes": [{"reason": "NamespaceTerminating",
                                        "message": f"namespace {namespace} is being terminated",
                                        "field": "metadata.namespace"}]})

    async def create(self, info: ResourceInfo, namespace: str | None, obj: dict, *, dry_run: bool = False
                     ) -> dict:
        md = obj.setdefault("metadata", {})
        if info.namespaced:
            body_ns = md.get("namespace")
            if body_ns and namespace and body_ns != namespace:
                raise errors.bad_request("the namespace of the provided object does not match the namespace "
                                         "sent on the request")
            md["namespace"] = namespace or body_ns or "default"
            namespace = md["namespace"]
        else:
            md.pop("namespace", None)
        if not md.get("name") and md.get("generateName"):
            md["name"] = md["generateName"] + meta.random_suffix()
        await self._require_namespace(info, namespace, creating=True, name=md.get("name", ""))
        for f in ("resourceVersion", "deletionTimestamp", "deletionGracePeriodSeconds"):
            md.pop(f, None)
        md["uid"] = meta.new_uid()
        md["creationTimestamp"] = meta.now_rfc3339()
        obj["apiVersion"], obj["kind"] = info.api_version, info.kind
        strategy.prepare_for_create(info, obj)
        errs = strategy.validate(info, obj, None)
        if errs:
            raise errors.invalid_object(info.kind, info.group, md.get("name", ""), errs)
        key = info.storage_key(namespace, md["name"])
        if await self.store.get(key) is not None:
            # Answer AlreadyExists before admission can report the existing object's own addresses as taken.
            raise errors.already_exists(info, md["name"])
        undo = await self.admit(info, obj, None, dry_run) if self.admit else None
        if dry_run:
            if undo:
                undo()
            return obj
        value, cut = _encode_split(obj)
        try:
            kv = await self.store.create(key, value)
        except KeyExists:
            if undo:
                undo()
            raise errors.already_exists(info, md["name"]) from None
        except BaseException:
            if undo:
                undo()
            raise
        md["resourceVersion"] = str(kv.mod_revision)
        self._remember(kv.mod_revision, obj, cut)
        return obj

    async def update(self, info: ResourceInfo, namespace: str | None, name: str, obj: dict, *,
                     subresource: str | None = None, dry_run: bool = False,
                     mutate: Callable[[dict], dict] | None = None, create_if_missing: bool = False,
                     mutate_copy: bool = True) -> tuple[dict, bool]:
        """Replace an object. With `mutate`, the new object is computed from the current one and the
        write retried on conflicts (PATCH); without it, a stale resourceVersion is a 409 (PUT).
        `mutate` gets a copy of the current object, or with `mutate_copy=False` the object itself,
        which it must then leave unchanged. Returns (object, created)."""
        key = info.storage_key(namespace, name)
        for _attempt in range(8):
            kv = await self.store.get(key)
            if kv is None:
                if create_if_missing and mutate is not None:
                    new = mutate({})
                    new.setdefault("metadata", {})["name"] = name
                    return await self.create(info, namespace, new, dry_run=dry_run), True
                if create_if_missing and subresource is None:
                    obj.setdefault("metadata", {})["name"] = name
                    obj["metadata"].pop("resourceVersion", None)
                    return await self.create(info, namespace, obj, dry_run=dry_run), True
                raise errors.not_found(info, name)
            old = decode(kv)
            if mutate is not None:
                new = mutate(clone(old) if mutate_copy else old)
            else:
                new = obj
                rv = new.get("metadata", {}).get("resourceVersion")
                if rv and rv != old["metadata"]["resourceVersion"]:
                    raise errors.conflict(info, name)
            new = self._prepare_update(info, namespace, name, new, old, subresource)
            if new == old:
                return old, False
            errs = strategy.validate(info, new, old) if subresource not in ("binding", "status") else []
            if errs:
                raise errors.invalid_object(info.kind, info.group, name, errs)
            undo = await self.admit(info, new, old, dry_run) if (self.admit and subresource is None) else None
            if dry_run:
                if undo:
                    undo()
                return new, False
            vanish = self._ready_to_vanish(info, new)
            cut = None
            try:
                if vanish:
                    nkv = await self.store.delete(key, kv.mod_revision)
                else:
                    value, cut = _encode_split(new)
                    nkv = await self.store.update(key, value, kv.mod_revision)
            except BaseException as e:
                if undo:
                    undo()  # the write did not happen: give back what admission allocated
                if isinstance(e, RevisionConflict):
                    if mutate is None:
                        raise errors.conflict(info, name) from None
                    continue
                if isinstance(e, KeyNotFound):
                    raise errors.not_found(info, name) from None
                raise
            if vanish:
                new["metadata"]["resourceVersion"] = str(nkv.mod_revision)
                if self.on_deleted:
                    await self.on_deleted(info, new)
                return new, False
            new["metadata"]["resourceVersion"] = str(nkv.mod_revision)
            self._remember(nkv.mod_revision, new, cut)
            return new, False
        raise errors.conflict(info, name, "too many concurrent updates, please try again")

    def _prepare_update(self, info: ResourceInfo, namespace: str | None, name: str, new: dict, old: dict,
                        subresource: str | None) -> dict:
        md = new.setdefault("metadata", {})
        if md.get("name") and md["name"] != name:
            raise errors.bad_request("the name of the object ({}) does not match the name on the URL ({})".format(md["name"], name))
        md["name"] = name
        if info.namespaced:
            if md.get("namespace") and md["namespace"] != namespace:
                raise errors.bad_request("the namespace of the provided object does not match the namespace "
                                         "sent on the request")
            md["namespace"] = namespace
        new["apiVersion"], new["kind"] = info.api_version, info.kind
        md["resourceVersion"] = old["metadata"]["resourceVersion"]
        strategy.prepare_for_update(info, new, old, subresource)
        return new

    @staticmethod
    def _ready_to_vanish(info: ResourceInfo, obj: dict) -> bool:
        """A terminating object whose last finalizer is gone is removed, as kube-apiserver does on update."""
        md = obj["metadata"]
        if not md.get("deletionTimestamp") or md.get("finalizers"):
            return False
        if info.kind == "Namespace" and (obj.get("spec", {}).get("finalizers")):
            return False
        if info.kind == "Pod" and md.get("deletionGracePeriodSeconds", 0) > 0:
            return False
        return True

    async def delete(self, info: ResourceInfo, namespace: str | None, name: str, options: dict | None = None,
                     *, dry_run: bool = False) -> tuple[dict, bool]:
        """Returns (object, gone). gone=False means deletion started (finalizers or graceful pods)."""
        options = options or {}
        if info.kind == "Namespace" and name in UNDELETABLE_NAMESPACES:
            # As kube-apiserver's NamespaceLifecycle admission: the cluster itself lives in these.
            raise APIError(403, "Forbidden", f'namespaces "{name}" is forbidden: this namespace may not be deleted',
                           {"name": name, "kind": "namespaces"})
        key = info.storage_key(namespace, name)
        for _attempt in range(8):
            kv = await self.store.get(key)
            if kv is None:
                raise errors.not_found(info, name)
            obj = decode(kv)
            md = obj["metadata"]
            pre = options.get("preconditions") or {}
            if pre.get("uid") and pre["uid"] != md.get("uid"):
                raise errors.conflict(info, name, f"Precondition failed: UID in precondition: {pre['uid']}, "
                                      f"UID in object meta: {md.get('uid')}")
            if pre.get("resourceVersion") and pre["resourceVersion"] != md["resourceVersion"]:
                raise errors.conflict(info, name, "Precondition failed: ResourceVersion in precondition: "
                                      f"{pre['resourceVersion']}, ResourceVersion in object meta: "
                                      f"{md['resourceVersion']}")
            grace = self._grace_period(info, obj, options)
            finalizers = list(md.get("finalizers") or [])
            policy = options.get("propagationPolicy") or ("Orphan" if options.get("orphanDependents") else None)
            if policy == "Foreground" and "foregroundDeletion" not in finalizers:
                finalizers.append("foregroundDeletion")
            if policy == "Orphan" and "orphan" not in finalizers:
                finalizers.append("orphan")
            ns_finalizers = info.kind == "Namespace" and obj.get("spec", {}).get("finalizers")
            if finalizers or grace > 0 or ns_finalizers:
                current = md.get("deletionGracePeriodSeconds")
                if md.get("deletionTimestamp") and finalizers == list(md.get("finalizers") or []) and \
                        (current is None or grace >= current):
                    return obj, False  # already terminating: a grace period can be shortened, never extended
                new = clone(obj)
                nmd = new["metadata"]
                nmd["finalizers"] = finalizers
                if not finalizers:
                    nmd.pop("finalizers")
                if not nmd.get("deletionTimestamp") or current is None or grace < current:
                    # As kube-apiserver: the time by which the object is to be gone.
                    nmd["deletionTimestamp"] = meta.rfc3339(time.time() + grace)
                    nmd["deletionGracePeriodSeconds"] = grace
                if info.kind == "Namespace":
                    new.setdefault("status", {})["phase"] = "Terminating"
                if info.kind == "Pod" and grace == 0 and not finalizers:
                    pass  # fall through to immediate delete below
                else:
                    if dry_run:
                        return new, False
                    value, cut = _encode_split(new)
                    try:
                        nkv = await self.store.update(key, value, kv.mod_revision)
                    except RevisionConflict:
                        continue
                    nmd["resourceVersion"] = str(nkv.mod_revision)
                    self._remember(nkv.mod_revision, new, cut)
                    return new, False
            if dry_run:
                return obj, True
            try:
                dkv = await self.store.delete(key, kv.mod_revision)
            except RevisionConflict:
                continue
            except KeyNotFound:
                raise errors.not_found(info, name) from None
            md["resourceVersion"] = str(dkv.mod_revision)
            if self.on_deleted:
                await self.on_deleted(info, obj)
            return obj, True
        raise errors.conflict(info, name, "too many concurrent updates, please try again")

    @staticmethod
    def _grace_period(info: ResourceInfo, obj: dict, options: dict) -> int:
        if info.kind != "Pod":
            return 0
        if not obj.get("spec", {}).get("nodeName"):
            return 0  # never scheduled: nothing runs, so nothing to wait for
        if obj.get("status", {}).get("phase") in ("Succeeded", "Failed"):
            return 0
        if options.get("gracePeriodSeconds") is not None:
            return max(0, int(options["gracePeriodSeconds"]))
        md = obj["metadata"]
        if md.get("deletionGracePeriodSeconds") is not None and md.get("deletionTimestamp"):
            return int(md["deletionGracePeriodSeconds"])
        g = obj.get("spec", {}).get("terminationGracePeriodSeconds", 30)
        return max(1, int(g)) if g else 0

    # ---- watch ---------------------------------------------------------------------------
    async def watch(self, info: ResourceInfo, namespace: str | None, from_rev: int, sel: Selection
                    ) -> AsyncIterator[tuple[str, dict]]:
        """(type, object) events after from_rev. Objects moving in or out of the selection are
        reported as ADDED / DELETED, as kube-apiserver's watch cache does."""
        prefix = info.storage_prefix(namespace)
        cache = self._decoded
        try:
            async for ev in self.store.watch(prefix, from_rev):
                if ev.type == "DELETE":
                    obj = cache.get(ev.kv)
                    if sel.empty or sel.matches(obj):
                        yield "DELETED", obj
                    continue
                obj = cache.get(ev.kv)
                now_in = sel.empty or sel.matches(obj)
                if ev.prev is None or ev.created:
                    if now_in:
                        yield "ADDED", obj
                    continue
                if sel.empty:
                    yield "MODIFIED", obj
                    continue
                # The previous value is the object of the key's previous revision: decoded once, shared.
                was_in = sel.matches(cache.get(ev.prev))
                if now_in and was_in:
                    yield "MODIFIED", obj
                elif now_in:
                    yield "ADDED", obj
                elif was_in:
                    yield "DELETED", obj
        except Compacted as e:
            raise errors.gone(f"too old resource version: {e.requested} ({e.compacted})") from None
        except WatchOverflow:
            return  # the stream ends; clients re-watch from the last revision they saw

