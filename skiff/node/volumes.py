"""What a pod's volumes contain and where they are mounted, the way the kubelet works it out
(pure: the pod and the objects it references in, files and mount plans out; no I/O).

- `volume_kind` sorts a volume into what the node agent does with it: a directory of its own
  (emptyDir), a path of the host (hostPath), or files written by the atomic writer (configMap,
  secret, downwardAPI, projected). Anything else is refused with UnsupportedVolume.
- `render` is the payload of a files volume: relative path -> bytes and mode, from already fetched
  ConfigMaps/Secrets (`None` for one that does not exist) and already issued tokens. Errors carry
  the kubelet's wording, which the caller puts after `MountVolume.SetUp failed for volume "<name>" : `.
- `plan_mounts` merges every container's volumeMounts into one list, because a Skiff pod has one
  mount namespace for all its containers (a Kubernetes pod has one per container).
"""

from __future__ import annotations

import base64
import posixpath
from collections.abc import Callable, Mapping
from dataclasses import dataclass

from skiff.node import envvars

EMPTY_DIR = "emptyDir"
HOST_PATH = "hostPath"
FILES = ("configMap", "secret", "downwardAPI", "projected")
SUPPORTED = (EMPTY_DIR, HOST_PATH, *FILES)
DEFAULT_MODE = 0o644
# The plugin directory names of the kubelet's pod volume layout (pods/<uid>/volumes/<plugin>/<name>).
PLUGIN_DIRS = {"emptyDir": "kubernetes.io~empty-dir", "hostPath": "kubernetes.io~host-path",
               "configMap": "kubernetes.io~configmap", "secret": "kubernetes.io~secret",
               "downwardAPI": "kubernetes.io~downward-api", "projected": "kubernetes.io~projected"}
# The ServiceAccount admission step's volume: a hostNetwork pod without volumes does not get a warning for it.
API_ACCESS_PREFIX = "kube-api-access-"
# Every volume source field of core/v1 Volume, to name an unsupported one.
_ALL_SOURCES = ("persistentVolumeClaim", "nfs", "csi", "ephemeral", "image", "iscsi", "rbd", "cephfs",
                "glusterfs", "fc", "flexVolume", "flocker", "gcePersistentDisk", "awsElasticBlockStore",
                "azureDisk", "azureFile", "cinder", "vsphereVolume", "quobyte", "photonPersistentDisk",
                "portworxVolume", "scaleIO", "storageos", "gitRepo")


class VolumeError(Exception):
    """A volume cannot be set up (yet); the message is what the kubelet says after
    `MountVolume.SetUp failed for volume "<name>" : `."""


class UnsupportedVolume(VolumeError):
    """A volume type Skiff has no plugin for: the pod can never start on this node."""


class MountError(Exception):
    """The volumeMounts cannot be made as asked (an unknown volume, a bad subPath, or two containers
    wanting different things at one path, which Skiff's shared mount namespace cannot give)."""


@dataclass(frozen=True)
class File:
    data: bytes
    mode: int


Payload = dict[str, File]


@dataclass(frozen=True)
class TokenSource:
    """A projected serviceAccountToken source: what the kubelet asks the TokenRequest API for."""
    volume: str
    path: str
    audience: str
    expiration_seconds: int

    @property
    def key(self) -> str:
        return token_key(self.volume, self.path)


def token_key(volume: str, path: str) -> str:
    return f"{volume}/{path}"


# ---- what each volume is -------------------------------------------------------------------------------


def volume_kind(volume: dict) -> str:
    """One of SUPPORTED, or UnsupportedVolume naming the type."""
    for kind in SUPPORTED:
        if kind in volume and volume[kind] is not None:
            return kind
    other = next((k for k in _ALL_SOURCES if volume.get(k) is not None),
                 next((k for k in volume if k != "name"), "unknown"))
    # The kubelet's own words when no plugin handles a volume, then what Skiff would accept instead.
    raise UnsupportedVolume(f"no volume plugin matched: Skiff does not provide {other} volumes "
                            f"(it provides {', '.join(SUPPORTED)})")


def pod_volumes(pod: dict) -> list[dict]:
    return list((pod.get("spec") or {}).get("volumes") or [])


def referenced_objects(pod: dict) -> tuple[set[str], set[str]]:
    """Names of the ConfigMaps and Secrets the pod's volumes read."""
    cms: set[str] = set()
    secrets: set[str] = set()
    for v in pod_volumes(pod):
        sources = [v] + [s for s in ((v.get("projected") or {}).get("sources") or [])]
        for s in sources:
            if (s.get("configMap") or {}).get("name"):
                cms.add(s["configMap"]["name"])
            if (s.get("secret") or {}).get("secretName"):
                secrets.add(s["secret"]["secretName"])
            if (s.get("secret") or {}).get("name"):
                secrets.add(s["secret"]["name"])
    return cms, secrets


def token_sources(pod: dict) -> list[TokenSource]:
    out: list[TokenSource] = []
    for v in pod_volumes(pod):
        for s in (v.get("projected") or {}).get("sources") or []:
            t = s.get("serviceAccountToken")
            if t is not None:
                out.append(TokenSource(v.get("name", ""), t.get("path", ""), t.get("audience") or "",
                                       int(t.get("expirationSeconds") or 3600)))
    return out


def uses_pod_metadata(pod: dict) -> bool:
    """Whether any volume shows the pod's labels or annotations (so a change to them is an update)."""
    for v in pod_volumes(pod):
        items = list((v.get("downwardAPI") or {}).get("items") or [])
        for s in (v.get("projected") or {}).get("sources") or []:
            items += (s.get("downwardAPI") or {}).get("items") or []
        for item in items:
            path = (item.get("fieldRef") or {}).get("fieldPath", "")
            if path.startswith(("metadata.labels", "metadata.annotations")):
                return True
    return False


# ---- payloads -----------------------------------------------------------------------------------------


def _decode(value: str) -> bytes:
    return base64.b64decode(value)


def _configmap_data(cm: dict) -> dict[str, bytes]:
    data = {k: str(v).encode() for k, v in (cm.get("data") or {}).items()}
    for k, v in (cm.get("binaryData") or {}).items():
        data.setdefault(k, _decode(v))
    return data


def _secret_data(secret: dict) -> dict[str, bytes]:
    data = {k: _decode(v) for k, v in (secret.get("data") or {}).items()}
    for k, v in (secret.get("stringData") or {}).items():  # only in objects that never went through the API
        data[k] = str(v).encode()
    return data


def _key_payload(items: list[dict], data: dict[str, bytes], default_mode: int, optional: bool,
                 missing_key: str) -> Payload:
    """All keys, or the listed `items` (key -> path, with an optional mode of its own)."""
    if not items:
        return {k: File(v, default_mode) for k, v in data.items()}
    out: Payload = {}
    for item in items:
        key = item.get("key", "")
        if key not in data:
            if optional:
                continue
            raise VolumeError(f"{missing_key}: {key}")
        mode = item.get("mode")
        out[item.get("path") or key] = File(data[key], default_mode if mode is None else int(mode))
    return out


def _object_payload(src: dict, name: str, objects: Mapping[str, dict | None], default_mode: int, kind: str,
                    data: Callable[[dict], dict[str, bytes]], missing_key: str) -> Payload:
    """The files of a configMap or secret source (`kind` and `missing_key` in the kubelet's words)."""
    obj = objects.get(name)
    if obj is None:
        if src.get("optional"):
            return {}
        raise VolumeError(f'{kind} "{name}" not found')
    return _key_payload(src.get("items") or [], data(obj), default_mode, bool(src.get("optional")), missing_key)


def _configmap_payload(src: dict, configmaps: Mapping[str, dict | None], default_mode: int) -> Payload:
    return _object_payload(src, src.get("name", ""), configmaps, default_mode, "configmap", _configmap_data,
                           "configmap references non-existent config key")


def _secret_payload(src: dict, name: str, secrets: Mapping[str, dict | None], default_mode: int) -> Payload:
    return _object_payload(src, name, secrets, default_mode, "secret", _secret_data,
                           "references non-existent secret key")


def _container(pod: dict, name: str) -> dict | None:
    spec = pod.get("spec") or {}
    for c in (spec.get("containers") or []) + (spec.get("initContainers") or []):
        if c.get("name") == name:
            return c
    return None


def downward_value(pod: dict, item: dict, node_allocatable: Mapping[str, str]) -> bytes:
    """One downwardAPI item's file content, as the kubelet writes it (no trailing newline)."""
    if item.get("fieldRef"):
        path = item["fieldRef"].get("fieldPath", "")
        try:
            return envvars.field_ref_value(pod, path).encode()
        except envvars.EnvError as e:
            raise VolumeError(str(e)) from None
    ref = item.get("resourceFieldRef")
    if ref:
        container = _container(pod, ref.get("containerName", ""))
        if container is None:
            raise VolumeError(f"container {ref.get('containerName', '')} not found in the pod")
        try:
            return envvars.resource_field_value(container, ref, node_allocatable).encode()
        except envvars.EnvError as e:
            raise VolumeError(str(e)) from None
    raise VolumeError(f"downwardAPI item {item.get('path', '')!r} has neither fieldRef nor resourceFieldRef")


def _downward_payload(items: list[dict], pod: dict, default_mode: int,
                      node_allocatable: Mapping[str, str]) -> Payload:
    out: Payload = {}
    errors: list[str] = []
    for item in items:
        try:
            data = downward_value(pod, item, node_allocatable)
        except VolumeError as e:
            errors.append(str(e))
            continue
        mode = item.get("mode")
        out[item.get("path", "")] = File(data, default_mode if mode is None else int(mode))
    if errors:
        raise VolumeError(_aggregate(errors))
    return out


def _aggregate(errors: list[str]) -> str:
    """How Kubernetes prints several errors as one (utilerrors.NewAggregate)."""
    return errors[0] if len(errors) == 1 else "[" + ", ".join(errors) + "]"


def render(pod: dict, volume: dict, configmaps: Mapping[str, dict | None], secrets: Mapping[str, dict | None],
           tokens: Mapping[str, str], node_allocatable: Mapping[str, str] | None = None,
           token_errors: Mapping[str, str] | None = None) -> Payload:
    """The files of a configMap, secret, downwardAPI or projected volume.

    `tokens` holds the issued service account tokens by TokenSource.key; for one missing from it,
    `token_errors` says why (the TokenRequest's failure), and the volume fails with that."""
    alloc = node_allocatable or {}
    kind = volume_kind(volume)
    src = volume.get(kind) or {}
    mode = int(src.get("defaultMode") if src.get("defaultMode") is not None else DEFAULT_MODE)
    if kind == "configMap":
        return _configmap_payload(src, configmaps, mode)
    if kind == "secret":
        return _secret_payload(src, src.get("secretName", ""), secrets, mode)
    if kind == "downwardAPI":
        return _downward_payload(src.get("items") or [], pod, mode, alloc)
    if kind != "projected":
        raise ValueError(f"volume {volume.get('name')!r} is a {kind} volume, not one with files")
    out: Payload = {}
    errors: list[str] = []
    for s in src.get("sources") or []:
        try:
            if s.get("configMap") is not None:
                out.update(_configmap_payload(s["configMap"], configmaps, mode))
            elif s.get("secret") is not None:
                out.update(_secret_payload(s["secret"], s["secret"].get("name", ""), secrets, mode))
            elif s.get("downwardAPI") is not None:
                out.update(_downward_payload(s["downwardAPI"].get("items") or [], pod, mode, alloc))
            elif s.get("serviceAccountToken") is not None:
                t = s["serviceAccountToken"]
                key = token_key(volume.get("name", ""), t.get("path", ""))
                if key not in tokens:
                    raise VolumeError((token_errors or {}).get(key) or f"failed to fetch token: no token for {key}")
                out[t.get("path", "")] = File(tokens[key].encode(), mode)
            elif s.get("clusterTrustBundle") is not None:
                raise VolumeError("clusterTrustBundle projections are not supported by Skiff")
        except VolumeError as e:
            # The kubelet collects every source's error, so one message names them all.
            errors.append(str(e))
    if errors:
        raise VolumeError(_aggregate(errors))
    return out


# ---- mounts -------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class MountPlan:
    """One mount of the pod's single mount namespace: which volume (and part of it), where, how."""
    volume: str
    sub_path: str  # relative, "" for the whole volume
    target: str
    read_only: bool
    containers: tuple[str, ...]


def check_sub_path(sub_path: str) -> None:
    """A subPath stays inside its volume: relative, no `..` step (as API validation and the kubelet
    insist)."""
    if posixpath.isabs(sub_path):
        raise MountError(f"subPath {sub_path!r} must be a relative path")
    if ".." in sub_path.split("/"):
        raise MountError(f"subPath {sub_path!r} must not contain '..'")


def plan_mounts(pod: dict, envs: Mapping[str, Mapping[str, str]] | None = None) -> list[MountPlan]:
    """Every container's and init container's volumeMounts merged into one list, parents before
    what is mounted inside them.

    `envs` (container name -> environment) expands subPathExpr; a container with a subPathExpr
    missing from it is an error. Files volumes (configMap, secret, downwardAPI, projected) are
    read-only whatever the mount says, as in Kubernetes. Two containers that mount different
    things (another volume, subPath or readOnly) at one path are a MountError: a Skiff pod has
    one mount namespace for all its containers."""
    spec = pod.get("spec") or {}
    kinds: dict[str, str] = {}
    for v in spec.get("volumes") or []:
        try:
            kinds[v.get("name", "")] = volume_kind(v)
        except UnsupportedVolume:
            kinds[v.get("name", "")] = "unsupported"
    by_target: dict[str, MountPlan] = {}
    for c in (spec.get("initContainers") or []) + (spec.get("containers") or []):
        cname = c.get("name", "")
        for m in c.get("volumeMounts") or []:
            vname = m.get("name", "")
            if vname not in kinds:
                raise MountError(f'container "{cname}": volumeMount "{vname}" names no volume of the pod')
            target = posixpath.normpath(m.get("mountPath", "") or "")
            if not posixpath.isabs(target):
                raise MountError(f'container "{cname}": mountPath {m.get("mountPath")!r} must be an absolute path')
            sub_path = m.get("subPath") or ""
            if m.get("subPathExpr"):
                env = (envs or {}).get(cname)
                if env is None:
                    raise MountError(f'container "{cname}": no environment to expand subPathExpr')
                sub_path = envvars.expand(m["subPathExpr"], env)
            if sub_path:
                check_sub_path(sub_path)
                sub_path = posixpath.normpath(sub_path)
            read_only = bool(m.get("readOnly")) or kinds[vname] in FILES
            plan = MountPlan(vname, "" if sub_path == "." else sub_path, target, read_only, (cname,))
            known = by_target.get(target)
            if known is None:
                by_target[target] = plan
                continue
            if (known.volume, known.sub_path, known.read_only) != (plan.volume, plan.sub_path, plan.read_only):
                raise MountError(
                    f'containers "{known.containers[0]}" and "{cname}" mount different things at {target} '
                    f"({_describe(known)} and {_describe(plan)}): all containers of a Skiff pod share one "
                    "mount namespace, so they must agree on what each mountPath shows")
            by_target[target] = MountPlan(known.volume, known.sub_path, known.target, known.read_only,
                                          known.containers + (cname,))
    # A parent mount first, so that one inside it lands on top of it.
    return sorted(by_target.values(), key=lambda p: (p.target.count("/") if p.target != "/" else 0, p.target))


def _describe(plan: MountPlan) -> str:
    what = f'volume "{plan.volume}"'
    if plan.sub_path:
        what += f" subPath {plan.sub_path}"
    return what + (" read-only" if plan.read_only else " read-write")


def unmounted_on_host_network(pod: dict) -> list[str]:
    """Volumes a hostNetwork pod asks to mount that Skiff cannot give it when the pod must share the
    node agent's mount namespace (no fork server to pin one of its own), leaving out the automatic
    kube-api-access one."""
    mounted: set[str] = set()
    spec = pod.get("spec") or {}
    for c in (spec.get("initContainers") or []) + (spec.get("containers") or []):
        mounted.update(m.get("name", "") for m in c.get("volumeMounts") or [])
    return sorted(v for v in mounted if not v.startswith(API_ACCESS_PREFIX))
