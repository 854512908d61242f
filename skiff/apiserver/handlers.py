"""The REST handlers: one entry point per request that parses the path and dispatches on the verb."""

from __future__ import annotations

import asyncio
import datetime as dt
import json
import logging
import random
from dataclasses import dataclass
from typing import TYPE_CHECKING

from aiohttp import web

from skiff.api import errors, managedfields, meta, patch, protobuf, tables
from skiff.api.clone import clone
from skiff.api.errors import APIError
from skiff.api.resources import REVIEW_KINDS, ResourceInfo, lookup
from skiff.api.selectors import selector_string
from skiff.api.validation import structure
from skiff.apiserver import authentication, bodies, fieldprune, serviceaccounttoken, strategy
from skiff.apiserver.registry import Registry, make_selection

if TYPE_CHECKING:
    from skiff.apiserver.server import APIServer

log = logging.getLogger("skiff.apiserver")

# Most watch events queued for one watcher that go out in one write (bounds the write's size).
_WATCH_BATCH = 256


@dataclass
class Target:
    info: ResourceInfo
    namespace: str | None
    name: str | None
    subresource: str | None
    path: str = ""  # for `proxy`: what follows it, to pass on


def parse_target(group: str, version: str, rest: str) -> Target:
    parts = [p for p in rest.split("/") if p]
    namespace = None
    if parts and parts[0] == "namespaces" and len(parts) >= 3 and not (len(parts) == 3 and
                                                                       parts[2] in ("status", "finalize")):
        namespace = parts[1]
        parts = parts[2:]
    if not parts:
        raise APIError(404, "NotFound", "the server could not find the requested resource")
    info = lookup(group, version, parts[0])
    if info is None:
        raise APIError(404, "NotFound", "the server could not find the requested resource")
    name = parts[1] if len(parts) > 1 else None
    sub = parts[2] if len(parts) > 2 else None
    path = ""
    if sub == "proxy" and sub in info.subresources:
        # Everything after `proxy/` is the proxied path, slashes (a trailing one too) included.
        segments = rest.split("/")
        proxy_at = 2 if namespace is None else 4  # [namespaces, <ns>,] <plural>, <name>, proxy
        nonempty = [i for i, seg in enumerate(segments) if seg]
        path = "/".join(segments[nonempty[proxy_at] + 1:])
    elif len(parts) > 3 or (sub is not None and sub not in info.subresources):
        raise APIError(404, "NotFound", "the server could not find the requested resource")
    if info.namespaced is False and namespace is not None:
        raise APIError(404, "NotFound", "the server could not find the requested resource")
    return Target(info, namespace, name, sub, path)


def _bool(q: str | None) -> bool:
    return (q or "").lower() in ("1", "true")


class ResourceHandler:
    def __init__(self, server: APIServer):
        self.server = server
        self.registry: Registry = server.registry
        self._encoded: dict[tuple, bytes] = {}  # recent watch event lines, shared by all watchers

    async def handle(self, request: web.Request, group: str, version: str, rest: str) -> web.StreamResponse:
        t = parse_target(group, version, rest)
        m = request.method
        q = request.query
        if t.subresource in ("log", "exec", "attach", "portforward"):
            return await self.server.node_proxy.handle(request, t)
        if t.subresource == "proxy":
            return await self.server.proxy.handle(request, t.info, t.namespace or "", t.name or "", t.path)
        if t.info.kind in REVIEW_KINDS:
            return await self.review(request, t)
        if t.subresource == "token":
            return await self.token_request(request, t)
        if t.name is None:
            if m == "GET":
                if _bool(q.get("watch")):
                    return await self.watch(request, t)
                return await self.list(request, t)
            if m == "POST":
                return await self.create(request, t)
            if m == "DELETE":
                return await self.delete_collection(request, t)
            raise errors.method_not_allowed()
        if t.subresource == "scale":
            return await self.scale(request, t)
        if t.subresource == "binding":
            return await self.binding(request, t)
        if t.subresource == "eviction":
            return await self.eviction(request, t)
        if m == "GET":
            if _bool(q.get("watch")):
                return await self.watch(request, t)
            obj = await self.registry.get(t.info, t.namespace, t.name)
            if bodies.wants_table(request) and t.subresource is None:
                return self._table_response(t.info, [obj], obj["metadata"]["resourceVersion"], request)
            return bodies.json_response(obj)
        if m == "PUT":
            return await self.update(request, t)
        if m == "PATCH":
            return await self.patch(request, t)
        if m == "DELETE" and t.subresource is None:
            return await self.delete(request, t)
        raise errors.method_not_allowed()

    # ---- helpers -------------------------------------------------------------------------
    def _table_response(self, info: ResourceInfo, objs: list[dict], rv: str, request: web.Request,
                        cont: str | None = None) -> web.Response:
        include = request.query.get("includeObject", "Metadata")
        table = tables.build_table(info, objs, dt.datetime.now(dt.UTC), rv, include)
        if cont:
            table["metadata"]["continue"] = cont
        return bodies.json_response(table)

    def _check_fields(self, request: web.Request, info: ResourceInfo, obj: dict) -> list[str]:
        """Apply fieldValidation: Strict rejects unknown fields, Warn reports them; both prune them,
        as decoding into kube-apiserver's Go types would."""
        return self._check_fields_pruned(request, info, obj)[0]

    def _check_fields_pruned(self, request: web.Request, info: ResourceInfo, obj: dict) -> tuple[list[str], bool]:
        """_check_fields, and whether it removed anything from `obj`."""
        type_err = structure.type_errors(obj, info.group, info.version, info.kind)
        if type_err:
            raise errors.bad_request(type_err)
        unknown = structure.unknown_fields(obj, info.group, info.version, info.kind)
        if not unknown:
            return [], False
        mode = request.query.get("fieldValidation", "Warn")
        if mode == "Strict":
            raise errors.bad_request(structure.strict_decoding_error(info.kind, info.version, unknown))
        fieldprune.prune(obj, unknown)
        if mode == "Ignore":
            return [], True
        return [f'unknown field "{p}"' for p in unknown], True

    def _object_response(self, obj: dict, status: int = 200, headers: dict | None = None) -> web.Response:
        """The answer to a write: the JSON the registry made when it stored `obj`, or a fresh one."""
        body = self.registry.written_json(obj)
        if body is None:
            return bodies.json_response(obj, status, headers)
        return bodies.raw_json_response(body, status, headers)

    @staticmethod
    def _warning_headers(warnings: list[str]) -> dict:
        if not warnings:
            return {}
        return {"Warning": ", ".join('299 - ' + json.dumps(w) for w in warnings)}

    def _check_kind(self, info: ResourceInfo, obj: dict) -> None:
        kind, av = obj.get("kind"), obj.get("apiVersion")
        if kind and kind != info.kind and not (info.kind == "Event" and kind == "Event"):
            raise errors.bad_request(f"the API version in the data ({av}) does not match the expected API "
                                     f"version ({info.api_version})" if av != info.api_version else
                                     f"the kind in the data ({kind}) does not match the expected kind "
                                     f"({info.kind})")
        if av and av != info.api_version:
            raise errors.bad_request(f"the API version in the data ({av}) does not match the expected API "
                                     f"version ({info.api_version})")

    # ---- verbs ---------------------------------------------------------------------------
    async def list(self, request: web.Request, t: Target) -> web.Response:
        q = request.query
        sel = make_selection(t.info, q.get("labelSelector"), q.get("fieldSelector"))
        limit = int(q.get("limit") or 0)
        items, rv, cont = await self.registry.list(t.info, t.namespace, sel, limit, q.get("continue"))
        if bodies.wants_table(request):
            return self._table_response(t.info, items, rv, request, cont)
        md: dict = {"resourceVersion": rv}
        if cont:
            md["continue"] = cont
        return bodies.json_response({"kind": t.info.list_kind, "apiVersion": t.info.api_version,
                                     "metadata": md, "items": items})

    async def _write_body(self, request: web.Request, t: Target) -> tuple[dict, list[str], bool, str]:
        """What create and update both start with: (object, warnings, dry run, field manager)."""
        obj = await bodies.read_object(request)
        self._check_kind(t.info, obj)
        warnings = self._check_fields(request, t.info, obj)
        manager = request.query.get("fieldManager") or _default_manager(request)
        return obj, warnings, request.query.get("dryRun") == "All", manager

    async def create(self, request: web.Request, t: Target) -> web.Response:
        obj, warnings, dry, manager = await self._write_body(request, t)
        obj = _managed(None, obj, manager, t.info, meta.now_rfc3339())
        created = await self.registry.create(t.info, t.namespace, obj, dry_run=dry)
        return self._object_response(created, 201, self._warning_headers(warnings))

    async def update(self, request: web.Request, t: Target) -> web.Response:
        obj, warnings, dry, manager = await self._write_body(request, t)
        sub = t.subresource
        obj.setdefault("metadata", {})

        if sub == "finalize":
            def set_finalizers(cur: dict) -> dict:
                cur.setdefault("spec", {})["finalizers"] = (obj.get("spec") or {}).get("finalizers") or []
                return cur
            new, _ = await self.registry.update(t.info, t.namespace, t.name, obj, dry_run=dry,
                                                mutate=set_finalizers, subresource="finalize")
            return self._object_response(new)
        rv = obj["metadata"].get("resourceVersion")
        if rv is None and t.subresource is None:
            # An update without resourceVersion is an unconditional replace (allowed for most types).
            def mut(cur: dict) -> dict:
                new = clone(obj)
                return _managed(cur, new, manager, t.info, meta.now_rfc3339())
            new, created = await self.registry.update(t.info, t.namespace, t.name, obj, subresource=sub,
                                                      dry_run=dry, mutate=mut, create_if_missing=False)
        else:
            try:
                cur = await self.registry.get(t.info, t.namespace, t.name)
                obj = _managed(cur, obj, manager, t.info, meta.now_rfc3339())
            except APIError:
                pass
            new, created = await self.registry.update(t.info, t.namespace, t.name, obj, subresource=sub,
                                                      dry_run=dry)
        return self._object_response(new, 201 if created else 200, self._warning_headers(warnings))

    async def patch(self, request: web.Request, t: Target) -> web.Response:
        raw = await bodies.read_body(request)
        ct = bodies.media_type(request)
        info = t.info
        dry = request.query.get("dryRun") == "All"
        q = request.query
        manager = q.get("fieldManager") or _default_manager(request)
        warnings: list[str] = []
        now = meta.now_rfc3339()
        if ct == "application/apply-patch+yaml":
            applied = bodies.parse_yaml(raw)
            if not isinstance(applied, dict):
                raise errors.bad_request("error decoding YAML: expected an object")
            if not q.get("fieldManager"):
                raise errors.bad_request("PATCH, application/apply-patch+yaml requests must have the "
                                         "fieldManager query parameter set")
            self._check_kind(info, applied)
            warnings = self._check_fields(request, info, applied)
            force = _bool(q.get("force"))

            def mutate(cur: dict) -> dict:
                live = cur or None
                out = managedfields.server_side_apply(live, applied, manager, force, info.group, info.version,
                                              info.kind, now)
                return out
            new, created = await self.registry.update(info, t.namespace, t.name, {}, subresource=t.subresource,
                                                      dry_run=dry, mutate=mutate,
                                                      create_if_missing=t.subresource is None)
            return self._object_response(new, 201 if created else 200, self._warning_headers(warnings))
        if ct == "application/json-patch+json":
            ops = bodies.parse_json(raw)

            def apply(cur: dict) -> dict:
                return patch.apply_json_patch(cur, ops)
        elif ct == "application/merge-patch+json":
            body = bodies.parse_json(raw)

            def apply(cur: dict) -> dict:
                return patch.apply_merge_patch(cur, body)
        elif ct == "application/strategic-merge-patch+json":
            body = bodies.parse_json(raw)

            def apply(cur: dict) -> dict:
                return patch.apply_strategic_merge_patch(cur, body, info.group, info.version, info.kind)
        else:
            raise APIError(415, "UnsupportedMediaType",
                           "the body of the request was in an unknown format - accepted media types include: "
                           "application/json-patch+json, application/merge-patch+json, "
                           "application/apply-patch+yaml, application/strategic-merge-patch+json")

        merge_body = body if ct == "application/merge-patch+json" else None

        def mutate2(cur: dict) -> dict:
            # Every apply_* works on a copy, so `cur` (the stored object itself) stays as it was.
            new = apply(cur)
            if not isinstance(new, dict):
                raise errors.bad_request("the patch did not produce an object")
            warnings[:], pruned = self._check_fields_pruned(request, info, new)
            if strategy.keeps_stored_metadata(t.subresource):
                # managedFields would be replaced by the stored ones: only its decoding errors can show.
                managedfields.check_decodable(cur, new)
                return new
            # Pruning may remove fields the patch did not name: then only the full comparison is right.
            return managedfields.update_managed_fields(
                cur, new, manager, group=info.group, version=info.version, kind=info.kind, now=now,
                merge_patch=None if pruned else merge_body, copy=False)
        new, _ = await self.registry.update(info, t.namespace, t.name, {}, subresource=t.subresource,
                                            dry_run=dry, mutate=mutate2, mutate_copy=False)
        return self._object_response(new, 200, self._warning_headers(warnings))

    async def delete(self, request: web.Request, t: Target) -> web.Response:
        options = await self._delete_options(request)
        dry = request.query.get("dryRun") == "All" or "All" in (options.get("dryRun") or [])
        obj, gone = await self.registry.delete(t.info, t.namespace, t.name, options, dry_run=dry)
        return self._object_response(obj, 200)

    async def _delete_options(self, request: web.Request) -> dict:
        raw = await bodies.read_body(request)
        if not raw.strip():
            options: dict = {}
        elif bodies.media_type(request) == "application/vnd.kubernetes.protobuf":
            options = protobuf.decode(raw)  # typed clients (kubectl drain) send DeleteOptions this way
        else:
            options = bodies.parse_json(raw)
        q = request.query
        if q.get("gracePeriodSeconds") is not None:
            options["gracePeriodSeconds"] = int(q["gracePeriodSeconds"])
        if q.get("propagationPolicy"):
            options["propagationPolicy"] = q["propagationPolicy"]
        return options

    async def delete_collection(self, request: web.Request, t: Target) -> web.Response:
        options = await self._delete_options(request)
        q = request.query
        sel = make_selection(t.info, q.get("labelSelector"), q.get("fieldSelector"))
        items, rv, _ = await self.registry.list(t.info, t.namespace, sel)
        out = []
        for item in items:
            try:
                obj, _ = await self.registry.delete(t.info, item["metadata"].get("namespace"),
                                                    item["metadata"]["name"], options)
                out.append(obj)
            except APIError as e:
                if e.code != 404:
                    raise
        return bodies.json_response({"kind": t.info.list_kind, "apiVersion": t.info.api_version,
                                     "metadata": {"resourceVersion": rv}, "items": out})

    # ---- subresources --------------------------------------------------------------------
    def _scale_of(self, obj: dict) -> dict:
        md = obj["metadata"]
        return {
            "kind": "Scale", "apiVersion": "autoscaling/v1",
            "metadata": {"name": md["name"], "namespace": md.get("namespace"), "uid": md.get("uid"),
                         "resourceVersion": md.get("resourceVersion"),
                         "creationTimestamp": md.get("creationTimestamp")},
            "spec": {"replicas": obj.get("spec", {}).get("replicas", 1)},
            "status": {"replicas": obj.get("status", {}).get("replicas", 0),
                       "selector": selector_string(obj.get("spec", {}).get("selector"))},
        }

    async def scale(self, request: web.Request, t: Target) -> web.Response:
        info = t.info
        if request.method == "GET":
            return bodies.json_response(self._scale_of(await self.registry.get(info, t.namespace, t.name)))
        raw = await bodies.read_body(request)
        ct = bodies.media_type(request)
        body = bodies.parse_json(raw) if raw.strip() else {}
        rv_pre = None
        if request.method == "PUT":
            replicas = (body.get("spec") or {}).get("replicas")
            rv_pre = (body.get("metadata") or {}).get("resourceVersion")
        elif request.method == "PATCH":
            cur = self._scale_of(await self.registry.get(info, t.namespace, t.name))
            if ct == "application/json-patch+json":
                patched = patch.apply_json_patch(cur, body)
            else:
                patched = patch.apply_merge_patch(cur, body)
            replicas = (patched.get("spec") or {}).get("replicas")
        else:
            raise errors.method_not_allowed()
        if not isinstance(replicas, int) or replicas < 0:
            raise errors.invalid_object("Scale", "autoscaling", t.name or "",
                                        [errors.invalid("spec.replicas", replicas,
                                                        "must be greater than or equal to 0")])

        def mut(cur: dict) -> dict:
            if rv_pre and rv_pre != cur["metadata"]["resourceVersion"]:
                raise errors.conflict(info, t.name or "")
            cur.setdefault("spec", {})["replicas"] = replicas
            return cur
        new, _ = await self.registry.update(info, t.namespace, t.name, {}, mutate=mut,
                                            dry_run=request.query.get("dryRun") == "All")
        return bodies.json_response(self._scale_of(new))

    async def binding(self, request: web.Request, t: Target) -> web.Response:
        body = await bodies.read_object(request)
        node = (body.get("target") or {}).get("name")
        if not node:
            raise errors.invalid_object("Binding", "", t.name or "",
                                        [errors.required("target.name")])

        def mut(cur: dict) -> dict:
            spec = cur.setdefault("spec", {})
            if spec.get("nodeName"):
                raise errors.conflict(t.info, t.name or "",
                                      f"pod {t.name} is already assigned to node \"{spec['nodeName']}\"")
            if cur["metadata"].get("deletionTimestamp"):
                raise errors.conflict(t.info, t.name or "", "pod is being deleted, cannot be assigned to a host")
            spec["nodeName"] = node
            conds = cur.setdefault("status", {}).setdefault("conditions", [])
            conds[:] = [c for c in conds if c.get("type") != "PodScheduled"]
            conds.append({"type": "PodScheduled", "status": "True", "lastProbeTime": None,
                          "lastTransitionTime": meta.now_rfc3339()})
            return cur
        # Binding writes both spec.nodeName and the PodScheduled condition: go around the
        # spec/status split the way kube-apiserver's binding storage does.
        await self.registry.update(t.info, t.namespace, t.name, {}, mutate=mut, subresource="binding")
        return bodies.json_response({"kind": "Status", "apiVersion": "v1", "metadata": {},
                                     "status": "Success", "code": 201}, 201)

    async def review(self, request: web.Request, t: Target) -> web.Response:
        """The review kinds, answered at once and never stored: SelfSubjectAccessReview (`kubectl auth
        can-i`), SelfSubjectReview (`kubectl auth whoami`) and TokenReview."""
        if request.method != "POST" or t.name is not None:
            raise errors.method_not_allowed()
        body = await bodies.read_object(request)
        self._check_kind(t.info, body)
        user: authentication.UserInfo = request.get("user") or authentication.ADMIN
        if t.info.kind == "SelfSubjectReview":
            return bodies.json_response(authentication.self_subject_review(user, meta.now_rfc3339()), 201)
        body.update({"apiVersion": t.info.api_version, "kind": t.info.kind})
        body.setdefault("metadata", {})["creationTimestamp"] = None
        if t.info.kind == "TokenReview":
            body["status"] = await self._token_review(body.get("spec") or {})
            return bodies.json_response(body, 201)
        # Skiff has no RBAC: every authenticated user may do everything.
        body["status"] = {"allowed": True, "reason": "the cluster's administrator token may do everything"
                          if user is authentication.ADMIN else "Skiff authorizes every authenticated user"}
        return bodies.json_response(body, 201)

    async def _token_review(self, spec: dict) -> dict:
        token = spec.get("token") or ""
        if not token:
            raise errors.bad_request("token is required for TokenReview in authentication")
        authn = self.server.authenticator
        user, audiences = await authn.review(token, list(spec.get("audiences") or authn.api_audiences))
        return authentication.token_review_status(user, audiences, token)

    async def token_request(self, request: web.Request, t: Target) -> web.Response:
        """serviceaccounts/<name>/token: a signed token for the ServiceAccount (`kubectl create token`)."""
        if request.method != "POST":
            raise errors.method_not_allowed()
        rest = self.server.token_requests
        if rest is None:
            raise errors.internal("the API server has no ServiceAccount signing key")
        info = serviceaccounttoken.TOKEN_REQUEST
        body = await bodies.read_object(request)
        self._check_kind(info, body)
        warnings = self._check_fields(request, info, body)
        out = await rest.create(t.namespace or "", t.name or "", body)
        return bodies.json_response(out, 201, self._warning_headers(warnings))

    async def eviction(self, request: web.Request, t: Target) -> web.Response:
        """policy/v1 Eviction, as `kubectl drain` sends it: a delete that PodDisruptionBudgets could
        refuse. Skiff has no PodDisruptionBudgets, so every eviction is allowed."""
        if request.method != "POST":
            raise errors.method_not_allowed()
        body = await bodies.read_object(request)
        options = body.get("deleteOptions") or {}
        await self.registry.delete(t.info, t.namespace, t.name or "", options,
                                   dry_run="All" in (options.get("dryRun") or []))
        return bodies.json_response({"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Success",
                                     "code": 201}, 201)

    # ---- watch ---------------------------------------------------------------------------
    def _event_line(self, etype: str, obj: dict) -> bytes:
        """json.dumps({"type": etype, "object": obj}) + newline, reusing the object's JSON from its write."""
        body = None
        try:
            body = self.registry.revision_json(int(obj["metadata"]["resourceVersion"]))
        except (KeyError, TypeError, ValueError):
            pass
        if body is None:
            return json.dumps({"type": etype, "object": obj}, separators=(",", ":")).encode() + b"\n"
        return _EVENT_PREFIX[etype] + body + b"}\n"

    async def watch(self, request: web.Request, t: Target) -> web.StreamResponse:
        q = request.query
        info = t.info
        field_sel = q.get("fieldSelector")
        if t.name:
            extra = f"metadata.name={t.name}"
            field_sel = f"{field_sel},{extra}" if field_sel else extra
        sel = make_selection(info, q.get("labelSelector"), field_sel)
        rv = q.get("resourceVersion") or ""
        as_table = bodies.wants_table(request)
        timeout = float(q.get("timeoutSeconds") or 0) or random.uniform(1800, 3600)
        bookmarks = _bool(q.get("allowWatchBookmarks"))
        send_initial = _bool(q.get("sendInitialEvents"))
        initial: list[dict] = []
        if rv in ("", "0") or send_initial:
            initial, list_rv, _ = await self.registry.list(info, t.namespace, sel)
            from_rev = int(list_rv)
        else:
            try:
                from_rev = int(rv)
            except ValueError:
                raise errors.bad_request(f'invalid resource version: "{rv}"') from None
            if from_rev < self.server.store.compacted_revision():
                raise errors.gone(f"too old resource version: {from_rev} "
                                  f"({self.server.store.compacted_revision() + 1})")
        resp = web.StreamResponse(status=200, headers={"Content-Type": "application/json",
                                                       "Cache-Control": "no-cache, private"})
        resp.enable_chunked_encoding()
        await resp.prepare(request)
        first = [True]

        def encode(etype: str, obj: dict) -> bytes:
            if as_table and etype != "BOOKMARK" and etype != "ERROR":
                table = tables.build_table(info, [obj], dt.datetime.now(dt.UTC),
                                           obj["metadata"].get("resourceVersion", ""),
                                           q.get("includeObject", "Metadata"))
                if not first[0]:
                    table["columnDefinitions"] = None
                first[0] = False
                obj = table
            if not as_table and etype in ("ADDED", "MODIFIED", "DELETED"):
                # The same event goes to many watchers: serialize it once.
                key = (etype, obj["metadata"].get("resourceVersion"), obj["metadata"].get("uid"))
                line = self._encoded.get(key)
                if line is None:
                    line = self._event_line(etype, obj)
                    self._encoded[key] = line
                    if len(self._encoded) > 4096:
                        self._encoded.pop(next(iter(self._encoded)))
                return line
            return json.dumps({"type": etype, "object": obj}, separators=(",", ":")).encode() + b"\n"

        for obj in initial:
            await resp.write(encode("ADDED", obj))
        if send_initial and bookmarks:
            await resp.write(encode("BOOKMARK", {"kind": info.kind, "apiVersion": info.api_version,
                                                 "metadata": {"resourceVersion": str(from_rev), "annotations": {
                                                     "k8s.io/initial-events-end": "true"}}}))
        last_rv = from_rev
        # Events are pumped into a queue by their own task: timing out a wait on the queue (to send a
        # bookmark) must not cancel, and so close, the watch generator underneath.
        events: asyncio.Queue = asyncio.Queue()
        done = object()

        async def pump() -> None:
            try:
                async for item in self.registry.watch(info, t.namespace, from_rev, sel):
                    events.put_nowait(item)
            except APIError as e:
                events.put_nowait(e)
            finally:
                events.put_nowait(done)

        pumper = asyncio.get_running_loop().create_task(pump())
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        try:
            while True:
                remaining = deadline - loop.time()
                if remaining <= 0:
                    break
                if events.empty():
                    wait = min(remaining, 15.0) if bookmarks else remaining
                    try:
                        item = await asyncio.wait_for(events.get(), wait)
                    except TimeoutError:
                        if bookmarks and loop.time() < deadline:
                            cur = max(last_rv, self.server.store.current_revision())
                            await resp.write(encode("BOOKMARK", {"kind": info.kind, "apiVersion": info.api_version,
                                                                 "metadata": {"resourceVersion": str(cur)}}))
                        continue
                else:
                    item = events.get_nowait()
                # Whatever else is already queued goes out in the same write: one TLS record and one
                # chunk for a burst instead of one per event (clients split the stream on newlines).
                batch: list[bytes] = []
                end = False
                while True:
                    if item is done:
                        end = True
                        break
                    if isinstance(item, APIError):
                        batch.append(encode("ERROR", item.status()))
                        end = True
                        break
                    etype, obj = item
                    last_rv = int(obj["metadata"].get("resourceVersion") or last_rv)
                    batch.append(encode(etype, obj))
                    if events.empty() or len(batch) >= _WATCH_BATCH:
                        break
                    item = events.get_nowait()
                if batch:
                    await resp.write(batch[0] if len(batch) == 1 else b"".join(batch))
                if end:
                    break
        except (ConnectionResetError, asyncio.CancelledError):
            pass
        finally:
            pumper.cancel()
        return resp


_EVENT_PREFIX = {t: b'{"type":"' + t.encode() + b'","object":' for t in ("ADDED", "MODIFIED", "DELETED")}


def _managed(old: dict | None, new: dict, manager: str, info: ResourceInfo, now: str) -> dict:
    return managedfields.update_managed_fields(old, new, manager, group=info.group, version=info.version,
                                               kind=info.kind, now=now)


def _default_manager(request: web.Request) -> str:
    ua = request.headers.get("User-Agent", "unknown")
    return ua.split("/", 1)[0] or "unknown"
