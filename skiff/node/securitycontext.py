"""Who a container's processes run as, from the pod's and the container's securityContext (pure).

The kubelet hands the runtime a user, a primary group and supplementary groups: the container's
runAsUser/runAsGroup over the pod's, and the pod's fsGroup and supplementalGroups added to the
groups (with the primary group itself, as containerd lists them). Skiff's images all run as root,
so an unset runAsUser means root and an unset runAsGroup means group 0, as for an image whose
/etc/passwd does not name the user. allowPrivilegeEscalation: false sets no_new_privs.

runAsNonRoot is checked here as the kubelet checks it before creating the container; its error
is a CreateContainerConfigError with the kubelet's words.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Credentials:
    uid: int
    gid: int
    groups: tuple[int, ...]
    no_new_privs: bool = False


class NonRootError(Exception):
    """runAsNonRoot cannot be honoured (the kubelet's CreateContainerConfigError)."""


def _pick(container_sc: dict, pod_sc: dict, field: str):
    value = container_sc.get(field)
    return pod_sc.get(field) if value is None else value


def _pod_ref(pod: dict) -> str:
    md = pod.get("metadata") or {}
    return f'{md.get("name", "")}_{md.get("namespace") or "default"}({md.get("uid", "")})'


def credentials(pod: dict, container: dict) -> Credentials | None:
    """The container's credentials, or None for the runtime's default (root, no extra groups, no
    no_new_privs): nothing in the securityContexts asks for anything else. Raises NonRootError."""
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
    if uid is None and gid is None and fs_group is None and not supplemental and not no_new_privs:
        return None
    primary = int(gid or 0)
    groups = {primary, *supplemental}
    if fs_group is not None:
        groups.add(int(fs_group))
    return Credentials(int(uid or 0), primary, tuple(sorted(groups)), no_new_privs)


def fs_group(pod: dict) -> int | None:
    """The pod's fsGroup: the group that owns its volumes' files."""
    value = ((pod.get("spec") or {}).get("securityContext") or {}).get("fsGroup")
    return None if value is None else int(value)


def setpriv_argv(creds: Credentials) -> list[str]:
    """util-linux setpriv arguments that take on `creds` and exec what follows `--`."""
    argv = ["setpriv", f"--reuid={creds.uid}", f"--regid={creds.gid}",
            f"--groups={','.join(str(g) for g in creds.groups)}" if creds.groups else "--clear-groups"]
    if creds.no_new_privs:
        argv.append("--no-new-privs")
    return argv
