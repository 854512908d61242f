"""Kubernetes' atomic writer: a volume directory whose files change all at once.

The layout (the one the kubelet gives configMap, secret, downwardAPI and projected volumes):

    <dir>/..2025_01_31_12_00_00.1298498081/  the files of one version, written in full before use
    <dir>/..data -> ..2025_01_31_...           swapped by rename(2), which is atomic
    <dir>/<name> -> ..data/<name>              one symlink per top-level entry of the payload

A reader opening `<dir>/key` follows `..data` once, so it gets one version or the next, never a
half-written mix. Because the directory itself never changes identity, an update shows through a
bind mount of it made earlier (a mount of a single file, which is what a subPath is, does not see
it: as in Kubernetes, subPath mounts never update).
"""

from __future__ import annotations

import os
import posixpath
import secrets
import shutil
import time
from collections.abc import Mapping

from skiff.node.volumes import File

DATA_DIR = "..data"
_DATA_TMP = "..data_tmp"
DIR_MODE = 0o755


def check_payload_path(path: str) -> None:
    """A payload path stays inside the volume and clear of the writer's own `..` entries."""
    if not path:
        raise ValueError("invalid path: must not be empty")
    if posixpath.isabs(path):
        raise ValueError(f"invalid path: must be relative path: {path}")
    parts = path.split("/")
    if ".." in parts:
        raise ValueError(f"invalid path: must not contain '..': {path}")
    if path.startswith(".."):
        raise ValueError(f"invalid path: must not start with '..': {path}")
    if len(path) > 4096 or any(len(p) > 255 for p in parts):
        raise ValueError(f"invalid path: too long: {path[:64]}...")


def _read_current(directory: str) -> dict[str, File] | None:
    """The payload of the version `..data` points at, or None if there is none yet."""
    data = os.path.join(directory, DATA_DIR)
    if not os.path.islink(data):
        return None
    root = os.path.realpath(data)
    current: dict[str, File] = {}
    for base, _dirs, files in os.walk(root):
        for name in files:
            full = os.path.join(base, name)
            with open(full, "rb") as f:
                content = f.read()
            current[os.path.relpath(full, root)] = File(content, os.stat(full).st_mode & 0o7777)
    return current


def _new_version_dir(directory: str) -> str:
    """A new, empty version directory, named as the kubelet's are: the UTC time, then a random
    32-bit number in decimal (Go's os.MkdirTemp suffix)."""
    stamp = time.strftime("..%Y_%m_%d_%H_%M_%S.", time.gmtime())
    while True:
        version = os.path.join(directory, f"{stamp}{secrets.randbits(32)}")
        try:
            os.mkdir(version, 0o700)
        except FileExistsError:
            continue
        os.chmod(version, DIR_MODE)
        return version


def _top(path: str) -> str:
    return path.split("/", 1)[0]


def write_payload(directory: str | os.PathLike, payload: Mapping[str, File]) -> bool:
    """Make `directory` hold exactly `payload`; returns whether anything changed.

    Blocking (file I/O): run it on a thread from the event loop."""
    directory = os.fspath(directory)
    for path in payload:
        check_payload_path(path)
    os.makedirs(directory, mode=DIR_MODE, exist_ok=True)
    normalized = {posixpath.normpath(p): f for p, f in payload.items()}
    current = _read_current(directory)
    changed = current is None or current != normalized
    old_version = os.readlink(os.path.join(directory, DATA_DIR)) if current is not None else None
    if changed:
        version = _new_version_dir(directory)
        for path, f in normalized.items():
            full = os.path.join(version, path)
            os.makedirs(os.path.dirname(full), mode=DIR_MODE, exist_ok=True)
            fd = os.open(full, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, 0o600)
            try:
                _write_all(fd, f.data)
                os.fchmod(fd, f.mode & 0o777)  # explicit: the umask must not change what was asked
            finally:
                os.close(fd)
        tmp_link = os.path.join(directory, _DATA_TMP)
        if os.path.lexists(tmp_link):
            os.unlink(tmp_link)
        os.symlink(os.path.basename(version), tmp_link)
        os.rename(tmp_link, os.path.join(directory, DATA_DIR))
    # Entries the user sees: new ones appear, ones gone from the payload go.
    wanted = {_top(p) for p in normalized}
    for name in wanted:
        link = os.path.join(directory, name)
        if not os.path.lexists(link):
            os.symlink(posixpath.join(DATA_DIR, name), link)
    for name in os.listdir(directory):
        if name.startswith("..") or name in wanted:
            continue
        link = os.path.join(directory, name)
        if os.path.islink(link) and os.readlink(link).startswith(DATA_DIR + "/"):
            os.unlink(link)
    if changed and old_version and old_version != DATA_DIR:
        shutil.rmtree(os.path.join(directory, old_version), ignore_errors=True)
    return changed


def _write_all(fd: int, data: bytes) -> None:
    view = memoryview(data)
    while view:
        n = os.write(fd, view)
        view = view[n:]
