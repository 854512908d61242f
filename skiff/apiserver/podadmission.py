"""What kube-apiserver's default admission plugins add to a Pod when it is created, so that
`kubectl describe pod` and `get pod -o yaml` read as on a real cluster:

- ServiceAccount: a pod runs as `default` unless it names a ServiceAccount, and a named one must
  exist in the pod's namespace. (Skiff does not mount a token into pods.)
- DefaultTolerationSeconds: tolerate a not-ready or unreachable node for 300 s before eviction,
  unless the pod says otherwise. The node lifecycle controller evicts on these.
- Priority: priority 0 and preemptionPolicy PreemptLowerPriority (Skiff has no PriorityClasses).
"""

from __future__ import annotations

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


async def admit_create(registry: Registry, pod: dict) -> None:
    spec = pod.setdefault("spec", {})
    md = pod["metadata"]
    account = spec.get("serviceAccountName") or spec.get("serviceAccount") or DEFAULT_SERVICE_ACCOUNT
    spec["serviceAccountName"] = spec["serviceAccount"] = account
    # `default` is made by the ServiceAccount controller a moment after its namespace; a pod created
    # in that moment is let through rather than refused over a race the user cannot see.
    if account != DEFAULT_SERVICE_ACCOUNT and \
            await registry.store.get(SERVICE_ACCOUNTS.storage_key(md["namespace"], account)) is None:
        # Admission runs before a generated name is known, so kube names the prefix.
        name = md.get("generateName") or md.get("name", "")
        raise errors.APIError(403, "Forbidden", f'pods "{name}" is forbidden: error looking up service account '
                              f'{md["namespace"]}/{account}: serviceaccount "{account}" not found',
                              {"name": name, "kind": "pods"})
    default_tolerations(spec)
    default_priority(spec)
