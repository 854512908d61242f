"""Service validation and the Service registry strategy, as kube-apiserver does them.

Messages, field paths and the order of checks follow KK `pkg/apis/core/validation/validation.go`
(`ValidateService`, `ValidateServiceUpdate`) and `pkg/registry/core/service/strategy.go` /
`storage/storage.go` (`dropTypeDependentFields`, `normalizeClusterIPs`, `patchAllocatedValues`).

Order kube-apiserver uses, and the API server should too:
  create: apply_defaults -> prepare_for_create -> ServiceAllocations.allocate_create -> validate_service
  update: apply_defaults -> ServiceAllocations.allocate_update -> prepare_for_update -> validate_service(new, old)
(the allocator normalises clusterIP/clusterIPs and fills ipFamilies/ipFamilyPolicy first, so
validation sees the same object kube-apiserver's validation sees).

The module also holds the small value checks (DNS labels, port numbers, IANA port names, IPs)
and `GoValueError`, shared by the other validators in this package.
"""

from __future__ import annotations

import ipaddress
import json
import re
from dataclasses import dataclass
from typing import Any

from skiff.api.clone import clone
from skiff.api.errors import FieldError, duplicate, forbidden, invalid, not_supported, required
from skiff.api.validation.meta import is_dns1035_label as dns1035_label_errors
from skiff.api.validation.meta import is_dns1123_label as dns1123_label_errors
from skiff.api.validation.meta import is_dns1123_subdomain as dns1123_subdomain_errors
from skiff.api.validation.meta import is_qualified_name as qualified_name_errors
from skiff.api.validation.meta import max_len_error
from skiff.api.validation.meta import validate_labels as labels_errors

# ---- rendering values the way Go's %#v does ------------------------------------------------


@dataclass
class GoValueError(FieldError):
    """A FieldError whose bad value Go prints with `%#v` (slices, maps, structs).

    apimachinery renders such values as Go literals (`[]string{"10.96.0.5"}`,
    `map[string]string{"app":"x"}`), and users grep for these exact strings.
    """

    literal: str = ""

    def body(self) -> str:
        if self.type == "Invalid":
            return f"Invalid value: {self.literal}" + (f": {self.detail}" if self.detail else "")
        if self.type == "Duplicate":
            return f"Duplicate value: {self.literal}"
        return super().body()


def invalid_go(field: str, value: Any, literal: str, detail: str) -> GoValueError:
    return GoValueError("Invalid", field, value, detail, (), literal)


def duplicate_go(field: str, value: Any, literal: str) -> GoValueError:
    return GoValueError("Duplicate", field, value, "", (), literal)


def go_quote(s: str) -> str:
    return json.dumps(s, ensure_ascii=False)


def go_string_slice(values: list[str] | None, type_name: str = "[]string") -> str:
    if values is None:
        return f"{type_name}(nil)"
    return type_name + "{" + ", ".join(go_quote(str(v)) for v in values) + "}"


def go_string_map(values: dict[str, str] | None) -> str:
    if values is None:
        return "map[string]string(nil)"
    inner = ", ".join(f"{go_quote(k)}:{go_quote(str(values[k]))}" for k in sorted(values))
    return "map[string]string{" + inner + "}"


def go_label_selector(sel: dict | None) -> str:
    """`v1.LabelSelector{...}` as Go prints a dereferenced *metav1.LabelSelector."""
    if sel is None:
        return "null"
    exprs = sel.get("matchExpressions")
    if exprs is None:
        exprs_lit = "[]v1.LabelSelectorRequirement(nil)"
    else:
        parts = [
            f'v1.LabelSelectorRequirement{{Key:{go_quote(e.get("key", ""))}, '
            f'Operator:{go_quote(e.get("operator", ""))}, Values:{go_string_slice(e.get("values"))}}}'
            for e in exprs
        ]
        exprs_lit = "[]v1.LabelSelectorRequirement{" + ", ".join(parts) + "}"
    return f"v1.LabelSelector{{MatchLabels:{go_string_map(sel.get('matchLabels'))}, MatchExpressions:{exprs_lit}}}"


def go_service_port_key(protocol: str, port: Any) -> str:
    # The duplicate-port check keys on a core.ServicePort holding only Protocol and Port.
    return (f"core.ServicePort{{Name:\"\", Protocol:{go_quote(str(protocol or ''))}, AppProtocol:(*string)(nil), "
            f"Port:{port}, TargetPort:intstr.IntOrString{{Type:0, IntVal:0, StrVal:\"\"}}, NodePort:0}}")


# ---- value checks (apimachinery `pkg/util/validation`) -------------------------------------

_PORT_NAME_CHARS = re.compile(r"^[-a-z0-9]+$")
_HAS_LETTER = re.compile(r"[a-z]")


def service_name_errors(name: str) -> list[str]:
    """Service names are DNS-1035 labels (ValidateServiceName), unlike most objects' subdomains."""
    return dns1035_label_errors(name)


def port_num_errors(port: Any) -> list[str]:
    if isinstance(port, bool) or not isinstance(port, int) or not 1 <= port <= 65535:
        return ["must be between 1 and 65535, inclusive"]
    return []


def port_name_errors(name: str) -> list[str]:
    """IsValidPortName: an IANA_SVC_NAME."""
    errs = []
    if len(name) > 15:
        errs.append(max_len_error(15))
    if not _PORT_NAME_CHARS.match(name):
        errs.append("must contain only alpha-numeric characters (a-z, 0-9), and hyphens (-)")
    if not _HAS_LETTER.search(name):
        errs.append("must contain at least one letter (a-z)")
    if "--" in name:
        errs.append("must not contain consecutive hyphens")
    if name and (name[0] == "-" or name[-1] == "-"):
        errs.append("must not begin or end with a hyphen")
    return errs


def port_num_or_name_errors(value: Any, path: str) -> list[FieldError]:
    """ValidatePortNumOrName: an int port, or an IANA port name."""
    if isinstance(value, str):
        return [invalid(path, value, m) for m in port_name_errors(value)]
    return [invalid(path, value, m) for m in port_num_errors(value)]


def parse_ip(value: Any) -> ipaddress.IPv4Address | ipaddress.IPv6Address | None:
    if not isinstance(value, str):
        return None
    try:
        return ipaddress.ip_address(value)
    except ValueError:
        return None


def ip_errors(value: Any, path: str) -> list[FieldError]:
    if parse_ip(value) is None:
        return [invalid(path, value, "must be a valid IP address, (e.g. 10.9.8.7 or 2001:db8::ffff)")]
    return []


def cidr_errors(value: Any, path: str) -> list[FieldError]:
    try:
        ipaddress.ip_network(value, strict=False)
    except (ValueError, TypeError):
        return [invalid(path, value, "must be a valid CIDR value, (e.g. 10.9.8.0/24 or 2001:db8::/64)")]
    return []


def non_special_ip_errors(value: str, path: str) -> list[FieldError]:
    """ValidateNonSpecialIP: external IPs may not be unspecified, loopback or link-local."""
    ip = parse_ip(value)
    if ip is None:
        return [invalid(path, value, "must be a valid IP address")]
    errs = []
    if ip.is_unspecified:
        errs.append(invalid(path, value, f"may not be unspecified ({value})"))
    if ip.is_loopback:
        errs.append(invalid(path, value, "may not be in the loopback range (127.0.0.0/8, ::1/128)"))
    if ip.is_link_local and not (ip.version == 4 and ip in _V4_LL_MULTICAST):
        errs.append(invalid(path, value, "may not be in the link-local range (169.254.0.0/16, fe80::/10)"))
    if (ip.version == 4 and ip in _V4_LL_MULTICAST) or (ip.version == 6 and ip in _V6_LL_MULTICAST):
        errs.append(invalid(path, value, "may not be in the link-local multicast range (224.0.0.0/24, ff02::/10)"))
    return errs


_V4_LL_MULTICAST = ipaddress.ip_network("224.0.0.0/24")
_V6_LL_MULTICAST = ipaddress.ip_network("ff02::/16")


def sorted_supported(values: set[str] | list[str]) -> list[str]:
    return sorted(values)


# ---- Service helpers (KK pkg/api/service/util.go) ------------------------------------------

SERVICE_TYPES = ["ClusterIP", "ExternalName", "LoadBalancer", "NodePort"]
PROTOCOLS = ["SCTP", "TCP", "UDP"]
MAX_CLIENT_IP_AFFINITY_SECONDS = 86400


def _spec(svc: dict | None) -> dict:
    if not isinstance(svc, dict):
        return {}
    spec = svc.get("spec")
    return spec if isinstance(spec, dict) else {}


def _ports(spec: dict) -> list[dict]:
    ports = spec.get("ports")
    return [p for p in ports if isinstance(p, dict)] if isinstance(ports, list) else []


def is_headless(svc: dict | None) -> bool:
    return _spec(svc).get("clusterIPs") == ["None"]


def externally_accessible(spec: dict) -> bool:
    t = spec.get("type")
    return t in ("LoadBalancer", "NodePort") or (t == "ClusterIP" and bool(spec.get("externalIPs")))


def needs_health_check(spec: dict) -> bool:
    return spec.get("type") == "LoadBalancer" and spec.get("externalTrafficPolicy") == "Local"


# ---- ValidateService -----------------------------------------------------------------------


def validate_service(svc: dict, old: dict | None = None) -> list[FieldError]:
    """ValidateService, or ValidateServiceUpdate when `old` is given. Metadata is not checked here.

    kube-apiserver validates after the registry has synced clusterIP/clusterIPs and carried over
    allocated values a client left out (`kubectl apply` sends no clusterIP); the check runs on a
    copy prepared the same way, so it gives the same answer whether or not allocation ran first.
    """
    svc = clone(svc)
    if old is not None:
        patch_allocated_values(svc, old)
    normalize_cluster_ips(svc, old)
    errs: list[FieldError] = []
    if old is not None:
        errs += _validate_update(svc, old)
    return errs + _validate_service(svc)


def _validate_service(svc: dict) -> list[FieldError]:
    spec = _spec(svc)
    errs: list[FieldError] = []
    svc_type = spec.get("type") or ""
    ports = _ports(spec)
    headless = is_headless(svc)

    if not ports and not headless and svc_type != "ExternalName":
        errs.append(required("spec.ports"))
    if svc_type in ("LoadBalancer", "NodePort") and headless:
        errs.append(invalid("spec.clusterIPs[0]", "None", f"may not be set to 'None' for {svc_type} services"))
    elif svc_type == "ExternalName":
        if spec.get("clusterIPs"):
            errs.append(forbidden("spec.clusterIPs", "may not be set for ExternalName services"))
        if spec.get("ipFamilies"):
            errs.append(forbidden("spec.ipFamilies", "may not be set for ExternalName services"))
        if spec.get("ipFamilyPolicy") is not None:
            errs.append(forbidden("spec.ipFamilyPolicy", "may not be set for ExternalName services"))
        # A CNAME may end with a dot to say it is fully qualified.
        cname = str(spec.get("externalName") or "").removesuffix(".")
        if cname:
            errs += [invalid("spec.externalName", cname, m) for m in dns1123_subdomain_errors(cname)]
        else:
            errs.append(required("spec.externalName"))

    names: set[str] = set()
    for i, port in enumerate(ports):
        errs += _validate_port(port, len(ports) > 1, names, f"spec.ports[{i}]")

    if spec.get("selector") is not None:
        errs += labels_errors(spec.get("selector"), "spec.selector")

    affinity = spec.get("sessionAffinity") or ""
    if not affinity:
        errs.append(required("spec.sessionAffinity"))
    elif affinity not in ("ClientIP", "None"):
        errs.append(not_supported("spec.sessionAffinity", affinity, ["ClientIP", "None"]))
    if affinity == "ClientIP":
        errs += _validate_client_ip_affinity(spec.get("sessionAffinityConfig"))
    elif affinity == "None" and spec.get("sessionAffinityConfig") is not None:
        errs.append(forbidden("spec.sessionAffinityConfig", "must not be set when session affinity is None"))

    errs += validate_cluster_ips_related_fields(svc)

    for i, ip in enumerate(spec.get("externalIPs") or []):
        path = f"spec.externalIPs[{i}]"
        bad = ip_errors(ip, path)
        errs += bad or non_special_ip_errors(ip, path)

    if not svc_type:
        errs.append(required("spec.type"))
    elif svc_type not in SERVICE_TYPES:
        errs.append(not_supported("spec.type", svc_type, SERVICE_TYPES))

    if svc_type == "ClusterIP":
        for i, port in enumerate(ports):
            if port.get("nodePort"):
                errs.append(forbidden(f"spec.ports[{i}].nodePort", "may not be used when `type` is 'ClusterIP'"))

    seen_node_ports: set[tuple[str, int]] = set()
    for i, port in enumerate(ports):
        node_port = port.get("nodePort")
        if not node_port:
            continue
        key = (port.get("protocol") or "", node_port)
        if key in seen_node_ports:
            errs.append(duplicate(f"spec.ports[{i}].nodePort", node_port))
        seen_node_ports.add(key)

    seen_ports: set[tuple[str, Any]] = set()
    for i, port in enumerate(ports):
        key = (port.get("protocol") or "", port.get("port") or 0)
        if key in seen_ports:
            errs.append(duplicate_go(f"spec.ports[{i}]", key, go_service_port_key(*key)))
        seen_ports.add(key)

    ranges = spec.get("loadBalancerSourceRanges") or []
    annotations = (svc.get("metadata") or {}).get("annotations") or {}
    ann_key = "service.beta.kubernetes.io/load-balancer-source-ranges"
    if ranges:
        # The capital L is kube-apiserver's own field path for this check.
        path = "spec.LoadBalancerSourceRanges"
        if svc_type != "LoadBalancer":
            errs.append(forbidden(path, "may only be used when `type` is 'LoadBalancer'"))
        for i, value in enumerate(ranges):
            errs += cidr_errors(str(value).strip(), f"{path}[{i}]")
    elif ann_key in annotations:
        path = f"metadata.annotations[{ann_key}]"
        if svc_type != "LoadBalancer":
            errs.append(forbidden(path, "may only be used when `type` is 'LoadBalancer'"))
        value = str(annotations[ann_key]).strip()
        if value:
            for cidr in value.split(","):
                errs += cidr_errors(cidr.strip(), path)

    if spec.get("allocateLoadBalancerNodePorts") is not None and svc_type != "LoadBalancer":
        errs.append(forbidden("spec.allocateLoadBalancerNodePorts", "may only be used when `type` is 'LoadBalancer'"))
    if svc_type == "LoadBalancer" and spec.get("allocateLoadBalancerNodePorts") is None:
        errs.append(required("allocateLoadBalancerNodePorts"))

    errs += _validate_load_balancer_class(None, svc)
    errs += _validate_external_traffic_policy(spec)

    itp = spec.get("internalTrafficPolicy")
    if itp is None and svc_type in ("NodePort", "LoadBalancer", "ClusterIP"):
        errs.append(required("spec.internalTrafficPolicy"))
    if itp is not None and itp not in ("Cluster", "Local"):
        errs.append(not_supported("spec.internalTrafficPolicy", itp, ["Cluster", "Local"]))

    td = spec.get("trafficDistribution")
    if td is not None and td != "PreferClose":
        errs.append(not_supported("spec.trafficDistribution", td, ["PreferClose"]))
    return errs


def _validate_port(port: dict, require_name: bool, names: set[str], path: str) -> list[FieldError]:
    errs: list[FieldError] = []
    name = port.get("name") or ""
    if require_name and not name:
        errs.append(required(f"{path}.name"))
    elif name:
        errs += [invalid(f"{path}.name", name, m) for m in dns1123_label_errors(name)]
        if name in names:
            errs.append(duplicate(f"{path}.name", name))
        else:
            names.add(name)
    number = port.get("port", 0)
    errs += [invalid(f"{path}.port", number, m) for m in port_num_errors(number)]
    protocol = port.get("protocol") or ""
    if not protocol:
        errs.append(required(f"{path}.protocol"))
    elif protocol not in PROTOCOLS:
        errs.append(not_supported(f"{path}.protocol", protocol, PROTOCOLS))
    errs += port_num_or_name_errors(port.get("targetPort", 0), f"{path}.targetPort")
    app_protocol = port.get("appProtocol")
    if app_protocol is not None:
        errs += [invalid(f"{path}.appProtocol", app_protocol, m) for m in qualified_name_errors(str(app_protocol))]
    return errs


def _validate_client_ip_affinity(config: Any) -> list[FieldError]:
    path = "spec.sessionAffinityConfig"
    detail = "when session affinity type is ClientIP"
    if not isinstance(config, dict):
        return [required(path, detail)]
    client_ip = config.get("clientIP")
    if not isinstance(client_ip, dict):
        return [required(f"{path}.clientIP", detail)]
    timeout = client_ip.get("timeoutSeconds")
    if timeout is None:
        return [required(f"{path}.clientIP.timeoutSeconds", detail)]
    if not isinstance(timeout, int) or timeout <= 0 or timeout > MAX_CLIENT_IP_AFFINITY_SECONDS:
        return [invalid(f"{path}.clientIP.timeoutSeconds", timeout,
                        f"must be greater than 0 and less than {MAX_CLIENT_IP_AFFINITY_SECONDS}")]
    return []


def validate_cluster_ips_related_fields(svc: dict) -> list[FieldError]:
    """ValidateServiceClusterIPsRelatedFields (also used by the allocator as a pre-check)."""
    spec = _spec(svc)
    if spec.get("type") == "ExternalName":
        return []
    errs: list[FieldError] = []
    cluster_ip = spec.get("clusterIP") or ""
    cluster_ips = spec.get("clusterIPs") or []
    lit = go_string_slice(spec.get("clusterIPs"))
    if cluster_ip:
        if not cluster_ips:
            errs.append(required("spec.clusterIPs"))
        elif cluster_ips[0] != cluster_ip:
            errs.append(invalid_go("spec.clusterIPs", cluster_ips, lit, "first value must match `clusterIP`"))
    elif cluster_ips:
        errs.append(invalid_go("spec.clusterIPs", cluster_ips, lit, "must be empty when `clusterIP` is not specified"))

    seen: set[str] = set()
    for i, family in enumerate(spec.get("ipFamilies") or []):
        if family not in ("IPv4", "IPv6"):
            errs.append(not_supported(f"spec.ipFamilies[{i}]", family, ["IPv4", "IPv6"]))
        if family in seen:
            errs.append(duplicate(f"spec.ipFamilies[{i}]", family))
        seen.add(family)

    policy = spec.get("ipFamilyPolicy")
    if policy is not None and policy not in ("PreferDualStack", "RequireDualStack", "SingleStack"):
        errs.append(not_supported("spec.ipFamilyPolicy", policy, ["PreferDualStack", "RequireDualStack", "SingleStack"]))

    has_invalid = False
    for i, ip in enumerate(cluster_ips):
        if i == 0 and ip == "None":
            if len(cluster_ips) > 1:
                has_invalid = True
                errs.append(invalid_go("spec.clusterIPs", cluster_ips, lit, "'None' must be the first and only value"))
            continue
        bad = ip_errors(ip, f"spec.clusterIPs[{i}]")
        has_invalid = has_invalid or bool(bad)
        errs += bad
    if len(cluster_ips) > 2:
        errs.append(invalid_go("spec.clusterIPs", cluster_ips, lit, "may only hold up to 2 values"))
    if has_invalid:
        return errs
    if len(cluster_ips) > 1:
        versions = [parse_ip(ip).version for ip in cluster_ips]  # type: ignore[union-attr]
        if len(versions) != 2 or versions[0] == versions[1]:
            errs.append(invalid_go("spec.clusterIPs", cluster_ips, lit,
                                   "may specify no more than one IP for each IP family"))
    families = spec.get("ipFamilies") or []
    if not is_headless(svc) and cluster_ips and families:
        for i, ip in enumerate(cluster_ips):
            if i >= len(families):
                break
            version = parse_ip(ip).version  # type: ignore[union-attr]
            if families[i] == "IPv4" and version == 6:
                errs.append(invalid(f"spec.clusterIPs[{i}]", ip, f"expected an IPv4 value as indicated by `ipFamilies[{i}]`"))
            if families[i] == "IPv6" and version != 6:
                errs.append(invalid(f"spec.clusterIPs[{i}]", ip, f"expected an IPv6 value as indicated by `ipFamilies[{i}]`"))
    return errs


def _validate_external_traffic_policy(spec: dict) -> list[FieldError]:
    errs: list[FieldError] = []
    etp = spec.get("externalTrafficPolicy") or ""
    if not externally_accessible(spec):
        if etp:
            errs.append(invalid("spec.externalTrafficPolicy", etp, "may only be set for externally-accessible services"))
    elif not etp:
        errs.append(required("spec.externalTrafficPolicy"))
    elif etp not in ("Cluster", "Local"):
        errs.append(not_supported("spec.externalTrafficPolicy", etp, ["Cluster", "Local"]))
    hc = spec.get("healthCheckNodePort") or 0
    if not needs_health_check(spec):
        if hc:
            errs.append(invalid("spec.healthCheckNodePort", hc,
                                "may only be set when `type` is 'LoadBalancer' and `externalTrafficPolicy` is 'Local'"))
    elif not hc:
        errs.append(required("spec.healthCheckNodePort"))
    else:
        errs += [invalid("spec.healthCheckNodePort", hc, m) for m in port_num_errors(hc)]
    return errs


def _validate_load_balancer_class(old: dict | None, svc: dict) -> list[FieldError]:
    errs: list[FieldError] = []
    spec = _spec(svc)
    lbc = spec.get("loadBalancerClass")
    if old is not None:
        ospec = _spec(old)
        if ospec.get("type") == "LoadBalancer" and spec.get("type") == "LoadBalancer":
            if ospec.get("loadBalancerClass") != lbc:
                errs.append(invalid("spec.loadBalancerClass", lbc, "may not change once set"))
    if spec.get("type") == "LoadBalancer":
        if lbc is not None:
            errs += [invalid("spec.loadBalancerClass", lbc, m) for m in qualified_name_errors(str(lbc))]
    elif lbc is not None:
        errs.append(forbidden("spec.loadBalancerClass", "may only be used when `type` is 'LoadBalancer'"))
    return errs


def _validate_update(svc: dict, old: dict) -> list[FieldError]:
    errs = _validate_cluster_ips_update(old, svc)
    errs += _validate_ip_families_update(old, svc)
    if old is not None and _spec(old).get("type") == "LoadBalancer" and _spec(svc).get("type") == "LoadBalancer":
        errs += [e for e in _validate_load_balancer_class(old, svc) if e.detail == "may not change once set"]
    ospec, spec = _spec(old), _spec(svc)
    if needs_health_check(ospec) and needs_health_check(spec):
        if (ospec.get("healthCheckNodePort") or 0) != (spec.get("healthCheckNodePort") or 0):
            errs.append(forbidden("spec.healthCheckNodePort", "field is immutable"))
    return errs


def _validate_cluster_ips_update(old: dict, svc: dict) -> list[FieldError]:
    ospec, spec = _spec(old), _spec(svc)
    if "ExternalName" in (spec.get("type"), ospec.get("type")):
        return []
    if is_headless(old) and is_headless(svc):
        return []
    old_ips = ospec.get("clusterIPs") or []
    new_ips = spec.get("clusterIPs") or []
    lit = go_string_slice(spec.get("clusterIPs"))
    errs: list[FieldError] = []
    if len(old_ips) == len(new_ips):
        for i, ip in enumerate(old_ips):
            if ip != new_ips[i]:
                errs.append(invalid_go(f"spec.clusterIPs[{i}]", new_ips, lit, "may not change once set"))
    elif len(old_ips) > len(new_ips):
        if not new_ips:
            errs.append(invalid_go("spec.clusterIPs[0]", new_ips, lit, "primary clusterIP can not be unset"))
        if old_ips and new_ips and new_ips[0] != old_ips[0]:
            errs.append(invalid_go("spec.clusterIPs[0]", new_ips, lit, "may not change once set"))
        if len(new_ips) == 1 and spec.get("ipFamilyPolicy") != "SingleStack":
            errs.append(invalid("spec.ipFamilyPolicy", spec.get("ipFamilyPolicy"),
                                "must be set to 'SingleStack' when releasing the secondary clusterIP"))
    elif old_ips and new_ips[0] != old_ips[0]:
        errs.append(invalid_go("spec.clusterIPs[0]", new_ips, lit, "may not change once set"))
    return errs


def _validate_ip_families_update(old: dict, svc: dict) -> list[FieldError]:
    ospec, spec = _spec(old), _spec(svc)
    if "ExternalName" in (spec.get("type"), ospec.get("type")):
        return []
    if is_headless(old) or is_headless(svc):
        return []
    old_f = ospec.get("ipFamilies") or []
    new_f = spec.get("ipFamilies") or []
    fam_lit = go_string_slice(spec.get("ipFamilies"), "[]core.IPFamily")
    ips_lit = go_string_slice(spec.get("clusterIPs"))
    errs: list[FieldError] = []
    if len(old_f) == len(new_f):
        for i, fam in enumerate(old_f):
            if fam != new_f[i]:
                errs.append(invalid_go("spec.ipFamilies[0]", new_f, fam_lit, "may not change once set"))
    elif len(old_f) > len(new_f):
        if not spec.get("clusterIPs"):
            errs.append(invalid_go("spec.ipFamilies[0]", new_f, fam_lit, "primary ipFamily can not be unset"))
        if new_f and new_f[0] != old_f[0]:
            errs.append(invalid_go("spec.ipFamilies[0]", spec.get("clusterIPs"), ips_lit, "may not change once set"))
        if len(new_f) == 1 and spec.get("ipFamilyPolicy") != "SingleStack":
            errs.append(invalid("spec.ipFamilyPolicy", spec.get("ipFamilyPolicy"),
                                "must be set to 'SingleStack' when releasing the secondary ipFamily"))
    elif old_f and new_f and new_f[0] != old_f[0]:
        errs.append(invalid_go("spec.ipFamilies[0]", spec.get("clusterIPs"), ips_lit, "may not change once set"))
    return errs


# ---- registry strategy ---------------------------------------------------------------------


def prepare_for_create(svc: dict) -> None:
    """Status is not the user's to set on create."""
    svc["status"] = {"loadBalancer": {}}


def prepare_for_update(new: dict, old: dict) -> None:
    """Status is only written through /status; then wipe what the new type no longer uses."""
    new["status"] = clone(old.get("status") or {"loadBalancer": {}})
    drop_type_dependent_fields(new, old)


def prepare_for_status_update(new: dict, old: dict) -> None:
    """The /status subresource may not change the spec."""
    new["spec"] = clone(old.get("spec") or {})


def _node_ports(spec: dict) -> set[int]:
    return {p["nodePort"] for p in _ports(spec) if p.get("nodePort")}


def drop_type_dependent_fields(new: dict, old: dict | None) -> None:
    """Wipe fields the new type does not use, when they were allocated/defaulted and the user left
    them as they were (a user's own change still goes to validation and fails there)."""
    if old is None:
        return
    ospec, spec = _spec(old), new.setdefault("spec", {})
    otype, ntype = ospec.get("type"), spec.get("type")
    if otype != "ExternalName" and ntype == "ExternalName":
        if ospec.get("clusterIP") == spec.get("clusterIP") and (ospec.get("clusterIPs") or []) == (
                spec.get("clusterIPs") or []):
            spec.pop("clusterIP", None)
            spec.pop("clusterIPs", None)
        if ospec.get("ipFamilies") == spec.get("ipFamilies"):
            spec.pop("ipFamilies", None)
        if ospec.get("ipFamilyPolicy") == spec.get("ipFamilyPolicy"):
            spec.pop("ipFamilyPolicy", None)
    uses_node_ports = ("NodePort", "LoadBalancer")
    if otype in uses_node_ports and ntype not in uses_node_ports and _node_ports(spec) <= _node_ports(ospec):
        for port in _ports(spec):
            port.pop("nodePort", None)
    if needs_health_check(ospec) and not needs_health_check(spec) and (
            ospec.get("healthCheckNodePort") or 0) == (spec.get("healthCheckNodePort") or 0):
        spec.pop("healthCheckNodePort", None)
    if otype == "LoadBalancer" and ntype != "LoadBalancer":
        old_alloc, new_alloc = ospec.get("allocateLoadBalancerNodePorts"), spec.get("allocateLoadBalancerNodePorts")
        if old_alloc is not None and new_alloc is not None and old_alloc == new_alloc:
            spec.pop("allocateLoadBalancerNodePorts", None)
        if ospec.get("loadBalancerClass") == spec.get("loadBalancerClass"):
            spec.pop("loadBalancerClass", None)
    if otype in uses_node_ports and ntype not in uses_node_ports and (
            ospec.get("externalTrafficPolicy") == spec.get("externalTrafficPolicy")):
        spec.pop("externalTrafficPolicy", None)
    if ntype != "LoadBalancer":
        new.setdefault("status", {})["loadBalancer"] = {}


def normalize_cluster_ips(new: dict, old: dict | None) -> None:
    """Keep `clusterIP` and `clusterIPs` in step for clients that only know one of them."""
    spec = new.setdefault("spec", {})
    ip = spec.get("clusterIP") or ""
    if old is None:
        if ip and not spec.get("clusterIPs"):
            spec["clusterIPs"] = [ip]
        return
    ospec = _spec(old)
    old_ip = ospec.get("clusterIP") or ""
    if ospec.get("clusterIPs") and not spec.get("clusterIPs") and old_ip == ip:
        spec["clusterIPs"] = list(ospec["clusterIPs"])
    if old_ip != ip:
        if old_ip and not ip:
            spec.pop("clusterIPs", None)
            return
        if (ospec.get("clusterIPs") or []) == (spec.get("clusterIPs") or []):
            spec["clusterIPs"] = [ip]


def patch_allocated_values(new: dict, old: dict) -> None:
    """On update, keep the allocated clusterIP(s) and nodePorts a client did not send back
    (`kubectl apply` never sends them), so the update is idempotent."""
    ospec, spec = _spec(old), new.setdefault("spec", {})
    if ospec.get("type") != "ExternalName" and spec.get("type") != "ExternalName":
        if not spec.get("clusterIP") and ospec.get("clusterIP"):
            spec["clusterIP"] = ospec["clusterIP"]
        if not spec.get("clusterIPs") and ospec.get("clusterIPs"):
            spec["clusterIPs"] = list(ospec["clusterIPs"])
    uses_node_ports = ("NodePort", "LoadBalancer")
    if ospec.get("type") in uses_node_ports and spec.get("type") in uses_node_ports:
        used = _node_ports(ospec) & _node_ports(spec)
        by_name = {p.get("name") or "": p.get("nodePort") for p in _ports(ospec)}
        for port in _ports(spec):
            if not port.get("nodePort"):
                value = by_name.get(port.get("name") or "")
                if value and value not in used:
                    port["nodePort"] = value
    if needs_health_check(ospec) and needs_health_check(spec) and not spec.get("healthCheckNodePort"):
        if ospec.get("healthCheckNodePort"):
            spec["healthCheckNodePort"] = ospec["healthCheckNodePort"]
