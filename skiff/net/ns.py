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
import os
import signal
import threading
import time
from collections.abc import Callable, Iterable
from typing import TypeVar

from skiff.net import names

NETNS_DIR = "/run/netns"
ETC_NETNS_DIR = "/etc/netns"
# Pod sandboxes made by a fork server pin their UTS and mount namespaces here, under one private
# tmpfs per node: /run/skiff/<node netns>/<pod netns>.{uts,mnt} (see skiff.node.sandbox).
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


def netns_pids(names: Iterable[str]) -> dict[str, list[int]]:
    """Processes whose network namespace is one of `names` (one /proc scan for all of them)."""
    wanted: dict[tuple[int, int], str] = {}
    for name in names:
        ident = _ns_id(netns_path(name))
        if ident is not None:
            wanted[ident] = name
    found: dict[str, list[int]] = {name: [] for name in wanted.values()}
    if not wanted:
        return found
    me = os.getpid()
    for entry in os.listdir("/proc"):
        if not entry.isdigit() or int(entry) == me:
            continue
        # Exited-but-unreaped processes have no namespace link and drop out here, as they should.
        name = wanted.get(_ns_id(f"/proc/{entry}/ns/net"))  # type: ignore[arg-type]
        if name is not None:
            found[name].append(int(entry))
    return found


def kill_netns_processes(names: Iterable[str], timeout: float = 3.0) -> list[int]:
    """SIGKILL every process inside the given namespaces and wait until none is left."""
    names = list(names)
    killed: list[int] = []
    deadline = time.monotonic() + timeout
    while True:
        pids = [pid for group in netns_pids(names).values() for pid in group]
        if not pids:
            return killed
        if time.monotonic() > deadline:
            raise TimeoutError(f"processes {pids} in network namespaces {names} did not exit")
        for pid in pids:
            try:
                os.kill(pid, signal.SIGKILL)
                killed.append(pid)
            except ProcessLookupError:
                pass
        time.sleep(0.01)


_libc = ctypes.CDLL(None, use_errno=True)
_libc.umount2.argtypes = [ctypes.c_char_p, ctypes.c_int]
_libc.mount.argtypes = [ctypes.c_char_p, ctypes.c_char_p, ctypes.c_char_p, ctypes.c_ulong, ctypes.c_char_p]
MS_RDONLY, MS_NOSUID, MS_NODEV, MS_NOEXEC = 0x1, 0x2, 0x4, 0x8
MS_BIND, MS_REC, MS_PRIVATE, MS_SLAVE = 0x1000, 0x4000, 0x40000, 0x80000
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


def ensure_pin_dir(node_netns: str) -> str:
    """The node's pin directory, mounted as a private tmpfs (a mount namespace can only be pinned
    on a mount that does not propagate; tmpfs also makes each pin's file cheap). Idempotent."""
    path = pin_dir(node_netns)
    os.makedirs(path, mode=0o700, exist_ok=True)
    if not os.path.ismount(path):
        mount("skiff-pins", path, "tmpfs", MS_NOSUID | MS_NODEV | MS_NOEXEC, "mode=0700,size=4m")
    mount(None, path, None, MS_PRIVATE)
    return path


def remove_pin_dir(node_netns: str) -> None:
    """Detach the node's pin tmpfs (every pin in it goes with it) and remove its directory, and
    /run/skiff itself once no node of any cluster uses it."""
    path = pin_dir(node_netns)
    while os.path.ismount(path) and detach(path):
        pass
    for directory in (path, PIN_ROOT):
        with contextlib.suppress(FileNotFoundError, OSError):
            os.rmdir(directory)


def remove_ns_pins(netns: str) -> None:
    """Remove a pod's UTS and mount namespace pins, if it has any (missing pins are fine)."""
    for kind in ("uts", "mnt"):
        unpin(ns_pin_path(netns, kind))


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


def write_sysctls(values: dict[str, str]) -> None:
    for key, value in values.items():
        with open("/proc/sys/" + key.replace(".", "/"), "w") as f:
            f.write(value)


def set_sysctls(netns: str, values: dict[str, str]) -> None:
    call_in_netns(netns, lambda: write_sysctls(values))


def read_sysctl(netns: str, key: str) -> str:
    def read() -> str:
        with open("/proc/sys/" + key.replace(".", "/")) as f:
            return f.read().strip()

    return call_in_netns(netns, read)
