"""A container's environment, computed the way the kubelet does it (pure: objects in, dict out).

Order of precedence, as upstream: `envFrom` sources first (later sources win), then `env` entries
(whose `$(VAR)` references expand against what is defined so far plus the service variables),
then the Docker-link style service variables for names not already defined.

ConfigMaps and Secrets are passed in already fetched (`None` for one that does not exist), so
this module never touches the API; `referenced_objects` says which ones to fetch.
"""

from __future__ import annotations

import base64
import math
import re
from collections.abc import Mapping
from decimal import Decimal

from skiff.api import quantity

MASTER_SERVICE_NAMESPACE = "default"
MASTER_SERVICES = ("kubernetes",)


class EnvError(Exception):
    """A non-optional reference could not be resolved (the kubelet's CreateContainerConfigError)."""


# ---- service links ---------------------------------------------------------------------------------


def _env_name(name: str) -> str:
    return name.replace("-", "_").upper()


def _ip_set(service: dict) -> bool:
    ip = service.get("spec", {}).get("clusterIP")
    return bool(ip) and ip != "None"


def services_for_pod(services: list[dict], namespace: str, enable_service_links: bool) -> list[dict]:
    """The Services whose variables a pod sees: the master `kubernetes` Service always, and, with
    enableServiceLinks, every Service of the pod's namespace (which wins on a name clash)."""
    chosen: dict[str, dict] = {}
    for svc in services:
        if not _ip_set(svc):
            continue
        md = svc.get("metadata", {})
        name = md.get("name", "")
        if md.get("namespace") == MASTER_SERVICE_NAMESPACE and name in MASTER_SERVICES:
            chosen.setdefault(name, svc)
        elif md.get("namespace") == namespace and enable_service_links:
            chosen[name] = svc
    return [chosen[k] for k in sorted(chosen)]


def service_env(services: list[dict]) -> dict[str, str]:
    """`<NAME>_SERVICE_HOST`, `<NAME>_SERVICE_PORT[_<PORTNAME>]` and the Docker link variables."""
    env: dict[str, str] = {}
    for svc in services:
        if not _ip_set(svc):
            continue
        spec = svc.get("spec", {})
        ip = spec["clusterIP"]
        prefix = _env_name(svc["metadata"]["name"])
        ports = spec.get("ports") or []
        env[f"{prefix}_SERVICE_HOST"] = ip
        if ports:
            env[f"{prefix}_SERVICE_PORT"] = str(ports[0].get("port"))
        for p in ports:
            if p.get("name"):
                env[f"{prefix}_SERVICE_PORT_{_env_name(p['name'])}"] = str(p.get("port"))
        host = f"[{ip}]" if ":" in ip else ip
        for i, p in enumerate(ports):
            proto = (p.get("protocol") or "TCP")
            url = f"{proto.lower()}://{host}:{p.get('port')}"
            if i == 0:
                env[f"{prefix}_PORT"] = url
            pp = f"{prefix}_PORT_{p.get('port')}_{proto.upper()}"
            env[pp] = url
            env[f"{pp}_PROTO"] = proto.lower()
            env[f"{pp}_PORT"] = str(p.get("port"))
            env[f"{pp}_ADDR"] = ip
    return env


# ---- $(VAR) expansion ----------------------------------------------------------------------------------


def expand(text: str, mapping: Mapping[str, str]) -> str:
    """Kubernetes' `$(VAR)` syntax: defined names are replaced, `$$` escapes a dollar, anything
    else (undefined names, unterminated references) is left as written."""
    out: list[str] = []
    i, n = 0, len(text)
    while i < n:
        ch = text[i]
        if ch == "$" and i + 1 < n:
            nxt = text[i + 1]
            if nxt == "$":
                out.append("$")
                i += 2
                continue
            if nxt == "(":
                end = text.find(")", i + 2)
                if end >= 0:
                    name = text[i + 2:end]
                    if name in mapping:
                        out.append(mapping[name])
                    else:
                        out.append(text[i:end + 1])
                    i = end + 1
                    continue
        out.append(ch)
        i += 1
    return "".join(out)


# ---- fieldRef and resourceFieldRef ---------------------------------------------------------------------

_GO_ESCAPES = {"\a": "\\a", "\b": "\\b", "\f": "\\f", "\n": "\\n", "\r": "\\r", "\t": "\\t",
               "\v": "\\v", "\\": "\\\\", '"': '\\"'}


def go_quote(text: str) -> str:
    """A string as Go's %q prints it (strconv.Quote), which is how the kubelet writes label and
    annotation values into downward API files: readers of those files parse that format."""
    out = ['"']
    for ch in text:
        if ch in _GO_ESCAPES:
            out.append(_GO_ESCAPES[ch])
        elif ch.isprintable() or ch == " ":
            out.append(ch)
        elif ord(ch) < 0x80:
            out.append(f"\\x{ord(ch):02x}")
        elif ord(ch) <= 0xFFFF:
            out.append(f"\\u{ord(ch):04x}")
        else:
            out.append(f"\\U{ord(ch):08x}")
    out.append('"')
    return "".join(out)


def format_map(items: Mapping[str, str]) -> str:
    """All labels (or annotations) as the downward API shows them: `key="value"` lines, sorted by key."""
    return "\n".join(f"{k}={go_quote(str(v))}" for k, v in sorted(items.items()))


_SUBSCRIPT = re.compile(r"^metadata\.(labels|annotations)\['(.*)'\]$")


def field_ref_value(pod: dict, path: str) -> str:
    md = pod.get("metadata", {})
    spec = pod.get("spec", {})
    status = pod.get("status", {})
    m = _SUBSCRIPT.match(path)
    if m:
        return str((md.get(m.group(1)) or {}).get(m.group(2), ""))
    simple = {
        "metadata.name": md.get("name"),
        "metadata.namespace": md.get("namespace"),
        "metadata.uid": md.get("uid"),
        "spec.nodeName": spec.get("nodeName"),
        "spec.serviceAccountName": spec.get("serviceAccountName") or spec.get("serviceAccount"),
        "status.podIP": status.get("podIP"),
        "status.hostIP": status.get("hostIP"),
    }
    if path in simple:
        return str(simple[path] or "")
    if path == "status.podIPs":
        return ",".join(p.get("ip", "") for p in status.get("podIPs") or [])
    if path == "status.hostIPs":
        return ",".join(p.get("ip", "") for p in status.get("hostIPs") or [])
    if path in ("metadata.labels", "metadata.annotations"):
        return format_map(md.get(path.split(".")[1]) or {})
    raise EnvError(f"unsupported fieldRef fieldPath {path!r}")


def parse_quantity(q: str | int | float) -> Decimal:
    try:
        return quantity.parse_quantity(q)
    except ValueError as e:
        raise EnvError(str(e)) from None


def resource_field_value(container: dict, ref: dict, node_allocatable: Mapping[str, str]) -> str:
    """requests.* / limits.* of a container divided by the divisor, rounded up as the kubelet does;
    unset limits fall back to the node's allocatable amount."""
    resource = ref.get("resource", "")
    kind, _, name = resource.partition(".")
    res = container.get("resources") or {}
    value = (res.get(kind) or {}).get(name)
    if value is None and kind == "requests":
        value = (res.get("limits") or {}).get(name)
    if value is None:
        value = node_allocatable.get(name) if kind == "limits" else "0"
    if value is None:
        raise EnvError(f"unsupported resourceFieldRef resource {resource!r}")
    divisor = parse_quantity(ref.get("divisor") or "1")
    if divisor == 0:
        divisor = Decimal(1)
    return str(math.ceil(parse_quantity(value) / divisor))


# ---- ConfigMaps and Secrets ------------------------------------------------------------------------------


def referenced_objects(container: dict) -> tuple[set[str], set[str]]:
    """Names of the ConfigMaps and Secrets a container's env/envFrom read."""
    cms: set[str] = set()
    secrets: set[str] = set()
    for e in container.get("env") or []:
        vf = e.get("valueFrom") or {}
        if vf.get("configMapKeyRef", {}).get("name"):
            cms.add(vf["configMapKeyRef"]["name"])
        if vf.get("secretKeyRef", {}).get("name"):
            secrets.add(vf["secretKeyRef"]["name"])
    for src in container.get("envFrom") or []:
        if (src.get("configMapRef") or {}).get("name"):
            cms.add(src["configMapRef"]["name"])
        if (src.get("secretRef") or {}).get("name"):
            secrets.add(src["secretRef"]["name"])
    return cms, secrets


def _object_data(obj: dict, secret: bool) -> dict[str, str]:
    data: dict[str, str] = {}
    if secret:
        for k, v in (obj.get("data") or {}).items():
            data[k] = base64.b64decode(v).decode("utf-8", errors="replace")
        data.update(obj.get("stringData") or {})
    else:
        data.update({k: str(v) for k, v in (obj.get("data") or {}).items()})
        for k, v in (obj.get("binaryData") or {}).items():
            data.setdefault(k, base64.b64decode(v).decode("utf-8", errors="replace"))
    return data


_ENV_NAME = re.compile(r"^[-._a-zA-Z][-._a-zA-Z0-9]*$")


def container_env(
    pod: dict,
    container: dict,
    services: list[dict],
    configmaps: Mapping[str, dict | None],
    secrets: Mapping[str, dict | None],
    node_allocatable: Mapping[str, str] | None = None,
) -> dict[str, str]:
    """The environment variables Kubernetes defines for `container` (without the image's own).

    `services`: every Service the agent knows (filtered here by namespace and enableServiceLinks).
    Raises EnvError for a missing non-optional ConfigMap/Secret or key, with the kubelet's message.
    """
    ns = pod.get("metadata", {}).get("namespace", "default")
    links = pod.get("spec", {}).get("enableServiceLinks", True) is not False
    svc_env = service_env(services_for_pod(services, ns, links))
    env: dict[str, str] = {}

    for src in container.get("envFrom") or []:
        prefix = src.get("prefix") or ""
        for kind, secret in (("configMapRef", False), ("secretRef", True)):
            ref = src.get(kind)
            if not ref:
                continue
            name = ref.get("name", "")
            obj = (secrets if secret else configmaps).get(name)
            if obj is None:
                if ref.get("optional"):
                    continue
                raise EnvError(f'{"secret" if secret else "configmap"} "{name}" not found')
            for k, v in _object_data(obj, secret).items():
                key = prefix + k
                if _ENV_NAME.match(key):  # the kubelet skips invalid names (with an event)
                    env[key] = v

    for e in container.get("env") or []:
        name = e.get("name", "")
        if "valueFrom" not in e or e.get("value"):
            env[name] = expand(e.get("value") or "", {**svc_env, **env})
            continue
        vf = e["valueFrom"] or {}
        if "fieldRef" in vf:
            env[name] = field_ref_value(pod, vf["fieldRef"].get("fieldPath", ""))
        elif "resourceFieldRef" in vf:
            ref = vf["resourceFieldRef"]
            target = container
            if ref.get("containerName"):
                for c in pod.get("spec", {}).get("containers") or []:
                    if c.get("name") == ref["containerName"]:
                        target = c
            env[name] = resource_field_value(target, ref, node_allocatable or {})
        else:
            for kind, secret, label in (("configMapKeyRef", False, "ConfigMap"), ("secretKeyRef", True, "Secret")):
                ref = vf.get(kind)
                if not ref:
                    continue
                obj_name, key = ref.get("name", ""), ref.get("key", "")
                obj = (secrets if secret else configmaps).get(obj_name)
                if obj is None:
                    if ref.get("optional"):
                        break
                    raise EnvError(f'{"secret" if secret else "configmap"} "{obj_name}" not found')
                data = _object_data(obj, secret)
                if key not in data:
                    if ref.get("optional"):
                        break
                    raise EnvError(f"couldn't find key {key} in {label} {ns}/{obj_name}")
                env[name] = data[key]
                break

    for k, v in svc_env.items():
        env.setdefault(k, v)
    return env


def expand_command(container: dict, env: Mapping[str, str]) -> tuple[list[str] | None, list[str] | None]:
    """command and args with `$(VAR)` references to the container's environment expanded."""
    command = container.get("command")
    args = container.get("args")
    return ([expand(c, env) for c in command] if command is not None else None,
            [expand(a, env) for a in args] if args is not None else None)
