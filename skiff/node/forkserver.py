"""A fork server ("zygote") that starts built-in image containers in a few milliseconds.

Starting `python -m skiff.images <program>` costs a fresh interpreter and its imports (~60-80 ms of
CPU). The node agent instead starts one fork server at boot, which imports the built-in images'
code once and then forks a child per container. The child joins the pod's namespaces with
setns(2), becomes the leader of its own session, takes the pipes the agent gave it as
stdout/stderr, and runs the image's main; it never execs.

Design (chosen for being the simplest that keeps exit statuses exact):

- The fork server is the parent of every container it forks, so it is the one that reaps them:
  a SIGCHLD wakes its single-threaded select loop, which reaps with waitpid(-1, WNOHANG) and
  reports ``(pid, wait status)`` to the agent. The agent resolves each container's wait() from
  those reports. (Making the agent the parent would need clone(CLONE_PARENT) without libc's fork
  bookkeeping: fragile in a Python process.)
- Control channel: an AF_UNIX SOCK_SEQPACKET socketpair (one JSON object per message, so no
  framing). A spawn request carries the write ends of the container's stdout/stderr pipes as
  SCM_RIGHTS; the agent keeps the read ends and pumps them into the CRI log as for any container.
- The server opens the namespace files before forking, and the child reports setup errors
  (setns, chdir) over a pipe before the server answers, so a broken sandbox is a start error and
  a pid the agent receives already leads its own process group (stop = killpg works at once).
- Lifetimes: the server has PR_SET_PDEATHSIG=SIGKILL towards the agent and exits when the control
  socket closes; each child has PR_SET_PDEATHSIG=SIGKILL towards the server. If the server dies,
  its containers die with it, the agent reports them as killed (exit 137, what they got), and the
  kubelet restarts them through nsenter (start_container falls back while there is no server).
- setns into a mount namespace needs a single-threaded process: the server never starts threads
  or an event loop (it checks this at start), and neither does the child before its setns.
- Pod sandboxes are made by the server itself, without a fork: it steps into new network, UTS
  and mount namespaces, fills them, steps back and pins them with bind mounts (_pinned_sandbox),
  so a pod has no holder ("pause") process; its containers join the pins. This needs the same
  single-threaded process (unshare and setns of a mount namespace). The pod's volumes are bind
  mounts made there too (skiff.node.podmounts, which explains how missing targets are made without
  touching the host); for sandboxes made without the server, a short-lived helper process
  (`--mount-volumes-of PID`) does the same in the holder process's mount namespace.
- A container's PID namespace (skiff.node.pidns) is set on the server around the fork, so the
  child is born as PID 1 of a new one (or in its pod's) and stays the server's child; it then
  makes its own mount namespace with a /proc of that PID namespace. Being PID 1, it learns
  whether the server still lives from a pidfd of it, as its parent's pid reads 0 there.
- /proc/<pid>/cmdline (and environ) of a forked child would be the server's; the child points the
  kernel at new argument and environment blocks with prctl(PR_SET_MM_MAP) (no capability needed
  for that), so ps, pgrep and `ip netns pids` lookups see ``python -m skiff.images <program> ...``
  exactly as with nsenter.

Agent side:

    server = await ForkServer.start()
    child = await server.spawn(argv, env, cwd, {"net": ..., "uts": ..., "mnt": ...}, out_w, err_w)
    returncode = await child.wait()          # like Popen.returncode: -N for signal N
    await server.close()
"""

from __future__ import annotations

import asyncio
import contextlib
import ctypes
import errno
import functools
import io
import itertools
import json
import os
import selectors
import shutil
import signal
import socket
import sys
import threading
import time
import traceback
from collections.abc import Callable, Mapping, Sequence
from typing import NoReturn

from skiff.lifetime import die_with_parent
from skiff.net.ns import (
    MS_BIND,
    MS_NODEV,
    MS_NOEXEC,
    MS_NOSUID,
    MS_RDONLY,
    MS_REC,
    MS_SLAVE,
    NETNS_DIR,
    PIN_ROOT,
    detach,
    mount,
    sandbox_files_dir,
    unpin,
    write_sysctls,
)
from skiff.node import pidns
from skiff.node.podmounts import VolumeMountError, mount_volumes
from skiff.node.securitycontext import Credentials

# Built-ins are `[sys.executable, "-m", "skiff.images", <program>, ...]` (skiff.images.registry).
BUILTIN_MODULE = "skiff.images"
# What the children of a server need, imported once in the server (the program modules and what
# they import lazily on their hot paths).
PRELOAD = (
    "asyncio", "json", "socket", "signal", "ssl", "urllib.parse", "skiff.images.__main__",
    "skiff.images.hello_app", "skiff.images.http_echo", "skiff.images.whoami", "skiff.images.nginx",
    "skiff.images.agnhost", "skiff.images.pause", "skiff.images.server", "skiff.images.golike",
    "skiff.images.netinfo", "skiff.images.bootcamp", "skiff.images.echo_server", "skiff.images.echoserver",
)
MAX_MESSAGE = 1 << 20
SPAWN_TIMEOUT = 10.0
_PR_SET_NO_NEW_PRIVS = 38
_NS_FLAGS = {"uts": 0x04000000, "net": 0x40000000, "mnt": 0x00020000}  # CLONE_NEWUTS/NET/NS
_NS_ORDER = ("uts", "net", "mnt")  # mount last: it resets the root and working directory
_PR_SET_MM, _PR_SET_MM_MAP = 35, 14

_SOURCE_ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


class ForkServerError(RuntimeError):
    """The fork server cannot start this container (dead, unresponsive, request too large)."""


class SpawnFailed(RuntimeError):
    """The fork server forked, but the child could not join the sandbox or enter its directory."""


class MountFailed(SpawnFailed):
    """The fork server made no sandbox because one of its volumes could not be mounted (making it
    another way would fail alike). The message names the volume's source and target."""


def is_builtin_argv(argv: Sequence[str]) -> bool:
    """Whether `argv` runs a built-in image program that a fork server of this interpreter can run."""
    return len(argv) >= 4 and list(argv[:3]) == [sys.executable, "-m", BUILTIN_MODULE]


# ---- libc ---------------------------------------------------------------------------------------

_libc = ctypes.CDLL(None, use_errno=True)
_libc.prctl.argtypes = [ctypes.c_int, ctypes.c_ulong, ctypes.c_void_p, ctypes.c_ulong, ctypes.c_ulong]
_libc.setns.argtypes = [ctypes.c_int, ctypes.c_int]
_libc.sbrk.argtypes = [ctypes.c_long]
_libc.sbrk.restype = ctypes.c_void_p
_libc.unshare.argtypes = [ctypes.c_int]
_libc.sethostname.argtypes = [ctypes.c_char_p, ctypes.c_size_t]
_ST_RDONLY = 1


def _check(result: int, what: str) -> None:
    if result != 0:
        err = ctypes.get_errno()
        raise OSError(err, f"{what}: {os.strerror(err)}")


_PR_CAPBSET_DROP = 24
_LINUX_CAPABILITY_VERSION_3 = 0x20080522


class _CapHeader(ctypes.Structure):
    _fields_ = [("version", ctypes.c_uint32), ("pid", ctypes.c_int)]


class _CapData(ctypes.Structure):
    _fields_ = [("effective", ctypes.c_uint32), ("permitted", ctypes.c_uint32), ("inheritable", ctypes.c_uint32)]


def _last_capability() -> int:
    try:
        with open("/proc/sys/kernel/cap_last_cap") as f:
            return int(f.read())
    except (OSError, ValueError):
        return 40


_LAST_CAP = _last_capability()


def limit_bounding_set(mask: int) -> None:
    """Drop every capability outside `mask` from the bounding set, so that nothing this process
    runs can gain it back (needs CAP_SETPCAP: before any setuid)."""
    for cap in range(_LAST_CAP + 1):
        if not mask & (1 << cap):
            _check(_libc.prctl(_PR_CAPBSET_DROP, cap, None, 0, 0), f"prctl(PR_CAPBSET_DROP, {cap})")


def set_capabilities(mask: int) -> None:
    """Hold exactly `mask` as effective and permitted capabilities, none inheritable. For a root
    process that does not exec: execve would have done this through the bounding set."""
    header = _CapHeader(_LINUX_CAPABILITY_VERSION_3, 0)
    data = (_CapData * 2)()
    for i in (0, 1):
        word = (mask >> (32 * i)) & 0xFFFFFFFF
        data[i].effective = data[i].permitted = word
    _check(_libc.capset(ctypes.byref(header), data), "capset")


def setns(fd: int, kind: str) -> None:
    _check(_libc.setns(fd, _NS_FLAGS[kind]), f"setns {kind}")


def _join(path: str, kind: str) -> None:
    """setns into the namespace of `kind` at `path` (a pin or a /proc link)."""
    fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
    try:
        setns(fd, kind)
    finally:
        os.close(fd)


class _MMMap(ctypes.Structure):
    _fields_ = [(name, ctypes.c_uint64) for name in (
        "start_code", "end_code", "start_data", "end_data", "start_brk", "brk", "start_stack",
        "arg_start", "arg_end", "env_start", "env_end", "auxv")] + [
        ("auxv_size", ctypes.c_uint32), ("exe_fd", ctypes.c_uint32)]


_arg_blocks: list[ctypes.Array] = []  # must live as long as the process: the kernel reads them
_layout: dict[str, int] | None = None


def _memory_layout() -> dict[str, int]:
    """The code, data, stack and heap start addresses of this process (proc(5) stat fields). A
    forked child has its parent's, so the server reads them once (in serve) and its children
    skip generating and parsing /proc/self/stat."""
    global _layout
    # Only a fork passes the value on, and a forked child has its parent's layout.
    if _layout is None:
        with open("/proc/self/stat", "rb") as f:
            stat = f.read()
        fields = stat[stat.rindex(b")") + 2:].split()

        def field(n: int) -> int:  # proc(5) numbering; fields[0] is field 3
            return int(fields[n - 3])

        _layout = {"start_code": field(26), "end_code": field(27), "start_stack": field(28),
                   "start_data": field(45), "end_data": field(46), "start_brk": field(47)}
    return _layout


def set_process_args(argv: Sequence[str], env: Mapping[str, str]) -> None:
    """Make /proc/self/cmdline and /proc/self/environ read `argv` and `env`, as after an exec:
    the kernel is pointed at new argument and environment blocks."""
    blocks = []
    for items in ([os.fsencode(a) for a in argv], [os.fsencode(f"{k}={v}") for k, v in env.items()]):
        data = b"\0".join(items) + b"\0"
        blocks.append(ctypes.create_string_buffer(data, len(data)))
    args, envs = blocks
    layout = _memory_layout()
    mm = _MMMap(**layout,
                arg_start=ctypes.addressof(args), arg_end=ctypes.addressof(args) + len(args.raw),
                env_start=ctypes.addressof(envs), env_end=ctypes.addressof(envs) + len(envs.raw),
                auxv=0, auxv_size=0, exe_fd=0xFFFFFFFF)
    mm.brk = _libc.sbrk(0)  # last, so that no allocation moves the break after it is read
    _check(_libc.prctl(_PR_SET_MM, _PR_SET_MM_MAP, ctypes.byref(mm), ctypes.sizeof(mm), 0), "prctl(PR_SET_MM_MAP)")
    _arg_blocks[:] = blocks


# ---- the server process -------------------------------------------------------------------------


def _send(sock: socket.socket, msg: dict) -> None:
    sock.send(json.dumps(msg).encode())


def _stdio(fd: int, encoding: str, errors: str, line_buffering: bool, unbuffered: bool) -> io.TextIOWrapper:
    raw = io.FileIO(fd, "w", closefd=False)
    buffer = raw if unbuffered else io.BufferedWriter(raw)
    return io.TextIOWrapper(buffer, encoding=encoding, errors=errors, line_buffering=line_buffering,
                            write_through=unbuffered)


def _exit_status(exc: SystemExit) -> int:
    # What the interpreter does with SystemExit's argument at exit.
    code = exc.code
    if code is None:
        return 0
    if isinstance(code, int):
        return code & 0xFF
    print(code, file=sys.stderr)
    return 1


def _run_program(argv: list[str]) -> int:
    main_module = sys.modules["skiff.images.__main__"]
    sys.argv = [main_module.__file__ or "-m", *argv[3:]]
    sys.orig_argv = list(argv)
    try:
        main_module.main(sys.argv[1:])
        code = 0
    except SystemExit as exc:
        code = _exit_status(exc)
    except KeyboardInterrupt:
        traceback.print_exc()
        code = -signal.SIGINT
    except BaseException:
        traceback.print_exc()
        code = 1
    # The interpreter's own shutdown: non-daemon threads, then atexit handlers.
    try:
        threading._shutdown()  # type: ignore[attr-defined]
        import atexit
        atexit._run_exitfuncs()
    except BaseException:
        traceback.print_exc()
    for stream in (sys.stdout, sys.stderr):
        try:
            stream.flush()
        except (OSError, ValueError):
            pass
    if code < 0:  # an uncaught KeyboardInterrupt ends the process by SIGINT, as Python does
        signal.signal(-code, signal.SIG_DFL)
        os.kill(os.getpid(), -code)
    return code


def _child(req: dict, ns_fds: dict[str, int], out_fd: int, err_fd: int, sync_w: int, server: tuple[int, int],
           listening: int | None = None) -> NoReturn:
    """In the forked child: join the sandbox, then run the program. Never returns. `server` is
    the server's pid and a pidfd of it.

    `listening`, if given, is kept open for the program: the built-in images' server writes a
    line to it each time it has bound its listeners (skiff.images.server.LISTENING_FD), so the
    node agent learns a container listens without polling it with connections."""
    try:
        signal.set_wakeup_fd(-1)
        signal.signal(signal.SIGCHLD, signal.SIG_DFL)
        if not die_with_parent(signal.SIGKILL, *server):
            os._exit(128 + signal.SIGKILL)
        os.setsid()
        for kind in _NS_ORDER:
            if kind in ns_fds:
                setns(ns_fds[kind], kind)
        if req.get("new_pidns") or req.get("pidns"):
            # In a PID namespace that is not the host's: a mount namespace of its own (a copy of the
            # pod's) whose /proc shows that namespace. Mounted on top of the pod's /proc, whose copy
            # here is a slave with no peers, so nothing reaches the pod's or the host's view.
            _check(_libc.unshare(_NS_FLAGS["mnt"]), "unshare(CLONE_NEWNS)")
            mount("proc", "/proc", "proc", MS_NODEV | MS_NOEXEC | MS_NOSUID)
        if req.get("cwd"):
            os.chdir(req["cwd"])
        null = os.open(os.devnull, os.O_RDONLY)
        os.dup2(null, 0)
        os.dup2(out_fd, 1)
        os.dup2(err_fd, 2)
        try:
            set_process_args(req["argv"], req["env"])
        except OSError as exc:
            print(f"skiff forkserver: cannot set the command line ({exc})", file=sys.__stderr__, flush=True)
        # After the command line: setting it takes CAP_SYS_RESOURCE, which containers do not keep.
        creds = req.get("creds")
        if creds:
            if creds.get("no_new_privs"):
                _check(_libc.prctl(_PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0), "prctl(PR_SET_NO_NEW_PRIVS)")
            caps = creds.get("capabilities")  # a mask; None: privileged, keep them all
            if caps is not None:
                limit_bounding_set(int(caps))
            # Groups first: setuid gives up the right to change them (and, to another user, every
            # capability).
            os.setgroups([int(g) for g in creds["groups"]])
            os.setgid(int(creds["gid"]))
            os.setuid(int(creds["uid"]))
            if caps is not None and int(creds["uid"]) == 0:
                set_capabilities(int(caps))
        # Also closes sync_w: the server reads EOF, meaning "started".
        if listening is None:
            os.closerange(3, 1 << 20)
        else:
            os.closerange(3, listening)
            os.closerange(listening + 1, 1 << 20)
            sys.modules["skiff.images.server"].LISTENING_FD = listening
    except BaseException as exc:
        try:
            os.write(sync_w, f"{exc}".encode() or b"child setup failed")
        finally:
            os._exit(127)
    code = 1
    try:
        env = req["env"]
        os.environ.clear()
        os.environ.update(env)
        time.tzset()
        unbuffered = bool(env.get("PYTHONUNBUFFERED"))
        encoding = sys.__stdout__.encoding if sys.__stdout__ else "utf-8"
        errors = sys.__stdout__.errors if sys.__stdout__ else "strict"
        sys.stdin = sys.__stdin__ = io.TextIOWrapper(io.BufferedReader(io.FileIO(0, "r", closefd=False)),
                                                    encoding=encoding)
        sys.stdout = sys.__stdout__ = _stdio(1, encoding, errors, False, unbuffered)
        sys.stderr = sys.__stderr__ = _stdio(2, encoding, "backslashreplace", True, unbuffered)
        sys.path[0] = os.getcwd()  # as `python -m` sets it
        code = _run_program(req["argv"])
    finally:
        os._exit(code)


def _spawn(sock: socket.socket, pending: _Pending, req: dict, fds: list[int], server: tuple[int, int]) -> None:
    ns_fds: dict[str, int] = {}
    pid_ns: Callable[[], contextlib.AbstractContextManager] = contextlib.nullcontext
    try:
        if len(fds) not in (2, 3):
            raise ValueError(f"expected 2 or 3 file descriptors (stdout, stderr[, listening]), got {len(fds)}")
        if not is_builtin_argv(req.get("argv") or []):
            raise ValueError(f"not a built-in program: {req.get('argv')!r}")
        for kind, path in (req.get("ns") or {}).items():
            if kind not in _NS_FLAGS:
                raise ValueError(f"unknown namespace kind {kind!r}")
            ns_fds[kind] = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
        if req.get("new_pidns"):
            pid_ns = functools.partial(pidns.children_born_in, None)
        elif req.get("pidns"):
            pid_ns = functools.partial(pidns.children_born_in, str(req["pidns"]))
    except (OSError, ValueError) as exc:
        for fd in [*fds, *ns_fds.values()]:
            os.close(fd)
        _send(sock, {"op": "failed", "id": req.get("id"), "error": str(exc)})
        return
    listening = fds[2] if len(fds) == 3 else None
    try:
        with pid_ns():
            pending.fork(req["id"], lambda sync_w: _child(req, ns_fds, fds[0], fds[1], sync_w, server, listening),
                         [*fds, *ns_fds.values()])
    except OSError as exc:  # the PID namespace: the fork, if it happened, is reported as usual
        _send(sock, {"op": "failed", "id": req.get("id"), "error": str(exc)})


class _Pending:
    """Children forked but not yet reported: the server does not wait for a child to finish its
    setup (joining namespaces, mounts) before serving the next request, so that the children of
    a burst set up side by side. A child's "started"/"failed" always precedes its "exited"."""

    def __init__(self, sock: socket.socket, sel: selectors.BaseSelector) -> None:
        self.sock = sock
        self.sel = sel
        self.by_fd: dict[int, tuple[object, int, bytearray]] = {}  # sync_r -> (request id, pid, error)
        self.pids: set[int] = set()
        self.early_exits: dict[int, int] = {}  # pid -> wait status, reaped before its report

    def fork(self, rid: object, child: Callable[[int], NoReturn], parent_closes: list[int]) -> None:
        """Fork; the child runs child(sync_w), which writes an error there or closes it once ready."""
        sync_r, sync_w = os.pipe2(os.O_CLOEXEC)
        for stream in (sys.stdout, sys.stderr):
            stream.flush()  # nothing of ours may be written twice
        pid = os.fork()
        if pid == 0:
            try:
                os.close(sync_r)
                child(sync_w)
            finally:
                os._exit(127)
        for fd in [*parent_closes, sync_w]:
            os.close(fd)
        os.set_blocking(sync_r, False)
        self.by_fd[sync_r] = (rid, pid, bytearray())
        self.pids.add(pid)
        self.sel.register(sync_r, selectors.EVENT_READ)

    def readable(self, fd: int) -> None:
        rid, pid, error = self.by_fd[fd]
        try:
            chunk = os.read(fd, 4096)
        except BlockingIOError:
            return
        if chunk:
            error += chunk
            return
        self.sel.unregister(fd)
        os.close(fd)
        del self.by_fd[fd]
        self.pids.discard(pid)
        status = self.early_exits.pop(pid, None)
        if error:
            if status is None:
                os.waitpid(pid, 0)  # it exits right away; nobody but us needs to know
            _send(self.sock, {"op": "failed", "id": rid, "error": error.decode(errors="replace")})
            return
        _send(self.sock, {"op": "started", "id": rid, "pid": pid})
        if status is not None:
            _send(self.sock, {"op": "exited", "pid": pid, "status": status})

    def reap(self) -> None:
        while True:
            try:
                pid, status = os.waitpid(-1, os.WNOHANG)
            except ChildProcessError:
                return
            if pid == 0:
                return
            if pid in self.pids:
                self.early_exits[pid] = status
            else:
                _send(self.sock, {"op": "exited", "pid": pid, "status": status})


def _pin(path: str, ns_file: str) -> None:
    """Keep the namespace behind `ns_file` alive by bind-mounting it on a new file `path`."""
    os.close(os.open(path, os.O_RDONLY | os.O_CREAT | os.O_EXCL, 0))
    try:
        mount(ns_file, path, None, MS_BIND)
    except BaseException:
        os.unlink(path)
        raise


def _write_etc_files(req: dict) -> dict[str, str]:
    """Write the pod's /etc files (hosts, resolv.conf, hostname) next to its pins, in this
    process's (the host's) mount namespace; their paths, by name. Bound over /etc from there they
    need no mount of their own in the pod's namespace: a scratch tmpfs there had to be unmounted
    again, and every unmount waits for an RCU grace period, which a burst of pods queued on."""
    directory = sandbox_files_dir(req["pin_dir"], req["name"])
    os.makedirs(directory, 0o755, exist_ok=True)
    paths = {}
    for entry, content in sorted(req["etc"].items()):
        if "/" in entry or entry.startswith("."):
            raise ValueError(f"bad /etc file name {entry!r}")
        path = paths[entry] = os.path.join(directory, entry)
        with open(path, "w") as f:
            f.write(content)
        os.chmod(path, 0o644)
    return paths


def _set_up_pod_mounts(req: dict, etc: Mapping[str, str]) -> None:
    """In the pod's new mount namespace: its /etc files (`etc`: name -> the file written by
    _write_etc_files) and a /sys of its network namespace."""
    mount("none", "/", None, MS_SLAVE | MS_REC)  # our mounts must not reach the host's
    # Bound before the pin directories (where the files are) are detached below.
    for entry, source in etc.items():
        if os.path.exists(os.path.join("/etc", entry)):
            mount(source, os.path.join("/etc", entry), None, MS_BIND)
    _drop_other_pods_pins()
    # The pod's sysfs goes on top of the host's, which it hides: no unmount (see _write_etc_files).
    mount(req["name"], "/sys", "sysfs", MS_RDONLY if os.statvfs("/sys").f_flag & _ST_RDONLY else 0)
    if req.get("mounts"):
        mount_volumes(req["mounts"])


def _drop_other_pods_pins() -> None:
    """Other pods' pins are none of this pod's business, and a copy here would keep their
    namespaces alive after their pods are gone (and make pinning the next pod quadratic): detach
    /run/netns and every node's pin directory (of every cluster) in the pod's mount namespace, all
    of them at once with the tmpfs at /run/skiff that holds them (each unmount waits for an RCU
    grace period)."""
    for directory in (NETNS_DIR, PIN_ROOT):
        detach(directory)  # not a mount point: nothing to detach


def mount_volumes_of(pid: int, volumes: Sequence[Mapping[str, object]]) -> None:
    """Join the mount namespace of process `pid` (a sandbox's holder) and mount `volumes` there,
    as the server does for its pinned sandboxes. Only for a single-threaded process (the helper
    that volume_helper_argv starts)."""
    _join(f"/proc/{pid}/ns/mnt", "mnt")
    _drop_other_pods_pins()
    mount_volumes(volumes)


def child_env() -> dict[str, str]:
    """The environment for a `python -m skiff...` process of ours: this source tree importable."""
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(p for p in (_SOURCE_ROOT, env.get("PYTHONPATH")) if p)
    return env


def volume_helper_argv(pid: int) -> list[str]:
    """The helper that mounts volumes (a JSON list on its stdin) into process `pid`'s mount
    namespace; it exits 0, or non-zero with the reason on stderr."""
    return [sys.executable, "-m", "skiff.node.forkserver", "--mount-volumes-of", str(pid)]


def _pinned_sandbox(req: dict, own: dict[str, int]) -> None:
    """Make a pod's sandbox in this process, with no process left behind to hold it.

    The server steps into a new network and UTS namespace, pins both (the network one at
    /run/netns/<name>, as `ip netns add` does), sets the hostname, steps into a new mount
    namespace that it fills (see _set_up_pod_mounts), goes back to its own namespaces (`own`:
    kind -> fd) and pins the mount namespace from there. CRI-O's pinned namespaces work the same
    way, without an infra ("pause") container. Containers join the pins (Sandbox.ns_path).
    With `join_net` (a path), the sandbox shares that network namespace instead (a hostNetwork
    pod's, its node's): only the UTS and mount namespaces are new; /sys then shows that network.
    On failure everything made so far is removed and the error raised.
    """
    pins = req["pins"]
    cwd = os.getcwd()
    made: list[str] = []
    in_pod_mounts = False
    try:
        if req.get("join_net"):
            _join(req["join_net"], "net")
            _check(_libc.unshare(_NS_FLAGS["uts"]), "unshare(CLONE_NEWUTS)")
        else:
            _check(_libc.unshare(_NS_FLAGS["net"] | _NS_FLAGS["uts"]), "unshare(CLONE_NEWNET|CLONE_NEWUTS)")
            _pin(pins["net"], "/proc/self/ns/net")
            made.append(pins["net"])
            # /proc/sys/net is the opener's network namespace: the new one, here.
            write_sysctls(req.get("sysctls") or {}, missing_ok=True)
        hostname = req["hostname"].encode()
        _check(_libc.sethostname(hostname, len(hostname)), "sethostname")
        _pin(pins["uts"], "/proc/self/ns/uts")
        made.append(pins["uts"])
        etc = _write_etc_files(req)
        _check(_libc.unshare(_NS_FLAGS["mnt"]), "unshare(CLONE_NEWNS)")
        in_pod_mounts = True
        _set_up_pod_mounts(req, etc)
        pod_mnt = os.open("/proc/self/ns/mnt", os.O_RDONLY | os.O_CLOEXEC)
        try:
            setns(own["mnt"], "mnt")
            in_pod_mounts = False
            os.chdir(cwd)
            # From the host's mount namespace: a namespace cannot be pinned inside itself.
            _pin(pins["mnt"], f"/proc/self/fd/{pod_mnt}")
            made.append(pins["mnt"])
        finally:
            os.close(pod_mnt)
    except BaseException:
        if in_pod_mounts:
            setns(own["mnt"], "mnt")
            os.chdir(cwd)
        for path in made:
            with contextlib.suppress(OSError):
                unpin(path)
        shutil.rmtree(sandbox_files_dir(req["pin_dir"], req["name"]), ignore_errors=True)
        raise
    finally:
        setns(own["net"], "net")
        setns(own["uts"], "uts")


def _make_sandbox(sock: socket.socket, req: dict, fds: list[int], own: dict[str, int]) -> None:
    for fd in fds:
        os.close(fd)
    missing = [k for k in ("name", "hostname", "pin_dir") if not isinstance(req.get(k), str)]
    if "name" not in missing and ("/" in req["name"] or req["name"].startswith(".")):
        missing.append("a name that is no path")
    volumes = req.get("mounts") or []
    if not isinstance(volumes, list) or not all(
            isinstance(v, dict) and isinstance(v.get("source"), str) and isinstance(v.get("target"), str)
            for v in volumes):
        missing.append("well-formed mounts")
    if not isinstance(req.get("etc"), dict) or not all(isinstance(v, str) for v in req["etc"].values()):
        missing.append("etc")
    sysctls = req.get("sysctls") or {}
    if not isinstance(sysctls, dict) or not all(isinstance(k, str) and isinstance(v, str) and "/" not in k
                                                for k, v in sysctls.items()):
        missing.append("well-formed sysctls")
    join_net = req.get("join_net")
    if join_net is not None and not isinstance(join_net, str):
        missing.append("a join_net path")
    # A sandbox in an existing network namespace (a hostNetwork pod's) pins no network namespace.
    kinds = ("uts", "mnt") if join_net else ("net", "uts", "mnt")
    if not isinstance(req.get("pins"), dict) or not all(isinstance(req["pins"].get(k), str) for k in kinds):
        missing.append("pins")
    if missing:
        _send(sock, {"op": "failed", "id": req.get("id"), "error": f"sandbox request without {', '.join(missing)}"})
        return
    try:
        _pinned_sandbox(req, own)
    except VolumeMountError as exc:
        _send(sock, {"op": "failed", "id": req["id"], "error": str(exc), "volume": True})
        return
    except (OSError, ValueError) as exc:
        _send(sock, {"op": "failed", "id": req["id"], "error": str(exc)})
        return
    _send(sock, {"op": "done", "id": req["id"]})


def serve(sock: socket.socket, parent_pid: int, preload: Sequence[str] = PRELOAD) -> int:
    """The fork server's loop, until the agent closes the control socket; returns the exit status."""
    if not die_with_parent(signal.SIGKILL, parent_pid):
        return 1
    import importlib

    for name in preload:
        importlib.import_module(name)
    _memory_layout()  # read once here, for every child (see set_process_args)
    if threading.active_count() != 1:
        # setns(CLONE_NEWNS) would fail in every child: better no server than a broken one.
        print("skiff forkserver: preloading started threads; not serving", file=sys.stderr, flush=True)
        return 1
    wake_r, wake_w = os.pipe2(os.O_NONBLOCK | os.O_CLOEXEC)
    signal.signal(signal.SIGCHLD, lambda *_: None)  # a handler, so that the wakeup fd is written
    signal.set_wakeup_fd(wake_w)
    sel = selectors.DefaultSelector()
    sel.register(sock, selectors.EVENT_READ)
    sel.register(wake_r, selectors.EVENT_READ)
    me = os.getpid()
    me_fd = os.pidfd_open(me)  # for children born in another PID namespace (see die_with_parent)
    pending = _Pending(sock, sel)
    own = {kind: os.open(f"/proc/self/ns/{kind}", os.O_RDONLY | os.O_CLOEXEC) for kind in _NS_FLAGS}
    _send(sock, {"op": "ready", "pid": me})
    while True:
        for key, _ in sel.select(timeout=5.0):
            if key.fileobj in pending.by_fd:
                pending.readable(key.fileobj)
                continue
            if key.fileobj == wake_r:
                try:
                    while os.read(wake_r, 512):
                        pass
                except BlockingIOError:
                    pass
                continue
            data, fds, flags, _ = socket.recv_fds(sock, MAX_MESSAGE, 4)
            if not data and not fds:
                return 0  # the agent closed the socket (or died)
            try:
                if flags & socket.MSG_TRUNC:
                    raise ValueError("request too large")
                req = json.loads(data)
            except ValueError as exc:
                for fd in fds:
                    os.close(fd)
                _send(sock, {"op": "failed", "id": None, "error": str(exc)})
                continue
            if req.get("op") == "sandbox":
                _make_sandbox(sock, req, fds, own)
            else:
                _spawn(sock, pending, req, fds, (me, me_fd))
        pending.reap()


def main(argv: list[str]) -> None:
    import argparse

    ap = argparse.ArgumentParser(prog="python -m skiff.node.forkserver")
    ap.add_argument("--fd", type=int, help="the control socket (SOCK_SEQPACKET)")
    ap.add_argument("--parent-pid", type=int)
    ap.add_argument("--mount-volumes-of", type=int, metavar="PID",
                    help="instead of serving: mount the volumes given as JSON on stdin into PID's mount namespace")
    args = ap.parse_args(argv)
    if args.mount_volumes_of is not None:
        try:
            mount_volumes_of(args.mount_volumes_of, json.load(sys.stdin))
        except (VolumeMountError, OSError, ValueError) as exc:
            print(exc, file=sys.stderr)
            raise SystemExit(1) from None
        return
    if args.fd is None or args.parent_pid is None:
        ap.error("--fd and --parent-pid are required")
    sock = socket.socket(fileno=args.fd)
    sock.setblocking(True)
    raise SystemExit(serve(sock, args.parent_pid))


# ---- the agent's side -----------------------------------------------------------------------------


def _resolve(fut: asyncio.Future[None]) -> None:
    if not fut.done():
        fut.set_result(None)


class ForkedChild:
    """A process the fork server started; its exit status comes from the server's reports."""

    def __init__(self, pid: int, exited: asyncio.Future[int]):
        self.pid = pid
        self._exited = exited

    async def wait(self) -> int:
        """The return code, as Popen.returncode: the exit status, or -N for death by signal N."""
        return await asyncio.shield(self._exited)


class ForkServer:
    """The agent's handle on its fork server process."""

    def __init__(self, proc: asyncio.subprocess.Process, sock: socket.socket):
        self.proc = proc
        self.pid = proc.pid
        self._sock = sock
        self._loop = asyncio.get_running_loop()
        self._ids = itertools.count(1)
        self._ready: asyncio.Future[None] = self._loop.create_future()
        self._pending: dict[int, asyncio.Future[ForkedChild]] = {}
        self._exits: dict[int, asyncio.Future[int]] = {}
        self._lost = asyncio.Event()
        self.alive = True
        self.lost_reason = ""
        self._loop.add_reader(sock.fileno(), self._on_readable)

    @classmethod
    async def start(cls, timeout: float = 20.0) -> ForkServer:
        """Start a fork server (in the caller's namespaces) and wait until it has preloaded."""
        ours, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
        for s in (ours, theirs):
            try:  # room for large environments; plain SO_SNDBUF is capped by wmem_max
                s.setsockopt(socket.SOL_SOCKET, 32, MAX_MESSAGE * 2)  # SO_SNDBUFFORCE
            except OSError:
                pass
        env = child_env()
        try:
            proc = await asyncio.create_subprocess_exec(
                sys.executable, "-m", "skiff.node.forkserver", "--fd", str(theirs.fileno()),
                "--parent-pid", str(os.getpid()), pass_fds=[theirs.fileno()], stdin=asyncio.subprocess.DEVNULL,
                env=env, cwd="/")
        finally:
            theirs.close()
        ours.setblocking(False)
        server = cls(proc, ours)
        try:
            await asyncio.wait_for(asyncio.shield(server._ready), timeout)
        except BaseException as exc:
            await server.close()
            if isinstance(exc, asyncio.CancelledError):
                raise
            raise ForkServerError(f"the fork server did not start: {server.lost_reason or exc!r}") from exc
        return server

    # incoming reports
    def _on_readable(self) -> None:
        while self.alive:
            try:
                data = self._sock.recv(65536)
            except (BlockingIOError, InterruptedError):
                return
            except OSError as exc:
                self._mark_lost(f"control socket: {exc}")
                return
            if not data:
                self._mark_lost(f"the fork server (pid {self.pid}) exited")
                return
            self._dispatch(json.loads(data))

    def _dispatch(self, msg: dict) -> None:
        op = msg.get("op")
        if op == "ready":
            if not self._ready.done():
                self._ready.set_result(None)
        elif op == "started":
            pid = msg["pid"]
            # Registered now: its "exited" report may be the very next message.
            child = ForkedChild(pid, self._loop.create_future())
            self._exits[pid] = child._exited
            fut = self._pending.pop(msg["id"], None)
            if fut is None or fut.done():
                # The caller gave up (timeout, cancellation): the container must not live on unseen.
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(pid, signal.SIGKILL)
            else:
                fut.set_result(child)
        elif op == "done":
            fut = self._pending.pop(msg.get("id"), None)
            if fut is not None and not fut.done():
                fut.set_result(None)
        elif op == "failed":
            fut = self._pending.pop(msg.get("id"), None)
            if fut is not None and not fut.done():
                error = MountFailed if msg.get("volume") else SpawnFailed
                fut.set_exception(error(msg.get("error") or "unknown error"))
        elif op == "exited":
            fut = self._exits.pop(msg["pid"], None)
            if fut is not None and not fut.done():
                fut.set_result(os.waitstatus_to_exitcode(msg["status"]))

    def _mark_lost(self, reason: str) -> None:
        if not self.alive:
            return
        self.alive = False
        self.lost_reason = reason
        self._loop.remove_reader(self._sock.fileno())
        self._sock.close()
        err = ForkServerError(reason)
        if not self._ready.done():
            self._ready.set_exception(err)
            self._ready.exception()  # retrieved: start() reports it
        for fut in self._pending.values():
            if not fut.done():
                fut.set_exception(err)
        self._pending.clear()
        # Its children had PR_SET_PDEATHSIG=SIGKILL: that is how they ended (or are ending now).
        for fut in self._exits.values():
            if not fut.done():
                fut.set_result(-signal.SIGKILL)
        self._exits.clear()
        self._lost.set()

    async def wait_lost(self) -> str:
        """Wait until the server is gone (died or closed); returns why."""
        await self._lost.wait()
        return self.lost_reason

    # requests
    async def _send(self, data: bytes, fds: list[int]) -> None:
        while True:
            if not self.alive:
                raise ForkServerError(self.lost_reason)
            try:
                socket.send_fds(self._sock, [data], fds)
                return
            except (BlockingIOError, InterruptedError):
                writable = self._loop.create_future()
                self._loop.add_writer(self._sock.fileno(), _resolve, writable)
                try:
                    await writable
                finally:
                    if self.alive:
                        self._loop.remove_writer(self._sock.fileno())
            except OSError as exc:
                if exc.errno == errno.EMSGSIZE:
                    raise ForkServerError(f"request of {len(data)} bytes is too large for the fork server") from exc
                self._mark_lost(f"control socket: {exc}")
                raise ForkServerError(self.lost_reason) from exc

    async def spawn(self, argv: Sequence[str], env: Mapping[str, str], cwd: str | None,
                    namespaces: Mapping[str, str], stdout_fd: int, stderr_fd: int,
                    listening_fd: int | None = None, creds: Credentials | None = None,
                    pid_namespace: str | None = None, new_pid_namespace: bool = False) -> ForkedChild:
        """Fork a child that joins `namespaces` (kind "net"/"uts"/"mnt" -> path), enters `cwd`,
        leads a new session, takes on `creds` (if any), writes to the given fds, and runs the
        built-in program `argv`. The program writes a line to `listening_fd` whenever it has
        bound its listeners. The child is born in the PID namespace at path `pid_namespace`, or
        with `new_pid_namespace` as PID 1 of a new one, with a mount namespace of its own (a copy of
        the one it joins) whose /proc shows it; else in the server's.

        Raises SpawnFailed when the child cannot join the sandbox, ForkServerError when the
        server cannot be asked (the caller should then start the container some other way)."""
        if not is_builtin_argv(argv):
            raise ForkServerError(f"not a built-in program: {list(argv)!r}")
        fds = [stdout_fd, stderr_fd] + ([listening_fd] if listening_fd is not None else [])
        req = {"op": "spawn", "argv": list(argv), "env": dict(env), "cwd": cwd, "ns": dict(namespaces)}
        if new_pid_namespace:
            req["new_pidns"] = True
        elif pid_namespace:
            req["pidns"] = pid_namespace
        if creds is not None:
            req["creds"] = {"uid": creds.uid, "gid": creds.gid, "groups": list(creds.groups),
                            "no_new_privs": creds.no_new_privs,
                            "capabilities": None if creds.privileged else creds.capability_mask()}
        child = await self._request(req, fds)
        assert child is not None
        return child

    async def sandbox(self, name: str, pins: Mapping[str, str], pin_dir: str, etc: Mapping[str, str],
                      hostname: str, mounts: Sequence[Mapping[str, object]] = (), join_net: str | None = None,
                      sysctls: Mapping[str, str] | None = None) -> None:
        """Make a pod's sandbox: new network, UTS and mount namespaces pinned at `pins` (kind ->
        path; the network one is /run/netns/<name>), the `etc` files (name -> content) over /etc,
        the hostname and the volume `mounts` ({"source", "target", "read_only"}, parents first; see
        mount_volumes). `sysctls` (dotted name -> value) are set in the new network namespace.
        With `join_net`, the path of an existing network namespace, the sandbox shares it, `pins`
        has no "net" and no sysctl is set. No process holds them (see _pinned_sandbox). Raises
        SpawnFailed when it could not be made (MountFailed when a volume could not be mounted;
        nothing is left behind), ForkServerError when the server cannot be asked."""
        req = {"op": "sandbox", "name": name, "pins": dict(pins), "pin_dir": pin_dir, "etc": dict(etc),
               "hostname": hostname, "mounts": [dict(m) for m in mounts]}
        if join_net:
            req["join_net"] = join_net
        if sysctls:
            req["sysctls"] = dict(sysctls)
        await self._request(req, [])

    async def _request(self, req: dict, fds: list[int]) -> ForkedChild | None:
        """Send one request (with `fds` passed along) and wait for the child it started (None for
        requests that start none)."""
        rid = next(self._ids)
        data = json.dumps({**req, "id": rid}).encode()
        if len(data) > MAX_MESSAGE:
            raise ForkServerError(f"request of {len(data)} bytes is too large for the fork server")
        fut: asyncio.Future[ForkedChild | None] = self._loop.create_future()
        self._pending[rid] = fut
        try:
            await self._send(data, fds)
            return await asyncio.wait_for(asyncio.shield(fut), SPAWN_TIMEOUT)
        except TimeoutError as exc:
            # A server that does not answer is broken: end it (its children go with it).
            self.kill()
            raise ForkServerError(f"the fork server did not answer within {SPAWN_TIMEOUT:g} s") from exc
        finally:
            if not fut.done():
                fut.cancel()
            self._pending.pop(rid, None)

    def kill(self) -> None:
        with contextlib.suppress(ProcessLookupError):
            self.proc.kill()
        self._mark_lost(f"the fork server (pid {self.pid}) was killed")

    async def close(self, timeout: float = 2.0) -> None:
        """Stop the server: closing the socket ends it; its remaining children die with it."""
        self._mark_lost(f"the fork server (pid {self.pid}) was closed")
        try:
            await asyncio.wait_for(self.proc.wait(), timeout)
        except TimeoutError:
            with contextlib.suppress(ProcessLookupError):
                self.proc.kill()
            await self.proc.wait()


if __name__ == "__main__":
    main(sys.argv[1:])
