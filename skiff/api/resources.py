"""The resource types Skiff serves, described once.

Everything that needs to know about a type (routing, discovery, storage keys, tables, OpenAPI,
validation) looks it up here, so adding a type is one entry.
"""

from __future__ import annotations

from dataclasses import dataclass, field

ALL_VERBS = ["create", "delete", "deletecollection", "get", "list", "patch", "update", "watch"]
SUB_VERBS = ["get", "patch", "update"]


@dataclass(frozen=True)
class ResourceInfo:
    group: str  # "" for core
    version: str
    kind: str
    plural: str
    singular: str
    namespaced: bool
    short_names: tuple[str, ...] = ()
    categories: tuple[str, ...] = ()
    # subresource name -> kind it answers with ("" means same kind)
    subresources: dict[str, str] = field(default_factory=dict)
    # Whether spec changes bump metadata.generation (types without spec never do).
    has_status: bool = False

    @property
    def api_version(self) -> str:
        return f"{self.group}/{self.version}" if self.group else self.version

    @property
    def group_resource(self) -> str:
        """`deployments.apps` or `services`: how Kubernetes names the type in messages."""
        return f"{self.plural}.{self.group}" if self.group else self.plural

    @property
    def list_kind(self) -> str:
        return self.kind + "List"

    def storage_prefix(self, namespace: str | None = None) -> str:
        """The key prefix, laid out as kube-apiserver lays out etcd: /registry/<group>/<plural>/<ns>/."""
        g = self.group or "core"
        base = f"/registry/{g}/{self.plural}/"
        if self.namespaced and namespace:
            return base + namespace + "/"
        return base

    def storage_key(self, namespace: str | None, name: str) -> str:
        if self.namespaced:
            return f"{self.storage_prefix()}{namespace}/{name}"
        return f"{self.storage_prefix()}{name}"


def _r(group, version, kind, plural, singular, namespaced, short=(), cats=(), subs=None, status=False):
    return ResourceInfo(group, version, kind, plural, singular, namespaced, tuple(short), tuple(cats),
                        dict(subs or {}), status)


# Discovery order matters: `kubectl get all` prints types in this order.
RESOURCES: list[ResourceInfo] = [
    _r("", "v1", "Pod", "pods", "pod", True, ["po"], ["all"],
       {"status": "", "log": "Pod", "exec": "PodExecOptions", "attach": "PodAttachOptions",
        "portforward": "PodPortForwardOptions", "proxy": "PodProxyOptions", "binding": "Binding",
        "eviction": "Eviction"}, True),
    _r("", "v1", "Service", "services", "service", True, ["svc"], ["all"],
       {"status": "", "proxy": "ServiceProxyOptions"}, True),
    _r("", "v1", "Namespace", "namespaces", "namespace", False, ["ns"], (), {"status": "", "finalize": ""}, True),
    _r("", "v1", "Node", "nodes", "node", False, ["no"], (), {"status": ""}, True),
    _r("", "v1", "Endpoints", "endpoints", "endpoints", True, ["ep"]),
    _r("", "v1", "ConfigMap", "configmaps", "configmap", True, ["cm"]),
    _r("", "v1", "Secret", "secrets", "secret", True),
    _r("", "v1", "ServiceAccount", "serviceaccounts", "serviceaccount", True, ["sa"], (),
       {"token": "TokenRequest"}),
    _r("", "v1", "Event", "events", "event", True, ["ev"]),
    _r("apps", "v1", "DaemonSet", "daemonsets", "daemonset", True, ["ds"], ["all"], {"status": ""}, True),
    _r("apps", "v1", "Deployment", "deployments", "deployment", True, ["deploy"], ["all"],
       {"status": "", "scale": "Scale"}, True),
    _r("apps", "v1", "ReplicaSet", "replicasets", "replicaset", True, ["rs"], ["all"],
       {"status": "", "scale": "Scale"}, True),
    _r("apps", "v1", "StatefulSet", "statefulsets", "statefulset", True, ["sts"], ["all"],
       {"status": "", "scale": "Scale"}, True),
    _r("batch", "v1", "Job", "jobs", "job", True, (), ["all"], {"status": ""}, True),
    _r("discovery.k8s.io", "v1", "EndpointSlice", "endpointslices", "endpointslice", True),
    _r("networking.k8s.io", "v1", "Ingress", "ingresses", "ingress", True, ["ing"], (), {"status": ""}, True),
    _r("networking.k8s.io", "v1", "IngressClass", "ingressclasses", "ingressclass", False),
    _r("networking.k8s.io", "v1", "NetworkPolicy", "networkpolicies", "networkpolicy", True, ["netpol"]),
    _r("coordination.k8s.io", "v1", "Lease", "leases", "lease", True),
    _r("events.k8s.io", "v1", "Event", "events", "event", True, ["ev"]),
    # Not stored: answered at once (`kubectl auth whoami`, token webhooks).
    _r("authentication.k8s.io", "v1", "SelfSubjectReview", "selfsubjectreviews", "selfsubjectreview", False),
    _r("authentication.k8s.io", "v1", "TokenReview", "tokenreviews", "tokenreview", False),
    # Not stored: answered at once (`kubectl auth can-i`). Skiff has no RBAC: everything is allowed.
    _r("authorization.k8s.io", "v1", "SelfSubjectAccessReview", "selfsubjectaccessreviews",
       "selfsubjectaccessreview", False),
]

# Kinds that are created and answered, never stored.
REVIEW_KINDS = {"SelfSubjectAccessReview", "SelfSubjectReview", "TokenReview"}

_BY_GVR: dict[tuple[str, str, str], ResourceInfo] = {(r.group, r.version, r.plural): r for r in RESOURCES}
_BY_GVK: dict[tuple[str, str, str], ResourceInfo] = {(r.group, r.version, r.kind): r for r in RESOURCES}


def lookup(group: str, version: str, plural: str) -> ResourceInfo | None:
    return _BY_GVR.get((group, version, plural))


def lookup_kind(api_version: str, kind: str) -> ResourceInfo | None:
    group, _, version = api_version.rpartition("/")
    return _BY_GVK.get((group, version, kind))


def group_versions() -> list[tuple[str, str]]:
    """(group, version) pairs in discovery order, core first."""
    seen: list[tuple[str, str]] = []
    for r in RESOURCES:
        if (r.group, r.version) not in seen:
            seen.append((r.group, r.version))
    return seen
