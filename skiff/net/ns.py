"""Network namespaces: where they live, which processes are inside, entering one.

A process that must live in a node's network namespace (the node agent) is started with only its
network namespace switched (`run_in_netns_argv`, i.e. ``nsenter --net=...``). It must not be
started with ``ip netns exec``: that also gives it a private (slave) mount namespace, so the
namespaces it later creates with ``ip netns add`` (pod sandboxes) would be bind-mounted where the
host and the other agents cannot see them.
"""

from __future__ import annotations

import contextlib
import ctypes
import errno
import fcntl
import os
import shutil
import signal
import threading
import time
from collections.abc import Callable, Iterable, Iterator, Mapping
from typing import TypeVar

from skiff.net import names

NETNS_DIR = "/run/netns"
ETC_NETNS_DIR = "/etc/netns"
# Pod sandboxes made by a fork server pin their UTS and mount namespaces here, under one private
# tmpfs per node: /run/skiff/<node netns>/<pod netns>.{uts,mnt} (see skiff.node.sandbox). The node
# tmpfs are mounted inside one private tmpfs at /run/skiff itself, so that a pod's copy of the
# host's mounts sheds every node's pins (of every cluster) with a single unmount.
PIN_ROOT = "/run/skiff"
CLONE_NEWNET = 0x40000000

T = TypeVar("T")


def netns_path(name: str) -> str:
    return os.path.join(NETNS_DIR, name)


def run_in_netns_argv(netns: str, argv: Iterable[str]) -> list[str]:
    """argv that runs `argv` in network namespace `netns`, sharing the host's mount namespace."""
    return ["nsenter", f"--net={netns_path(netns)}", "--", *argv]


def list_netns() -> list[str]:
    try:
        return sorted(os.listdir(NETNS_DIR))
    except FileNotFoundError:
        return []


def netns_exists(name: str) -> bool:
    return os.path.exists(netns_path(name))


def _ns_id(path: str) -> tuple[int, int] | None:
    try:
        st = os.stat(path)
    except OSError:
        return None
    return st.st_dev, st.st_ino


def _pids_in_namespaces(wanted: dict[tuple[int, int], str], kind: str) -> dict[str, list[int]]:
    """Processes whose namespace of `kind` is one of `wanted` ((st_dev, st_ino) -> label), by label."""
    found: dict[str, list[int]] = {label: [] for label in wanted.values()}
    if not wanted:
        return found
    me = os.getpid()
    for entry in os.listdir("/proc"):
        if not entry.isdigit() or int(entry) == me:
            continue
        # Exited-but-unreaped processes have no namespace link and drop out here, as they should.
        label = wanted.get(_ns_id(f"/proc/{entry}/ns/{kind}"))  # type: ignore[arg-type]
        if label is not None:
            found[label].append(int(entry))
    return found


def netns_pids(names: Iterable[str]) -> dict[str, list[int]]:
    """Processes whose network namespace is one of `names` (one /proc scan for all of them)."""
    wanted: dict[tuple[int, int], str] = {}
    for name in names:
        ident = _ns_id(netns_path(name))
        if ident is not None:
            wanted[ident] = name
    return _pids_in_namespaces(wanted, "net")


def _kill_until_gone(pids: Callable[[], list[int]], what: str, timeout: float) -> list[int]:
    killed: list[int] = []
    deadline = time.monotonic() + timeout
    while True:
        left = pids()
        if not left:
            return killed
        if time.monotonic() > deadline:
            raise TimeoutError(f"processes {left} in {what} did not exit")
        for pid in left:
            try:
                os.kill(pid, signal.SIGKILL)
                killed.append(pid)
            except ProcessLookupError:
                pass
        time.sleep(0.01)


def kill_netns_processes(names: Iterable[str], timeout: float = 3.0) -> list[int]:
    """SIGKILL every process inside the given namespaces and wait until none is left."""
    names = list(names)
    return _kill_until_gone(lambda: [pid for group in netns_pids(names).values() for pid in group],
                            f"network namespaces {names}", timeout)


def kill_namespace_processes(path: str, kind: str, timeout: float = 3.0) -> list[int]:
    """SIGKILL every process whose namespace of `kind` is the one at `path` (a pin or a /proc
    link) and wait until none is left. Nothing to do when `path` is gone."""
    ident = _ns_id(path)
    if ident is None:
        return []
    return _kill_until_gone(lambda: _pids_in_namespaces({ident: path}, kind)[path], f"{kind} namespace {path}",
                            timeout)


_libc = ctypes.CDLL(None, use_errno=True)
_libc.umount2.argtypes = [ctypes.c_char_p, ctypes.c_int]
_libc.mount.argtypes = [ctypes.c_char_p, ctypes.c_char_p, ctypes.c_char_p, ctypes.c_ulong, ctypes.c_char_p]
MS_RDONLY, MS_NOSUID, MS_NODEV, MS_NOEXEC = 0x1, 0x2, 0x4, 0x8
MS_REMOUNT, MS_BIND, MS_REC, MS_PRIVATE, MS_SLAVE = 0x20, 0x1000, 0x4000, 0x40000, 0x80000
_MS_NOATIME, _MS_NODIRATIME, _MS_RELATIME = 0x400, 0x800, 0x200000
MNT_DETACH = 2


def mount(source: str | None, target: str, fstype: str | None = None, flags: int = 0,
          data: str | None = None) -> None:
    """mount(2), raising OSError that names what failed."""
    def b(text: str | None) -> bytes | None:
        return text.encode() if text is not None else None

    if _libc.mount(b(source), target.encode(), b(fstype), flags, b(data)) != 0:
        err = ctypes.get_errno()
        raise OSError(err, f"mount {source} on {target}: {os.strerror(err)}")


def detach(target: str) -> bool:
    """umount2(target, MNT_DETACH); False (and nothing raised) if it was not mounted or failed."""
    return _libc.umount2(target.encode(), MNT_DETACH) == 0


def remount_read_only(target: str) -> None:
    """Make the mount at `target` (a bind) read-only, keeping its nosuid/nodev/noexec/atime flags:
    a bind remount sets exactly the flags it is given."""
    current = os.statvfs(target).f_flag
    kept = current & (MS_NOSUID | MS_NODEV | MS_NOEXEC | _MS_NOATIME | _MS_NODIRATIME)  # same bits in statvfs
    if current & os.ST_RELATIME:
        kept |= _MS_RELATIME
    mount(None, target, None, MS_BIND | MS_REMOUNT | MS_RDONLY | kept)


# The new mount API (Linux 5.2). These syscalls have the same numbers on every architecture.
_SYS_OPEN_TREE, _SYS_MOVE_MOUNT, _SYS_FSOPEN, _SYS_FSCONFIG, _SYS_FSMOUNT = 428, 429, 430, 431, 432
_libc.syscall.restype = ctypes.c_long
_AT_FDCWD, _AT_RECURSIVE = -100, 0x8000
_OPEN_TREE_CLONE, _O_CLOEXEC = 1, os.O_CLOEXEC
_MOVE_MOUNT_F_EMPTY_PATH = 4
_FSCONFIG_SET_STRING, _FSCONFIG_CMD_CREATE = 1, 6
_FSOPEN_CLOEXEC = _FSMOUNT_CLOEXEC = 1


def _sys(number: int, what: str, *args: object) -> int:
    result = _libc.syscall(ctypes.c_long(number), *args)
    if result < 0:
        err = ctypes.get_errno()
        raise OSError(err, f"{what}: {os.strerror(err)}")
    return int(result)


def clone_mount_tree(path: str) -> int:
    """A detached copy of the mounts at and below `path` (open_tree(OPEN_TREE_CLONE|AT_RECURSIVE)),
    as an fd to attach elsewhere with attach_mount."""
    return _sys(_SYS_OPEN_TREE, f"open_tree {path}", ctypes.c_int(_AT_FDCWD), path.encode(),
                ctypes.c_uint(_OPEN_TREE_CLONE | _O_CLOEXEC | _AT_RECURSIVE))


def attach_mount(fd: int, target: str) -> None:
    """move_mount(2) a detached mount (from new_mount or clone_mount_tree) onto `target`."""
    _sys(_SYS_MOVE_MOUNT, f"mount on {target}", ctypes.c_int(fd), b"", ctypes.c_int(_AT_FDCWD), target.encode(),
         ctypes.c_uint(_MOVE_MOUNT_F_EMPTY_PATH))


def new_mount(fstype: str, options: Mapping[str, str]) -> int:
    """A new, detached mount of a `fstype` file system with `options` (key -> value), as an fd.
    Nothing is mounted anywhere until attach_mount; paths in `options` are resolved now."""
    fs = _sys(_SYS_FSOPEN, f"fsopen {fstype}", fstype.encode(), ctypes.c_uint(_FSOPEN_CLOEXEC))
    try:
        for key, value in options.items():
            _sys(_SYS_FSCONFIG, f"{fstype} option {key}={value}", ctypes.c_int(fs), ctypes.c_uint(_FSCONFIG_SET_STRING),
                 key.encode(), value.encode(), ctypes.c_int(0))
        _sys(_SYS_FSCONFIG, f"create {fstype}", ctypes.c_int(fs), ctypes.c_uint(_FSCONFIG_CMD_CREATE), None, None,
             ctypes.c_int(0))
        return _sys(_SYS_FSMOUNT, f"fsmount {fstype}", ctypes.c_int(fs), ctypes.c_uint(_FSMOUNT_CLOEXEC),
                    ctypes.c_uint(0))
    finally:
        os.close(fs)


def _unescape_mountinfo(field: str) -> str:
    # The kernel writes space, tab, newline and backslash in mountinfo paths as \ooo octal escapes.
    if "\\" not in field:
        return field
    raw = field.encode()
    out = bytearray()
    i = 0
    while i < len(raw):
        if raw[i] == 0x5C and raw[i + 1:i + 4].isdigit() and len(raw[i + 1:i + 4]) == 3:
            out.append(int(raw[i + 1:i + 4], 8))
            i += 4
        else:
            out.append(raw[i])
            i += 1
    return os.fsdecode(bytes(out))


def mount_points(mountinfo: str) -> list[str]:
    """The mount points listed in a /proc/<pid>/mountinfo text, in its order."""
    points = []
    for line in mountinfo.splitlines():
        fields = line.split(" ")
        if len(fields) > 4:
            points.append(_unescape_mountinfo(fields[4]))
    return points


def top_mount_points_under(directory: str, points: Iterable[str]) -> list[str]:
    """Of `points`, those strictly below `directory` that are not below another of them: the
    mounts a copy of the whole tree under `directory` must re-attach (each with its own subtree)."""
    prefix = directory.rstrip("/") + "/"
    below = sorted({p for p in points if p.startswith(prefix) and p != prefix})
    top: list[str] = []
    for point in below:  # sorted: a mount point comes before the ones below it
        if not any(point.startswith(t + "/") for t in top):
            top.append(point)
    return top


def detach_mounts_under(path: str | os.PathLike) -> int:
    """Detach every mount at or below `path` in this mount namespace, deepest first; how many.
    For a directory about to be removed that may hold a tmpfs (a node's volume files)."""
    root = os.path.realpath(path)
    try:
        with open("/proc/self/mountinfo") as f:
            points = mount_points(f.read())
    except OSError:
        return 0
    mine = [p for p in points if p == root or p.startswith(root.rstrip("/") + "/")]
    count = 0
    for point in sorted(set(mine), key=lambda p: (-p.count("/"), p)):
        while detach(point):  # stacked mounts: each detach uncovers the next
            count += 1
    return count


def unpin(path: str) -> None:
    """Detach a namespace pin (a bind mount on a file) and remove the file. Missing pins and
    half-made ones (a file with nothing mounted on it) are fine."""
    if not detach(path):
        err = ctypes.get_errno()
        if err not in (errno.EINVAL, errno.ENOENT):  # EINVAL: not a mount point (a half-made pin)
            raise OSError(err, f"umount {path}: {os.strerror(err)}")
    with contextlib.suppress(FileNotFoundError):
        os.unlink(path)


def pin_dir(node_netns: str) -> str:
    return os.path.join(PIN_ROOT, node_netns)


def ns_pin_path(netns: str, kind: str) -> str:
    """Where a pinned pod sandbox's namespace of `kind` ("net", "uts", "mnt") is pinned."""
    if kind == "net":
        return netns_path(netns)
    return os.path.join(pin_dir(names.node_of_netns(netns)), f"{netns}.{kind}")


def sandbox_files_dir(pin_directory: str, netns: str) -> str:
    """Where a pinned sandbox's /etc files (hosts, resolv.conf, hostname) are kept, next to its
    pins: the files a container runtime keeps in a sandbox's state directory."""
    return os.path.join(pin_directory, f"{netns}.etc")


@contextlib.contextmanager
def _pin_root_lock() -> Iterator[None]:
    """Serializes the agents and `skiff up`/`down` of every cluster while they mount and unmount
    pin directories (a lock on /run/skiff's parent directory, which outlives it)."""
    fd = os.open(os.path.dirname(PIN_ROOT), os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        os.close(fd)


def ensure_pin_dir(node_netns: str) -> str:
    """The node's pin directory, mounted as a private tmpfs (a mount namespace can only be pinned
    on a mount that does not propagate; tmpfs also makes each pin's file cheap) inside the private
    tmpfs at /run/skiff. Idempotent."""
    path = pin_dir(node_netns)
    with _pin_root_lock():
        for directory, mode, size in ((PIN_ROOT, 0o755, "1m"), (path, 0o700, "64m")):
            os.makedirs(directory, mode=mode, exist_ok=True)
            if not os.path.ismount(directory):
                mount("skiff-pins", directory, "tmpfs", MS_NOSUID | MS_NODEV | MS_NOEXEC, f"mode={mode:o},size={size}")
            mount(None, directory, None, MS_PRIVATE)
    return path


def remove_pin_dir(node_netns: str) -> None:
    """Detach the node's pin tmpfs (every pin in it goes with it) and remove its directory, and
    /run/skiff itself once no node of any cluster uses it."""
    path = pin_dir(node_netns)
    with _pin_root_lock():
        while os.path.ismount(path) and detach(path):
            pass
        with contextlib.suppress(FileNotFoundError, OSError):
            os.rmdir(path)
        try:
            if os.listdir(PIN_ROOT):
                return
        except OSError:
            return
        while os.path.ismount(PIN_ROOT) and detach(PIN_ROOT):
            pass
        with contextlib.suppress(FileNotFoundError, OSError):
            os.rmdir(PIN_ROOT)


def remove_ns_pins(netns: str) -> None:
    """Remove a pod's UTS and mount namespace pins and its /etc files, if it has any (missing
    ones are fine)."""
    for kind in ("uts", "mnt"):
        unpin(ns_pin_path(netns, kind))
    shutil.rmtree(sandbox_files_dir(pin_dir(names.node_of_netns(netns)), netns), ignore_errors=True)


def remove_netns_pin(name: str) -> None:
    """What `ip netns del` does, without its process: detach the bind mount that pins the
    namespace at /run/netns/<name>, then remove the file. The namespace itself goes once nothing
    uses it any more. Missing pins are fine."""
    unpin(netns_path(name))


def call_in_netns(netns: str, fn: Callable[[], T]) -> T:
    """Run `fn` on a fresh thread that has switched to `netns`.

    setns(CLONE_NEWNET) only changes the calling thread, and /proc/sys/net resolves against the
    current thread's namespace, so this sets a namespace's sysctls without spawning a process.
    The thread ends afterwards, so no pooled thread is ever left in a foreign namespace.
    """
    fd = os.open(netns_path(netns), os.O_RDONLY | os.O_CLOEXEC)
    try:
        return call_in_netns_fd(fd, fn, netns)
    finally:
        os.close(fd)


def call_in_netns_fd(fd: int, fn: Callable[[], T], label: str | None = None) -> T:
    """call_in_netns for the namespace of an open /run/netns/* or /proc/<pid>/ns/net fd."""
    result: list[T] = []
    errors: list[BaseException] = []
    label = label or f"fd {fd}"

    def body() -> None:
        try:
            if _libc.setns(fd, CLONE_NEWNET) != 0:
                err = ctypes.get_errno()
                raise OSError(err, f"setns({label}): {os.strerror(err)}")
            result.append(fn())
        except BaseException as exc:  # re-raised on the caller's thread
            errors.append(exc)

    thread = threading.Thread(target=body, name=f"netns-{label}")
    thread.start()
    thread.join()
    if errors:
        raise errors[0]
    return result[0]


def write_sysctls(values: Mapping[str, str], missing_ok: bool = False) -> None:
    """Set sysctls (dotted names) in this thread's namespaces; `missing_ok` skips one the kernel lacks."""
    for key, value in values.items():
        try:
            with open("/proc/sys/" + key.replace(".", "/"), "w") as f:
                f.write(value)
        except FileNotFoundError:
            if not missing_ok:
                raise


def set_sysctls(netns: str, values: Mapping[str, str], missing_ok: bool = False) -> None:
    call_in_netns(netns, lambda: write_sysctls(values, missing_ok))


def read_sysctl(netns: str, key: str) -> str:
    def read() -> str:
        with open("/proc/sys/" + key.replace(".", "/")) as f:
            return f.read().strip()

    return call_in_netns(netns, read)
