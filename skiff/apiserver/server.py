"""The API server: HTTPS, bearer-token authentication, discovery, OpenAPI and the REST resources."""

from __future__ import annotations

import asyncio
import logging
import re
import ssl
import time
from collections.abc import Callable
from pathlib import Path

from aiohttp import web

from skiff.api import errors, openapi
from skiff.api.resources import ResourceInfo, lookup
from skiff.apiserver import bodies, discovery, ingressclass, podadmission, serviceaccounttoken
from skiff.apiserver.admission import ServiceAdmission
from skiff.apiserver.authentication import Authenticator
from skiff.apiserver.handlers import ResourceHandler
from skiff.apiserver.nodeproxy import NodeProxy
from skiff.apiserver.proxy import Proxy
from skiff.apiserver.registry import Registry
from skiff.config import ClusterConfig
from skiff.store.interface import Store

log = logging.getLogger("skiff.apiserver")

# Readable without credentials, as kube-apiserver's system:public-info-viewer role allows.
_PUBLIC = {"/version", "/healthz", "/livez", "/readyz"}
# Kubernetes 1.33 deprecated core/v1 Endpoints: every request for them carries this warning, which
# kubectl prints as "Warning: ..." (watches excepted here: their headers are gone by then).
ENDPOINTS_DEPRECATION = "v1 Endpoints is deprecated in v1.33+; use discovery.k8s.io/v1 EndpointSlice"
_DEPRECATED_ENDPOINTS = re.compile(r"^/api/v1/(namespaces/[^/]+/)?endpoints(/|$)")
# How often the `kubernetes` Service's endpoints are checked, as kube-apiserver's endpoint reconciler does.
_ENDPOINT_RECONCILE_SECONDS = 10.0
ENDPOINTS = lookup("", "v1", "endpoints")
ENDPOINT_SLICES = lookup("discovery.k8s.io", "v1", "endpointslices")


def kubernetes_endpoints(address: str, port: int) -> tuple[dict, dict]:
    """The v1 Endpoints and the EndpointSlice kube-apiserver keeps for `default/kubernetes`: its own
    advertise address and port. The Endpoints is marked skip-mirror because the slice is written here
    too, not by the mirroring controller."""
    endpoints = {"apiVersion": "v1", "kind": "Endpoints",
                 "metadata": {"name": "kubernetes", "namespace": "default",
                              "labels": {"endpointslice.kubernetes.io/skip-mirror": "true"}},
                 "subsets": [{"addresses": [{"ip": address}],
                              "ports": [{"name": "https", "port": port, "protocol": "TCP"}]}]}
    endpoint_slice = {"apiVersion": "discovery.k8s.io/v1", "kind": "EndpointSlice",
                      "metadata": {"name": "kubernetes", "namespace": "default",
                                   "labels": {"kubernetes.io/service-name": "kubernetes"}},
                      "addressType": "IPv4",
                      "endpoints": [{"addresses": [address], "conditions": {"ready": True}}],
                      "ports": [{"name": "https", "port": port, "protocol": "TCP"}]}
    return endpoints, endpoint_slice


def _differs(current: dict, desired: dict) -> bool:
    """Whether `current` lacks what kubernetes_endpoints() wants (its labels and its data fields)."""
    labels = current["metadata"].get("labels") or {}
    if any(labels.get(k) != v for k, v in desired["metadata"]["labels"].items()):
        return True
    return any(current.get(k) != v for k, v in desired.items() if k not in ("metadata", "apiVersion", "kind"))


class APIServer:
    def __init__(self, cfg: ClusterConfig, store: Store):
        self.cfg = cfg
        self.store = store
        self.registry = Registry(store)
        self.admission = ServiceAdmission(self)
        self.registry.admit = self._admit
        self.registry.on_deleted = self.admission.on_deleted
        self.node_proxy = NodeProxy(self)
        self.proxy = Proxy(self)
        self.resources = ResourceHandler(self)
        self.issuer = serviceaccounttoken.issuer_url(cfg.cluster_domain)
        # --api-audiences defaults to the issuer, as on kind and kubeadm clusters.
        self.api_audiences = [self.issuer]
        # The signer comes with the pki directory, in start().
        self.authenticator = Authenticator(cfg.token, self.registry, None, self.api_audiences)
        self.token_requests: serviceaccounttoken.TokenRequestREST | None = None
        self.signer: serviceaccounttoken.Signer | None = None
        self._reconciler: asyncio.Task | None = None
        self._runner: web.AppRunner | None = None
        self.ready = asyncio.Event()

    async def _admit(self, info: ResourceInfo, new: dict, old: dict | None, dry_run: bool
                     ) -> Callable[[], None] | None:
        """The admission chain: the defaults a new Ingress or Pod gets, then the Services' allocations."""
        if old is None:
            if info is ingressclass.INGRESSES:
                await ingressclass.admit_create(self.registry, new)
            elif info is podadmission.PODS:
                await podadmission.admit_create(self.registry, new)
        return await self.admission.admit(info, new, old, dry_run)

    # ---- app -----------------------------------------------------------------------------
    def app(self) -> web.Application:
        app = web.Application(middlewares=[self._middleware], client_max_size=bodies.MAX_BODY + 1)
        app.router.add_get("/version", self._version)
        for path in ("/healthz", "/livez", "/readyz"):
            app.router.add_get(path, self._health)
        app.router.add_get("/api", self._api)
        app.router.add_get("/apis", self._apis)
        app.router.add_get("/api/v1", self._core_resources)
        app.router.add_get("/apis/{group}", self._group)
        app.router.add_get("/apis/{group}/{version}", self._group_resources)
        app.router.add_get("/openapi/v2", self._openapi_v2)
        app.router.add_get("/openapi/v3", self._openapi_v3_root)
        app.router.add_get("/openapi/v3/{path:.+}", self._openapi_v3)
        app.router.add_get("/.well-known/openid-configuration", self._openid_configuration)
        app.router.add_get("/openid/v1/jwks", self._jwks)
        app.router.add_route("*", "/api/v1/{rest:.+}", self._core)
        app.router.add_route("*", "/apis/{group}/{version}/{rest:.+}", self._grouped)
        return app

    @web.middleware
    async def _middleware(self, request: web.Request, handler):
        start = time.perf_counter()
        try:
            if request.path not in _PUBLIC:
                auth = request.headers.get("Authorization", "")
                scheme, _, token = auth.partition(" ")
                # The scheme is case-insensitive (RFC 7235): the official Python client's in-cluster
                # configuration sends "bearer".
                if scheme.lower() != "bearer":
                    raise errors.unauthorized()
                token = token.strip()
                # The administrator's token first: one comparison, no await, for the busiest callers.
                user = self.authenticator.admin(token) or await self.authenticator.authenticate(token)
                if user is None:
                    raise errors.unauthorized()
                request["user"] = user
            resp = await handler(request)
        except errors.APIError as e:
            resp = bodies.status_response(e)
        except web.HTTPException as e:
            if e.status == 413:
                resp = bodies.status_response(errors.too_large())
            elif e.status == 404:
                resp = bodies.status_response(errors.APIError(404, "NotFound",
                                                              "the server could not find the requested resource"))
            elif e.status == 405:
                resp = bodies.status_response(errors.method_not_allowed())
            else:
                raise
        except (ConnectionResetError, asyncio.CancelledError):
            raise
        except Exception as e:  # an unexpected bug must still answer a Status, and be logged
            log.exception("internal error serving %s %s", request.method, request.path_qs)
            resp = bodies.status_response(errors.internal(str(e)))
        if _DEPRECATED_ENDPOINTS.match(request.path) and not resp.prepared:
            warning = f'299 - "{ENDPOINTS_DEPRECATION}"'
            resp.headers["Warning"] = ", ".join(filter(None, (resp.headers.get("Warning"), warning)))
        if log.isEnabledFor(logging.DEBUG):
            log.debug("%s %s -> %s (%.1f ms)", request.method, request.path_qs, getattr(resp, "status", "?"),
                      (time.perf_counter() - start) * 1000)
        return resp

    # ---- non-resource endpoints ----------------------------------------------------------
    async def _version(self, request: web.Request) -> web.Response:
        return bodies.json_response(discovery.VERSION)

    async def _health(self, request: web.Request) -> web.Response:
        return web.Response(text="ok")

    def _signer(self) -> serviceaccounttoken.Signer:
        """The issuer's signer; without one the discovery documents do not exist (404)."""
        if self.signer is None:
            raise errors.APIError(404, "NotFound", "the server could not find the requested resource")
        return self.signer

    async def _openid_configuration(self, request: web.Request) -> web.Response:
        """ServiceAccountIssuerDiscovery. Like kube-apiserver's default RBAC (which grants it to
        authenticated clients, ServiceAccounts included), it needs a token."""
        doc = self._signer().openid_configuration(f"{self.cfg.in_cluster_server_url}/openid/v1/jwks")
        return bodies.json_response(doc, headers={"Cache-Control": "public, max-age=3600"})

    async def _jwks(self, request: web.Request) -> web.Response:
        return web.Response(body=_dumps(self._signer().jwks()), content_type="application/jwk-set+json",
                            headers={"Cache-Control": "public, max-age=3600"})

    async def _api(self, request: web.Request) -> web.Response:
        if "apidiscovery.k8s.io" in request.headers.get("Accept", ""):
            return web.Response(body=_dumps(discovery.aggregated(core=True)),
                                headers={"Content-Type": discovery.AGGREGATED_CT})
        return bodies.json_response(discovery.api_versions(f"{self.cfg.host_ip}:{self.cfg.api_port}"))

    async def _apis(self, request: web.Request) -> web.Response:
        if "apidiscovery.k8s.io" in request.headers.get("Accept", ""):
            return web.Response(body=_dumps(discovery.aggregated(core=False)),
                                headers={"Content-Type": discovery.AGGREGATED_CT})
        return bodies.json_response(discovery.api_group_list())

    async def _core_resources(self, request: web.Request) -> web.Response:
        return bodies.json_response(discovery.resource_list("", "v1"))

    async def _group(self, request: web.Request) -> web.Response:
        doc = discovery.api_group(request.match_info["group"])
        if doc is None:
            raise errors.APIError(404, "NotFound", "the server could not find the requested resource")
        return bodies.json_response(doc)

    async def _group_resources(self, request: web.Request) -> web.Response:
        doc = discovery.resource_list(request.match_info["group"], request.match_info["version"])
        if doc is None:
            raise errors.APIError(404, "NotFound", "the server could not find the requested resource")
        return bodies.json_response(doc)

    async def _openapi_v2(self, request: web.Request) -> web.Response:
        accept = request.headers.get("Accept", "")
        if "protobuf" in accept and "json" not in accept:
            # kubectl falls back to the v2 document (protobuf only) for kinds the v3 documents do not
            # describe, such as `kind: List`. An empty protobuf body is a valid empty document: kubectl
            # then skips client-side checks and the server validates each item with fieldValidation.
            return web.Response(body=b"", content_type="application/com.github.proto-openapi.spec.v2.v1.0+protobuf")
        return web.Response(body=openapi.v2_document(), content_type="application/json")

    async def _openapi_v3_root(self, request: web.Request) -> web.Response:
        return bodies.json_response(openapi.v3_root())

    async def _openapi_v3(self, request: web.Request) -> web.Response:
        doc = openapi.v3_document(request.match_info["path"])
        if doc is None:
            raise errors.APIError(404, "NotFound", "the server could not find the requested resource")
        return web.Response(body=doc, content_type="application/json",
                            headers={"Cache-Control": "public, immutable"} if request.query.get("hash") else None)

    async def _core(self, request: web.Request) -> web.StreamResponse:
        return await self.resources.handle(request, "", "v1", request.match_info["rest"])

    async def _grouped(self, request: web.Request) -> web.StreamResponse:
        mi = request.match_info
        return await self.resources.handle(request, mi["group"], mi["version"], mi["rest"])

    # ---- lifecycle -----------------------------------------------------------------------
    async def bootstrap(self) -> None:
        """Objects every cluster has from the start, created once (restarts find them in the store)."""
        ns_info = lookup("", "v1", "namespaces")
        for ns in ("default", "kube-system", "kube-public", "kube-node-lease"):
            try:
                await self.registry.create(ns_info, None, {"metadata": {
                    "name": ns, "labels": {"kubernetes.io/metadata.name": ns}}})
            except errors.APIError as e:
                if e.code != 409:
                    raise
        svc_info = lookup("", "v1", "services")
        svc = {"metadata": {"name": "kubernetes", "namespace": "default",
                            "labels": {"component": "apiserver", "provider": "kubernetes"}},
               "spec": {"type": "ClusterIP", "clusterIP": self.cfg.kubernetes_service_ip,
                        "clusterIPs": [self.cfg.kubernetes_service_ip], "sessionAffinity": "None",
                        "ports": [{"name": "https", "port": 443, "protocol": "TCP",
                                   "targetPort": self.cfg.api_port}]}}
        try:
            await self.registry.create(svc_info, "default", svc)
        except errors.APIError as e:
            if e.code != 409:
                raise
        await self.reconcile_kubernetes_endpoints()

    async def reconcile_kubernetes_endpoints(self) -> None:
        """Create or repair default/kubernetes's Endpoints and EndpointSlice, so that pods reach the
        API server through the Service (10.96.0.1:443, kubernetes.default.svc)."""
        for info, desired in zip((ENDPOINTS, ENDPOINT_SLICES),
                                 kubernetes_endpoints(self.cfg.host_ip, self.cfg.api_port), strict=True):
            try:
                current = await self.registry.get(info, "default", "kubernetes")
            except errors.APIError as e:
                if e.code != 404:
                    raise
                try:
                    await self.registry.create(info, "default", desired)
                except errors.APIError as e2:
                    if e2.code != 409:
                        raise
                continue
            if not _differs(current, desired):
                continue

            def repair(cur: dict, desired: dict = desired) -> dict:
                cur["metadata"]["labels"] = {**(cur["metadata"].get("labels") or {}), **desired["metadata"]["labels"]}
                cur.update({k: v for k, v in desired.items() if k != "metadata"})
                return cur
            await self.registry.update(info, "default", "kubernetes", {}, mutate=repair)

    async def _reconcile_loop(self) -> None:
        while True:
            await asyncio.sleep(_ENDPOINT_RECONCILE_SECONDS)
            try:
                await self.reconcile_kubernetes_endpoints()
            except Exception:  # a failed round is retried at the next one, as kube-apiserver does
                log.exception("reconciling the kubernetes Service's endpoints")

    def load_signing_key(self, pki_dir: Path) -> None:
        """Issue and accept ServiceAccount tokens with the cluster's key (pki/sa.key)."""
        self.signer = serviceaccounttoken.Signer.load(pki_dir, self.issuer)
        self.authenticator.signer = self.signer
        self.token_requests = serviceaccounttoken.TokenRequestREST(self.registry, self.signer, self.api_audiences)

    async def start(self, pki_dir: Path, hosts: list[str]) -> None:
        self.load_signing_key(pki_dir)
        await self.admission.load()
        await self.bootstrap()
        self._reconciler = asyncio.get_running_loop().create_task(self._reconcile_loop())
        ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        ctx.load_cert_chain(pki_dir / "apiserver.crt", pki_dir / "apiserver.key")
        self._runner = web.AppRunner(self.app(), access_log=None, handle_signals=False, shutdown_timeout=0.5)
        await self._runner.setup()
        for host in hosts:
            site = web.TCPSite(self._runner, host, self.cfg.api_port, ssl_context=ctx, reuse_address=True,
                               backlog=1024)
            await site.start()
        self.ready.set()

    async def stop(self) -> None:
        if self._reconciler is not None:
            self._reconciler.cancel()
        await self.node_proxy.close()
        await self.proxy.close()
        if self._runner is not None:
            await self._runner.cleanup()


def _dumps(obj: object) -> bytes:
    import json

    return json.dumps(obj, separators=(",", ":")).encode()
