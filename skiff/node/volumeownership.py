"""A pod's fsGroup applied to its volumes, as the kubelet's SetVolumeOwnership does.

Every file and directory of the volume gets the fsGroup as its group and the group's read (and,
for a volume the pod may write, write) permission; directories also get execute and setgid, so
that files made in them later inherit the group. Symlinks change group only. The configMap,
secret, downwardAPI and projected kinds count as read-only here, as they do for the kubelet.
"""

from __future__ import annotations

import os
import stat

_RW = 0o660
_RO = 0o440
_EXEC = 0o110


def _apply(path: str, gid: int, mask: int, st: os.stat_result) -> None:
    os.lchown(path, -1, gid)
    if stat.S_ISLNK(st.st_mode):
        return
    mode = stat.S_IMODE(st.st_mode) | mask
    if stat.S_ISDIR(st.st_mode):
        mode |= _EXEC | stat.S_ISGID
    os.chmod(path, mode)


def set_volume_ownership(directory: str, gid: int, read_only: bool) -> None:
    """Give `directory` and everything below it to group `gid` (see the module docstring)."""
    mask = _RO if read_only else _RW
    _apply(directory, gid, mask, os.lstat(directory))
    for base, dirs, files in os.walk(directory):
        for name in dirs + files:
            path = os.path.join(base, name)
            _apply(path, gid, mask, os.lstat(path))
