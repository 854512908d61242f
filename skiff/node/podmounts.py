"""Volumes in a pod's mount namespace (run by the fork server, or by its helper process, inside
the pod's namespace).

A volume is a bind mount of its host directory (or file) at its target, made in the pod's own
mount namespace, so containers and exec sessions (which join that namespace) see the directory's
live contents, and the host's mount table never changes (the namespace is a slave of the host's).

A container runtime creates a missing target in the container's root file system. A pod's root
here is the host's, which must not change, so the nearest existing ancestor of a missing target
gets a copy-on-write view private to the pod: an overlay whose lower layer is that directory and
whose upper and work directories are on a tmpfs that the overlay covers (the pod cannot reach it,
and it goes away with the namespace); the mounts below the ancestor are re-attached on top of
the overlay, which would otherwise hide them (an overlay shows its lower directory's own file
system only). The target is then made in the upper layer. Why this way: it changes the smallest
part of the tree (for the ServiceAccount token at /var/run/secrets/..., the pod's /run), costs
about 0.1 ms, and leaves nothing on the host to create or remove (unlike a mount point prepared
on the host); an overlay of the whole root and pivot_root would re-attach every mount of the
host for every pod. A missing target inside one of the pod's own directory volumes (or inside an
overlay already made) is made there, as a runtime's mkdir does: it lands in the volume's directory.
Writes of the pod under an overlaid directory go to memory (the tmpfs), not to the host.
"""

from __future__ import annotations

import contextlib
import errno
import os
import stat
from collections.abc import Mapping, Sequence

from skiff.net.ns import (
    MS_BIND,
    MS_REC,
    attach_mount,
    clone_mount_tree,
    mount,
    mount_points,
    new_mount,
    remount_read_only,
    top_mount_points_under,
)


class VolumeMountError(Exception):
    """A volume could not be mounted into a pod's mount namespace (in the server or the helper)."""


_O_PATH = os.O_PATH | os.O_CLOEXEC


class _PodView:
    """The volume-mounting state of the current (the pod's) mount namespace: its scratch tmpfs,
    and where mount points may be made without touching the host (directory, st_dev)."""

    def __init__(self, stack: contextlib.ExitStack) -> None:
        self._stack = stack
        self._scratch: int | None = None
        self._scratch_attached = False
        self._layers = 0
        self._writable: list[tuple[str, int]] = []

    def keep(self, fd: int) -> int:
        """Close `fd` when the work is over."""
        self._stack.callback(os.close, fd)
        return fd

    def add_writable(self, directory: str) -> None:
        self._writable.append((directory, os.stat(directory).st_dev))

    def _may_create_in(self, directory: str) -> bool:
        # The device tells a directory of the overlay or volume from one of a mount re-attached
        # below it (which is the host's).
        dev = os.stat(directory).st_dev
        return any((directory == top or directory.startswith(top.rstrip("/") + "/")) and dev == top_dev
                   for top, top_dev in self._writable)

    def mount_point(self, target: str, directory: bool) -> str:
        """The path to mount on for `target`, resolved in this view as a runtime resolves it
        (symlinks followed), made in a private place of the pod's view when missing."""
        path = os.path.realpath(target)
        if path == "/":
            raise OSError(errno.EINVAL, "a volume cannot be mounted over /")
        if path == "/proc" or path.startswith("/proc/"):
            raise OSError(errno.EPERM, f"{path} is inside /proc, where volumes cannot be mounted")
        try:
            st = os.stat(path)
        except FileNotFoundError:
            self._create(path, directory)
            return path
        if directory and not stat.S_ISDIR(st.st_mode):
            raise OSError(errno.ENOTDIR, f"{path} is not a directory (the volume is one)")
        if not directory and stat.S_ISDIR(st.st_mode):
            raise OSError(errno.EISDIR, f"{path} is a directory (the volume is a file)")
        return path

    def _create(self, path: str, directory: bool) -> None:
        ancestor = os.path.dirname(path)
        while not os.path.lexists(ancestor):
            ancestor = os.path.dirname(ancestor)
        if not os.path.isdir(ancestor):  # realpath followed every symlink: this is a file
            raise OSError(errno.ENOTDIR, f"{ancestor} is not a directory")
        if not self._may_create_in(ancestor):
            self._overlay(ancestor)
        if directory:
            os.makedirs(path, 0o755)
        else:
            os.makedirs(os.path.dirname(path), 0o755, exist_ok=True)
            os.close(os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, 0o644))

    def _overlay(self, directory: str) -> None:
        """Put a private copy-on-write view over `directory` (see the comment above _PodView)."""
        if self._scratch is None:
            self._scratch = self.keep(new_mount("tmpfs", {"source": "skiff-pod", "mode": "0700"}))
        layer = f"/proc/self/fd/{self._scratch}/{self._layers}"
        self._layers += 1
        os.mkdir(layer, 0o700)
        for sub in ("upper", "work"):
            os.mkdir(f"{layer}/{sub}", 0o700)
        # The overlay's root directory shows the upper directory's owner and mode.
        st = os.stat(directory)
        os.chown(f"{layer}/upper", st.st_uid, st.st_gid)
        os.chmod(f"{layer}/upper", stat.S_IMODE(st.st_mode))
        lower = self.keep(os.open(directory, _O_PATH | os.O_DIRECTORY))
        with open("/proc/self/mountinfo") as f:
            below = top_mount_points_under(directory, mount_points(f.read()))
        copies = [(point, self.keep(clone_mount_tree(point))) for point in below]
        overlay = self.keep(new_mount("overlay", {
            "source": "skiff-pod", "lowerdir": f"/proc/self/fd/{lower}",
            "upperdir": f"{layer}/upper", "workdir": f"{layer}/work"}))
        if not self._scratch_attached and directory != "/":
            # Attached where the overlay then covers it: closing the only handle on a mount that is
            # attached nowhere unmounts it, and every unmount waits for an RCU grace period, which
            # a burst of new pods queued on. Attached, it goes with the namespace.
            attach_mount(self._scratch, directory)
            self._scratch_attached = True
        # The originals stay below the overlay, hidden: a volume's source opened on one of them
        # must still be in this namespace to be bound.
        attach_mount(overlay, directory)
        if directory == "/":
            # This process's root stays the mount below; processes that join the namespace
            # later get the top one (setns looks down the root), so only we need to move.
            os.fchdir(overlay)
            os.chroot(".")
        for point, copy in copies:
            attach_mount(copy, point)
        self.add_writable(directory)


def _reason(exc: OSError) -> str:
    if exc.filename:
        return f"{exc.filename}: {exc.strerror}"
    return exc.strerror or str(exc)


def _volume_error(volume: Mapping[str, object], reason: str) -> VolumeMountError:
    return VolumeMountError(f'error mounting "{volume["source"]}" to rootfs at "{volume["target"]}": {reason}')


def mount_volumes(volumes: Sequence[Mapping[str, object]]) -> None:
    """Mount `volumes` ({"source", "target", "read_only"}, parents first) in the current mount
    namespace, which must be a pod's private one; this process must be single-threaded (it may
    chroot). Raises VolumeMountError naming the volume that could not be mounted."""
    with contextlib.ExitStack() as stack:
        view = _PodView(stack)
        sources = []
        for volume in volumes:
            # All opened first, so that no source is looked up through an overlay made for another.
            try:
                sources.append(view.keep(os.open(str(volume["source"]), _O_PATH)))
            except OSError as exc:
                raise _volume_error(volume, _reason(exc)) from exc
        read_only: list[tuple[Mapping[str, object], str]] = []
        for volume, source in zip(volumes, sources, strict=True):
            try:
                directory = stat.S_ISDIR(os.fstat(source).st_mode)
                target = view.mount_point(str(volume["target"]), directory)
                mount(f"/proc/self/fd/{source}", target, None, MS_BIND | MS_REC)
                if directory:
                    view.add_writable(target)
            except OSError as exc:
                raise _volume_error(volume, _reason(exc)) from exc
            if volume.get("read_only"):
                read_only.append((volume, target))
        # Last, so that mount points of volumes nested in a read-only one could still be made.
        for volume, target in read_only:
            try:
                remount_read_only(target)
            except OSError as exc:
                raise _volume_error(volume, _reason(exc)) from exc
