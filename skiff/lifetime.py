"""Processes that must not outlive their parent: the kernel's parent-death signal.

A child started by a Skiff process (the controller manager under the control plane, the fork
server under a node agent, a container under the fork server) asks the kernel to signal it when
its parent dies, so a `kill -9` of the parent leaves no orphan acting on the cluster.
"""

from __future__ import annotations

import ctypes
import os
import select

_PR_SET_PDEATHSIG = 1
_libc = ctypes.CDLL(None, use_errno=True)
_libc.prctl.argtypes = [ctypes.c_int, ctypes.c_ulong, ctypes.c_void_p, ctypes.c_ulong, ctypes.c_ulong]


def die_with_parent(sig: int, parent_pid: int, parent_pidfd: int | None = None) -> bool:
    """Have the kernel send `sig` to this process when its parent exits. False if the parent is not
    `parent_pid` any more: it died before the request was made, and no signal will come.

    A process whose parent is outside its PID namespace sees its parent's pid as 0 whether or not
    the parent lives; `parent_pidfd` (a pidfd of the parent, inherited) answers for it then."""
    if _libc.prctl(_PR_SET_PDEATHSIG, sig, None, 0, 0) != 0:
        err = ctypes.get_errno()
        raise OSError(err, f"prctl(PR_SET_PDEATHSIG): {os.strerror(err)}")
    ppid = os.getppid()
    if ppid == 0 and parent_pidfd is not None:
        readable, _, _ = select.select([parent_pidfd], [], [], 0)  # a pidfd turns readable at exit
        return not readable
    return ppid == parent_pid
