"""Ingress, NetworkPolicy, EndpointSlice, ConfigMap and Secret validation (the common upstream checks).

Messages and paths follow KK `pkg/apis/networking/validation/validation.go`,
`pkg/apis/discovery/validation/validation.go` and the ConfigMap/Secret parts of
`pkg/apis/core/validation/validation.go`.
"""

from __future__ import annotations

import ipaddress
import re
from typing import Any

from skiff.api.errors import FieldError, duplicate, forbidden, invalid, not_supported, required
from skiff.api.validation.meta import is_dns1035_label as dns1035_label_errors
from skiff.api.validation.meta import is_dns1123_label as dns1123_label_errors
from skiff.api.validation.meta import is_dns1123_subdomain as dns1123_subdomain_errors
from skiff.api.validation.meta import max_len_error, regex_error
from skiff.api.validation.service import cidr_errors, invalid_go, parse_ip, port_name_errors, port_num_errors
from skiff.api.validation.workloads import validate_label_selector

PATH_TYPES = ["Exact", "ImplementationSpecific", "Prefix"]
_INVALID_PATH_SEQUENCES = ["//", "/./", "/../", "%2f", "%2F"]
_INVALID_PATH_SUFFIXES = ["/..", "/."]
_WILDCARD_SUBDOMAIN = re.compile(r"^\*\.[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$")
_CONFIG_KEY = re.compile(r"^[-._a-zA-Z0-9]+$")


def _d(value: Any) -> dict:
    return value if isinstance(value, dict) else {}


def _l(value: Any) -> list[dict]:
    return [v for v in value if isinstance(v, dict)] if isinstance(value, list) else []


def wildcard_subdomain_errors(value: str) -> list[str]:
    errs = []
    if len(value) > 253:
        errs.append(max_len_error(253))
    if not _WILDCARD_SUBDOMAIN.match(value):
        errs.append(regex_error("a wildcard DNS-1123 subdomain must start with '*.', followed by a valid DNS "
                                "subdomain, which must consist of lower case alphanumeric characters, '-' or '.' "
                                "and end with an alphanumeric character",
                                r"\*\.[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*",
                                "*.example.com"))
    return errs


def _host_errors(host: str, path: str) -> list[FieldError]:
    errs: list[FieldError] = []
    if parse_ip(host) is not None:
        errs.append(invalid(path, host, "must be a DNS name, not an IP address"))
    msgs = wildcard_subdomain_errors(host) if "*" in host else dns1123_subdomain_errors(host)
    return errs + [invalid(path, host, m) for m in msgs]


# ---- Ingress -------------------------------------------------------------------------------


def _validate_backend(backend: dict, path: str) -> list[FieldError]:
    service, resource = backend.get("service"), backend.get("resource")
    if service is not None and resource is not None:
        return [invalid(path, "", "cannot set both resource and service backends")]
    errs: list[FieldError] = []
    if isinstance(resource, dict):
        if not resource.get("kind"):
            errs.append(required(f"{path}.resource.kind"))
        if not resource.get("name"):
            errs.append(required(f"{path}.resource.name"))
        if resource.get("apiGroup"):
            errs += [invalid(f"{path}.resource.apiGroup", resource["apiGroup"], m)
                     for m in dns1123_subdomain_errors(resource["apiGroup"])]
    elif isinstance(service, dict):
        name = service.get("name") or ""
        if not name:
            errs.append(required(f"{path}.service.name"))
        else:
            errs += [invalid(f"{path}.service.name", name, m) for m in dns1035_label_errors(name)]
        port = _d(service.get("port"))
        port_name, port_number = port.get("name") or "", port.get("number") or 0
        if port_name and port_number:
            errs.append(invalid(path, "", "cannot set both port name & port number"))
        elif port_name:
            errs += [invalid(f"{path}.service.port.name", port_name, m) for m in port_name_errors(port_name)]
        elif port_number:
            errs += [invalid(f"{path}.service.port.number", port_number, m) for m in port_num_errors(port_number)]
        else:
            errs.append(required(path, "port name or number is required"))
    else:
        errs.append(invalid(path, "", "resource or service backend is required"))
    return errs


def _validate_http_path(p: dict, path: str) -> list[FieldError]:
    path_type = p.get("pathType")
    if path_type is None:
        return [required(f"{path}.pathType", "pathType must be specified")]
    value = p.get("path") or ""
    errs: list[FieldError] = []
    if path_type in ("Exact", "Prefix"):
        if not value.startswith("/"):
            errs.append(invalid(f"{path}.path", value, "must be an absolute path"))
        if value:
            errs += [invalid(f"{path}.path", value, f"must not contain '{seq}'")
                     for seq in _INVALID_PATH_SEQUENCES if seq in value]
            errs += [invalid(f"{path}.path", value, f"cannot end with '{suffix}'")
                     for suffix in _INVALID_PATH_SUFFIXES if value.endswith(suffix)]
    elif path_type == "ImplementationSpecific":
        if value and not value.startswith("/"):
            errs.append(invalid(f"{path}.path", value, "must be an absolute path"))
    else:
        errs.append(not_supported(f"{path}.pathType", path_type, PATH_TYPES))
    return errs + _validate_backend(_d(p.get("backend")), f"{path}.backend")


def validate_ingress(ing: dict, old: dict | None = None) -> list[FieldError]:
    spec = _d(ing.get("spec"))
    errs: list[FieldError] = []
    rules = _l(spec.get("rules"))
    if not rules and spec.get("defaultBackend") is None:
        errs.append(invalid_go("spec", spec.get("rules"), "[]networking.IngressRule(nil)",
                               "either `defaultBackend` or `rules` must be specified"))
    if isinstance(spec.get("defaultBackend"), dict):
        errs += _validate_backend(spec["defaultBackend"], "spec.defaultBackend")
    for i, rule in enumerate(rules):
        if rule.get("host"):
            errs += _host_errors(rule["host"], f"spec.rules[{i}].host")
        http = rule.get("http")
        if isinstance(http, dict):
            paths = _l(http.get("paths"))
            if not paths:
                errs.append(required(f"spec.rules[{i}].http.paths"))
            for j, p in enumerate(paths):
                errs += _validate_http_path(p, f"spec.rules[{i}].http.paths[{j}]")
    for i, tls in enumerate(_l(spec.get("tls"))):
        for j, host in enumerate(tls.get("hosts") or []):
            msgs = wildcard_subdomain_errors(host) if "*" in host else dns1123_subdomain_errors(host)
            errs += [invalid(f"spec.tls[{i}].hosts[{j}]", host, m) for m in msgs]
        if tls.get("secretName"):
            errs += [invalid(f"spec.tls[{i}].secretName", tls["secretName"], m)
                     for m in dns1123_subdomain_errors(tls["secretName"])]
    class_name = spec.get("ingressClassName")
    if class_name is not None:
        errs += [invalid("spec.ingressClassName", class_name, m) for m in dns1123_subdomain_errors(str(class_name))]
    return errs


# ---- EndpointSlice -------------------------------------------------------------------------

ADDRESS_TYPES = ["FQDN", "IPv4", "IPv6"]


_HTTP_PATH_FMT = r"[A-Za-z0-9/\-._~%!$&'()*+,;=:]+"
_HTTP_PATH = re.compile(f"^{_HTTP_PATH_FMT}$")


def domain_prefixed_path_errors(value: str, path: str) -> list[FieldError]:
    """`acme.io/foo`: an RFC 1123 subdomain, a slash, then HTTP path characters."""
    if not value:
        return [required(path)]
    host, slash, rest = value.partition("/")
    if not slash or not host or not rest:
        return [invalid(path, value, 'must be a domain-prefixed path (such as "acme.io/foo")')]
    errs = [invalid(path, host, m) for m in dns1123_subdomain_errors(host)]
    if not _HTTP_PATH.match(rest):
        errs.append(invalid(path, rest, regex_error("Invalid path", _HTTP_PATH_FMT)))
    return errs


def validate_ingressclass(ic: dict, old: dict | None = None) -> list[FieldError]:
    controller = (ic.get("spec") or {}).get("controller") or ""
    errs: list[FieldError] = []
    if len(controller) > 250:
        errs.append(FieldError("TooLong", "spec.controller", controller, "may not be more than 250 bytes"))
    errs += domain_prefixed_path_errors(controller, "spec.controller")
    if old is not None and controller != ((old.get("spec") or {}).get("controller") or ""):
        errs.append(invalid("spec.controller", controller, "field is immutable"))
    return errs


def special_ip_errors(ip: ipaddress.IPv4Address | ipaddress.IPv6Address) -> list[str]:
    """Addresses no endpoint can have: traffic to them would never leave the node that sends it."""
    if ip.is_unspecified:
        return [f"may not be unspecified ({ip})"]
    if ip.is_loopback:
        return ["may not be in the loopback range (127.0.0.0/8, ::1/128)"]
    if ip in _LINK_LOCAL_MULTICAST_V4 if ip.version == 4 else ip.is_multicast and ip.packed[1] & 0x0F == 2:
        return ["may not be in the link-local multicast range (224.0.0.0/24, ff02::/10)"]
    if ip.is_link_local:
        return ["may not be in the link-local range (169.254.0.0/16, fe80::/10)"]
    return []


_LINK_LOCAL_MULTICAST_V4 = ipaddress.ip_network("224.0.0.0/24")


def validate_endpointslice(es: dict, old: dict | None = None) -> list[FieldError]:
    errs: list[FieldError] = []
    address_type = es.get("addressType") or ""
    if not address_type:
        errs.append(required("addressType"))
    elif address_type not in ADDRESS_TYPES:
        errs.append(not_supported("addressType", address_type, ADDRESS_TYPES))
    if old is not None and old.get("addressType") != address_type:
        errs.append(invalid("addressType", address_type, "field is immutable"))
    endpoints = _l(es.get("endpoints"))
    if len(endpoints) > 1000:
        errs.append(FieldError("TooMany", "endpoints", len(endpoints), "must have at most 1000 items"))
    for i, ep in enumerate(endpoints):
        addrs = ep.get("addresses") or []
        path = f"endpoints[{i}].addresses"
        if not addrs:
            errs.append(required(path, "must contain at least 1 address"))
        elif len(addrs) > 100:
            errs.append(FieldError("TooMany", path, len(addrs), "must have at most 100 items"))
        for j, addr in enumerate(addrs):
            ip = parse_ip(addr)
            if address_type == "IPv4" and (ip is None or ip.version != 4):
                errs.append(invalid(f"{path}[{j}]", addr, "must be a valid IPv4 address"))
            elif address_type == "IPv6" and (ip is None or ip.version != 6):
                errs.append(invalid(f"{path}[{j}]", addr, "must be a valid IPv6 address"))
            elif address_type == "FQDN":
                errs += [invalid(f"{path}[{j}]", addr, m) for m in dns1123_subdomain_errors(str(addr))]
            elif ip is not None:
                errs += [invalid(f"{path}[{j}]", addr, m) for m in special_ip_errors(ip)]
        hostname = ep.get("hostname")
        if hostname:
            errs += [invalid(f"endpoints[{i}].hostname", hostname, m) for m in dns1123_label_errors(hostname)]
        node_name = ep.get("nodeName")
        if node_name:
            errs += [invalid(f"endpoints[{i}].nodeName", node_name, m) for m in dns1123_subdomain_errors(node_name)]
    ports = _l(es.get("ports"))
    if len(ports) > 20000:
        errs.append(FieldError("TooMany", "ports", len(ports), "must have at most 20000 items"))
    names: set[str] = set()
    for i, port in enumerate(ports):
        name = port.get("name") or ""
        if name:
            errs += [invalid(f"ports[{i}].name", name, m) for m in dns1123_label_errors(name)]
        if name in names:
            errs.append(duplicate(f"ports[{i}].name", name))
        names.add(name)
        protocol = port.get("protocol")
        if protocol is None:
            errs.append(required(f"ports[{i}].protocol"))
        elif protocol not in ("SCTP", "TCP", "UDP"):
            errs.append(not_supported(f"ports[{i}].protocol", protocol, ["SCTP", "TCP", "UDP"]))
        if port.get("port") is not None:
            errs += [invalid(f"ports[{i}].port", port["port"], m) for m in port_num_errors(port["port"])]
    return errs


# ---- ConfigMap / Secret --------------------------------------------------------------------


def config_key_errors(key: str) -> list[str]:
    errs = []
    if len(key) > 253:
        errs.append(max_len_error(253))
    if not _CONFIG_KEY.match(key):
        errs.append(regex_error("a valid config key must consist of alphanumeric characters, '-', '_' or '.'",
                                "[-._a-zA-Z0-9]+", "key.name", "KEY_NAME", "key-name"))
    if key == ".":
        errs.append("must not be '.'")
    elif key == "..":
        errs.append("must not be '..'")
    elif key.startswith(".."):
        errs.append("must not start with '..'")
    return errs


def _validate_immutable_data(obj: dict, old: dict | None, fields: tuple[str, ...]) -> list[FieldError]:
    if old is None:
        return []
    errs: list[FieldError] = []
    if old.get("immutable") is True:
        if obj.get("immutable") is not True:
            errs.append(forbidden("immutable", "field is immutable when `immutable` is set"))
        for f in fields:
            if (obj.get(f) or {}) != (old.get(f) or {}):
                errs.append(forbidden(f, "field is immutable when `immutable` is set"))
    return errs


def validate_configmap(cm: dict, old: dict | None = None) -> list[FieldError]:
    errs: list[FieldError] = []
    data, binary = _d(cm.get("data")), _d(cm.get("binaryData"))
    for key in data:
        errs += [invalid(f"data[{key}]", key, m) for m in config_key_errors(key)]
    for key in binary:
        errs += [invalid(f"binaryData[{key}]", key, m) for m in config_key_errors(key)]
        if key in data:
            errs.append(invalid(f"data[{key}]", key, "duplicate of key present in binaryData"))
    return errs + _validate_immutable_data(cm, old, ("data", "binaryData"))


def validate_secret(secret: dict, old: dict | None = None) -> list[FieldError]:
    errs: list[FieldError] = []
    data = _d(secret.get("data"))
    for key in data:
        errs += [invalid("data[" + key + "]", key, m) for m in config_key_errors(key)]
    stype = secret.get("type") or "Opaque"
    if stype == "kubernetes.io/tls":
        for key in ("tls.crt", "tls.key"):
            if key not in data:
                errs.append(required(f"data[{key}]"))
    elif stype == "kubernetes.io/dockerconfigjson" and ".dockerconfigjson" not in data:
        errs.append(required("data[.dockerconfigjson]"))
    elif stype == "kubernetes.io/basic-auth" and "username" not in data and "password" not in data:
        errs.append(required("data[username or password]"))
    if old is not None and (old.get("type") or "Opaque") != stype:
        errs.append(invalid("type", stype, "field is immutable"))
    return errs + _validate_immutable_data(secret, old, ("data",))


# ---- NetworkPolicy -------------------------------------------------------------------------

NETWORK_POLICY_PROTOCOLS = ["TCP", "UDP", "SCTP"]
POLICY_TYPES = ["Ingress", "Egress"]


def _network_policy_port_errors(port: dict, path: str) -> list[FieldError]:
    errs: list[FieldError] = []
    protocol = port.get("protocol")
    if protocol is not None and protocol not in NETWORK_POLICY_PROTOCOLS:
        errs.append(not_supported(f"{path}.protocol", protocol, NETWORK_POLICY_PROTOCOLS))
    value, end = port.get("port"), port.get("endPort")
    if value is None:
        if end is not None:
            errs.append(invalid(f"{path}.endPort", end, "may not be specified when `port` is not specified"))
    elif isinstance(value, int):
        errs += [invalid(f"{path}.port", value, m) for m in port_num_errors(value)]
        if end is not None:
            if isinstance(end, int) and end < value:
                errs.append(invalid(f"{path}.endPort", end, "must be greater than or equal to `port`"))
            errs += [invalid(f"{path}.endPort", end, m) for m in port_num_errors(end)]
    else:
        if end is not None:
            errs.append(invalid(f"{path}.endPort", end, "may not be specified when `port` is non-numeric"))
        errs += [invalid(f"{path}.port", value, m) for m in port_name_errors(str(value))]
    return errs


def _ip_block_errors(block: dict, path: str) -> list[FieldError]:
    cidr = block.get("cidr")
    if not cidr:
        return [required(f"{path}.cidr")]
    errs = cidr_errors(cidr, f"{path}.cidr")
    if errs:
        return errs
    net = ipaddress.ip_network(cidr, strict=False)
    for i, text in enumerate(block.get("except") or []):
        except_errs = cidr_errors(text, f"{path}.except[{i}]")
        errs += except_errs
        if except_errs:
            continue
        hole = ipaddress.ip_network(text, strict=False)
        if hole.version != net.version or hole.network_address not in net or hole.prefixlen <= net.prefixlen:
            errs.append(invalid(f"{path}.except[{i}]", text, "must be a strict subset of `cidr`"))
    return errs


def _network_policy_peer_errors(peer: dict, path: str) -> list[FieldError]:
    errs: list[FieldError] = []
    kinds = 0
    for key in ("podSelector", "namespaceSelector"):
        if isinstance(peer.get(key), dict):
            kinds += 1
            errs += validate_label_selector(peer[key], f"{path}.{key}")
    if isinstance(peer.get("ipBlock"), dict):
        kinds += 1
        errs += _ip_block_errors(peer["ipBlock"], f"{path}.ipBlock")
        if kinds > 1:
            errs.append(forbidden(path, "may not specify both ipBlock and another peer"))
    if kinds == 0:
        errs.append(required(path, "must specify a peer"))
    return errs


def validate_network_policy(np: dict, old: dict | None = None) -> list[FieldError]:
    """KK ValidateNetworkPolicySpec: ports, peers, ipBlocks and policyTypes."""
    spec = _d(np.get("spec"))
    errs = validate_label_selector(_d(spec.get("podSelector")), "spec.podSelector")
    for direction, peers_key in (("ingress", "from"), ("egress", "to")):
        for i, rule in enumerate(_l(spec.get(direction))):
            rule = _d(rule)
            for j, port in enumerate(_l(rule.get("ports"))):
                errs += _network_policy_port_errors(_d(port), f"spec.{direction}[{i}].ports[{j}]")
            for j, peer in enumerate(_l(rule.get(peers_key))):
                errs += _network_policy_peer_errors(_d(peer), f"spec.{direction}[{i}].{peers_key}[{j}]")
    types = spec.get("policyTypes") or []
    if len(types) > len(POLICY_TYPES):
        errs.append(invalid("spec.policyTypes", types, "may not specify more than two policyTypes"))
        return errs
    for i, t in enumerate(types):
        if t not in POLICY_TYPES:
            errs.append(not_supported(f"spec.policyTypes[{i}]", t, POLICY_TYPES))
    return errs
