"""Per-type rules the registry applies on every write, as kube-apiserver's registry strategies do:
what create resets, what an update may change, when generation moves, and which validation runs.
"""

from __future__ import annotations

from collections.abc import Callable

from skiff.api import defaults
from skiff.api.clone import clone
from skiff.api.errors import FieldError
from skiff.api.resources import ResourceInfo
from skiff.api.validation import meta as meta_validation
from skiff.api.validation import networking, service, workloads

# Types whose strategy in kube-apiserver sets metadata.generation on create and bumps it on spec
# changes. Services, Namespaces and Nodes have none: `get -o yaml` shows no generation for them.
_GENERATION_KINDS = {"Deployment", "ReplicaSet", "DaemonSet", "StatefulSet", "Job", "Ingress", "IngressClass",
                     "NetworkPolicy", "EndpointSlice", "Pod"}


def name_validator(info: ResourceInfo) -> Callable[[str], list[str]]:
    if info.kind == "Namespace":
        return meta_validation.is_dns1123_label
    if info.kind == "Service":
        return meta_validation.is_dns1035_label
    return meta_validation.is_dns1123_subdomain


def initial_status(info: ResourceInfo, obj: dict) -> None:
    """Status is not the client's to set at create. Defaulting then fills in what a new object starts
    with (Pending and its QoS class, Active, an empty load balancer status)."""
    obj["status"] = {"loadBalancer": {}} if info.kind == "Ingress" else {}


def prepare_for_create(info: ResourceInfo, obj: dict) -> None:
    if info.has_status and info.kind not in ("Node",):
        initial_status(info, obj)
    if info.kind in _GENERATION_KINDS:
        obj["metadata"]["generation"] = 1
    if info.kind == "Namespace":
        fins = obj.setdefault("spec", {}).setdefault("finalizers", [])
        if "kubernetes" not in fins:
            fins.append("kubernetes")
    if info.kind == "Job" and info.group == "batch":
        workloads.generate_job_selector(obj)
    defaults.apply_defaults(obj)


def keeps_stored_metadata(subresource: str | None) -> bool:
    """Whether an update through `subresource` stores the old object's metadata whole, managedFields
    included, whatever the written object says (see prepare_for_update). Work on the written
    object's metadata is then lost, and the PATCH handler skips it."""
    return subresource == "status"


def prepare_for_update(info: ResourceInfo, new: dict, old: dict, subresource: str | None) -> None:
    """Carry over what this kind of write may not change, and bump generation on spec changes."""
    md_new, md_old = new["metadata"], old["metadata"]
    # System-owned metadata is not the client's to change.
    for field in ("uid", "creationTimestamp", "deletionTimestamp", "deletionGracePeriodSeconds", "generation"):
        if field in md_old:
            md_new[field] = md_old[field]
        else:
            md_new.pop(field, None)
    if subresource == "binding":
        return  # binding sets spec.nodeName and the PodScheduled condition together
    if keeps_stored_metadata(subresource):
        # A status write changes status only (and may touch labels/annotations in kube; keep it simple:
        # metadata comes from the stored object so that controllers cannot clobber user edits).
        for key in list(new.keys()):
            if key not in ("status", "metadata", "apiVersion", "kind"):
                new.pop(key)
        for key, value in old.items():
            if key not in ("status", "metadata"):
                new[key] = clone(value)
        new["metadata"] = {**clone(md_old), "resourceVersion": md_new.get("resourceVersion")}
        return
    if info.kind == "Namespace" and subresource != "finalize":
        # spec.finalizers changes only through /finalize.
        new.setdefault("spec", {})["finalizers"] = clone((old.get("spec") or {}).get("finalizers") or [])
    if info.has_status and info.kind not in ("Node",) and "status" in old:
        new["status"] = clone(old["status"])
    elif info.has_status and info.kind not in ("Node",):
        new.pop("status", None)
    if info.kind == "Service":
        service.drop_type_dependent_fields(new, old)
    defaults.apply_defaults(new)
    if info.kind in _GENERATION_KINDS:
        gen = md_old.get("generation", 1)
        if _spec_of(new) != _spec_of(old):
            gen += 1
        md_new["generation"] = gen


def _spec_of(obj: dict) -> object:
    if "spec" in obj:
        return obj["spec"]
    return {k: v for k, v in obj.items() if k not in ("metadata", "status", "apiVersion", "kind")}


def validate(info: ResourceInfo, obj: dict, old: dict | None) -> list[FieldError]:
    errs = meta_validation.validate_object_meta(obj, info.namespaced, name_validator(info))
    kind = info.kind
    if info.group == "" and kind == "Service":
        errs += service.validate_service(obj, old)
    elif kind == "Pod":
        errs += workloads.validate_pod(obj, old)
    elif kind == "Deployment":
        errs += workloads.validate_deployment(obj, old)
    elif kind == "ReplicaSet":
        errs += workloads.validate_replicaset(obj, old)
    elif kind == "DaemonSet":
        errs += workloads.validate_daemonset(obj, old)
    elif kind == "StatefulSet":
        errs += workloads.validate_statefulset(obj, old)
    elif kind == "Job" and info.group == "batch":
        errs += workloads.validate_job(obj, old)
    elif kind == "Ingress":
        errs += networking.validate_ingress(obj, old)
    elif kind == "IngressClass":
        errs += networking.validate_ingressclass(obj, old)
    elif kind == "NetworkPolicy":
        errs += networking.validate_network_policy(obj, old)
    elif kind == "EndpointSlice":
        errs += networking.validate_endpointslice(obj, old)
    elif info.group == "" and kind == "ConfigMap":
        errs += networking.validate_configmap(obj, old)
    elif info.group == "" and kind == "Secret":
        errs += networking.validate_secret(obj, old)
    return errs
