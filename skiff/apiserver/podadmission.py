"""What kube-apiserver's default admission plugins add to a Pod when it is created, so that
`kubectl describe pod` and `get pod -o yaml` read as on a real cluster:

- ServiceAccount: a pod runs as `default` unless it names a ServiceAccount, and a named one must
  exist in the pod's namespace. Unless the pod or its ServiceAccount opts out
  (automountServiceAccountToken: false), the pod gets the projected `kube-api-access-xxxxx` volume
  (a bound token, the cluster CA, the namespace) mounted read-only where in-cluster clients look.
- DefaultTolerationSeconds: tolerate a not-ready or unreachable node for 300 s before eviction,
  unless the pod says otherwise. The node lifecycle controller evicts on these.
- Priority: priority 0 and preemptionPolicy PreemptLowerPriority (Skiff has no PriorityClasses).
"""

from __future__ import annotations

import json
import secrets
from typing import TYPE_CHECKING

from skiff.api import errors
from skiff.api.resources import lookup

if TYPE_CHECKING:
    from skiff.apiserver.registry import Registry

PODS = lookup("", "v1", "pods")
SERVICE_ACCOUNTS = lookup("", "v1", "serviceaccounts")
DEFAULT_SERVICE_ACCOUNT = "default"
DEFAULT_TOLERATION_SECONDS = 300
NOT_READY = "node.kubernetes.io/not-ready"
TOKEN_MOUNT_PATH = "/var/run/secrets/kubernetes.io/serviceaccount"
TOKEN_VOLUME_PREFIX = "kube-api-access-"
# kubelet-requested tokens last 3607 s: the odd second tells the API server the request is the kubelet's.
TOKEN_EXPIRATION_SECONDS = 3607
# The alphabet of Kubernetes' random name suffixes: no vowels (no words) and no look-alike characters.
_SUFFIX_ALPHABET = "bcdfghjklmnpqrstvwxz2456789"
UNREACHABLE = "node.kubernetes.io/unreachable"


def default_tolerations(spec: dict) -> None:
    """Add the 300 s NoExecute tolerations for a not-ready and an unreachable node, each unless the
    pod already tolerates that taint."""
    tolerations = spec.get("tolerations") or []

    def tolerated(key: str) -> bool:
        return any(t.get("effect") in (None, "", "NoExecute")
                   and (t.get("key") == key or (not t.get("key") and t.get("operator") == "Exists"))
                   for t in tolerations)

    added = [{"key": key, "operator": "Exists", "effect": "NoExecute", "tolerationSeconds": DEFAULT_TOLERATION_SECONDS}
             for key in (NOT_READY, UNREACHABLE) if not tolerated(key)]
    if added:
        spec["tolerations"] = [*tolerations, *added]


def default_priority(spec: dict) -> None:
    if spec.get("priority") is None and not spec.get("priorityClassName"):
        spec["priority"] = 0
    if spec.get("preemptionPolicy") is None:
        spec["preemptionPolicy"] = "PreemptLowerPriority"


def api_access_volume(name: str) -> dict:
    """The projected volume the ServiceAccount admission step adds: what in-cluster clients read."""
    return {"name": name, "projected": {"defaultMode": 0o644, "sources": [
        {"serviceAccountToken": {"expirationSeconds": TOKEN_EXPIRATION_SECONDS, "path": "token"}},
        {"configMap": {"name": "kube-root-ca.crt", "items": [{"key": "ca.crt", "path": "ca.crt"}]}},
        {"downwardAPI": {"items": [{"path": "namespace",
                                    "fieldRef": {"apiVersion": "v1", "fieldPath": "metadata.namespace"}}]}},
    ]}}


def mount_api_access(spec: dict) -> None:
    """Add the kube-api-access volume and mount it into every container that does not already mount
    something at the token path (a pod may bring its own token volume there)."""
    containers = [c for key in ("initContainers", "containers") for c in spec.get(key) or []]
    needing = [c for c in containers
               if not any(m.get("mountPath") == TOKEN_MOUNT_PATH for m in c.get("volumeMounts") or [])]
    if not needing:
        return
    taken = {v.get("name") for v in spec.get("volumes") or []}
    while True:
        name = TOKEN_VOLUME_PREFIX + "".join(secrets.choice(_SUFFIX_ALPHABET) for _ in range(5))
        if name not in taken:
            break
    spec["volumes"] = [*(spec.get("volumes") or []), api_access_volume(name)]
    for c in needing:
        c["volumeMounts"] = [*(c.get("volumeMounts") or []),
                             {"name": name, "readOnly": True, "mountPath": TOKEN_MOUNT_PATH}]


async def admit_create(registry: Registry, pod: dict) -> None:
    spec = pod.setdefault("spec", {})
    md = pod["metadata"]
    account = spec.get("serviceAccountName") or spec.get("serviceAccount") or DEFAULT_SERVICE_ACCOUNT
    spec["serviceAccountName"] = spec["serviceAccount"] = account
    # `default` is made by the ServiceAccount controller a moment after its namespace; a pod created
    # in that moment is let through rather than refused over a race the user cannot see.
    stored = await registry.store.get(SERVICE_ACCOUNTS.storage_key(md["namespace"], account))
    if account != DEFAULT_SERVICE_ACCOUNT and stored is None:
        # Admission runs before a generated name is known, so kube names the prefix.
        name = md.get("generateName") or md.get("name", "")
        raise errors.APIError(403, "Forbidden", f'pods "{name}" is forbidden: error looking up service account '
                              f'{md["namespace"]}/{account}: serviceaccount "{account}" not found',
                              {"name": name, "kind": "pods"})
    automount = spec.get("automountServiceAccountToken")
    if automount is None and stored is not None:
        automount = json.loads(stored.value).get("automountServiceAccountToken")
    if automount is not False:
        mount_api_access(spec)
    default_tolerations(spec)
    default_priority(spec)
