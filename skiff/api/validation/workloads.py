"""Pod, Deployment and ReplicaSet validation: the checks users actually run into.

Messages and paths follow KK `pkg/apis/core/validation/validation.go` (ValidatePod, the container
and port checks, ValidatePodUpdate) and `pkg/apis/apps/validation/validation.go`
(ValidateDeployment, ValidateReplicaSet). This is a focused subset, not all of upstream:
volumes, security contexts and affinity are not checked.
"""

from __future__ import annotations

import copy
import json
import re
from typing import Any

from skiff.api.errors import FieldError, duplicate, forbidden, invalid, not_supported, required
from skiff.api.quantity import parse_quantity
from skiff.api.validation.meta import is_dns1123_label as dns1123_label_errors
from skiff.api.validation.meta import regex_error
from skiff.api.validation.meta import validate_labels as labels_errors
from skiff.api.validation.service import (
    go_label_selector,
    go_string_map,
    invalid_go,
    port_name_errors,
    port_num_errors,
    port_num_or_name_errors,
)

PROTOCOLS = ["SCTP", "TCP", "UDP"]
RESTART_POLICIES = ["Always", "Never", "OnFailure"]
DNS_POLICIES = ["ClusterFirst", "ClusterFirstWithHostNet", "Default", "None"]
PULL_POLICIES = ["Always", "IfNotPresent", "Never"]
NONNEGATIVE = "must be greater than or equal to 0"
IMMUTABLE = "field is immutable"
POD_UPDATE_FORBIDDEN = (
    "pod updates may not change fields other than `spec.containers[*].image`,`spec.initContainers[*].image`,"
    "`spec.activeDeadlineSeconds`,`spec.tolerations` (only additions to existing tolerations),"
    "`spec.terminationGracePeriodSeconds` (allow it to be set to 1 if it was previously negative)"
)


def _d(value: Any) -> dict:
    return value if isinstance(value, dict) else {}


def _l(value: Any) -> list[dict]:
    return [v for v in value if isinstance(v, dict)] if isinstance(value, list) else []


def _nonnegative(value: Any, path: str) -> list[FieldError]:
    if isinstance(value, int) and not isinstance(value, bool) and value < 0:
        return [invalid(path, value, NONNEGATIVE)]
    return []


# ---- label selectors -----------------------------------------------------------------------


def selector_matches(selector: dict, labels: dict | None) -> bool:
    """metav1.LabelSelector semantics: every matchLabels pair and every expression must hold."""
    labels = labels or {}
    for k, v in _d(selector.get("matchLabels")).items():
        if labels.get(k) != v:
            return False
    for expr in _l(selector.get("matchExpressions")):
        key, op, values = expr.get("key"), expr.get("operator"), expr.get("values") or []
        if op == "In" and labels.get(key) not in values:
            return False
        if op == "NotIn" and key in labels and labels[key] in values:
            return False
        if op == "Exists" and key not in labels:
            return False
        if op == "DoesNotExist" and key in labels:
            return False
    return True


def validate_label_selector(selector: dict, path: str) -> list[FieldError]:
    errs = labels_errors(selector.get("matchLabels"), f"{path}.matchLabels")
    for i, expr in enumerate(_l(selector.get("matchExpressions"))):
        p = f"{path}.matchExpressions[{i}]"
        op, values = expr.get("operator"), expr.get("values")
        if op in ("In", "NotIn"):
            if not values:
                errs.append(required(f"{p}.values", "must be specified when `operator` is 'In' or 'NotIn'"))
        elif op in ("Exists", "DoesNotExist"):
            if values:
                errs.append(forbidden(f"{p}.values", "may not be specified when `operator` is 'Exists' or 'DoesNotExist'"))
        else:
            errs.append(invalid(f"{p}.operator", op, "not a valid selector operator"))
    return errs


# ---- pod spec ------------------------------------------------------------------------------


def _validate_container_ports(ports: list[dict], path: str) -> list[FieldError]:
    errs: list[FieldError] = []
    names: set[str] = set()
    for i, port in enumerate(ports):
        p = f"{path}[{i}]"
        name = port.get("name") or ""
        if name:
            msgs = port_name_errors(name)
            errs += [invalid(f"{p}.name", name, m) for m in msgs]
            if not msgs:
                if name in names:
                    errs.append(duplicate(f"{p}.name", name))
                names.add(name)
        cport = port.get("containerPort", 0)
        if not cport:
            errs.append(required(f"{p}.containerPort"))
        else:
            errs += [invalid(f"{p}.containerPort", cport, m) for m in port_num_errors(cport)]
        if port.get("hostPort"):
            errs += [invalid(f"{p}.hostPort", port["hostPort"], m) for m in port_num_errors(port["hostPort"])]
        protocol = port.get("protocol") or ""
        if not protocol:
            errs.append(required(f"{p}.protocol"))
        elif protocol not in PROTOCOLS:
            errs.append(not_supported(f"{p}.protocol", protocol, PROTOCOLS))
    return errs


_CONTAINER_RESOURCES = ("cpu", "memory", "ephemeral-storage")


def _validate_resources(res: dict, path: str) -> list[FieldError]:
    """Resource names a container may ask for, no negative amounts, and requests within limits."""
    errs: list[FieldError] = []
    amounts: dict[str, dict[str, Any]] = {}
    for kind in ("limits", "requests"):
        items = res.get(kind)
        for name, q in (items.items() if isinstance(items, dict) else ()):
            p = f"{path}.{kind}[{name}]"
            if "/" not in name and name not in _CONTAINER_RESOURCES and not name.startswith("hugepages-"):
                errs.append(invalid(p, name, "must be a standard resource for containers"))
            try:
                value = parse_quantity(q)
            except ValueError:
                continue  # the schema check reports a malformed quantity
            if value < 0:
                errs.append(invalid(p, str(q), "must be greater than or equal to 0"))
            amounts.setdefault(kind, {})[name] = (value, q)
    limits = amounts.get("limits", {})
    for name, (value, q) in amounts.get("requests", {}).items():
        if name in limits and value > limits[name][0]:
            errs.append(invalid(f"{path}.requests", str(q),
                                f"must be less than or equal to {name} limit of {limits[name][1]}"))
    return errs


def _validate_probe(probe: Any, path: str, liveness_like: bool) -> list[FieldError]:
    if not isinstance(probe, dict):
        return []
    errs: list[FieldError] = []
    handlers = [h for h in ("exec", "httpGet", "tcpSocket", "grpc") if probe.get(h) is not None]
    if not handlers:
        errs.append(required(path, "must specify a handler type"))
    for h in handlers[1:]:
        errs.append(forbidden(f"{path}.{h}", "may not specify more than 1 handler type"))
    for h in ("httpGet", "tcpSocket"):
        if isinstance(probe.get(h), dict):
            errs += port_num_or_name_errors(probe[h].get("port", 0), f"{path}.{h}.port")
    for f in ("initialDelaySeconds", "timeoutSeconds", "periodSeconds", "successThreshold", "failureThreshold"):
        errs += _nonnegative(probe.get(f), f"{path}.{f}")
    if liveness_like and probe.get("successThreshold") not in (None, 1):
        errs.append(invalid(f"{path}.successThreshold", probe["successThreshold"], "must be 1"))
    return errs


def _validate_containers(containers: list[dict], path: str, names: set[str], is_pod: bool) -> list[FieldError]:
    errs: list[FieldError] = []
    for i, c in enumerate(containers):
        p = f"{path}[{i}]"
        name = c.get("name") or ""
        if not name:
            errs.append(required(f"{p}.name"))
        else:
            errs += [invalid(f"{p}.name", name, m) for m in dns1123_label_errors(name)]
            if name in names:
                errs.append(duplicate(f"{p}.name", name))
            names.add(name)
        image = c.get("image") or ""
        # Every container needs an image; only a Pod's may not have surrounding whitespace (some
        # tools put a placeholder " " in templates, which Kubernetes keeps accepting).
        if not image:
            errs.append(required(f"{p}.image"))
        elif is_pod and image != image.strip():
            errs.append(invalid(f"{p}.image", image, "must not have leading or trailing whitespace"))
        policy = c.get("imagePullPolicy") or ""
        if not policy:
            errs.append(required(f"{p}.imagePullPolicy"))
        elif policy not in PULL_POLICIES:
            errs.append(not_supported(f"{p}.imagePullPolicy", policy, PULL_POLICIES))
        errs += _validate_container_ports(_l(c.get("ports")), f"{p}.ports")
        if isinstance(c.get("resources"), dict):
            errs += _validate_resources(c["resources"], f"{p}.resources")
        for probe, liveness_like in (("livenessProbe", True), ("readinessProbe", False), ("startupProbe", True)):
            errs += _validate_probe(c.get(probe), f"{p}.{probe}", liveness_like)
        for j, env in enumerate(_l(c.get("env"))):
            env_name = env.get("name") or ""
            if not env_name:
                errs.append(required(f"{p}.env[{j}].name"))
            elif "=" in env_name or not all(" " <= ch <= "~" for ch in env_name):
                errs.append(invalid(f"{p}.env[{j}].name", env_name, "a valid environment variable name must "
                                    "consist only of printable ASCII characters other than '='"))
    return errs


def validate_pod_spec(spec: dict, path: str, is_pod: bool) -> list[FieldError]:
    errs: list[FieldError] = []
    containers = _l(spec.get("containers"))
    names: set[str] = set()
    errs += _validate_containers(_l(spec.get("initContainers")), f"{path}.initContainers", names, is_pod)
    if not containers:
        errs.append(required(f"{path}.containers"))
    errs += _validate_containers(containers, f"{path}.containers", names, is_pod)
    restart = spec.get("restartPolicy") or ""
    if not restart:
        errs.append(required(f"{path}.restartPolicy"))
    elif restart not in RESTART_POLICIES:
        errs.append(not_supported(f"{path}.restartPolicy", restart, RESTART_POLICIES))
    dns = spec.get("dnsPolicy") or ""
    if not dns:
        errs.append(required(f"{path}.dnsPolicy"))
    elif dns not in DNS_POLICIES:
        errs.append(not_supported(f"{path}.dnsPolicy", dns, DNS_POLICIES))
    elif dns == "None" and not _d(spec.get("dnsConfig")).get("nameservers"):
        errs.append(required(f"{path}.dnsConfig", "must provide `dnsConfig` when `dnsPolicy` is None"))
    errs += labels_errors(spec.get("nodeSelector"), f"{path}.nodeSelector")
    errs += _nonnegative(spec.get("activeDeadlineSeconds"), f"{path}.activeDeadlineSeconds")
    if spec.get("shareProcessNamespace") is True and spec.get("hostPID") is True:
        # Upstream keeps both in the internal PodSecurityContext, hence the path.
        errs.append(invalid(f"{path}.securityContext.shareProcessNamespace", True,
                            "ShareProcessNamespace and HostPID cannot both be enabled"))
    return errs


# ---- Pod -----------------------------------------------------------------------------------


def _mask_mutable(spec: dict, old_spec: dict) -> dict:
    """The new spec with what a pod update may change taken from the old spec."""
    masked = copy.deepcopy(spec)
    for key in ("containers", "initContainers"):
        old_list, new_list = _l(old_spec.get(key)), _l(masked.get(key))
        if len(old_list) == len(new_list):
            for new_c, old_c in zip(new_list, old_list, strict=True):
                new_c["image"] = old_c.get("image")
    masked["activeDeadlineSeconds"] = old_spec.get("activeDeadlineSeconds")
    old_tol = old_spec.get("tolerations") or []
    new_tol = masked.get("tolerations") or []
    if all(t in new_tol for t in old_tol):
        masked["tolerations"] = old_spec.get("tolerations")
    old_grace = old_spec.get("terminationGracePeriodSeconds")
    if isinstance(old_grace, int) and old_grace < 0 and masked.get("terminationGracePeriodSeconds") == 1:
        masked["terminationGracePeriodSeconds"] = old_grace
    for key in ("activeDeadlineSeconds", "tolerations"):
        if masked.get(key) is None:
            masked.pop(key, None)
    return masked


def _diff_lines(old: Any, new: Any, path: str = "") -> list[str]:
    if isinstance(old, dict) and isinstance(new, dict):
        out: list[str] = []
        for key in sorted(set(old) | set(new)):
            out += _diff_lines(old.get(key), new.get(key), f"{path}.{key}" if path else key)
        return out
    if isinstance(old, list) and isinstance(new, list) and len(old) == len(new):
        out = []
        for i, (a, b) in enumerate(zip(old, new, strict=True)):
            out += _diff_lines(a, b, f"{path}[{i}]")
        return out
    if old == new:
        return []
    return [f"- {path}: {json.dumps(old)}", f"+ {path}: {json.dumps(new)}"]


def validate_pod(pod: dict, old: dict | None = None) -> list[FieldError]:
    spec = _d(pod.get("spec"))
    errs = validate_pod_spec(spec, "spec", is_pod=True)
    if old is not None:
        old_spec = _d(old.get("spec"))
        masked = _mask_mutable(spec, old_spec)
        if masked != old_spec:
            # kube appends a Go-typed diff here; a short field-by-field diff says the same thing.
            diff = "\n".join("  " + line for line in _diff_lines(old_spec, masked)[:20])
            errs.append(forbidden("spec", POD_UPDATE_FORBIDDEN + ("\n" + diff if diff else "")))
    return errs


# ---- Deployment / ReplicaSet ---------------------------------------------------------------

_PERCENT = re.compile(r"^[0-9]+%$")


def _int_or_percent(value: Any, path: str) -> list[FieldError]:
    if isinstance(value, str):
        if not _PERCENT.match(value):
            return [invalid(path, value, regex_error("a valid percent string must be a numeric string followed by "
                                                     "an ending '%'", "[0-9]+%", "1%", "93%"))]
        return []
    return _nonnegative(value, path)


def _is_zero(value: Any) -> bool:
    return value in (0, "0%")


def _validate_template(spec: dict, selector: dict | None, path: str) -> list[FieldError]:
    template = spec.get("template")
    if not isinstance(template, dict):
        return [required(f"{path}.template")]
    errs: list[FieldError] = []
    labels = _d(template.get("metadata")).get("labels")
    if selector is not None and (selector.get("matchLabels") or selector.get("matchExpressions")):
        if not selector_matches(selector, labels):
            errs.append(invalid_go(f"{path}.template.metadata.labels", labels, go_string_map(labels),
                                   "`selector` does not match template `labels`"))
    errs += labels_errors(labels, f"{path}.template.metadata.labels")
    tspec = _d(template.get("spec"))
    errs += validate_pod_spec(tspec, f"{path}.template.spec", is_pod=False)
    restart = tspec.get("restartPolicy")
    if restart and restart in RESTART_POLICIES and restart != "Always":
        errs.append(not_supported(f"{path}.template.spec.restartPolicy", restart, ["Always"]))
    if tspec.get("activeDeadlineSeconds") is not None:
        errs.append(forbidden(f"{path}.template.spec.activeDeadlineSeconds",
                              "activeDeadlineSeconds in ReplicaSet is not Supported"))
    return errs


def _validate_selector(spec: dict, path: str, kind: str = "deployment") -> tuple[dict | None, list[FieldError]]:
    selector = spec.get("selector")
    if not isinstance(selector, dict):
        return None, [required(f"{path}.selector")]
    errs = validate_label_selector(selector, f"{path}.selector")
    if not selector.get("matchLabels") and not selector.get("matchExpressions"):
        errs.append(invalid_go(f"{path}.selector", selector, go_label_selector(selector),
                               f"empty selector is invalid for {kind}"))
    return selector, errs


def _selector_immutable(new: dict, old: dict | None) -> list[FieldError]:
    if old is None:
        return []
    sel, old_sel = _d(new.get("spec")).get("selector"), _d(old.get("spec")).get("selector")
    if _normal_selector(sel) != _normal_selector(old_sel):
        return [invalid_go("spec.selector", sel, go_label_selector(sel), IMMUTABLE)]
    return []


def _normal_selector(sel: Any) -> Any:
    # An empty list and a missing list are the same selector.
    if not isinstance(sel, dict):
        return sel
    return {k: v for k, v in sel.items() if v}


def _validate_rolling(rolling: dict, path: str) -> list[FieldError]:
    """maxUnavailable and maxSurge of a Deployment's or DaemonSet's rolling update."""
    mu, ms = rolling.get("maxUnavailable"), rolling.get("maxSurge")
    errs = _int_or_percent(mu, f"{path}.maxUnavailable") + _int_or_percent(ms, f"{path}.maxSurge")
    if _is_zero(mu) and _is_zero(ms):
        errs.append(invalid(f"{path}.maxUnavailable", mu, "may not be 0 when `maxSurge` is 0"))
    if isinstance(mu, str) and _PERCENT.match(mu) and int(mu[:-1]) > 100:
        errs.append(invalid(f"{path}.maxUnavailable", mu, "must not be greater than 100%"))
    return errs


def validate_deployment(d: dict, old: dict | None = None) -> list[FieldError]:
    spec = _d(d.get("spec"))
    errs = _nonnegative(spec.get("replicas"), "spec.replicas")
    selector, sel_errs = _validate_selector(spec, "spec")
    errs += sel_errs
    errs += _validate_template(spec, selector, "spec")
    strategy = _d(spec.get("strategy"))
    stype = strategy.get("type") or ""
    if stype not in ("Recreate", "RollingUpdate"):
        errs.append(not_supported("spec.strategy.type", stype, ["Recreate", "RollingUpdate"]))
    if stype == "Recreate" and strategy.get("rollingUpdate") is not None:
        errs.append(forbidden("spec.strategy.rollingUpdate", "may not be specified when strategy `type` is 'Recreate'"))
    rolling = _d(strategy.get("rollingUpdate"))
    if stype == "RollingUpdate" and rolling:
        errs += _validate_rolling(rolling, "spec.strategy.rollingUpdate")
    errs += _nonnegative(spec.get("revisionHistoryLimit"), "spec.revisionHistoryLimit")
    errs += _nonnegative(spec.get("minReadySeconds"), "spec.minReadySeconds")
    pds = spec.get("progressDeadlineSeconds")
    if pds is not None:
        errs += _nonnegative(pds, "spec.progressDeadlineSeconds")
        if isinstance(pds, int) and pds <= (spec.get("minReadySeconds") or 0):
            errs.append(invalid("spec.progressDeadlineSeconds", pds, "must be greater than minReadySeconds"))
    return errs + _selector_immutable(d, old)


def validate_daemonset(ds: dict, old: dict | None = None) -> list[FieldError]:
    """ValidateDaemonSet: the selector (not empty, matching the template), a template whose pods
    always restart, and the update strategy."""
    spec = _d(ds.get("spec"))
    selector, errs = _validate_selector(spec, "spec", "daemonset")
    errs += _validate_template(spec, selector, "spec")
    errs += _nonnegative(spec.get("minReadySeconds"), "spec.minReadySeconds")
    errs += _nonnegative(spec.get("revisionHistoryLimit"), "spec.revisionHistoryLimit")
    strategy = _d(spec.get("updateStrategy"))
    stype = strategy.get("type") or ""
    if stype not in ("OnDelete", "RollingUpdate"):
        errs.append(not_supported("spec.updateStrategy.type", stype, ["OnDelete", "RollingUpdate"]))
    rolling = _d(strategy.get("rollingUpdate"))
    if stype == "RollingUpdate" and rolling:
        errs += _validate_rolling(rolling, "spec.updateStrategy.rollingUpdate")
    return errs + _selector_immutable(ds, old)


# What an update of a StatefulSet may change (ValidateStatefulSetUpdate).
_STS_MUTABLE = ("replicas", "ordinals", "template", "updateStrategy", "persistentVolumeClaimRetentionPolicy",
                "minReadySeconds")


def validate_statefulset(sts: dict, old: dict | None = None) -> list[FieldError]:
    """ValidateStatefulSet's common checks: policy, update strategy, replicas, the selector and a
    template whose pods always restart; an update may change only _STS_MUTABLE."""
    spec = _d(sts.get("spec"))
    errs: list[FieldError] = []
    policy = spec.get("podManagementPolicy") or ""
    if policy not in ("OrderedReady", "Parallel"):
        errs.append(not_supported("spec.podManagementPolicy", policy, ["OrderedReady", "Parallel"]))
    strategy = _d(spec.get("updateStrategy"))
    stype = strategy.get("type") or ""
    if stype not in ("OnDelete", "RollingUpdate"):
        errs.append(not_supported("spec.updateStrategy.type", stype, ["OnDelete", "RollingUpdate"]))
    elif stype == "OnDelete" and strategy.get("rollingUpdate") is not None:
        errs.append(invalid("spec.updateStrategy.rollingUpdate", strategy.get("rollingUpdate"),
                            "only allowed for updateStrategy 'RollingUpdate'"))
    errs += _nonnegative(_d(strategy.get("rollingUpdate")).get("partition"), "spec.updateStrategy.rollingUpdate.partition")
    errs += _nonnegative(spec.get("replicas"), "spec.replicas")
    errs += _nonnegative(spec.get("minReadySeconds"), "spec.minReadySeconds")
    selector, sel_errs = _validate_selector(spec, "spec", "statefulset")
    errs += sel_errs
    errs += _validate_template(spec, selector, "spec")
    if old is not None:
        old_spec = _d(old.get("spec"))
        rest = {k: v for k, v in spec.items() if k not in _STS_MUTABLE}
        old_rest = {k: v for k, v in old_spec.items() if k not in _STS_MUTABLE}
        if rest != old_rest:
            errs.append(forbidden("spec", "updates to statefulset spec for fields other than 'replicas', 'ordinals', "
                                          "'template', 'updateStrategy', 'persistentVolumeClaimRetentionPolicy' and "
                                          "'minReadySeconds' are forbidden"))
    return errs


def validate_replicaset(rs: dict, old: dict | None = None) -> list[FieldError]:
    spec = _d(rs.get("spec"))
    errs = _nonnegative(spec.get("replicas"), "spec.replicas")
    errs += _nonnegative(spec.get("minReadySeconds"), "spec.minReadySeconds")
    selector, sel_errs = _validate_selector(spec, "spec")
    errs += sel_errs
    errs += _validate_template(spec, selector, "spec")
    return errs + _selector_immutable(rs, old)


# ---- Job -------------------------------------------------------------------------------------

# The labels the API server puts on a Job's pod template and selects its pods by (and their
# pre-1.27 names, which it still sets).
JOB_UID_LABEL = "batch.kubernetes.io/controller-uid"
JOB_NAME_LABEL = "batch.kubernetes.io/job-name"
_LEGACY_JOB_LABELS = {"controller-uid": JOB_UID_LABEL, "job-name": JOB_NAME_LABEL}
JOB_RESTART_POLICIES = ["OnFailure", "Never"]
COMPLETION_MODES = ["NonIndexed", "Indexed"]


def generate_job_selector(job: dict) -> None:
    """What the Job strategy does at create unless `manualSelector` is true: label the template with
    the Job's name and uid and select by the uid. A selector the user wrote that says otherwise is
    refused by validate_job."""
    spec = job.get("spec")
    if not isinstance(spec, dict) or spec.get("manualSelector") is True:
        return
    md = job["metadata"]
    template = spec.setdefault("template", {})
    if not isinstance(template, dict):
        return
    tmeta = template.setdefault("metadata", {})
    labels = tmeta.setdefault("labels", {}) if isinstance(tmeta, dict) else None
    if not isinstance(labels, dict):
        return
    values = {JOB_UID_LABEL: md.get("uid", ""), JOB_NAME_LABEL: md.get("name", "")}
    for key in ("controller-uid", JOB_UID_LABEL, "job-name", JOB_NAME_LABEL):
        labels.setdefault(key, values[_LEGACY_JOB_LABELS.get(key, key)])
    selector = spec.get("selector")
    if selector is None:
        selector = spec["selector"] = {}
    if isinstance(selector, dict):
        match = selector.setdefault("matchLabels", {})
        if isinstance(match, dict):
            match.setdefault(JOB_UID_LABEL, md.get("uid", ""))


def validate_job(job: dict, old: dict | None = None) -> list[FieldError]:
    """ValidateJob's common checks: counts, completion mode, the generated selector, the template
    (which must not restart its pods forever), and what an update may not change."""
    spec = _d(job.get("spec"))
    errs: list[FieldError] = []
    for field in ("parallelism", "completions", "backoffLimit", "ttlSecondsAfterFinished"):
        errs += _nonnegative(spec.get(field), f"spec.{field}")
    deadline = spec.get("activeDeadlineSeconds")
    if deadline is not None and (not isinstance(deadline, int) or deadline <= 0):
        errs.append(invalid("spec.activeDeadlineSeconds", deadline, "must be greater than 0"))
    mode = spec.get("completionMode") or ""
    if mode not in COMPLETION_MODES:
        errs.append(not_supported("spec.completionMode", mode, COMPLETION_MODES))
    elif mode == "Indexed" and spec.get("completions") is None:
        errs.append(required("spec.completions", "when completion mode is Indexed"))
    selector = spec.get("selector")
    if not isinstance(selector, dict):
        errs.append(required("spec.selector"))
        selector = None
    else:
        errs += validate_label_selector(selector, "spec.selector")
        if spec.get("manualSelector") is not True:
            uid = _d(job.get("metadata")).get("uid", "")
            if selector != {"matchLabels": {JOB_UID_LABEL: uid}}:
                errs.append(invalid_go("spec.selector", selector, go_label_selector(selector),
                                       "selector not auto-generated"))
    template = spec.get("template")
    if not isinstance(template, dict):
        errs.append(required("spec.template"))
    else:
        labels = _d(template.get("metadata")).get("labels")
        if selector is not None and (selector.get("matchLabels") or selector.get("matchExpressions")) \
                and not selector_matches(selector, labels):
            errs.append(invalid_go("spec.template.metadata.labels", labels, go_string_map(labels),
                                   "`selector` does not match template `labels`"))
        errs += labels_errors(labels, "spec.template.metadata.labels")
        tspec = _d(template.get("spec"))
        errs += validate_pod_spec(tspec, "spec.template.spec", is_pod=False)
        restart = tspec.get("restartPolicy") or ""
        if restart in RESTART_POLICIES and restart not in JOB_RESTART_POLICIES:
            errs.append(not_supported("spec.template.spec.restartPolicy", restart, JOB_RESTART_POLICIES))
    if old is not None:
        old_spec = _d(old.get("spec"))
        errs += _selector_immutable(job, old)
        for field in ("completionMode", "manualSelector"):
            if spec.get(field) != old_spec.get(field):
                errs.append(invalid(f"spec.{field}", spec.get(field), IMMUTABLE))
        if mode == "NonIndexed" and spec.get("completions") != old_spec.get("completions"):
            errs.append(invalid("spec.completions", spec.get("completions"), IMMUTABLE))
        if template != old_spec.get("template"):
            errs.append(invalid_go("spec.template", template, "core.PodTemplateSpec{...}", IMMUTABLE))
    return errs
