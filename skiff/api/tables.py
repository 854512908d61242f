"""Server-side Tables (`meta.k8s.io/v1` Table) for `kubectl get`, printed like kube-apiserver prints them.

kubectl asks for `application/json;as=Table;g=meta.k8s.io;v=v1` and prints the cells it gets; it computes
nothing itself (not even AGE). So the columns, their descriptions and every cell must be what
kube-apiserver's printers (kubernetes `pkg/printers/internalversion/printers.go`, 1.33) produce; the
apiserver always prints with `Wide: true` and kubectl hides `priority: 1` columns unless `-o wide`.
"""

from __future__ import annotations

import datetime as _dt
from collections.abc import Callable
from typing import Any

from skiff.api.resources import ResourceInfo

# Column descriptions are the Go types' SwaggerDoc strings (k8s.io/api and apimachinery v0.33.0), the
# same text kube-apiserver sends. The printers cite a few extensions/v1beta1 and discovery/v1beta1 types,
# whose wording differs from apps/v1 and discovery/v1.
_DOC: dict[str, str] = {
    'name': (
        'Name must be unique within a namespace. Is required when creating resources, although '
        'some resources may allow a client to request the generation of an appropriate name '
        'automatically. Name is primarily intended for creation idempotence and configuration '
        'definition. Cannot be updated. More info: '
        'https://kubernetes.io/docs/concepts/overview/working-with-objects/names#names'
    ),
    'age': (
        'CreationTimestamp is a timestamp representing the server time when this object was '
        'created. It is not guaranteed to be set in happens-before order across separate '
        'operations. Clients may not set this value. It is represented in RFC3339 form and is in '
        'UTC.\n\nPopulated by the system. Read-only. Null for lists. More info: '
        'https://git.k8s.io/community/contributors/devel/sig-architecture/api-'
        'conventions.md#metadata'
    ),
    'pod_ip': (
        'podIP address allocated to the pod. Routable at least within the cluster. Empty if not '
        'yet allocated.'
    ),
    'pod_node': (
        'NodeName indicates in which node this pod is scheduled. If empty, this pod is a '
        'candidate for scheduling by the scheduler defined in schedulerName. Once this field is '
        'set, the kubelet for this node becomes responsible for the lifecycle of this pod. This '
        'field should not be used to express a desire for the pod to be scheduled on a specific '
        'node. https://kubernetes.io/docs/concepts/scheduling-eviction/assign-pod-node/#nodename'
    ),
    'pod_nominated': (
        'nominatedNodeName is set only when this pod preempts other pods on the node, but it '
        'cannot be scheduled right away as preemption victims receive their graceful termination '
        'periods. This field does not guarantee that the pod will be scheduled on this node. '
        'Scheduler may decide to place the pod elsewhere if other nodes become available sooner. '
        'Scheduler may also decide to give the resources on this node to a higher priority pod '
        'that is created after preemption. As a result, this field may be different than '
        'PodSpec.nodeName when the pod is scheduled.'
    ),
    'pod_gates': (
        'If specified, all readiness gates will be evaluated for pod readiness. A pod is ready '
        'when all its containers are ready AND all conditions specified in the readiness gates '
        'have status equal to "True" More info: https://git.k8s.io/enhancements/keps/sig-'
        'network/580-pod-readiness-gates'
    ),
    'rs_desired': (
        'Replicas is the number of desired pods. This is a pointer to distinguish between '
        'explicit zero and unspecified. Defaults to 1. More info: '
        'https://kubernetes.io/docs/concepts/workloads/controllers/replicaset'
    ),
    'rs_current': (
        'Replicas is the most recently observed number of non-terminating pods. More info: '
        'https://kubernetes.io/docs/concepts/workloads/controllers/replicaset'
    ),
    "rs_ready": "The number of non-terminating pods targeted by this ReplicaSet with a Ready Condition.",
    'rs_selector': (
        'Selector is a label query over pods that should match the replica count. If the selector'
        ' is empty, it is defaulted to the labels present on the pod template. Label keys and '
        'values that must match in order to be controlled by this replica set. More info: '
        'https://kubernetes.io/docs/concepts/overview/working-with-objects/labels/#label-'
        'selectors'
    ),
    'deploy_updated': (
        'Total number of non-terminating pods targeted by this deployment that have the desired '
        'template spec.'
    ),
    'deploy_available': (
        'Total number of available non-terminating pods (ready for at least minReadySeconds) '
        'targeted by this deployment.'
    ),
    'deploy_selector': (
        'Label selector for pods. Existing ReplicaSets whose pods are selected by this will be '
        'the ones affected by this deployment.'
    ),
    'svc_type': (
        'type determines how the Service is exposed. Defaults to ClusterIP. Valid options are '
        'ExternalName, ClusterIP, NodePort, and LoadBalancer. "ClusterIP" allocates a cluster-'
        'internal IP address for load-balancing to endpoints. Endpoints are determined by the '
        'selector or if that is not specified, by manual construction of an Endpoints object or '
        'EndpointSlice objects. If clusterIP is "None", no virtual IP is allocated and the '
        'endpoints are published as a set of endpoints rather than a virtual IP. "NodePort" '
        'builds on ClusterIP and allocates a port on every node which routes to the same '
        'endpoints as the clusterIP. "LoadBalancer" builds on NodePort and creates an external '
        'load-balancer (if supported in the current cloud) which routes to the same endpoints as '
        'the clusterIP. "ExternalName" aliases this service to the specified externalName. '
        'Several other fields do not apply to ExternalName services. More info: '
        'https://kubernetes.io/docs/concepts/services-networking/service/#publishing-services-'
        'service-types'
    ),
    'svc_cluster_ip': (
        'clusterIP is the IP address of the service and is usually assigned randomly. If an '
        'address is specified manually, is in-range (as per system configuration), and is not in '
        'use, it will be allocated to the service; otherwise creation of the service will fail. '
        'This field may not be changed through updates unless the type field is also being '
        'changed to ExternalName (which requires this field to be blank) or the type field is '
        'being changed from ExternalName (in which case this field may optionally be specified, '
        'as describe above).  Valid values are "None", empty string (""), or a valid IP address. '
        'Setting this to "None" makes a "headless service" (no virtual IP), which is useful when '
        'direct endpoint connections are preferred and proxying is not required.  Only applies to'
        ' types ClusterIP, NodePort, and LoadBalancer. If this field is specified when creating a'
        ' Service of type ExternalName, creation will fail. This field will be wiped when '
        'updating a Service to type ExternalName. More info: '
        'https://kubernetes.io/docs/concepts/services-networking/service/#virtual-ips-and-'
        'service-proxies'
    ),
    'svc_external_ips': (
        'externalIPs is a list of IP addresses for which nodes in the cluster will also accept '
        'traffic for this service.  These IPs are not managed by Kubernetes.  The user is '
        'responsible for ensuring that traffic arrives at a node with this IP.  A common example '
        'is external load-balancers that are not part of the Kubernetes system.'
    ),
    'svc_ports': (
        'The list of ports that are exposed by this service. More info: '
        'https://kubernetes.io/docs/concepts/services-networking/service/#virtual-ips-and-'
        'service-proxies'
    ),
    'svc_selector': (
        'Route service traffic to pods with label keys and values matching this selector. If '
        'empty or not present, the service is assumed to have an external process managing its '
        'endpoints, which Kubernetes will not modify. Only applies to types ClusterIP, NodePort, '
        'and LoadBalancer. Ignored if type is ExternalName. More info: '
        'https://kubernetes.io/docs/concepts/services-networking/service/'
    ),
    'ep_subsets': (
        'The set of all endpoints is the union of all subsets. Addresses are placed into subsets '
        'according to the IPs they share. A single address with multiple ports, some of which are'
        ' ready and some of which are not (because they come from different containers) will '
        'result in the address being displayed in different subsets for the different ports. No '
        'address will appear in both Addresses and NotReadyAddresses in the same subset. Sets of '
        'addresses and ports that comprise a service.'
    ),
    "node_kubelet": "Kubelet Version reported by the node.",
    'node_addresses': (
        'List of addresses reachable to the node. Queried from cloud provider, if available. More'
        ' info: https://kubernetes.io/docs/reference/node/node-status/#addresses Note: This field'
        ' is declared as mergeable, but the merge key is not sufficiently unique, which can cause'
        ' data corruption when it is merged. Callers should instead use a full-replacement patch.'
        ' See https://pr.k8s.io/79391 for an example. Consumers should assume that addresses can '
        'change during the lifetime of a Node. However, there are some exceptions where this may '
        "not be possible, such as Pods that inherit a Node's address in its own status or "
        'consumers of the downward API (status.hostIP).'
    ),
    "node_os": "OS Image reported by the node from /etc/os-release (e.g. Debian GNU/Linux 7 (wheezy)).",
    'node_kernel': "Kernel Version reported by the node from 'uname -r' (e.g. 3.16.0-0.bpo.4-amd64).",
    'node_runtime': (
        'ContainerRuntime Version reported by the node through runtime remote API (e.g. '
        'containerd://1.4.2).'
    ),
    "ev_last": "The time at which the most recent occurrence of this event was recorded.",
    "ev_type": "Type of this event (Normal, Warning), new types could be added in the future",
    'ev_reason': (
        'This should be a short, machine understandable string that gives the reason for the '
        "transition into the object's current status."
    ),
    "ev_object": "The object that this event is about.",
    'ev_subobject': (
        'If referring to a piece of an object instead of an entire object, this string should '
        'contain a valid JSON/Go field access statement, such as '
        'desiredState.manifest.containers[2]. For example, if the object reference is to a '
        'container within a pod, this would take on a value like: "spec.containers{name}" (where '
        '"name" refers to the name of the container that triggered the event) or if no container '
        'name is specified "spec.containers[2]" (container with index 2 in this pod). This syntax'
        ' is chosen only to have some well-defined way of referencing a part of an object.'
    ),
    "ev_source": "The component reporting this event. Should be a short machine understandable string.",
    "ev_message": "A human-readable description of the status of this operation.",
    "ev_first": "The time at which the event was first recorded. (Time of server receipt is in TypeMeta.)",
    "ev_count": "The number of times this event has occurred.",
    'secret_type': (
        'Used to facilitate programmatic handling of secret data. More info: '
        'https://kubernetes.io/docs/concepts/configuration/secret/#secret-types'
    ),
    'secret_data': (
        "Data contains the secret data. Each key must consist of alphanumeric characters, '-', "
        "'_' or '.'. The serialized form of the secret data is a base64 encoded string, "
        'representing the arbitrary (possibly non-string) data value here. Described in '
        'https://tools.ietf.org/html/rfc4648#section-4'
    ),
    'sa_secrets': (
        'Secrets is a list of the secrets in the same namespace that pods running using this '
        'ServiceAccount are allowed to use. Pods are only limited to this list if this service '
        'account has a "kubernetes.io/enforce-mountable-secrets" annotation set to "true". The '
        '"kubernetes.io/enforce-mountable-secrets" annotation is deprecated since v1.32. Prefer '
        'separate namespaces to isolate access to mounted secrets. This field should not be used '
        'to find auto-generated service account token secrets for use outside of pods. Instead, '
        'tokens can be requested directly using the TokenRequest API, or service account token '
        'secrets can be manually created. More info: '
        'https://kubernetes.io/docs/concepts/configuration/secret'
    ),
    'cm_data': (
        'Data contains the configuration data. Each key must consist of alphanumeric characters, '
        "'-', '_' or '.'. Values with non-UTF-8 byte sequences must use the BinaryData field. The"
        ' keys stored in Data must not overlap with the keys in the BinaryData field, this is '
        'enforced during validation process.'
    ),
    'lease_holder': (
        'holderIdentity contains the identity of the holder of a current lease. If Coordinated '
        'Leader Election is used, the holder identity must be equal to the elected '
        'LeaseCandidate.metadata.name field.'
    ),
    'eps_address_type': (
        'addressType specifies the type of address carried by this EndpointSlice. All addresses '
        'in this slice must be the same type. This field is immutable after creation. The '
        'following address types are currently supported: * IPv4: Represents an IPv4 Address. * '
        'IPv6: Represents an IPv6 Address. * FQDN: Represents a Fully Qualified Domain Name.'
    ),
    'eps_ports': (
        'ports specifies the list of network ports exposed by each endpoint in this slice. Each '
        'port must have a unique name. When ports is empty, it indicates that there are no '
        'defined ports. When a port is defined with a nil port value, it indicates "all ports". '
        'Each slice may include a maximum of 100 ports.'
    ),
    'eps_endpoints': (
        'endpoints is a list of unique endpoints in this slice. Each slice may include a maximum '
        'of 1000 endpoints.'
    ),
}


def _col(name: str, description: str, type_: str = "string", fmt: str = "", priority: int = 0) -> dict:
    return {"name": name, "type": type_, "format": fmt, "description": description, "priority": priority}


def _name() -> dict:
    return _col("Name", _DOC["name"], fmt="name")


def _age() -> dict:
    return _col("Age", _DOC["age"])


_CONTAINERS = "Names of each container in the template."
_IMAGES = "Images referenced by each container in the template."

_EVENT_COLUMNS = [
    _col("Last Seen", _DOC["ev_last"]),
    _col("Type", _DOC["ev_type"]),
    _col("Reason", _DOC["ev_reason"]),
    _col("Object", _DOC["ev_object"]),
    _col("Subobject", _DOC["ev_subobject"], priority=1),
    _col("Source", _DOC["ev_source"], priority=1),
    _col("Message", _DOC["ev_message"]),
    _col("First Seen", _DOC["ev_first"], priority=1),
    _col("Count", _DOC["ev_count"], priority=1),
    _col("Name", _DOC["name"], fmt="name", priority=1),
]

# (group, kind) -> columns, in the order printers.go declares them.
_COLUMNS: dict[tuple[str, str], list[dict]] = {
    ("", "Pod"): [
        _name(),
        _col("Ready", "The aggregate readiness state of this pod for accepting traffic."),
        _col("Status", "The aggregate status of the containers in this pod."),
        _col("Restarts", "The number of times the containers in this pod have been restarted and when the "
                         "last container in this pod has restarted."),
        _age(),
        _col("IP", _DOC["pod_ip"], priority=1),
        _col("Node", _DOC["pod_node"], priority=1),
        _col("Nominated Node", _DOC["pod_nominated"], priority=1),
        _col("Readiness Gates", _DOC["pod_gates"], priority=1),
    ],
    ("", "Service"): [
        _name(),
        _col("Type", _DOC["svc_type"]),
        _col("Cluster-IP", _DOC["svc_cluster_ip"]),
        _col("External-IP", _DOC["svc_external_ips"]),
        _col("Port(s)", _DOC["svc_ports"]),
        _age(),
        _col("Selector", _DOC["svc_selector"], priority=1),
    ],
    ("", "Namespace"): [_name(), _col("Status", "The status of the namespace"), _age()],
    ("", "Node"): [
        _name(),
        _col("Status", "The status of the node"),
        _col("Roles", "The roles of the node"),
        _age(),
        _col("Version", _DOC["node_kubelet"]),
        _col("Internal-IP", _DOC["node_addresses"], priority=1),
        _col("External-IP", _DOC["node_addresses"], priority=1),
        _col("OS-Image", _DOC["node_os"], priority=1),
        _col("Kernel-Version", _DOC["node_kernel"], priority=1),
        _col("Container-Runtime", _DOC["node_runtime"], priority=1),
    ],
    ("", "Endpoints"): [_name(), _col("Endpoints", _DOC["ep_subsets"]), _age()],
    ("", "ConfigMap"): [_name(), _col("Data", _DOC["cm_data"]), _age()],
    ("", "Secret"): [_name(), _col("Type", _DOC["secret_type"]), _col("Data", _DOC["secret_data"]), _age()],
    ("", "ServiceAccount"): [_name(), _col("Secrets", _DOC["sa_secrets"]), _age()],
    ("", "Event"): _EVENT_COLUMNS,
    ("events.k8s.io", "Event"): _EVENT_COLUMNS,
    ("apps", "Deployment"): [
        _name(),
        _col("Ready", "Number of the pod with ready state"),
        _col("Up-to-date", _DOC["deploy_updated"]),
        _col("Available", _DOC["deploy_available"]),
        _age(),
        _col("Containers", _CONTAINERS, priority=1),
        _col("Images", _IMAGES, priority=1),
        _col("Selector", _DOC["deploy_selector"], priority=1),
    ],
    ("apps", "ReplicaSet"): [
        _name(),
        _col("Desired", _DOC["rs_desired"], "integer"),
        _col("Current", _DOC["rs_current"], "integer"),
        _col("Ready", _DOC["rs_ready"], "integer"),
        _age(),
        _col("Containers", _CONTAINERS, priority=1),
        _col("Images", _IMAGES, priority=1),
        _col("Selector", _DOC["rs_selector"], priority=1),
    ],
    ("apps", "DaemonSet"): [
        _name(),
        _col("Desired", "The total number of nodes that should be running the daemon pod (including nodes "
             "correctly running the daemon pod). More info: "
             "https://kubernetes.io/docs/concepts/workloads/controllers/daemonset/", "integer"),
        _col("Current", "The number of nodes that are running at least 1 daemon pod and are supposed to run the "
             "daemon pod. More info: https://kubernetes.io/docs/concepts/workloads/controllers/daemonset/", "integer"),
        _col("Ready", "numberReady is the number of nodes that should be running the daemon pod and have one or "
             "more of the daemon pod running with a Ready Condition.", "integer"),
        _col("Up-to-date", "The total number of nodes that are running updated daemon pod", "integer"),
        _col("Available", "The number of nodes that should be running the daemon pod and have one or more of the "
             "daemon pod running and available (ready for at least spec.minReadySeconds)", "integer"),
        _col("Node Selector", "NodeSelector is a selector which must be true for the pod to fit on a node. Selector "
             "which must match a node's labels for the pod to be scheduled on that node. More info: "
             "https://kubernetes.io/docs/concepts/configuration/assign-pod-node/"),
        _age(),
        _col("Containers", _CONTAINERS, priority=1),
        _col("Images", _IMAGES, priority=1),
        _col("Selector", "A label query over pods that are managed by the daemon set. Must match in order to be "
             "controlled. It must match the pod template's labels. More info: "
             "https://kubernetes.io/docs/concepts/overview/working-with-objects/labels/#label-selectors",
             priority=1),
    ],
    ("apps", "StatefulSet"): [
        _name(),
        _col("Ready", "Number of the pod with ready state"),
        _age(),
        _col("Containers", _CONTAINERS, priority=1),
        _col("Images", _IMAGES, priority=1),
    ],
    ("batch", "Job"): [
        _name(),
        _col("Status", "Status of the job."),
        _col("Completions", "The number of pods which reached phase Succeeded. The value increases monotonically for a "
             "given spec. However, it may decrease in reaction to scale down of elastic indexed jobs."),
        _col("Duration", "Time required to complete the job."),
        _age(),
        _col("Containers", _CONTAINERS, priority=1),
        _col("Images", _IMAGES, priority=1),
        _col("Selector", "A label query over pods that should match the pod count. Normally, the system sets this "
             "field for you. More info: https://kubernetes.io/docs/concepts/overview/working-with-objects/labels/"
             "#label-selectors", priority=1),
    ],
    ("discovery.k8s.io", "EndpointSlice"): [
        _name(),
        _col("AddressType", _DOC["eps_address_type"]),
        _col("Ports", _DOC["eps_ports"]),
        _col("Endpoints", _DOC["eps_endpoints"]),
        _age(),
    ],
    ("networking.k8s.io", "Ingress"): [
        _name(),
        _col("Class", "The name of the IngressClass resource that should be used for additional configuration"),
        _col("Hosts", "Hosts that incoming requests are matched against before the ingress rule"),
        _col("Address", "Address is a list containing ingress points for the load-balancer"),
        _col("Ports", "Ports of TLS configurations that open"),
        _age(),
    ],
    ("networking.k8s.io", "NetworkPolicy"): [
        _name(),
        _col("Pod-Selector", "podSelector selects the pods to which this NetworkPolicy object applies. The array of "
             "ingress rules is applied to any pods selected by this field. Multiple network policies can select the "
             "same set of pods. In this case, the ingress rules for each are combined additively. This field is NOT "
             "optional and follows standard label selector semantics. An empty podSelector matches all pods in this "
             "namespace."),
        _age(),
    ],
    ("networking.k8s.io", "IngressClass"): [
        _name(),
        _col("Controller", "Controller that is responsible for handling this class"),
        _col("Parameters", "A reference to a resource with additional parameters"),
        _age(),
    ],
    ("coordination.k8s.io", "Lease"): [_name(), _col("Holder", _DOC["lease_holder"]), _age()],
}

# What kube-apiserver prints for a type without a printer.
_DEFAULT_COLUMNS = [_name(), _col("Created At", _DOC["age"], "date")]


def column_definitions(info: ResourceInfo) -> list[dict]:
    """The Table columnDefinitions kube-apiserver sends for this resource (fresh copies)."""
    return [dict(c) for c in _COLUMNS.get((info.group, info.kind), _DEFAULT_COLUMNS)]


# --- time -----------------------------------------------------------------------------------------


def human_duration(seconds: float) -> str:
    """apimachinery's duration.HumanDuration: `26s`, `5m10s`, `3h10m`, `2d3h`, `9d`, `2y`..."""
    ns = int(seconds * 1_000_000_000)
    secs = int(ns / 1_000_000_000)  # Go's int(d.Seconds()) truncates toward zero
    if secs < -1:
        return "<invalid>"
    if secs < 0:
        return "0s"
    if secs < 60 * 2:
        return f"{secs}s"
    minutes = ns // 60_000_000_000
    if minutes < 10:
        s = (ns // 1_000_000_000) % 60
        return f"{minutes}m" if s == 0 else f"{minutes}m{s}s"
    if minutes < 60 * 3:
        return f"{minutes}m"
    hours = ns // 3_600_000_000_000
    if hours < 8:
        m = minutes % 60
        return f"{hours}h" if m == 0 else f"{hours}h{m}m"
    if hours < 48:
        return f"{hours}h"
    if hours < 24 * 8:
        h = hours % 24
        return f"{hours // 24}d" if h == 0 else f"{hours // 24}d{h}h"
    if hours < 24 * 365 * 2:
        return f"{hours // 24}d"
    if hours < 24 * 365 * 8:
        dy = (hours // 24) % 365
        return f"{hours // 24 // 365}y" if dy == 0 else f"{hours // 24 // 365}y{dy}d"
    return f"{hours // 24 // 365}y"


def _parse_time(value: Any) -> _dt.datetime | None:
    if not value or not isinstance(value, str):
        return None
    try:
        t = _dt.datetime.fromisoformat(value)
    except ValueError:
        return None
    return t if t.tzinfo else t.replace(tzinfo=_dt.UTC)


def _aware(now: _dt.datetime) -> _dt.datetime:
    return now if now.tzinfo else now.replace(tzinfo=_dt.UTC)


def _since(value: Any, now: _dt.datetime) -> str:
    """translateTimestampSince: `<unknown>` for an unset time."""
    t = _parse_time(value)
    if t is None:
        return "<unknown>"
    return human_duration((_aware(now) - t).total_seconds())


# --- small formatters -----------------------------------------------------------------------------


def _meta(obj: dict) -> dict:
    return obj.get("metadata") or {}


def _format_labels(labels: dict | None) -> str:
    """labels.FormatLabels: sorted `k=v` pairs, `<none>` when empty."""
    if not labels:
        return "<none>"
    return ",".join(f"{k}={labels[k]}" for k in sorted(labels))


def _selector_string(selector: dict | None) -> str:
    """labels.Selector.String() of metav1.LabelSelectorAsSelector: requirements sorted by key."""
    if not selector:
        return ""
    reqs: list[tuple[str, str]] = []
    for k, v in (selector.get("matchLabels") or {}).items():
        reqs.append((k, f"{k}={v}"))
    for expr in selector.get("matchExpressions") or []:
        key, op = expr.get("key", ""), expr.get("operator", "")
        values = ",".join(sorted(expr.get("values") or []))
        if op == "In":
            reqs.append((key, f"{key} in ({values})"))
        elif op == "NotIn":
            reqs.append((key, f"{key} notin ({values})"))
        elif op == "Exists":
            reqs.append((key, key))
        elif op == "DoesNotExist":
            reqs.append((key, f"!{key}"))
        else:
            return "<invalid>"
    reqs.sort(key=lambda r: r[0])
    return ",".join(r[1] for r in reqs)


def _format_label_selector(selector: dict | None) -> str:
    """metav1.FormatLabelSelector: like the selector string, `<none>` when it selects everything."""
    text = _selector_string(selector)
    return "<none>" if text == "" else ("<error>" if text == "<invalid>" else text)


def _containers_cells(containers: list[dict] | None) -> list[str]:
    containers = containers or []
    return [",".join(c.get("name", "") for c in containers), ",".join(c.get("image", "") for c in containers)]


def _lb_status(status: dict | None) -> str:
    """The sorted, de-duplicated IPs (or hostnames) of a load-balancer status, unclipped (Wide)."""
    found = set()
    for ing in (status or {}).get("ingress") or []:
        if ing.get("ip"):
            found.add(ing["ip"])
        elif ing.get("hostname"):
            found.add(ing["hostname"])
    return ",".join(sorted(found))


def _list_with_more(items: list[str], more: bool, count: int, limit: int) -> str:
    text = ",".join(items)
    if more:
        return f"{text} + {count - limit} more..."
    return text or "<unset>"


def _join_host_port(host: str, port: Any) -> str:
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


# --- pods -----------------------------------------------------------------------------------------

_POD_SUCCEEDED = [{"type": "Completed", "status": "True", "reason": "Succeeded",
                   "message": "The pod has completed successfully."}]
_POD_FAILED = [{"type": "Completed", "status": "True", "reason": "Failed", "message": "The pod failed."}]


def _restartable(container: dict | None) -> bool:
    return bool(container) and container.get("restartPolicy") == "Always"


def _condition_true(conditions: list[dict], type_: str) -> bool:
    for c in conditions:
        if c.get("type") == type_:
            return c.get("status") == "True"
    return False


def _later(current: _dt.datetime | None, candidate: Any) -> _dt.datetime | None:
    t = _parse_time(candidate)
    if t is None:
        return current
    return t if current is None or current < t else current


def _pod_cells(pod: dict, now: _dt.datetime) -> list:
    meta, spec, status = _meta(pod), pod.get("spec") or {}, pod.get("status") or {}
    containers = spec.get("containers") or []
    init_specs = spec.get("initContainers") or []
    conditions = status.get("conditions") or []
    restarts = 0
    restartable_restarts = 0
    total = len(containers)
    ready = 0
    last_restart: _dt.datetime | None = None
    last_restartable_restart: _dt.datetime | None = None

    phase = status.get("phase", "")
    reason = status.get("reason") or phase
    for c in conditions:
        if c.get("type") == "PodScheduled" and c.get("reason") == "SchedulingGated":
            reason = "SchedulingGated"

    init_by_name = {c.get("name"): c for c in init_specs}
    total += sum(1 for c in init_specs if _restartable(c))

    initializing = False
    for i, cs in enumerate(status.get("initContainerStatuses") or []):
        state = cs.get("state") or {}
        last_term = (cs.get("lastState") or {}).get("terminated")
        restarts += cs.get("restartCount", 0)
        if last_term is not None:
            last_restart = _later(last_restart, last_term.get("finishedAt"))
        restartable = _restartable(init_by_name.get(cs.get("name")))
        if restartable:
            restartable_restarts += cs.get("restartCount", 0)
            if last_term is not None:
                last_restartable_restart = _later(last_restartable_restart, last_term.get("finishedAt"))
        terminated, waiting = state.get("terminated"), state.get("waiting")
        if terminated is not None and terminated.get("exitCode", 0) == 0:
            continue
        if restartable and cs.get("started"):
            if cs.get("ready"):
                ready += 1
            continue
        if terminated is not None:
            if not terminated.get("reason"):
                if terminated.get("signal", 0) != 0:
                    reason = f"Init:Signal:{terminated['signal']}"
                else:
                    reason = f"Init:ExitCode:{terminated.get('exitCode', 0)}"
            else:
                reason = "Init:" + terminated["reason"]
        elif waiting is not None and waiting.get("reason") and waiting["reason"] != "PodInitializing":
            reason = "Init:" + waiting["reason"]
        else:
            reason = f"Init:{i}/{len(init_specs)}"
        initializing = True
        break

    if not initializing or _condition_true(conditions, "Initialized"):
        restarts = restartable_restarts
        last_restart = last_restartable_restart
        has_running = False
        for cs in reversed(status.get("containerStatuses") or []):
            state = cs.get("state") or {}
            restarts += cs.get("restartCount", 0)
            last_term = (cs.get("lastState") or {}).get("terminated")
            if last_term is not None:
                last_restart = _later(last_restart, last_term.get("finishedAt"))
            waiting, terminated = state.get("waiting"), state.get("terminated")
            if waiting is not None and waiting.get("reason"):
                reason = waiting["reason"]
            elif terminated is not None and terminated.get("reason"):
                reason = terminated["reason"]
            elif terminated is not None:
                if terminated.get("signal", 0) != 0:
                    reason = f"Signal:{terminated['signal']}"
                else:
                    reason = f"ExitCode:{terminated.get('exitCode', 0)}"
            elif cs.get("ready") and state.get("running") is not None:
                has_running = True
                ready += 1
        if reason == "Completed" and has_running:
            reason = "Running" if _condition_true(conditions, "Ready") else "NotReady"

    if meta.get("deletionTimestamp") and status.get("reason") == "NodeLost":
        reason = "Unknown"
    elif meta.get("deletionTimestamp") and phase not in ("Succeeded", "Failed"):
        reason = "Terminating"

    restarts_text = str(restarts)
    if restarts != 0 and last_restart is not None:
        restarts_text = f"{restarts} ({human_duration((_aware(now) - last_restart).total_seconds())} ago)"

    pod_ips = status.get("podIPs") or []
    # v1 -> internal conversion fills podIPs from podIP when only the latter is set.
    pod_ip = (pod_ips[0].get("ip") if pod_ips else status.get("podIP")) or "<none>"
    gates = spec.get("readinessGates") or []
    gates_text = "<none>"
    if gates:
        true = 0
        for gate in gates:
            for c in conditions:
                if c.get("type") == gate.get("conditionType"):
                    true += c.get("status") == "True"
                    break
        gates_text = f"{true}/{len(gates)}"
    return [meta.get("name", ""), f"{ready}/{total}", reason, restarts_text, _since(meta.get("creationTimestamp"), now),
            pod_ip, spec.get("nodeName") or "<none>", status.get("nominatedNodeName") or "<none>", gates_text]


def _pod_conditions(pod: dict) -> list[dict] | None:
    phase = (pod.get("status") or {}).get("phase")
    if phase == "Succeeded":
        return [dict(c) for c in _POD_SUCCEEDED]
    if phase == "Failed":
        return [dict(c) for c in _POD_FAILED]
    return None


# --- services and networking -----------------------------------------------------------------------


def _service_external_ip(svc: dict) -> str:
    spec = svc.get("spec") or {}
    external = spec.get("externalIPs") or []
    svc_type = spec.get("type", "")
    if svc_type in ("ClusterIP", "NodePort"):
        return ",".join(external) if external else "<none>"
    if svc_type == "LoadBalancer":
        lb = _lb_status((svc.get("status") or {}).get("loadBalancer"))
        if external:
            return ",".join(([*lb.split(",")] if lb else []) + external)
        return lb or "<pending>"
    if svc_type == "ExternalName":
        return spec.get("externalName", "")
    return "<unknown>"


def _service_cells(svc: dict, now: _dt.datetime) -> list:
    meta, spec = _meta(svc), svc.get("spec") or {}
    cluster_ips = spec.get("clusterIPs") or ([spec["clusterIP"]] if spec.get("clusterIP") else [])
    pieces = []
    for p in spec.get("ports") or []:
        if p.get("nodePort", 0) > 0:
            pieces.append(f"{p.get('port', 0)}:{p['nodePort']}/{p.get('protocol', '')}")
        else:
            pieces.append(f"{p.get('port', 0)}/{p.get('protocol', '')}")
    return [meta.get("name", ""), spec.get("type", ""), cluster_ips[0] if cluster_ips else "<none>",
            _service_external_ip(svc), ",".join(pieces) or "<none>", _since(meta.get("creationTimestamp"), now),
            _format_labels(spec.get("selector"))]


def _endpoints_text(ep: dict) -> str:
    subsets = ep.get("subsets") or []
    if not subsets:
        return "<none>"
    limit, items, more, count = 3, [], False, 0
    for ss in subsets:
        addresses = ss.get("addresses") or []
        ports = ss.get("ports") or []
        if not ports:
            # headless services may have no ports: list the bare IPs
            count += len(addresses)
            for a in addresses:
                if len(items) == limit:
                    more = True
                    break
                items.append(a.get("ip", ""))
            continue
        for port in ports:
            count += len(addresses)
            for a in addresses:
                if len(items) == limit:
                    more = True
                    break
                items.append(_join_host_port(a.get("ip", ""), port.get("port", 0)))
    text = ",".join(items)
    return f"{text} + {count - limit} more..." if more else text


def _endpoint_slice_cells(eps: dict, now: _dt.datetime) -> list:
    limit = 3
    ports, more, count = [], False, 0
    for p in eps.get("ports") or []:
        if len(ports) < limit:
            if p.get("port") is not None:
                ports.append(str(p["port"]))
            elif p.get("name") is not None:
                ports.append(p["name"])
            else:
                ports.append("*")
        elif len(ports) == limit:
            more = True
        count += 1
    ports_text = _list_with_more(ports, more, count, limit)
    addrs, more, count = [], False, 0
    for e in eps.get("endpoints") or []:
        for a in e.get("addresses") or []:
            if len(addrs) < limit:
                addrs.append(a)
            elif len(addrs) == limit:
                more = True
            count += 1
    meta = _meta(eps)
    return [meta.get("name", ""), eps.get("addressType", ""), ports_text, _list_with_more(addrs, more, count, limit),
            _since(meta.get("creationTimestamp"), now)]


def _ingress_hosts(rules: list[dict]) -> str:
    limit, items, more = 3, [], False
    for rule in rules:
        if len(items) == limit:
            more = True
        if not more and rule.get("host"):
            items.append(rule["host"])
    if not items:
        return "*"
    text = ",".join(items)
    return f"{text} + {len(rules) - limit} more..." if more else text


def _ingress_cells(ing: dict, now: _dt.datetime) -> list:
    meta, spec = _meta(ing), ing.get("spec") or {}
    class_name = spec.get("ingressClassName")
    return [meta.get("name", ""), "<none>" if class_name is None else class_name,
            _ingress_hosts(spec.get("rules") or []), _lb_status((ing.get("status") or {}).get("loadBalancer")),
            "80, 443" if spec.get("tls") else "80", _since(meta.get("creationTimestamp"), now)]


def _network_policy_cells(np: dict, now: _dt.datetime) -> list:
    meta = _meta(np)
    return [meta.get("name", ""), _format_label_selector((np.get("spec") or {}).get("podSelector")),
            _since(meta.get("creationTimestamp"), now)]


def _ingress_class_cells(ic: dict, now: _dt.datetime) -> list:
    meta, spec = _meta(ic), ic.get("spec") or {}
    params = spec.get("parameters")
    text = "<none>"
    if params is not None:
        text = params.get("kind", "")
        if params.get("apiGroup") is not None:
            text += "." + params["apiGroup"]
        text += "/" + params.get("name", "")
    return [meta.get("name", ""), spec.get("controller", ""), text, _since(meta.get("creationTimestamp"), now)]


# --- nodes, workloads, the rest ---------------------------------------------------------------------


def _node_cells(node: dict, now: _dt.datetime) -> list:
    meta, spec, status = _meta(node), node.get("spec") or {}, node.get("status") or {}
    states = []
    ready = None
    for c in status.get("conditions") or []:
        if c.get("type") == "Ready":
            ready = c  # the last one wins, as in the Go map
    if ready is not None:
        states.append("Ready" if ready.get("status") == "True" else "NotReady")
    else:
        states.append("Unknown")
    if spec.get("unschedulable"):
        states.append("SchedulingDisabled")
    roles = set()
    for k, v in (meta.get("labels") or {}).items():
        if k.startswith("node-role.kubernetes.io/"):
            role = k[len("node-role.kubernetes.io/"):]
            if role:
                roles.add(role)
        elif k == "kubernetes.io/role" and v:
            roles.add(v)
    info = status.get("nodeInfo") or {}

    def address(kind: str) -> str:
        for a in status.get("addresses") or []:
            if a.get("type") == kind:
                return a.get("address", "")
        return "<none>"

    return [meta.get("name", ""), ",".join(states), ",".join(sorted(roles)) or "<none>",
            _since(meta.get("creationTimestamp"), now), info.get("kubeletVersion", ""),
            address("InternalIP"), address("ExternalIP"), info.get("osImage") or "<unknown>",
            info.get("kernelVersion") or "<unknown>", info.get("containerRuntimeVersion") or "<unknown>"]


def _deployment_cells(d: dict, now: _dt.datetime) -> list:
    meta, spec, status = _meta(d), d.get("spec") or {}, d.get("status") or {}
    template_spec = (spec.get("template") or {}).get("spec") or {}
    return [meta.get("name", ""), f"{status.get('readyReplicas', 0)}/{spec.get('replicas', 0)}",
            status.get("updatedReplicas", 0), status.get("availableReplicas", 0),
            _since(meta.get("creationTimestamp"), now), *_containers_cells(template_spec.get("containers")),
            _selector_string(spec.get("selector"))]


def _replica_set_cells(rs: dict, now: _dt.datetime) -> list:
    meta, spec, status = _meta(rs), rs.get("spec") or {}, rs.get("status") or {}
    template_spec = (spec.get("template") or {}).get("spec") or {}
    return [meta.get("name", ""), spec.get("replicas", 0), status.get("replicas", 0), status.get("readyReplicas", 0),
            _since(meta.get("creationTimestamp"), now), *_containers_cells(template_spec.get("containers")),
            _format_label_selector(spec.get("selector"))]


def _daemon_set_cells(ds: dict, now: _dt.datetime) -> list:
    meta, spec, status = _meta(ds), ds.get("spec") or {}, ds.get("status") or {}
    template_spec = (spec.get("template") or {}).get("spec") or {}
    node_selector = ",".join(f"{k}={v}" for k, v in sorted((template_spec.get("nodeSelector") or {}).items()))
    return [meta.get("name", ""), status.get("desiredNumberScheduled", 0), status.get("currentNumberScheduled", 0),
            status.get("numberReady", 0), status.get("updatedNumberScheduled", 0), status.get("numberAvailable", 0),
            node_selector or "<none>", _since(meta.get("creationTimestamp"), now),
            *_containers_cells(template_spec.get("containers")), _format_label_selector(spec.get("selector"))]


def _stateful_set_cells(sts: dict, now: _dt.datetime) -> list:
    meta, spec, status = _meta(sts), sts.get("spec") or {}, sts.get("status") or {}
    template_spec = (spec.get("template") or {}).get("spec") or {}
    return [meta.get("name", ""), f"{status.get('readyReplicas', 0)}/{spec.get('replicas', 0)}",
            _since(meta.get("creationTimestamp"), now), *_containers_cells(template_spec.get("containers"))]


def _job_condition(job: dict, kind: str) -> bool:
    return any(c.get("type") == kind and c.get("status") == "True"
               for c in (job.get("status") or {}).get("conditions") or [])


def _job_cells(job: dict, now: _dt.datetime) -> list:
    meta, spec, status = _meta(job), job.get("spec") or {}, job.get("status") or {}
    succeeded = status.get("succeeded", 0)
    if spec.get("completions") is not None:
        completions = f"{succeeded}/{spec['completions']}"
    elif (spec.get("parallelism") or 0) > 1:
        completions = f"{succeeded}/1 of {spec['parallelism']}"
    else:
        completions = f"{succeeded}/1"
    started, finished = _parse_time(status.get("startTime")), _parse_time(status.get("completionTime"))
    duration = ""
    if started is not None:
        duration = human_duration(((finished or now) - started).total_seconds())
    # printJob's order: a finished Job says how it ended even while it is being deleted.
    state = "Running"
    for condition, shown in (("Complete", "Complete"), ("Failed", "Failed"), (None, "Terminating"),
                             ("Suspended", "Suspended"), ("FailureTarget", "FailureTarget"),
                             ("SuccessCriteriaMet", "SuccessCriteriaMet")):
        if (meta.get("deletionTimestamp") if condition is None else _job_condition(job, condition)):
            state = shown
            break
    template_spec = (spec.get("template") or {}).get("spec") or {}
    return [meta.get("name", ""), state, completions, duration, _since(meta.get("creationTimestamp"), now),
            *_containers_cells(template_spec.get("containers")), _format_label_selector(spec.get("selector"))]


def _as_core_event(ev: dict) -> dict:
    """An events.k8s.io/v1 Event in core/v1 field names (both are one internal type upstream)."""
    return {
        "metadata": ev.get("metadata") or {},
        "involvedObject": ev.get("regarding") or {},
        "reason": ev.get("reason", ""),
        "message": ev.get("note", ""),
        "source": ev.get("deprecatedSource") or {},
        "firstTimestamp": ev.get("deprecatedFirstTimestamp"),
        "lastTimestamp": ev.get("deprecatedLastTimestamp"),
        "count": ev.get("deprecatedCount", 0),
        "type": ev.get("type", ""),
        "eventTime": ev.get("eventTime"),
        "series": ev.get("series"),
        "reportingComponent": ev.get("reportingController", ""),
        "reportingInstance": ev.get("reportingInstance", ""),
    }


def _event_cells(ev: dict, now: _dt.datetime) -> list:
    first = _since(ev.get("firstTimestamp"), now)
    if _parse_time(ev.get("firstTimestamp")) is None:
        first = _since(ev.get("eventTime"), now)
    last = _since(ev.get("lastTimestamp"), now)
    if _parse_time(ev.get("lastTimestamp")) is None:
        last = first
    count = ev.get("count", 0)
    series = ev.get("series")
    if series is not None:
        last = _since(series.get("lastObservedTime"), now)
        count = series.get("count", 0)
    elif count == 0:
        count = 1  # singleton events from the new API carry no count
    involved = ev.get("involvedObject") or {}
    kind = involved.get("kind", "").lower()
    target = f"{kind}/{involved['name']}" if involved.get("name") else kind
    source = ev.get("source") or {}
    component = source.get("component") or ev.get("reportingComponent", "")
    instance = source.get("host") or ev.get("reportingInstance", "")
    return [last, ev.get("type", ""), ev.get("reason", ""), target, involved.get("fieldPath", ""),
            f"{component}, {instance}" if instance else component, ev.get("message", "").strip(), first,
            count, _meta(ev).get("name", "")]


def _simple(*cells: Callable[[dict], Any]) -> Callable[[dict, _dt.datetime], list]:
    def row(obj: dict, now: _dt.datetime) -> list:
        meta = _meta(obj)
        return [meta.get("name", ""), *(f(obj) for f in cells), _since(meta.get("creationTimestamp"), now)]
    return row


_ROWS: dict[tuple[str, str], Callable[[dict, _dt.datetime], list]] = {
    ("", "Pod"): _pod_cells,
    ("", "Service"): _service_cells,
    ("", "Namespace"): _simple(lambda o: (o.get("status") or {}).get("phase", "")),
    ("", "Node"): _node_cells,
    ("", "Endpoints"): _simple(_endpoints_text),
    ("", "ConfigMap"): _simple(lambda o: len(o.get("data") or {}) + len(o.get("binaryData") or {})),
    ("", "Secret"): _simple(lambda o: o.get("type", ""), lambda o: len(o.get("data") or {})),
    ("", "ServiceAccount"): _simple(lambda o: len(o.get("secrets") or [])),
    ("", "Event"): _event_cells,
    ("events.k8s.io", "Event"): lambda o, now: _event_cells(_as_core_event(o), now),
    ("apps", "Deployment"): _deployment_cells,
    ("apps", "ReplicaSet"): _replica_set_cells,
    ("apps", "DaemonSet"): _daemon_set_cells,
    ("apps", "StatefulSet"): _stateful_set_cells,
    ("batch", "Job"): _job_cells,
    ("discovery.k8s.io", "EndpointSlice"): _endpoint_slice_cells,
    ("networking.k8s.io", "Ingress"): _ingress_cells,
    ("networking.k8s.io", "IngressClass"): _ingress_class_cells,
    ("networking.k8s.io", "NetworkPolicy"): _network_policy_cells,
    ("coordination.k8s.io", "Lease"): _simple(lambda o: (o.get("spec") or {}).get("holderIdentity") or ""),
}


def row_cells(info: ResourceInfo, obj: dict, now: _dt.datetime) -> list:
    """The cells of one object's row, wide columns included, as kube-apiserver computes them at `now`."""
    printer = _ROWS.get((info.group, info.kind))
    if printer is None:
        meta = _meta(obj)
        return [meta.get("name", ""), meta.get("creationTimestamp")]
    return printer(obj, now)


def build_table(info: ResourceInfo, objs: list[dict], now: _dt.datetime, resource_version: str,
                include_object: str = "Metadata", continue_token: str = "") -> dict:
    """The full `meta.k8s.io/v1` Table for a list (or a single object as a one-item list).

    include_object is the request's `includeObject` (None | Metadata | Object): each row then carries
    null, a PartialObjectMetadata (what `-A`, `--show-labels` and `-L` read) or the whole object
    (what `--sort-by` needs)."""
    rows = []
    for obj in objs:
        row: dict[str, Any] = {"cells": row_cells(info, obj, now)}
        if info.group == "" and info.kind == "Pod":
            conditions = _pod_conditions(obj)
            if conditions:
                row["conditions"] = conditions
        if include_object == "Object":
            row["object"] = obj
        elif include_object == "None":
            row["object"] = None
        else:
            row["object"] = {"kind": "PartialObjectMetadata", "apiVersion": "meta.k8s.io/v1",
                             "metadata": _meta(obj)}
        rows.append(row)
    metadata: dict[str, Any] = {"resourceVersion": resource_version}
    if continue_token:
        metadata["continue"] = continue_token
    return {"kind": "Table", "apiVersion": "meta.k8s.io/v1", "metadata": metadata,
            "columnDefinitions": column_definitions(info), "rows": rows}
