"""The OpenAPI documents kube-apiserver publishes, built from the official 1.33 definitions.

kubectl reads them for three things: `--validate` (it looks for a PATCH operation of the kind that
accepts a `fieldValidation` query parameter and then leaves validation to the server), client-side
`apply` (the strategic-merge-patch metadata: `x-kubernetes-patch-merge-key`/`-patch-strategy`) and
`kubectl explain` (the descriptions). So the documents carry full schemas, not just paths.

`skiff.api.schema` holds the definitions as JSON Schema (nullable types as `["string","null"]`,
refs as `#/$defs/<name>`); this module turns them back into OpenAPI 3.0 (`/openapi/v3/<gv>`) and
Swagger 2.0 (`/openapi/v2`) the way kube-openapi renders them. Every document is rendered once
and cached as bytes: they are large (the core/v1 one is about 1 MB) and never change while the
server runs.
"""

from __future__ import annotations

import functools
import hashlib
import json
from collections.abc import Iterable
from typing import Any

from skiff.api import resources, schema
from skiff.api.resources import ResourceInfo

_META = "io.k8s.apimachinery.pkg.apis.meta.v1."
INT_OR_STRING = "io.k8s.apimachinery.pkg.util.intstr.IntOrString"
QUANTITY = "io.k8s.apimachinery.pkg.api.resource.Quantity"

PATCH_CONTENT_TYPES = (
    "application/apply-patch+yaml",
    "application/json-patch+json",
    "application/merge-patch+json",
    "application/strategic-merge-patch+json",
)
_RESPONSE_TYPES = ("application/json", "application/yaml", "application/vnd.kubernetes.protobuf")
_WATCH_TYPES = ("application/json;stream=watch", "application/vnd.kubernetes.protobuf;stream=watch")

# Kinds answered by subresources, by the name `resources.ResourceInfo.subresources` uses.
_SUBRESOURCE_DEFS = {
    "Scale": "io.k8s.api.autoscaling.v1.Scale",
    "Binding": "io.k8s.api.core.v1.Binding",
    "Eviction": "io.k8s.api.policy.v1.Eviction",
    "TokenRequest": "io.k8s.api.authentication.v1.TokenRequest",
}
_SUBRESOURCE_GVK = {
    "Scale": {"group": "autoscaling", "version": "v1", "kind": "Scale"},
    "Binding": {"group": "", "version": "v1", "kind": "Binding"},
    "Eviction": {"group": "policy", "version": "v1", "kind": "Eviction"},
    "TokenRequest": {"group": "authentication.k8s.io", "version": "v1", "kind": "TokenRequest"},
}
# Subresources that are streams or upgrades (kube-apiserver calls them "connect" actions).
_CONNECT = {"exec", "attach", "portforward", "proxy"}

_DOC_INFO = {"title": "Kubernetes", "version": schema.KUBERNETES_VERSION}


# ---------------------------------------------------------------------------------------------
# Schema conversion


def _scalar_type(t: Any) -> Any:
    """`["string", "null"]` -> `"string"`: OpenAPI 2/3.0 have no null type, kube-openapi never emits it."""
    if isinstance(t, list):
        rest = [x for x in t if x != "null"]
        return rest[0] if len(rest) == 1 else rest
    return t


def _convert(node: Any, ref_prefix: str, v3: bool) -> Any:
    if isinstance(node, list):
        return [_convert(x, ref_prefix, v3) for x in node]
    if not isinstance(node, dict):
        return node
    out: dict[str, Any] = {}
    for key, value in node.items():
        if key == "type":
            out[key] = _scalar_type(value)
        elif key == "$ref":
            out[key] = ref_prefix + schema.ref_name(value)
        elif key == "properties":
            out[key] = {name: _convert(sub, ref_prefix, v3) for name, sub in value.items()}
        elif key in ("items", "additionalProperties", "oneOf", "allOf", "anyOf", "not"):
            out[key] = _convert(value, ref_prefix, v3)
        elif key in ("$schema", "$id"):
            continue
        else:
            # x-kubernetes-* values, enums, required lists and plain keywords are data, not schemas.
            out[key] = value
    if v3 and "$ref" in out and len(out) > 1:
        # OpenAPI 3.0 ignores siblings of $ref, so kube-openapi wraps the ref to keep the description.
        ref = out.pop("$ref")
        out = {"allOf": [{"$ref": ref}], **out}
    return out


def _special(name: str, v3: bool) -> dict | None:
    """IntOrString and Quantity: JSON Schema spells them as oneOf; kube-openapi has its own forms."""
    if name == INT_OR_STRING:
        base = {"description": "A value that is either an int32 or a string, such as a port number or a port name.",
                "format": "int-or-string"}
        if v3:
            return {**base, "oneOf": [{"type": "integer"}, {"type": "string"}]}
        return {**base, "type": "string"}
    if name == QUANTITY:
        base = {"description": "A fixed-point number with an optional suffix, such as `500m`, `128Mi` or `2`; "
                               "written as a string (or a plain number)."}
        if v3:
            return {**base, "oneOf": [{"type": "string"}, {"type": "number"}]}
        return {**base, "type": "string"}
    return None


def convert_definition(name: str, v3: bool = True) -> dict:
    """One definition in OpenAPI 3 (`v3=True`, refs to #/components/schemas/) or Swagger 2 style."""
    special = _special(name, v3)
    if special is not None:
        return special
    src = schema.definitions()[name]
    out = _convert(src, "#/components/schemas/" if v3 else "#/definitions/", v3)
    if src.get("x-kubernetes-group-version-kind"):
        # The JSON-Schema conversion pins apiVersion/kind with enums; kube-apiserver publishes plain strings
        # (and kubectl explain would print the enum).
        for field in ("apiVersion", "kind"):
            prop = out.get("properties", {}).get(field)
            if prop is not None:
                prop.pop("enum", None)
    return out


def _refs(node: Any) -> Iterable[str]:
    if isinstance(node, dict):
        for key, value in node.items():
            if key == "$ref":
                yield schema.ref_name(value)
            elif not key.startswith("x-kubernetes"):
                yield from _refs(value)
    elif isinstance(node, list):
        for item in node:
            yield from _refs(item)


def reachable(roots: Iterable[str]) -> list[str]:
    """Every definition reachable from `roots` through $refs, sorted (kube-openapi sorts its keys)."""
    defs = schema.definitions()
    seen: set[str] = set()
    stack = [r for r in roots if r in defs]
    while stack:
        name = stack.pop()
        if name in seen:
            continue
        seen.add(name)
        stack.extend(r for r in _refs(defs[name]) if r not in seen)
    return sorted(seen)


# ---------------------------------------------------------------------------------------------
# Paths


def gv_path(group: str, version: str) -> str:
    """`api/v1` or `apis/apps/v1`: the key of a group-version in /openapi/v3."""
    return f"apis/{group}/{version}" if group else f"api/{version}"


def _served() -> dict[str, list[ResourceInfo]]:
    out: dict[str, list[ResourceInfo]] = {}
    for r in resources.RESOURCES:
        out.setdefault(gv_path(r.group, r.version), []).append(r)
    return out


def _kind_def(r: ResourceInfo) -> str:
    name = schema.definition_name(r.group, r.version, r.kind)
    if name is None:
        raise KeyError(f"no official definition for {r.api_version} {r.kind}")
    return name


def _list_def(r: ResourceInfo) -> str | None:
    return schema.definition_name(r.group, r.version, r.list_kind)


def _op_prefix(r: ResourceInfo) -> str:
    """`CoreV1`, `AppsV1`, `NetworkingV1`: the group-version part of kube-apiserver's operationIds."""
    group = r.group.split(".")[0] if r.group else "core"
    return group[:1].upper() + group[1:] + r.version[:1].upper() + r.version[1:]


def _tag(r: ResourceInfo) -> str:
    group = r.group.split(".")[0] if r.group else "core"
    return f"{group}_{r.version}"


# (name, in, type, description); descriptions are ours, kept short.
_P = {
    "pretty": ("pretty", "query", "string", "If 'true', the output is pretty printed."),
    "dryRun": ("dryRun", "query", "string", "When present (the only valid value is All), the request is "
               "processed fully but nothing is persisted."),
    "fieldManager": ("fieldManager", "query", "string", "Name of the actor making the change, used to "
                     "track field ownership. Required for apply patches."),
    "fieldValidation": ("fieldValidation", "query", "string", "How to treat unknown or duplicate fields in "
                        "the request body: Ignore (drop them), Warn (drop them and send a warning header "
                        "for each) or Strict (fail the request with BadRequest)."),
    "force": ("force", "query", "boolean", "Re-acquire fields owned by other managers in an apply patch. "
              "Must be unset for other patch types."),
    "labelSelector": ("labelSelector", "query", "string", "Only return objects whose labels match."),
    "fieldSelector": ("fieldSelector", "query", "string", "Only return objects whose fields match."),
    "limit": ("limit", "query", "integer", "Maximum number of items to return; the rest is available "
              "through the continue token."),
    "continue": ("continue", "query", "string", "Token from a previous list response to fetch the next page."),
    "resourceVersion": ("resourceVersion", "query", "string", "Resource version to serve the list or "
                        "watch from."),
    "resourceVersionMatch": ("resourceVersionMatch", "query", "string", "How resourceVersion is applied "
                             "to a list (Exact or NotOlderThan)."),
    "timeoutSeconds": ("timeoutSeconds", "query", "integer", "Time limit for the list or watch call."),
    "watch": ("watch", "query", "boolean", "Stream add, update and delete notifications instead of "
              "returning a list."),
    "allowWatchBookmarks": ("allowWatchBookmarks", "query", "boolean", "Ask for BOOKMARK watch events."),
    "sendInitialEvents": ("sendInitialEvents", "query", "boolean", "Start a watch with synthetic events "
                          "for the current state."),
    "gracePeriodSeconds": ("gracePeriodSeconds", "query", "integer", "Seconds before the object is "
                           "deleted; zero means immediately."),
    "propagationPolicy": ("propagationPolicy", "query", "string", "How dependents are garbage collected: "
                          "Orphan, Background or Foreground."),
    "orphanDependents": ("orphanDependents", "query", "boolean", "Deprecated: use propagationPolicy."),
    "container": ("container", "query", "string", "The container to address. Defaults to the only "
                  "container if there is one."),
    "follow": ("follow", "query", "boolean", "Keep streaming the log."),
    "previous": ("previous", "query", "boolean", "Return the log of the previous container instance."),
    "sinceSeconds": ("sinceSeconds", "query", "integer", "Only return log lines newer than this many seconds."),
    "tailLines": ("tailLines", "query", "integer", "Number of lines from the end of the log to return."),
    "timestamps": ("timestamps", "query", "boolean", "Prefix every log line with its RFC3339 timestamp."),
    "command": ("command", "query", "string", "The command to execute; repeat for each argument."),
    "stdin": ("stdin", "query", "boolean", "Attach standard input."),
    "stdout": ("stdout", "query", "boolean", "Attach standard output."),
    "stderr": ("stderr", "query", "boolean", "Attach standard error."),
    "tty": ("tty", "query", "boolean", "Allocate a terminal."),
    "ports": ("ports", "query", "integer", "Pod ports to forward."),
    "path": ("path", "query", "string", "The URL path to request through the proxy."),
    "limitBytes": ("limitBytes", "query", "integer", "Stop after this many bytes of log."),
}
_LIST_PARAMS = ("allowWatchBookmarks", "continue", "fieldSelector", "labelSelector", "limit",
                "resourceVersion", "resourceVersionMatch", "sendInitialEvents", "timeoutSeconds", "watch")
_WRITE_PARAMS = ("dryRun", "fieldManager", "fieldValidation")
_DELETE_PARAMS = ("dryRun", "gracePeriodSeconds", "orphanDependents", "propagationPolicy")
_CONNECT_PARAMS = {
    "exec": ("command", "container", "stderr", "stdin", "stdout", "tty"),
    "attach": ("container", "stderr", "stdin", "stdout", "tty"),
    "portforward": ("ports",),
    "proxy": ("path",),
    "log": ("container", "follow", "limitBytes", "previous", "sinceSeconds", "tailLines", "timestamps"),
}


def _param(key: str, v3: bool) -> dict:
    name, where, typ, desc = _P[key]
    if v3:
        return {"description": desc, "in": where, "name": name, "schema": {"type": typ, "uniqueItems": True}}
    return {"description": desc, "in": where, "name": name, "type": typ, "uniqueItems": True}


def _path_param(name: str, desc: str, v3: bool) -> dict:
    if v3:
        return {"description": desc, "in": "path", "name": name, "required": True,
                "schema": {"type": "string", "uniqueItems": True}}
    return {"description": desc, "in": "path", "name": name, "required": True, "type": "string",
            "uniqueItems": True}


class _Builder:
    """Renders operations for one document flavour (v3 or v2)."""

    def __init__(self, v3: bool):
        self.v3 = v3
        self.prefix = "#/components/schemas/" if v3 else "#/definitions/"

    def ref(self, name: str) -> dict:
        return {"$ref": self.prefix + name}

    def responses(self, codes: dict[str, str], def_name: str | None, media: Iterable[str] = _RESPONSE_TYPES,
                  ) -> dict:
        out: dict[str, Any] = {}
        for code, text in codes.items():
            if def_name is None:
                out[code] = {"description": text}
            elif self.v3:
                out[code] = {"content": {m: {"schema": self.ref(def_name)} for m in media}, "description": text}
            else:
                out[code] = {"description": text, "schema": self.ref(def_name)}
        out["401"] = {"description": "Unauthorized"}
        return out

    def body(self, def_name: str, media: Iterable[str] = ("*/*",), required: bool = True) -> dict:
        """v3: a requestBody; v2: a `body` parameter (returned under the key `parameter`)."""
        if self.v3:
            rb: dict[str, Any] = {"content": {m: {"schema": self.ref(def_name)} for m in media}}
            if required:
                rb["required"] = True
            return {"requestBody": rb}
        param = {"in": "body", "name": "body", "schema": self.ref(def_name)}
        if required:
            param["required"] = True
        return {"parameter": param}

    def op(self, *, action: str, op_id: str, description: str, tag: str, gvk: dict, params: Iterable[str] = (),
           body: dict | None = None, responses: dict, consumes: Iterable[str] | None = None,
           produces: Iterable[str] | None = None) -> dict:
        parameters = [_param(p, self.v3) for p in params]
        op: dict[str, Any] = {"description": description, "operationId": op_id}
        if not self.v3:
            op["consumes"] = list(consumes or ["*/*"])
            op["produces"] = list(produces or ["application/json", "application/yaml",
                                                "application/vnd.kubernetes.protobuf"])
            op["schemes"] = ["https"]
        if body is not None:
            if self.v3:
                op["requestBody"] = body["requestBody"]
            else:
                parameters.insert(0, body["parameter"])
        if parameters:
            op["parameters"] = parameters
        op["responses"] = responses
        op["tags"] = [tag]
        op["x-kubernetes-action"] = action
        op["x-kubernetes-group-version-kind"] = dict(gvk)
        return op

    # -- per resource ----------------------------------------------------------------------------

    def resource_paths(self, r: ResourceInfo) -> dict[str, dict]:
        base = "/" + gv_path(r.group, r.version)
        kind_def = _kind_def(r)
        list_def = _list_def(r)
        gvk = {"group": r.group, "version": r.version, "kind": r.kind}
        tag = _tag(r)
        pre = _op_prefix(r)
        scope = "Namespaced" if r.namespaced else ""
        ns_param = [_path_param("namespace", "object name and auth scope, such as for teams and projects",
                                self.v3)] if r.namespaced else []
        pretty = _param("pretty", self.v3)
        coll = f"{base}/namespaces/{{namespace}}/{r.plural}" if r.namespaced else f"{base}/{r.plural}"
        item = coll + "/{name}"
        name_param = _path_param("name", f"name of the {r.kind}", self.v3)
        paths: dict[str, dict] = {}

        ok_created = {"200": "OK", "201": "Created", "202": "Accepted"}
        list_media = _RESPONSE_TYPES + _WATCH_TYPES
        collection: dict[str, Any] = {
            "get": self.op(action="list", op_id=f"list{pre}{scope}{r.kind}",
                           description=f"list or watch objects of kind {r.kind}", tag=tag, gvk=gvk,
                           params=_LIST_PARAMS, responses=self.responses({"200": "OK"}, list_def, list_media),
                           produces=list(_RESPONSE_TYPES) + list(_WATCH_TYPES)),
            "post": self.op(action="post", op_id=f"create{pre}{scope}{r.kind}", description=f"create a {r.kind}",
                            tag=tag, gvk=gvk, params=_WRITE_PARAMS, body=self.body(kind_def),
                            responses=self.responses(ok_created, kind_def)),
            "delete": self.op(action="deletecollection", op_id=f"delete{pre}Collection{scope}{r.kind}",
                              description=f"delete collection of {r.kind}", tag=tag, gvk=gvk,
                              params=("continue", "dryRun", "fieldSelector", "gracePeriodSeconds", "labelSelector",
                                      "limit", "orphanDependents", "propagationPolicy", "resourceVersion",
                                      "resourceVersionMatch", "sendInitialEvents", "timeoutSeconds"),
                              body=self.body(_META + "DeleteOptions", required=False),
                              responses=self.responses({"200": "OK"}, _META + "Status")),
            "parameters": [*ns_param, pretty],
        }
        paths[coll] = collection
        paths[item] = {
            "get": self.op(action="get", op_id=f"read{pre}{scope}{r.kind}", description=f"read the specified {r.kind}",
                           tag=tag, gvk=gvk, responses=self.responses({"200": "OK"}, kind_def)),
            "put": self.op(action="put", op_id=f"replace{pre}{scope}{r.kind}",
                           description=f"replace the specified {r.kind}", tag=tag, gvk=gvk, params=_WRITE_PARAMS,
                           body=self.body(kind_def), responses=self.responses({"200": "OK", "201": "Created"},
                                                                             kind_def)),
            "patch": self.patch_op(f"patch{pre}{scope}{r.kind}", f"partially update the specified {r.kind}",
                                   tag, gvk, kind_def),
            "delete": self.op(action="delete", op_id=f"delete{pre}{scope}{r.kind}",
                              description=f"delete a {r.kind}", tag=tag, gvk=gvk, params=_DELETE_PARAMS,
                              body=self.body(_META + "DeleteOptions", required=False),
                              responses=self.responses({"200": "OK", "202": "Accepted"}, _META + "Status")),
            "parameters": [name_param, *ns_param, pretty],
        }
        if r.namespaced:
            paths[f"{base}/{r.plural}"] = {
                "get": self.op(action="list", op_id=f"list{pre}{r.kind}ForAllNamespaces",
                               description=f"list or watch objects of kind {r.kind}", tag=tag, gvk=gvk,
                               responses=self.responses({"200": "OK"}, list_def, list_media),
                               produces=list(_RESPONSE_TYPES) + list(_WATCH_TYPES)),
                "parameters": [_param(p, self.v3) for p in ("allowWatchBookmarks", "continue", "fieldSelector",
                                                            "labelSelector", "limit")]
                + [pretty] + [_param(p, self.v3) for p in ("resourceVersion", "resourceVersionMatch",
                                                         "sendInitialEvents", "timeoutSeconds", "watch")],
            }
        for sub, sub_kind in r.subresources.items():
            paths[f"{item}/{sub}"] = self.subresource_path(r, sub, sub_kind, gvk, tag, pre, scope,
                                                           [name_param, *ns_param])
        return paths

    def patch_op(self, op_id: str, description: str, tag: str, gvk: dict, def_name: str) -> dict:
        body = self.body(_META + "Patch", PATCH_CONTENT_TYPES)
        return self.op(action="patch", op_id=op_id, description=description, tag=tag, gvk=gvk,
                       params=("dryRun", "fieldManager", "fieldValidation", "force"), body=body,
                       responses=self.responses({"200": "OK", "201": "Created"}, def_name),
                       consumes=PATCH_CONTENT_TYPES)

    def subresource_path(self, r: ResourceInfo, sub: str, sub_kind: str, gvk: dict, tag: str, pre: str,
                         scope: str, params: list[dict]) -> dict:
        cap = sub[:1].upper() + sub[1:]
        kind_def = _kind_def(r)
        if sub_kind == "":  # status, finalize: the object itself
            entry: dict[str, Any] = {"parameters": [*params, _param("pretty", self.v3)]}
            if sub != "finalize":
                entry["get"] = self.op(action="get", op_id=f"read{pre}{scope}{r.kind}{cap}",
                                       description=f"read {sub} of the specified {r.kind}", tag=tag, gvk=gvk,
                                       responses=self.responses({"200": "OK"}, kind_def))
                entry["patch"] = self.patch_op(f"patch{pre}{scope}{r.kind}{cap}",
                                               f"partially update {sub} of the specified {r.kind}", tag, gvk,
                                               kind_def)
            entry["put"] = self.op(action="put", op_id=f"replace{pre}{scope}{r.kind}{cap}",
                                   description=f"replace {sub} of the specified {r.kind}", tag=tag, gvk=gvk,
                                   params=_WRITE_PARAMS, body=self.body(kind_def),
                                   responses=self.responses({"200": "OK", "201": "Created"}, kind_def))
            return entry
        if sub == "log":
            return {
                "get": self.op(action="get", op_id=f"read{pre}{scope}{r.kind}Log",
                               description=f"read log of the specified {r.kind}", tag=tag, gvk=gvk,
                               params=_CONNECT_PARAMS["log"],
                               responses=self._text_response(), produces=["text/plain", "application/json"]),
                "parameters": [*params, _param("pretty", self.v3)],
            }
        if sub in _CONNECT:
            options_gvk = {"group": "", "version": "v1", "kind": sub_kind}
            entry = {"parameters": [*params]}
            for method in ("get", "post"):
                entry[method] = self.op(action="connect", op_id=f"connect{method.capitalize()}{pre}{scope}{r.kind}{cap}",
                                        description=f"connect {method.upper()} requests to {sub} of {r.kind}",
                                        tag=tag, gvk=options_gvk, params=_CONNECT_PARAMS[sub],
                                        responses=self._text_response(), consumes=["*/*"], produces=["*/*"])
            return entry
        sub_def = _SUBRESOURCE_DEFS.get(sub_kind)
        sub_gvk = _SUBRESOURCE_GVK.get(sub_kind, gvk)
        if sub_kind == "Scale" and sub_def:
            return {
                "get": self.op(action="get", op_id=f"read{pre}{scope}{r.kind}Scale",
                               description=f"read scale of the specified {r.kind}", tag=tag, gvk=sub_gvk,
                               responses=self.responses({"200": "OK"}, sub_def)),
                "put": self.op(action="put", op_id=f"replace{pre}{scope}{r.kind}Scale",
                               description=f"replace scale of the specified {r.kind}", tag=tag, gvk=sub_gvk,
                               params=_WRITE_PARAMS, body=self.body(sub_def),
                               responses=self.responses({"200": "OK", "201": "Created"}, sub_def)),
                "patch": self.patch_op(f"patch{pre}{scope}{r.kind}Scale",
                                       f"partially update scale of the specified {r.kind}", tag, sub_gvk, sub_def),
                "parameters": [*params, _param("pretty", self.v3)],
            }
        # binding, eviction, token: create-only subresources.
        def_name = sub_def or kind_def
        return {
            "post": self.op(action="post", op_id=f"create{pre}{scope}{r.kind}{cap}",
                            description=f"create {sub} of a {r.kind}", tag=tag, gvk=sub_gvk, params=_WRITE_PARAMS,
                            body=self.body(def_name), responses=self.responses(
                                {"200": "OK", "201": "Created", "202": "Accepted"}, def_name)),
            "parameters": [*params, _param("pretty", self.v3)],
        }

    def _text_response(self) -> dict:
        if self.v3:
            return {"200": {"content": {"*/*": {"schema": {"type": "string"}}}, "description": "OK"},
                    "401": {"description": "Unauthorized"}}
        return {"200": {"description": "OK", "schema": {"type": "string"}}, "401": {"description": "Unauthorized"}}


def _roots(served: Iterable[ResourceInfo]) -> list[str]:
    roots = [_META + n for n in ("DeleteOptions", "Status", "Patch", "WatchEvent", "APIResourceList")]
    for r in served:
        roots.append(_kind_def(r))
        list_def = _list_def(r)
        if list_def:
            roots.append(list_def)
        for sub_kind in r.subresources.values():
            if sub_kind in _SUBRESOURCE_DEFS:
                roots.append(_SUBRESOURCE_DEFS[sub_kind])
    return roots


def _dumps(doc: dict) -> bytes:
    return json.dumps(doc, sort_keys=True, separators=(",", ":")).encode()


# ---------------------------------------------------------------------------------------------
# Public API


def group_version_paths() -> list[str]:
    """The `api/v1`, `apis/apps/v1`, ... keys of every served group-version, in discovery order."""
    return list(_served())


def _normalize(gv: str) -> str:
    gv = gv.split("?", 1)[0].strip("/")
    return gv.removeprefix("openapi/v3/")


@functools.cache
def _v3_bytes(gv: str) -> bytes | None:
    served = _served().get(gv)
    if not served:
        return None
    builder = _Builder(v3=True)
    paths: dict[str, dict] = {}
    for r in served:
        paths.update(builder.resource_paths(r))
    schemas = {name: convert_definition(name, v3=True) for name in reachable(_roots(served))}
    doc = {"openapi": "3.0.0", "info": dict(_DOC_INFO), "paths": paths, "components": {"schemas": schemas}}
    return _dumps(doc)


def v3_document(gv_path: str) -> bytes | None:
    """The OpenAPI 3.0 document of one group-version (`api/v1`, `apis/apps/v1`), or None if not served.

    A leading `/`, an `openapi/v3/` prefix and a `?hash=` query are tolerated.
    """
    return _v3_bytes(_normalize(gv_path))


@functools.cache
def v3_hash(gv_path: str) -> str:
    """The content hash kube-apiserver puts in serverRelativeURL (SHA-512, upper-case hex)."""
    body = v3_document(gv_path)
    if body is None:
        raise KeyError(gv_path)
    return hashlib.sha512(body).hexdigest().upper()


def v3_root(server_prefix: str = "") -> dict:
    """The `/openapi/v3` discovery document: each group-version's document URL with its content hash,
    so clients can cache the documents forever (the URL changes when the content does)."""
    prefix = server_prefix.rstrip("/")
    return {"paths": {gv: {"serverRelativeURL": f"{prefix}/openapi/v3/{gv}?hash={v3_hash(gv)}"}
                      for gv in group_version_paths()}}


@functools.cache
def v2_document() -> bytes:
    """The Swagger 2.0 document of everything served (`/openapi/v2` for clients that accept JSON).

    kubectl asks /openapi/v2 for protobuf only; answer it with this JSON only when JSON is acceptable.
    """
    builder = _Builder(v3=False)
    paths: dict[str, dict] = {}
    served = list(resources.RESOURCES)
    for r in served:
        paths.update(builder.resource_paths(r))
    definitions = {name: convert_definition(name, v3=False) for name in reachable(_roots(served))}
    doc = {
        "swagger": "2.0",
        "info": dict(_DOC_INFO),
        "paths": paths,
        "definitions": definitions,
        "security": [{"BearerToken": []}],
        "securityDefinitions": {"BearerToken": {"description": "Bearer Token authentication", "in": "header",
                                                "name": "authorization", "type": "apiKey"}},
    }
    return _dumps(doc)


def v2_hash() -> str:
    """ETag for /openapi/v2."""
    return hashlib.sha512(v2_document()).hexdigest().upper()
