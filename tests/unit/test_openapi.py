"""OpenAPI documents: shape checks, and the real kubectl reading them from a minimal in-process server."""

from __future__ import annotations

import asyncio
import hashlib
import json
import os
import shutil
import tempfile

import pytest
from aiohttp import web

from skiff.api import openapi, resources


def _walk(node, visit, path=""):
    visit(node, path)
    if isinstance(node, dict):
        for k, v in node.items():
            _walk(v, visit, f"{path}/{k}")
    elif isinstance(node, list):
        for i, v in enumerate(node):
            _walk(v, visit, f"{path}/{i}")


def _doc(gv: str) -> dict:
    body = openapi.v3_document(gv)
    assert body is not None
    return json.loads(body)


def test_root_lists_every_group_version_with_content_hash():
    root = openapi.v3_root()
    expected = {openapi.gv_path(g, v) for g, v in resources.group_versions()}
    assert set(root["paths"]) == expected
    for gv, entry in root["paths"].items():
        digest = hashlib.sha512(openapi.v3_document(gv)).hexdigest().upper()
        assert entry["serverRelativeURL"] == f"/openapi/v3/{gv}?hash={digest}"
    assert openapi.v3_root("/prefix/")["paths"]["api/v1"]["serverRelativeURL"].startswith("/prefix/openapi/v3/api/v1?")


def test_document_lookup_tolerates_url_forms_and_is_cached():
    a = openapi.v3_document("apis/apps/v1")
    assert a is openapi.v3_document("/openapi/v3/apis/apps/v1?hash=X")
    assert openapi.v3_document("apis/storage.k8s.io/v1") is None
    assert openapi.v3_document("api/v2") is None


@pytest.mark.parametrize("gv", ["api/v1", "apis/apps/v1", "apis/networking.k8s.io/v1",
                                "apis/discovery.k8s.io/v1", "apis/events.k8s.io/v1"])
def test_v3_document_is_openapi3_without_json_schema_leftovers(gv):
    doc = _doc(gv)
    assert doc["openapi"] == "3.0.0"
    assert doc["info"]["title"] == "Kubernetes"
    schemas = doc["components"]["schemas"]
    problems = []

    def visit(node, path):
        if isinstance(node, dict):
            if "type" in node and (isinstance(node["type"], list) or node["type"] == "null"):
                problems.append(f"{path}: type {node['type']}")
            ref = node.get("$ref")
            if isinstance(ref, str):
                if not ref.startswith("#/components/schemas/"):
                    problems.append(f"{path}: ref {ref}")
                elif ref.rsplit("/", 1)[1] not in schemas:
                    problems.append(f"{path}: dangling {ref}")
                if len(node) > 1:
                    problems.append(f"{path}: $ref with siblings")

    _walk(doc, visit)
    assert problems == []
    assert "$defs" not in json.dumps(doc)


def test_every_served_kind_has_a_patch_op_kubectl_accepts():
    for r in resources.RESOURCES:
        doc = _doc(openapi.gv_path(r.group, r.version))
        want = {"group": r.group, "version": r.version, "kind": r.kind}
        ops = [p["patch"] for p in doc["paths"].values()
               if "patch" in p and p["patch"]["x-kubernetes-group-version-kind"] == want]
        assert ops, f"no PATCH for {r.kind}"
        for op in ops:
            assert any(p["name"] == "fieldValidation" and p["in"] == "query" for p in op["parameters"])
            assert set(op["requestBody"]["content"]) >= {
                "application/json-patch+json", "application/merge-patch+json",
                "application/strategic-merge-patch+json", "application/apply-patch+yaml"}


def test_paths_follow_kube_apiserver_layout():
    paths = _doc("api/v1")["paths"]
    coll = paths["/api/v1/namespaces/{namespace}/services"]
    assert set(coll) >= {"get", "post", "delete", "parameters"}
    assert coll["get"]["x-kubernetes-action"] == "list"
    item = paths["/api/v1/namespaces/{namespace}/services/{name}"]
    assert set(item) >= {"get", "put", "patch", "delete"}
    assert item["patch"]["operationId"] == "patchCoreV1NamespacedService"
    assert "/api/v1/services" in paths
    assert "/api/v1/namespaces/{name}" in paths  # cluster-scoped
    assert "/api/v1/namespaces/{namespace}/pods/{name}/log" in paths
    scale = _doc("apis/apps/v1")["paths"]["/apis/apps/v1/namespaces/{namespace}/deployments/{name}/scale"]
    assert scale["patch"]["x-kubernetes-group-version-kind"] == {"group": "autoscaling", "version": "v1",
                                                                  "kind": "Scale"}


def test_schemas_keep_kubernetes_extensions():
    schemas = _doc("apis/apps/v1")["components"]["schemas"]
    dep = schemas["io.k8s.api.apps.v1.Deployment"]
    assert dep["type"] == "object"
    assert dep["x-kubernetes-group-version-kind"] == [{"group": "apps", "kind": "Deployment", "version": "v1"}]
    assert "enum" not in dep["properties"]["apiVersion"]
    assert dep["properties"]["spec"]["allOf"] == [{"$ref": "#/components/schemas/io.k8s.api.apps.v1.DeploymentSpec"}]
    assert dep["properties"]["spec"]["description"]
    containers = schemas["io.k8s.api.core.v1.PodSpec"]["properties"]["containers"]
    assert containers["x-kubernetes-patch-merge-key"] == "name"
    assert containers["x-kubernetes-patch-strategy"] == "merge"
    assert containers["x-kubernetes-list-type"] == "map"
    assert containers["items"] == {"$ref": "#/components/schemas/io.k8s.api.core.v1.Container"}
    assert schemas["io.k8s.api.apps.v1.DeploymentSpec"]["required"] == ["selector", "template"]
    assert schemas["io.k8s.api.apps.v1.DeploymentSpec"]["properties"]["replicas"]["format"] == "int32"
    ios = schemas["io.k8s.apimachinery.pkg.util.intstr.IntOrString"]
    assert ios["format"] == "int-or-string" and ios["oneOf"] == [{"type": "integer"}, {"type": "string"}]
    labels = schemas["io.k8s.apimachinery.pkg.apis.meta.v1.ObjectMeta"]["properties"]["labels"]
    assert labels["additionalProperties"] == {"type": "string"}


def test_v2_document_is_swagger2():
    doc = json.loads(openapi.v2_document())
    assert doc["swagger"] == "2.0"
    assert "io.k8s.api.core.v1.Service" in doc["definitions"]
    text = openapi.v2_document().decode()
    assert "#/components/" not in text and "$defs" not in text
    spec = doc["definitions"]["io.k8s.api.core.v1.Service"]["properties"]["spec"]
    assert spec["$ref"] == "#/definitions/io.k8s.api.core.v1.ServiceSpec"
    patch = doc["paths"]["/apis/apps/v1/namespaces/{namespace}/deployments/{name}"]["patch"]
    assert any(p["name"] == "fieldValidation" and p["in"] == "query" for p in patch["parameters"])
    assert "application/strategic-merge-patch+json" in patch["consumes"]
    assert doc["definitions"]["io.k8s.apimachinery.pkg.util.intstr.IntOrString"]["type"] == "string"


# ---------------------------------------------------------------------------------------------
# The real kubectl against a minimal server that serves only what kubectl needs around OpenAPI.


def _discovery(group: str, version: str) -> dict:
    res = [{"name": r.plural, "singularName": r.singular, "namespaced": r.namespaced, "kind": r.kind,
            "verbs": resources.ALL_VERBS, "shortNames": list(r.short_names)}
           for r in resources.RESOURCES if (r.group, r.version) == (group, version)]
    return {"kind": "APIResourceList", "apiVersion": "v1",
            "groupVersion": f"{group}/{version}" if group else version, "resources": res}


class _StubServer:
    """/version, legacy discovery, /openapi/v3 from skiff.api.openapi, and a tiny object store."""

    def __init__(self) -> None:
        self.requests: list[str] = []
        self.patches: list[tuple[str, str]] = []
        self.objects: dict[str, dict] = {}

    async def handle(self, request: web.Request) -> web.StreamResponse:
        path = request.path
        self.requests.append(f"{request.method} {request.path_qs}")
        if path == "/version":
            return web.json_response({"major": "1", "minor": "33", "gitVersion": "v1.33.0-skiff",
                                      "gitCommit": "0", "gitTreeState": "clean",
                                      "buildDate": "2025-01-01T00:00:00Z", "goVersion": "go1.24",
                                      "compiler": "gc", "platform": "linux/amd64"})
        if path == "/api":
            return web.json_response({"kind": "APIVersions", "versions": ["v1"]})
        if path == "/apis":
            groups = [{"name": g, "versions": [{"groupVersion": f"{g}/{v}", "version": v}],
                       "preferredVersion": {"groupVersion": f"{g}/{v}", "version": v}}
                      for g, v in resources.group_versions() if g]
            return web.json_response({"kind": "APIGroupList", "apiVersion": "v1", "groups": groups})
        if path == "/api/v1":
            return web.json_response(_discovery("", "v1"))
        parts = path.strip("/").split("/")
        if parts[0] == "apis" and len(parts) == 3:
            return web.json_response(_discovery(parts[1], parts[2]))
        if path == "/openapi/v3":
            return web.json_response(openapi.v3_root())
        if path.startswith("/openapi/v3/"):
            body = openapi.v3_document(path[len("/openapi/v3/"):])
            if body is not None:
                return web.Response(body=body, content_type="application/json")
        elif request.method == "GET" and path in self.objects:
            return web.json_response(self.objects[path])
        elif request.method == "POST":
            obj = await request.json()
            obj["metadata"]["resourceVersion"] = "1"
            self.objects[f"{path}/{obj['metadata']['name']}"] = obj
            return web.json_response(obj, status=201)
        elif request.method == "PATCH" and path in self.objects:
            self.patches.append((request.content_type, await request.text()))
            return web.json_response(self.objects[path])
        return web.json_response({"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Failure",
                                  "message": "not found", "reason": "NotFound", "code": 404}, status=404)


@pytest.fixture
async def kubectl_env():
    if shutil.which("kubectl") is None:
        pytest.skip("kubectl is not on PATH")
    stub = _StubServer()
    app = web.Application()
    app.router.add_route("*", "/{tail:.*}", stub.handle)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = site._server.sockets[0].getsockname()[1]
    home = tempfile.mkdtemp(prefix="skiff-kubectl-")
    kubeconfig = os.path.join(home, "kubeconfig")
    with open(kubeconfig, "w") as f:
        f.write(f"""apiVersion: v1
kind: Config
clusters: [{{name: stub, cluster: {{server: "http://127.0.0.1:{port}"}}}}]
users: [{{name: anon, user: {{}}}}]
contexts: [{{name: stub, context: {{cluster: stub, user: anon, namespace: default}}}}]
current-context: stub
""")
    # A fresh HOME per run: kubectl caches discovery and OpenAPI per host:port for hours.
    env = {**os.environ, "HOME": home, "KUBECONFIG": kubeconfig, "KUBECACHEDIR": os.path.join(home, "cache")}

    async def kubectl(*args: str, stdin: bytes | None = None) -> tuple[int, str, str]:
        proc = await asyncio.create_subprocess_exec(
            "kubectl", *args, env=env, stdin=asyncio.subprocess.PIPE, stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE)
        out, err = await asyncio.wait_for(proc.communicate(stdin), 60)
        return proc.returncode, out.decode(), err.decode()

    try:
        yield stub, kubectl, home
    finally:
        await runner.cleanup()
        shutil.rmtree(home, ignore_errors=True)


async def test_kubectl_explain_prints_official_descriptions(kubectl_env):
    _, kubectl, _ = kubectl_env
    rc, out, err = await kubectl("explain", "service.spec.ports")
    assert rc == 0, err
    assert "FIELD: ports <[]ServicePort>" in out
    assert "The list of ports that are exposed by this service." in out
    assert "targetPort\t<IntOrString>" in out
    assert "port\t<integer> -required-" in out
    rc, out, err = await kubectl("explain", "deployment.spec")
    assert rc == 0, err
    assert "GROUP:      apps" in out
    assert "Minimum number of seconds for which a newly created pod should be ready" in out


_MANIFEST = """apiVersion: apps/v1
kind: Deployment
metadata: {name: web, labels: {app: web}}
spec:
  replicas: REPLICAS
  selector: {matchLabels: {app: web}}
  template:
    metadata: {labels: {app: web}}
    spec:
      containers:
      - {name: nginx, image: nginx:1.25, ports: [{containerPort: 80}]}
---
apiVersion: v1
kind: Service
metadata: {name: web}
spec:
  selector: {app: web}
  ports: [{port: 80, targetPort: 80}]
"""


async def test_kubectl_apply_strict_validation_uses_v3_without_warnings(kubectl_env):
    stub, kubectl, home = kubectl_env
    path = os.path.join(home, "app.yaml")
    with open(path, "w") as f:
        f.write(_MANIFEST.replace("REPLICAS", "2"))
    rc, out, err = await kubectl("apply", "-f", path)
    assert rc == 0, err
    assert err == ""
    assert "deployment.apps/web created" in out and "service/web created" in out
    posts = [r for r in stub.requests if r.startswith("POST ")]
    assert len(posts) == 2 and all("fieldValidation=Strict" in r for r in posts)

    with open(path, "w") as f:
        f.write(_MANIFEST.replace("REPLICAS", "3"))
    rc, out, err = await kubectl("apply", "-f", path)
    assert rc == 0, err
    assert err == ""  # no "error calculating patch from openapi v3 spec" warning
    assert "deployment.apps/web configured" in out
    # The strategic merge patch came from the v3 schemas: kubectl never fell back to /openapi/v2.
    assert not any(r.startswith("GET /openapi/v2") for r in stub.requests)
    (ctype, body), = stub.patches
    assert ctype == "application/strategic-merge-patch+json"
    assert json.loads(body)["spec"]["replicas"] == 3
