"""Who a container's processes run as, from the pod's and the container's securityContext (pure).

The kubelet hands the runtime a user, a primary group and supplementary groups: the container's
runAsUser/runAsGroup over the pod's, and the pod's fsGroup and supplementalGroups added to the
groups (with the primary group itself, as containerd lists them). Skiff's images all run as root,
so an unset runAsUser means root and an unset runAsGroup means group 0, as for an image whose
/etc/passwd does not name the user. allowPrivilegeEscalation: false sets no_new_privs.

Capabilities are containerd 2.x's (the runtime of kind's nodes): a container that is not privileged
gets the runtime's default set, changed by securityContext.capabilities as containerd's CRI plugin
changes it (add ALL, then drop ALL, then the named adds, then the named drops); a privileged one
gets every capability. A root process holds the set; one of another user holds none, but cannot
regain more than it (the bounding set).

runAsNonRoot is checked here as the kubelet checks it before creating the container; its error
is a CreateContainerConfigError with the kubelet's words.
"""

from __future__ import annotations

from dataclasses import dataclass

# Linux capability numbers (linux/capability.h), by the names Kubernetes uses (no CAP_ prefix).
CAPABILITIES = (
    "CHOWN", "DAC_OVERRIDE", "DAC_READ_SEARCH", "FOWNER", "FSETID", "KILL", "SETGID", "SETUID", "SETPCAP",
    "LINUX_IMMUTABLE", "NET_BIND_SERVICE", "NET_BROADCAST", "NET_ADMIN", "NET_RAW", "IPC_LOCK", "IPC_OWNER",
    "SYS_MODULE", "SYS_RAWIO", "SYS_CHROOT", "SYS_PTRACE", "SYS_PACCT", "SYS_ADMIN", "SYS_BOOT", "SYS_NICE",
    "SYS_RESOURCE", "SYS_TIME", "SYS_TTY_CONFIG", "MKNOD", "LEASE", "AUDIT_WRITE", "AUDIT_CONTROL", "SETFCAP",
    "MAC_OVERRIDE", "MAC_ADMIN", "SYSLOG", "WAKE_ALARM", "BLOCK_SUSPEND", "AUDIT_READ", "PERFMON", "BPF",
    "CHECKPOINT_RESTORE",
)
# containerd 2.x's default for a container that is not privileged (it dropped MKNOD, NET_RAW,
# SETFCAP, SYS_CHROOT and AUDIT_WRITE from the older Docker-like set; ping works through
# ping_group_range instead of NET_RAW).
DEFAULT_CAPABILITIES = ("CHOWN", "DAC_OVERRIDE", "FOWNER", "FSETID", "KILL", "SETGID", "SETUID", "SETPCAP",
                        "NET_BIND_SERVICE")  # in CAPABILITIES order


@dataclass(frozen=True)
class Credentials:
    uid: int
    gid: int
    groups: tuple[int, ...]
    no_new_privs: bool = False
    # The capabilities a root process of the container holds, in CAPABILITIES order.
    capabilities: tuple[str, ...] = DEFAULT_CAPABILITIES

    @property
    def privileged(self) -> bool:
        return set(self.capabilities) >= set(CAPABILITIES)

    def capability_mask(self) -> int:
        return sum(1 << CAPABILITIES.index(c) for c in self.capabilities)


def capabilities(sc: dict) -> tuple[str, ...]:
    """The container's capability set from its securityContext (containerd's CRI order)."""
    if sc.get("privileged"):
        return CAPABILITIES
    caps = sc.get("capabilities") or {}
    add = [str(c).upper().removeprefix("CAP_") for c in caps.get("add") or []]
    drop = [str(c).upper().removeprefix("CAP_") for c in caps.get("drop") or []]
    held = set(DEFAULT_CAPABILITIES)
    if "ALL" in add:
        held = set(CAPABILITIES)
    if "ALL" in drop:
        held = set()
    held |= {c for c in add if c != "ALL"}
    held -= set(drop)
    # runc skips names it does not know, with a warning; so does this.
    return tuple(c for c in CAPABILITIES if c in held)


class NonRootError(Exception):
    """runAsNonRoot cannot be honoured (the kubelet's CreateContainerConfigError)."""


def _pick(container_sc: dict, pod_sc: dict, field: str):
    value = container_sc.get(field)
    return pod_sc.get(field) if value is None else value


def _pod_ref(pod: dict) -> str:
    md = pod.get("metadata") or {}
    return f'{md.get("name", "")}_{md.get("namespace") or "default"}({md.get("uid", "")})'


def credentials(pod: dict, container: dict) -> Credentials:
    """Who the container's processes run as and what they may do. Raises NonRootError."""
    spec = pod.get("spec") or {}
    pod_sc = spec.get("securityContext") or {}
    sc = container.get("securityContext") or {}
    uid = _pick(sc, pod_sc, "runAsUser")
    gid = _pick(sc, pod_sc, "runAsGroup")
    if _pick(sc, pod_sc, "runAsNonRoot"):
        where = f'(pod: "{_pod_ref(pod)}", container: {container.get("name", "")})'
        if uid is None:
            raise NonRootError(f"container has runAsNonRoot and image will run as root {where}")
        if int(uid) == 0:
            raise NonRootError(f"container's runAsUser breaks non-root policy {where}")
    fs_group = pod_sc.get("fsGroup")
    supplemental = [int(g) for g in pod_sc.get("supplementalGroups") or []]
    no_new_privs = sc.get("allowPrivilegeEscalation") is False
    primary = int(gid or 0)
    groups = {primary, *supplemental}
    if fs_group is not None:
        groups.add(int(fs_group))
    return Credentials(int(uid or 0), primary, tuple(sorted(groups)), no_new_privs, capabilities(sc))


def fs_group(pod: dict) -> int | None:
    """The pod's fsGroup: the group that owns its volumes' files."""
    value = ((pod.get("spec") or {}).get("securityContext") or {}).get("fsGroup")
    return None if value is None else int(value)


def setpriv_argv(creds: Credentials) -> list[str]:
    """util-linux setpriv arguments that take on `creds` and exec what follows `--`.

    Only the bounding set needs setting: what root runs then holds exactly that set (execve gives
    root every capability the bounding set allows), and other users hold none."""
    argv = ["setpriv", f"--reuid={creds.uid}", f"--regid={creds.gid}",
            f"--groups={','.join(str(g) for g in creds.groups)}" if creds.groups else "--clear-groups"]
    if not creds.privileged:
        argv.append("--bounding-set=" + ",".join(["-all", *(f"+{c.lower()}" for c in creds.capabilities)]))
    if creds.no_new_privs:
        argv.append("--no-new-privs")
    return argv
