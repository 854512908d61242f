"""Server-side defaulting, as kube-apiserver's `SetDefaults_*` functions apply it on every decode.

Clients (kubectl describe, `get -o yaml`, controllers comparing templates) expect the defaulted
fields to be present, so the API server runs `apply_defaults` on every object it is given, on
create and on update. Defaults never overwrite what the user set.

Facts from kube-apiserver `pkg/apis/core/v1/defaults.go`, `pkg/apis/apps/v1/defaults.go`,
`pkg/apis/networking/v1/defaults.go`, `pkg/apis/discovery/v1/defaults.go` and the `+default=`
markers in `k8s.io/api` types. Service IP-family fields (`ipFamilies`, `ipFamilyPolicy`) are
not defaulted here: kube-apiserver fills them in the registry because they depend on the
cluster's service CIDRs, and so does `skiff.apiserver.allocators`.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

DEFAULT_TERMINATION_GRACE_PERIOD = 30
DEFAULT_SCHEDULER = "default-scheduler"
DEFAULT_CLIENT_IP_AFFINITY_SECONDS = 10800
TERMINATION_MESSAGE_PATH = "/dev/termination-log"


def apply_defaults(obj: dict) -> None:
    """Fill in kube-apiserver's defaults for `obj` in place; unknown kinds are left untouched."""
    if not isinstance(obj, dict):
        return
    fn = _DEFAULTERS.get((obj.get("apiVersion", ""), obj.get("kind", "")))
    if fn is not None:
        fn(obj)


# ---- helpers -------------------------------------------------------------------------------

def _dict(parent: dict, key: str) -> dict:
    """parent[key] as a dict, creating it when absent or null."""
    value = parent.get(key)
    if not isinstance(value, dict):
        value = {}
        parent[key] = value
    return value


def _items(parent: dict, key: str) -> list[dict]:
    value = parent.get(key)
    if not isinstance(value, list):
        return []
    return [v for v in value if isinstance(v, dict)]


def _setdefault(d: dict, key: str, value: Any) -> None:
    # `null` counts as unset, as a nil pointer does in Go.
    if d.get(key) is None:
        d[key] = value


def _set_if_empty(d: dict, key: str, value: Any) -> None:
    # For Go string/int fields without a pointer, "" and 0 are the zero value, i.e. unset.
    if d.get(key) in (None, "", 0):
        d[key] = value


def image_tag(image: str) -> str:
    """The tag kubelet would pull: "latest" when neither tag nor digest is given, "" for digests.

    A colon only starts a tag when it comes after the last slash (`registry:5000/app` has none).
    """
    if not image:
        return ""
    name, digest = (image.split("@", 1) + [""])[:2]
    last = name.rsplit("/", 1)[-1]
    tag = last.rsplit(":", 1)[1] if ":" in last else ""
    if not tag and not digest:
        return "latest"
    return tag


# ---- core/v1 Pod and pod templates ---------------------------------------------------------

def _default_probe(probe: Any) -> None:
    if not isinstance(probe, dict):
        return
    _set_if_empty(probe, "timeoutSeconds", 1)
    _set_if_empty(probe, "periodSeconds", 10)
    _set_if_empty(probe, "successThreshold", 1)
    _set_if_empty(probe, "failureThreshold", 3)
    http = probe.get("httpGet")
    if isinstance(http, dict):
        _default_http_get(http)


def _default_http_get(http: dict) -> None:
    _set_if_empty(http, "path", "/")
    _set_if_empty(http, "scheme", "HTTP")


def _default_lifecycle(lifecycle: Any) -> None:
    if not isinstance(lifecycle, dict):
        return
    for hook in ("postStart", "preStop"):
        handler = lifecycle.get(hook)
        if isinstance(handler, dict) and isinstance(handler.get("httpGet"), dict):
            _default_http_get(handler["httpGet"])


def _default_container(c: dict) -> None:
    if not c.get("imagePullPolicy"):
        c["imagePullPolicy"] = "Always" if image_tag(c.get("image") or "") == "latest" else "IfNotPresent"
    _set_if_empty(c, "terminationMessagePath", TERMINATION_MESSAGE_PATH)
    _set_if_empty(c, "terminationMessagePolicy", "File")
    # `resources` is a non-pointer struct in Go, so it always serialises, as `{}` when empty.
    _dict(c, "resources")
    for port in _items(c, "ports"):
        _set_if_empty(port, "protocol", "TCP")
    for probe in ("livenessProbe", "readinessProbe", "startupProbe"):
        _default_probe(c.get(probe))
    _default_lifecycle(c.get("lifecycle"))
    for env in _items(c, "env"):
        value_from = env.get("valueFrom")
        if isinstance(value_from, dict) and isinstance(value_from.get("fieldRef"), dict):
            _set_if_empty(value_from["fieldRef"], "apiVersion", "v1")


def _default_volumes(spec: dict) -> None:
    for vol in _items(spec, "volumes"):
        sources = [k for k in vol if k != "name"]
        if not sources:
            vol["emptyDir"] = {}
        for key in ("secret", "configMap", "downwardAPI", "projected"):
            if isinstance(vol.get(key), dict):
                _setdefault(vol[key], "defaultMode", 420)
        downward = vol.get("downwardAPI")
        if isinstance(downward, dict):
            for item in _items(downward, "items"):
                if isinstance(item.get("fieldRef"), dict):
                    _set_if_empty(item["fieldRef"], "apiVersion", "v1")
        if isinstance(vol.get("hostPath"), dict):
            _setdefault(vol["hostPath"], "type", "")


def _default_pod_spec(spec: dict) -> None:
    """SetDefaults_PodSpec plus the per-container defaults: shared by Pods and pod templates."""
    _set_if_empty(spec, "dnsPolicy", "ClusterFirst")
    _set_if_empty(spec, "restartPolicy", "Always")
    _setdefault(spec, "securityContext", {})
    _setdefault(spec, "terminationGracePeriodSeconds", DEFAULT_TERMINATION_GRACE_PERIOD)
    _set_if_empty(spec, "schedulerName", DEFAULT_SCHEDULER)
    for key in ("containers", "initContainers", "ephemeralContainers"):
        for c in _items(spec, key):
            _default_container(c)
    _default_volumes(spec)


def _requests_from_limits(containers: list[dict]) -> None:
    # Only Pods get this (SetDefaults_Pod), not templates: a template must stay as written.
    for c in containers:
        res = c.get("resources")
        if not isinstance(res, dict) or not isinstance(res.get("limits"), dict):
            continue
        requests = _dict(res, "requests")
        for key, value in res["limits"].items():
            requests.setdefault(key, value)


def pod_qos_class(spec: dict) -> str:
    """Guaranteed / Burstable / BestEffort, computed the way kube-apiserver's pod strategy does."""
    containers = _items(spec, "containers") + _items(spec, "initContainers")
    any_set = False
    guaranteed = True
    for c in containers:
        res = c.get("resources") if isinstance(c.get("resources"), dict) else {}
        requests = {k: str(v) for k, v in (res.get("requests") or {}).items() if k in ("cpu", "memory")}
        limits = {k: str(v) for k, v in (res.get("limits") or {}).items() if k in ("cpu", "memory")}
        if requests or limits:
            any_set = True
        if set(limits) != {"cpu", "memory"} or any(requests.get(k, limits[k]) != limits[k] for k in limits):
            guaranteed = False
    if not any_set:
        return "BestEffort"
    return "Guaranteed" if guaranteed else "Burstable"


def _default_pod(pod: dict) -> None:
    spec = _dict(pod, "spec")
    _requests_from_limits(_items(spec, "containers") + _items(spec, "initContainers"))
    _setdefault(spec, "enableServiceLinks", True)
    if spec.get("hostNetwork"):
        for c in _items(spec, "containers") + _items(spec, "initContainers"):
            for port in _items(c, "ports"):
                _set_if_empty(port, "hostPort", port.get("containerPort"))
    _default_pod_spec(spec)
    status = _dict(pod, "status")
    if not status.get("phase"):
        # A new Pod: kube-apiserver's PrepareForCreate starts it Pending with its QoS class.
        status["phase"] = "Pending"
        status.setdefault("qosClass", pod_qos_class(spec))


def _default_template(owner: dict) -> None:
    template = _dict(_dict(owner, "spec"), "template")
    _default_pod_spec(_dict(template, "spec"))


def _default_pod_template(obj: dict) -> None:
    template = _dict(obj, "template")
    _default_pod_spec(_dict(template, "spec"))


# ---- core/v1 others ------------------------------------------------------------------------

def _default_service(svc: dict) -> None:
    spec = _dict(svc, "spec")
    _set_if_empty(spec, "sessionAffinity", "None")
    if spec["sessionAffinity"] == "None":
        spec.pop("sessionAffinityConfig", None)
    elif spec["sessionAffinity"] == "ClientIP":
        cfg = spec.get("sessionAffinityConfig")
        client_ip = cfg.get("clientIP") if isinstance(cfg, dict) else None
        if not isinstance(client_ip, dict) or client_ip.get("timeoutSeconds") is None:
            spec["sessionAffinityConfig"] = {"clientIP": {"timeoutSeconds": DEFAULT_CLIENT_IP_AFFINITY_SECONDS}}
    _set_if_empty(spec, "type", "ClusterIP")
    for port in _items(spec, "ports"):
        _set_if_empty(port, "protocol", "TCP")
        if port.get("targetPort") in (None, 0, ""):
            port["targetPort"] = port.get("port")
    svc_type = spec["type"]
    if externally_accessible(spec):
        _set_if_empty(spec, "externalTrafficPolicy", "Cluster")
    if spec.get("internalTrafficPolicy") is None and svc_type in ("ClusterIP", "NodePort", "LoadBalancer"):
        spec["internalTrafficPolicy"] = "Cluster"
    if svc_type == "LoadBalancer":
        _setdefault(spec, "allocateLoadBalancerNodePorts", True)
    # ServiceStatus is a non-pointer struct: it serialises as `status: {loadBalancer: {}}`.
    status = _dict(svc, "status")
    lb = _dict(status, "loadBalancer")
    if svc_type == "LoadBalancer":
        for ing in _items(lb, "ingress"):
            if ing.get("ip") and ing.get("ipMode") is None:
                ing["ipMode"] = "VIP"


def externally_accessible(spec: dict) -> bool:
    """LoadBalancer, NodePort, or ClusterIP with externalIPs (KK `pkg/api/service/util.go`)."""
    t = spec.get("type")
    return t in ("LoadBalancer", "NodePort") or (t == "ClusterIP" and bool(spec.get("externalIPs")))


def _default_namespace(ns: dict) -> None:
    meta = _dict(ns, "metadata")
    if meta.get("name"):
        _dict(meta, "labels")["kubernetes.io/metadata.name"] = meta["name"]
    # The "kubernetes" finalizer is added by the namespace strategy at create time only
    # (skiff.apiserver.strategy), so that /finalize can remove it.
    _set_if_empty(_dict(ns, "status"), "phase", "Active")


def _default_secret(secret: dict) -> None:
    _set_if_empty(secret, "type", "Opaque")


def _default_endpoints(ep: dict) -> None:
    for subset in _items(ep, "subsets"):
        for port in _items(subset, "ports"):
            _set_if_empty(port, "protocol", "TCP")


def _default_node(node: dict) -> None:
    status = node.get("status")
    if isinstance(status, dict) and status.get("allocatable") is None and isinstance(status.get("capacity"), dict):
        status["allocatable"] = dict(status["capacity"])


def _default_replication_controller(rc: dict) -> None:
    spec = _dict(rc, "spec")
    _setdefault(spec, "replicas", 1)
    template = spec.get("template")
    if isinstance(template, dict):
        labels = (template.get("metadata") or {}).get("labels")
        if labels:
            if not spec.get("selector"):
                spec["selector"] = dict(labels)
            meta = _dict(rc, "metadata")
            if not meta.get("labels"):
                meta["labels"] = dict(labels)
        _default_pod_spec(_dict(template, "spec"))


# ---- apps/v1 -------------------------------------------------------------------------------

def _default_deployment(d: dict) -> None:
    spec = _dict(d, "spec")
    _setdefault(spec, "replicas", 1)
    strategy = _dict(spec, "strategy")
    _set_if_empty(strategy, "type", "RollingUpdate")
    if strategy["type"] == "RollingUpdate":
        rolling = _dict(strategy, "rollingUpdate")
        _setdefault(rolling, "maxUnavailable", "25%")
        _setdefault(rolling, "maxSurge", "25%")
    _setdefault(spec, "revisionHistoryLimit", 10)
    _setdefault(spec, "progressDeadlineSeconds", 600)
    _default_template(d)


def _default_replicaset(rs: dict) -> None:
    _setdefault(_dict(rs, "spec"), "replicas", 1)
    _default_template(rs)


def _default_daemonset(ds: dict) -> None:
    spec = _dict(ds, "spec")
    strategy = _dict(spec, "updateStrategy")
    _set_if_empty(strategy, "type", "RollingUpdate")
    if strategy["type"] == "RollingUpdate":
        rolling = _dict(strategy, "rollingUpdate")
        _setdefault(rolling, "maxUnavailable", 1)
        _setdefault(rolling, "maxSurge", 0)
    _setdefault(spec, "revisionHistoryLimit", 10)
    _default_template(ds)


def _default_statefulset(sts: dict) -> None:
    spec = _dict(sts, "spec")
    _set_if_empty(spec, "podManagementPolicy", "OrderedReady")
    strategy = _dict(spec, "updateStrategy")
    if not strategy.get("type"):
        strategy["type"] = "RollingUpdate"
        _setdefault(strategy, "rollingUpdate", {})
    if strategy["type"] == "RollingUpdate" and isinstance(strategy.get("rollingUpdate"), dict):
        _setdefault(strategy["rollingUpdate"], "partition", 0)
    retention = _dict(spec, "persistentVolumeClaimRetentionPolicy")
    _set_if_empty(retention, "whenDeleted", "Retain")
    _set_if_empty(retention, "whenScaled", "Retain")
    _setdefault(spec, "replicas", 1)
    _setdefault(spec, "revisionHistoryLimit", 10)
    _default_template(sts)


# ---- networking, discovery -----------------------------------------------------------------

def _default_job(job: dict) -> None:
    # SetDefaults_Job: a Job without either count runs one pod to one completion.
    spec = _dict(job, "spec")
    if spec.get("completions") is None and spec.get("parallelism") is None:
        spec["completions"] = 1
    _setdefault(spec, "parallelism", 1)
    _setdefault(spec, "backoffLimit", 2147483647 if spec.get("backoffLimitPerIndex") is not None else 6)
    _set_if_empty(spec, "completionMode", "NonIndexed")
    _setdefault(spec, "suspend", False)
    _set_if_empty(spec, "podReplacementPolicy", "Failed" if spec.get("podFailurePolicy") else "TerminatingOrFailed")
    _default_template(job)


def _default_network_policy(np: dict) -> None:
    spec = _dict(np, "spec")
    for direction in ("ingress", "egress"):
        for rule in _items(spec, direction):
            for port in _items(rule, "ports"):
                _set_if_empty(port, "protocol", "TCP")
    if not spec.get("policyTypes"):
        spec["policyTypes"] = ["Ingress"] + (["Egress"] if spec.get("egress") else [])


def _default_endpointslice(es: dict) -> None:
    for port in _items(es, "ports"):
        _setdefault(port, "name", "")
        _set_if_empty(port, "protocol", "TCP")


_DEFAULTERS: dict[tuple[str, str], Callable[[dict], None]] = {
    ("v1", "Pod"): _default_pod,
    ("v1", "PodTemplate"): _default_pod_template,
    ("v1", "ReplicationController"): _default_replication_controller,
    ("v1", "Service"): _default_service,
    ("v1", "Namespace"): _default_namespace,
    ("v1", "Secret"): _default_secret,
    ("v1", "Endpoints"): _default_endpoints,
    ("v1", "Node"): _default_node,
    ("apps/v1", "Deployment"): _default_deployment,
    ("apps/v1", "ReplicaSet"): _default_replicaset,
    ("apps/v1", "DaemonSet"): _default_daemonset,
    ("apps/v1", "StatefulSet"): _default_statefulset,
    ("batch/v1", "Job"): _default_job,
    ("networking.k8s.io/v1", "NetworkPolicy"): _default_network_policy,
    ("discovery.k8s.io/v1", "EndpointSlice"): _default_endpointslice,
}
