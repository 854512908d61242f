"""The PID namespace a container runs in, chosen from its pod's spec as a CRI runtime chooses it.

- By default each container has a PID namespace of its own: its program is PID 1 there, `ps` in
  it lists only its own processes, and nothing in it can see or signal the node's processes. Its
  mount namespace is its own too (a copy of the pod's), so that /proc shows that PID namespace.
- `shareProcessNamespace: true` gives the pod one PID namespace for all its containers, whose
  PID 1 is the pod's pause process (skiff.node.sandbox keeps it); the pod's mount namespace has
  its /proc.
- `hostPID: true` keeps the containers in the node's PID namespace, which here is the host's.

A process is born into the "PID namespace for children" of the thread that forks it, so whoever
starts a container sets that around the fork (children_born_in) and sets it back at once. Only
the calling thread changes: other threads of the node agent fork into the host's as before.

PID 1 of a namespace gets no signal its program has no handler for, except SIGKILL, from outside
the namespace: a container whose program ignores SIGTERM (`sleep`, a shell) stops only when its
grace period ends, exactly as on Kubernetes.
"""

from __future__ import annotations

import contextlib
import ctypes
import os
from collections.abc import Iterator, Mapping

CLONE_NEWPID = 0x20000000

# What a container's PID namespace is, in the CRI's words (NamespaceMode).
CONTAINER = "container"
POD = "pod"
NODE = "node"

_libc = ctypes.CDLL(None, use_errno=True)
_libc.unshare.argtypes = [ctypes.c_int]
_libc.setns.argtypes = [ctypes.c_int, ctypes.c_int]


def mode_of(pod: Mapping) -> str:
    """The PID namespace mode of `pod`'s containers."""
    spec = pod.get("spec") or {}
    if spec.get("hostPID"):
        return NODE
    if spec.get("shareProcessNamespace"):
        return POD
    return CONTAINER


def _check(result: int, what: str) -> None:
    if result != 0:
        err = ctypes.get_errno()
        raise OSError(err, f"{what}: {os.strerror(err)}")


@contextlib.contextmanager
def children_born_in(target: str | None) -> Iterator[None]:
    """Within the block, processes this thread forks are born in the PID namespace at path
    `target` (e.g. /proc/<pid>/ns/pid), or as PID 1 of a new one when `target` is None (only the
    first child forked gets it). Raises OSError when the namespace cannot be set."""
    own = os.open("/proc/thread-self/ns/pid", os.O_RDONLY | os.O_CLOEXEC)
    try:
        if target is None:
            _check(_libc.unshare(CLONE_NEWPID), "unshare(CLONE_NEWPID)")
        else:
            fd = os.open(target, os.O_RDONLY | os.O_CLOEXEC)
            try:
                _check(_libc.setns(fd, CLONE_NEWPID), f"setns {target}")
            finally:
                os.close(fd)
        try:
            yield
        finally:
            # Back to our own, which is always allowed: it is the thread's active namespace.
            _check(_libc.setns(own, CLONE_NEWPID), "setns back to the node's PID namespace")
    finally:
        os.close(own)
