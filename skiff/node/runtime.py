"""The container process runtime: containers are processes inside their pod's sandbox.

A container is started as ``nsenter --net=<pod netns> --uts=<pause> --mount=<pause> --wdns=<dir>
-- unshare --mount --mount-proc -- argv...``, forked as PID 1 of a new PID namespace
(skiff.node.pidns): nsenter joins the namespaces, unshare gives the program a mount namespace of
its own with a /proc of that PID namespace, and both exec, so the container's pid is the program's
pid, its hostname is the pod's, and /etc/resolv.conf and /etc/hosts are the pod's. Each container
leads its own process group, which `stop` signals as a whole.

Logs use the CRI format kubelet reads (one record per line):
``<RFC3339 timestamp, 9 fraction digits> <stdout|stderr> <F|P> <content>``, where P marks a piece
of a line longer than MAX_LOG_LINE that continues in the next record. The node agent pumps the
container's pipes into that file; `read_log` and `follow_log` give what `kubectl logs` shows.

Processes are children of the node agent; with Python 3.11's default child watcher each one costs
a waiting thread, so an agent running many containers should install asyncio's PidfdChildWatcher.

Built-in images (``python -m skiff.images ...``) start in a few ms instead when the agent has a
fork server (skiff.node.forkserver, set with `use_fork_server`): the server forks a child that joins
the same namespaces with setns(2). The container then is the server's child, not the agent's; its
exit status comes from the server's reports, and everything else (pid = process group, stop,
signals, exit codes, logs) is the same. Without a live server, built-ins go through nsenter.
"""

from __future__ import annotations

import asyncio
import calendar
import contextlib
import functools
import logging
import os
import shutil
import signal
import subprocess
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime

from skiff.images.registry import builtin_program
from skiff.node import forkserver, pidns
from skiff.node.sandbox import Sandbox
from skiff.node.securitycontext import Credentials, setpriv_argv

log = logging.getLogger(__name__)

MAX_LOG_LINE = 16 * 1024
DEFAULT_PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"


class ContainerStartError(RuntimeError):
    """The container could not be started (kubelet reports this as a StartError)."""


# ---- CRI log format ------------------------------------------------------------------------------


def format_timestamp(ns: int) -> str:
    seconds, fraction = divmod(ns, 1_000_000_000)
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(seconds)) + f".{fraction:09d}Z"


def parse_timestamp(text: str) -> int:
    """Nanoseconds since the epoch of an RFC 3339 timestamp (any fraction length, Z or offset)."""
    base, rest = text[:19], text[19:]
    seconds = calendar.timegm(time.strptime(base, "%Y-%m-%dT%H:%M:%S"))
    fraction = 0
    if rest.startswith("."):
        digits = ""
        for ch in rest[1:]:
            if not ch.isdigit():
                break
            digits += ch
        rest = rest[1 + len(digits):]
        fraction = int((digits + "000000000")[:9])
    if rest not in ("Z", "z", ""):
        sign = 1 if rest[0] == "+" else -1
        hours, minutes = rest[1:].split(":")
        seconds -= sign * (int(hours) * 3600 + int(minutes) * 60)
    return seconds * 1_000_000_000 + fraction


def _since_ns(since: datetime | None) -> int:
    if since is None:
        return 0
    return int(since.timestamp()) * 1_000_000_000 + since.microsecond * 1000


@dataclass
class LogRecord:
    timestamp: str
    stream: str  # "stdout" | "stderr"
    partial: bool
    content: bytes

    @property
    def ns(self) -> int:
        return parse_timestamp(self.timestamp)


def parse_log_record(line: bytes) -> LogRecord | None:
    """One CRI log line (without its newline); None when it is not in that format."""
    parts = line.split(b" ", 3)
    if len(parts) < 3 or parts[1] not in (b"stdout", b"stderr"):
        return None
    content = parts[3] if len(parts) == 4 else b""
    return LogRecord(parts[0].decode(), parts[1].decode(), parts[2].split(b":")[0] == b"P", content)


def rotated_logs(path: str) -> list[str]:
    """The rotated files of the container log at `path`, oldest first (their names sort by time)."""
    directory, name = os.path.split(path)
    try:
        entries = os.listdir(directory)
    except OSError:
        return []
    return sorted(os.path.join(directory, e) for e in entries if e.startswith(name + "."))


# The kubelet's defaults (containerLogMaxSize, containerLogMaxFiles): a container's log file is
# rotated once it would pass 10 MiB, and 5 files are kept, the one being written included.
LOG_MAX_BYTES = 10 * 1024 * 1024
LOG_MAX_FILES = 5


class LogWriter:
    """Appends CRI records to a container's log file; one write(2) per record, so lines never mix.

    Rotates as the kubelet does: the full file is renamed to <file>.<UTC YYYYmmdd-HHMMSS> and a new
    one started; the oldest rotated files go, so that a chatty container cannot fill the disk.
    `kubectl logs` shows the current file, as on Kubernetes."""

    def __init__(self, path: str, max_bytes: int = LOG_MAX_BYTES, max_files: int = LOG_MAX_FILES):
        os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
        self.path = path
        self.max_bytes = max_bytes
        self.max_files = max(max_files, 2)
        self.fd = self._open()
        self.size = os.fstat(self.fd).st_size

    def _open(self) -> int:
        return os.open(self.path, os.O_WRONLY | os.O_CREAT | os.O_APPEND | os.O_CLOEXEC, 0o640)

    def write(self, stream: str, content: bytes, partial: bool = False) -> None:
        record = f"{format_timestamp(time.time_ns())} {stream} {'P' if partial else 'F'} ".encode() + content + b"\n"
        if self.size and self.size + len(record) > self.max_bytes:
            self._rotate()
        os.write(self.fd, record)
        self.size += len(record)

    def _rotate(self) -> None:
        existing = rotated_logs(self.path)
        rotated = f"{self.path}.{time.strftime('%Y%m%d-%H%M%S', time.gmtime())}"
        same_second = [p for p in existing if p == rotated or p.startswith(rotated + ".")]
        if same_second:
            # More than one rotation within a second: numbered after the last, so names sort in order.
            last = max(same_second)
            rotated = f"{rotated}.{(int(last.rsplit('.', 1)[1]) if last != rotated else 0) + 1:03d}"
        try:
            os.rename(self.path, rotated)
            fd = self._open()
        except OSError as exc:
            log.warning("log %s not rotated (%s); it grows on", self.path, exc)
            self.max_bytes *= 2  # not again for each line
            return
        os.close(self.fd)
        self.fd, self.size = fd, 0
        for old in sorted([*existing, rotated])[:-(self.max_files - 1)]:
            with contextlib.suppress(OSError):
                os.unlink(old)

    def close(self) -> None:
        if self.fd >= 0:
            os.close(self.fd)
            self.fd = -1


def _render(record: LogRecord, timestamps: bool) -> bytes:
    # Kubelet drops the newline of a partial piece, joining it to the next one.
    body = record.content if record.partial else record.content + b"\n"
    return (record.timestamp.encode() + b" " + body) if timestamps else body


def _tail_start(f, lines: int) -> int:
    """Offset of the first of the last `lines` complete records (reading backwards in blocks).

    An unfinished record at the very end (a write in progress) is not counted.
    """
    size = f.seek(0, os.SEEK_END)
    if lines <= 0:
        return size
    newlines: list[int] = []  # offsets of newlines, from the end backwards
    pos, block = size, 64 * 1024
    while pos > 0 and len(newlines) <= lines:
        step = min(block, pos)
        pos -= step
        f.seek(pos)
        chunk = f.read(step)
        idx = len(chunk)
        while len(newlines) <= lines:
            idx = chunk.rfind(b"\n", 0, idx)
            if idx < 0:
                break
            newlines.append(pos + idx)
    # newlines[0] ends the last complete record; the one `lines` further back ends the record before.
    return newlines[lines] + 1 if len(newlines) > lines else 0


def _records(data: bytes) -> tuple[list[LogRecord], int]:
    """Complete records in `data` and how many bytes they used (an unfinished last line is left)."""
    records = []
    used = 0
    while True:
        nl = data.find(b"\n", used)
        if nl < 0:
            return records, used
        rec = parse_log_record(data[used:nl])
        used = nl + 1
        if rec is not None:
            records.append(rec)


def read_log(
    path: str,
    tail: int | None = None,
    timestamps: bool = False,
    since: datetime | None = None,
    limit_bytes: int | None = None,
) -> bytes:
    """What `kubectl logs` prints for a container: its lines, stdout and stderr interleaved.

    `tail`: only the last N records; `since`: only records at or after that (aware) time;
    `timestamps`: prefix each line with its RFC 3339 timestamp; `limit_bytes`: cut the output.
    """
    try:
        f = open(path, "rb")
    except FileNotFoundError:
        return b""
    with f:
        start = _tail_start(f, tail) if tail is not None else 0
        f.seek(start)
        records, _ = _records(f.read())
    cutoff = _since_ns(since)
    out = b"".join(_render(r, timestamps) for r in records if not cutoff or r.ns >= cutoff)
    return out[:limit_bytes] if limit_bytes is not None else out


def _read_rotated_after(path: str, inode: int) -> bytes:
    """What the files rotated after the one with `inode` hold: a fast writer may rotate more than
    once between two reads of a follower."""
    later = rotated_logs(path)
    for i, rotated in enumerate(later):
        with contextlib.suppress(OSError):
            if os.stat(rotated).st_ino == inode:
                later = later[i + 1:]
                break
    else:
        return b""  # ours was removed already: nothing to tell what came after it
    data = b""
    for rotated in later:
        with contextlib.suppress(OSError), open(rotated, "rb") as f:
            data += f.read()
    return data


async def follow_log(
    path: str,
    running: Callable[[], bool],
    tail: int | None = None,
    timestamps: bool = False,
    since: datetime | None = None,
    poll_interval: float = 0.1,
) -> AsyncIterator[bytes]:
    """`kubectl logs -f`: yields what read_log would, then new lines until `running()` is false,
    across the log's rotations (each file is read to its end before the next one's start)."""
    cutoff = _since_ns(since)
    start = 0
    if tail is not None and os.path.exists(path):
        with open(path, "rb") as f:
            start = _tail_start(f, tail)
    current = None
    pending = b""
    try:
        while True:
            alive = running()  # checked before reading, so lines written just before exit are not lost
            if current is None:
                with contextlib.suppress(FileNotFoundError):
                    current = open(path, "rb")
                    current.seek(start)
                    start = 0
            data, rotated = b"", False
            if current is not None:
                data = current.read()
                try:
                    rotated = os.stat(path).st_ino != os.fstat(current.fileno()).st_ino
                except FileNotFoundError:
                    rotated = False  # removed with its pod: what is open stays readable
                if rotated:
                    data += current.read()  # written before the rename
                    data += _read_rotated_after(path, os.fstat(current.fileno()).st_ino)
                    current.close()
                    current = None
            data, pending = pending + data, b""
            records, used = _records(data)
            pending = data[used:]
            chunk = b"".join(_render(r, timestamps) for r in records if not cutoff or r.ns >= cutoff)
            if chunk:
                yield chunk
            if rotated:
                continue  # the new file at once
            if not alive:
                return
            await asyncio.sleep(poll_interval)
    finally:
        if current is not None:
            current.close()


async def _pump(reader: asyncio.StreamReader, stream: str, log: LogWriter) -> None:
    while True:
        try:
            line = await reader.readuntil(b"\n")
            log.write(stream, line[:-1])
        except asyncio.LimitOverrunError as exc:
            # A line longer than the reader's limit: record what is buffered as a partial piece.
            piece = await reader.readexactly(min(exc.consumed, MAX_LOG_LINE) or 1)
            log.write(stream, piece, partial=True)
        except asyncio.IncompleteReadError as exc:
            if exc.partial:
                log.write(stream, exc.partial)
            return


# ---- processes ---------------------------------------------------------------------------------------


def _exit_code(returncode: int) -> int:
    # Like container runtimes: death by signal N is exit code 128 + N (SIGKILL -> 137).
    return 128 - returncode if returncode < 0 else returncode


def nsenter_argv(sandbox: Sandbox, argv: Sequence[str], working_dir: str | None = None,
                 creds: Credentials | None = None, namespaces: Mapping[str, str] | None = None,
                 own_proc: bool = False) -> list[str]:
    """argv that runs `argv` inside the sandbox: its network, UTS (hostname) and mount namespaces,
    as the user and groups of `creds` (through setpriv, once inside: root until then).

    `namespaces` (kind "mnt"/"pid" -> path) are a container's own, joined instead of the pod's
    (ContainerProcess.namespaces: how exec enters a container). With `own_proc`, the program gets
    a mount namespace of its own, a copy of the pod's, with a /proc of the PID namespace it was
    born in (the container's own or the pod's: see skiff.node.pidns)."""
    namespaces = namespaces or {}
    cmd = [
        "nsenter",
        f"--net={sandbox.netns_path}",
        f"--uts={sandbox.ns_path('uts')}",
        f"--mount={namespaces.get('mnt') or sandbox.ns_path('mnt')}",
    ]
    if namespaces.get("pid"):
        cmd.append(f"--pid={namespaces['pid']}")
    if working_dir:
        # In the pod's view (which has its volumes): --wd would open the host's directory.
        cmd.append(f"{_nsenter_wd_option()}={working_dir}")
    cmd.append("--")
    if own_proc:
        # No --fork: the program is already in its PID namespace (PID 1 of its own), and stays the
        # container's pid.
        cmd += ["unshare", "--mount", "--propagation", "unchanged", "--mount-proc", "--"]
    if creds is not None:
        return cmd + [*setpriv_argv(creds), "--", *argv]
    return cmd + list(argv)


@functools.cache
def _nsenter_wd_option() -> str:
    """--wdns (util-linux 2.38+) changes directory after entering the namespaces; older nsenters
    only have --wd, which is right for every directory but a pod's volumes."""
    try:
        out = subprocess.run(["nsenter", "--help"], capture_output=True, text=True, timeout=5).stdout
    except (OSError, subprocess.SubprocessError):
        out = ""
    return "--wdns" if "--wdns" in out else "--wd"


def container_env(sandbox: Sandbox, env: Mapping[str, str] | None) -> dict[str, str]:
    """The environment a container sees: the given one, plus PATH and HOSTNAME as runtimes add."""
    result = {"PATH": DEFAULT_PATH, "HOSTNAME": sandbox.hostname}
    result.update(env or {})
    return result


def exec_argv(image: str | None, argv: Sequence[str], env: Mapping[str, str]) -> tuple[list[str], dict[str, str]]:
    """The argv and environment that run `argv`, a command exec'd in a running container of `image`
    (kubectl exec, exec probes and hooks), given the container's environment `env`.

    An image's own programs (`/agnhost`, `nginx`) exist here only as built-ins, so one runs as
    resolve() would run it as the container's command, the image's environment under the
    container's, even when the host has a program of that name (its nginx is not the one the
    container runs). Not so for a stand-in that plays only the image's own command (the bootcamp
    image's `node`): an exec of that means the real program, which the host may have."""
    if image and argv:
        on_host = shutil.which(argv[0], path=env.get("PATH", DEFAULT_PATH)) is not None
        builtin = builtin_program(image, argv, on_host)
        if builtin is not None:
            return builtin.argv, {**builtin.env, **env}
    return list(argv), dict(env)


# Looks up a working directory ($1) and a program ($2, on the PATH $3) in the pod's mount namespace,
# as exec would: exit 0 when both are there, 3 without the directory, 4 without the program.
_LOOKUP_IN_POD = """
[ -z "$1" ] || cd "$1" 2>/dev/null || exit 3
case $2 in */*) [ -f "$2" ] && [ -x "$2" ] && exit 0; exit 4;; esac
IFS=:
for d in $3; do [ -f "${d:-.}/$2" ] && [ -x "${d:-.}/$2" ] && exit 0; done
exit 4
"""


async def _runnable_in_pod(sandbox: Sandbox, program: str, path: str, working_dir: str | None) -> tuple[bool, bool]:
    """(working directory there, program there) in the pod's own view, which has its volumes."""
    proc = await asyncio.create_subprocess_exec(
        "nsenter", f"--mount={sandbox.ns_path('mnt')}", "--", "sh", "-c", _LOOKUP_IN_POD, "sh",
        working_dir or "", program, path, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL)
    code = await proc.wait()
    if code not in (0, 3, 4):  # could not look: the host's answer stands
        return (not working_dir or os.path.isdir(working_dir)), False
    return code != 3, code == 0


async def _check_runnable(sandbox: Sandbox, argv: Sequence[str], env: Mapping[str, str],
                          working_dir: str | None) -> None:
    if not argv:
        raise ContainerStartError("no command specified")
    if not sandbox.is_alive():
        raise ContainerStartError(f"the pod sandbox {sandbox.netns} is not running")
    path = env.get("PATH", DEFAULT_PATH)
    directory_found = not working_dir or os.path.isdir(working_dir)
    program_found = shutil.which(argv[0], path=path) is not None
    if not (directory_found and program_found):
        # The host's view answers for nearly every container without starting a process; what
        # it lacks may still be in the pod's, in a volume (a script from a ConfigMap, say).
        directory_found, program_found = await _runnable_in_pod(sandbox, argv[0], path, working_dir)
    if not directory_found:
        raise ContainerStartError(f"working directory {working_dir!r} does not exist")
    if not program_found:
        raise ContainerStartError(f'exec: "{argv[0]}": executable file not found in $PATH')


class ContainerProcess:
    """A running (or finished) container process."""

    def __init__(self, pid: int, returncode: Awaitable[int], log: LogWriter, pumps: list[asyncio.Task],
                 forked: bool = False, listening_fd: int | None = None,
                 namespaces: Mapping[str, str] | None = None):
        # `returncode` resolves like Popen.returncode (-N for signal N) once the process is reaped,
        # by asyncio for our own children or by the fork server's report for forked ones.
        self._returncode = returncode
        self._log = log
        self._pumps = pumps
        self.pid: int = pid
        self.forked = forked
        # The container's own namespaces that exec joins instead of the pod's (see nsenter_argv).
        self.namespaces: dict[str, str] = dict(namespaces or {})
        self.started_at: float = time.time()
        self.finished_at: float | None = None
        self.exit_code: int | None = None
        # Set each time the program says it has bound listeners (built-in images started by the
        # fork server); None when it cannot say, and whoever waits for its ports must poll.
        self.listened: asyncio.Event | None = None
        self._listening_fd = listening_fd
        if listening_fd is not None:
            self.listened = asyncio.Event()
            asyncio.get_running_loop().add_reader(listening_fd, self._on_listening)
        self._done = asyncio.ensure_future(self._reap())

    def _on_listening(self) -> None:
        try:
            data = os.read(self._listening_fd, 4096) if self._listening_fd is not None else b""
        except BlockingIOError:
            return
        if data:
            assert self.listened is not None
            self.listened.set()
        else:
            self._close_listening()

    def _close_listening(self) -> None:
        if self._listening_fd is not None:
            asyncio.get_running_loop().remove_reader(self._listening_fd)
            os.close(self._listening_fd)
            self._listening_fd = None

    async def _reap(self) -> int:
        rc = await self._returncode
        self._close_listening()
        # The container is over: like a runtime tearing down the container, end whatever the main
        # process left running in its group, which also closes the log pipes they hold.
        self._killpg(signal.SIGKILL)
        await asyncio.gather(*self._pumps, return_exceptions=True)
        self._log.close()
        self.finished_at = time.time()
        self.exit_code = _exit_code(rc)
        return self.exit_code

    @property
    def running(self) -> bool:
        return self.exit_code is None

    def _killpg(self, sig: int) -> None:
        try:
            os.killpg(self.pid, sig)
        except (ProcessLookupError, PermissionError):
            pass

    def signal(self, sig: int) -> None:
        """Send `sig` to the container's whole process group."""
        if self.exit_code is None:
            self._killpg(sig)

    async def wait(self) -> int:
        """Wait for the container to end; returns its exit code."""
        return await asyncio.shield(self._done)

    async def stop(self, grace_seconds: float = 30.0) -> int:
        """SIGTERM, then SIGKILL after `grace_seconds` (the pod's terminationGracePeriodSeconds)."""
        if self.exit_code is not None:
            return self.exit_code
        self.signal(signal.SIGTERM)
        try:
            return await asyncio.wait_for(asyncio.shield(self._done), grace_seconds)
        except TimeoutError:
            self.signal(signal.SIGKILL)
            return await self.wait()


def _own_namespaces(pid: int, pid_mode: str, sandbox: Sandbox) -> dict[str, str]:
    """What exec joins to enter a container whose program has host pid `pid` (see nsenter_argv)."""
    if pid_mode == pidns.CONTAINER:
        return {"pid": f"/proc/{pid}/ns/pid", "mnt": f"/proc/{pid}/ns/mnt"}
    if pid_mode == pidns.POD:
        return {"pid": sandbox.ns_path("pid"), "mnt": f"/proc/{pid}/ns/mnt"}
    return {}


async def start_container(
    sandbox: Sandbox,
    argv: Sequence[str],
    env: Mapping[str, str] | None,
    working_dir: str | None,
    log_path: str,
    creds: Credentials | None = None,
    pid_mode: str = pidns.CONTAINER,
) -> ContainerProcess:
    """Start `argv` in the sandbox as `creds` (None: root), with stdout/stderr appended to
    `log_path` in CRI format, in the PID namespace `pid_mode` says (skiff.node.pidns).

    The hostname is the sandbox's (a pod-level setting). Raises ContainerStartError when the
    program cannot be found or the working directory does not exist.
    """
    full_env = container_env(sandbox, env)
    await _check_runnable(sandbox, argv, full_env, working_dir)
    server = _fork_server
    if server is not None and forkserver.is_builtin_argv(argv):
        if server.alive:
            try:
                return await _start_forked(server, sandbox, argv, full_env, working_dir, log_path, creds, pid_mode)
            except forkserver.ForkServerError as exc:
                log.warning("fork server: %s; starting %s in %s with nsenter", exc, argv[3], sandbox.netns)
        else:
            log.warning("fork server gone (%s); starting %s in %s with nsenter", server.lost_reason, argv[3],
                        sandbox.netns)
    cmd = nsenter_argv(sandbox, argv, working_dir, creds, own_proc=pid_mode != pidns.NODE)
    out_r, out_w = os.pipe2(os.O_CLOEXEC)
    err_r, err_w = os.pipe2(os.O_CLOEXEC)
    try:
        # Forked right here, between setting this thread's PID namespace for children and setting
        # it back: an await in between would let other tasks fork there too.
        born_in = contextlib.nullcontext() if pid_mode == pidns.NODE else pidns.children_born_in(
            sandbox.ns_path("pid") if pid_mode == pidns.POD else None)
        with born_in:
            proc = subprocess.Popen(cmd, stdin=subprocess.DEVNULL, stdout=out_w, stderr=err_w, env=full_env,
                                    start_new_session=True)
    except OSError as exc:
        for fd in (out_r, err_r):
            os.close(fd)
        raise ContainerStartError(str(exc)) from exc
    finally:
        for fd in (out_w, err_w):
            os.close(fd)
    writer = LogWriter(log_path)
    stdout = await _pipe_reader(out_r)
    stderr = await _pipe_reader(err_r)
    pumps = [
        asyncio.ensure_future(_pump(stdout, "stdout", writer)),
        asyncio.ensure_future(_pump(stderr, "stderr", writer)),
    ]
    if pid_mode != pidns.NODE:
        await _past_setup(proc.pid)
    return ContainerProcess(proc.pid, _reaped(proc), writer, pumps,
                            namespaces=_own_namespaces(proc.pid, pid_mode, sandbox))


@functools.cache
def _setup_programs() -> frozenset[str]:
    return frozenset(os.path.realpath(path) for path in map(shutil.which, ("nsenter", "unshare")) if path)


async def _past_setup(pid: int, timeout: float = 2.0) -> None:
    """Wait until process `pid` runs neither nsenter nor unshare: its own mount namespace and /proc
    are then in place. A container counts as started only then (as a runtime's start returns once
    the container's init has set it up), so that an exec right after it (a postStart hook, `kubectl
    exec`) joins them rather than the pod's. Takes a few milliseconds."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            if os.readlink(f"/proc/{pid}/exe") not in _setup_programs():
                return
        except OSError:
            return  # it has already ended
        await asyncio.sleep(0.001)


async def _reaped(proc: subprocess.Popen) -> int:
    """`proc`'s return code once it has ended, waited for with a pidfd (no thread, no signal
    handler). Holding `proc` until then also keeps subprocess from reaping it behind our back."""
    loop = asyncio.get_running_loop()
    fd = os.pidfd_open(proc.pid)
    ended = loop.create_future()
    loop.add_reader(fd, _resolve, ended)
    try:
        await ended
    finally:
        loop.remove_reader(fd)
        os.close(fd)
    return proc.wait()


def _resolve(fut: asyncio.Future[None]) -> None:
    if not fut.done():
        fut.set_result(None)


# ---- built-ins through the fork server ---------------------------------------------------------------

_fork_server: forkserver.ForkServer | None = None


def fork_server() -> forkserver.ForkServer | None:
    """The fork server in use, if any (the kubelet also creates sandboxes through it)."""
    return _fork_server


def use_fork_server(server: forkserver.ForkServer | None) -> None:
    """Start built-in images through `server` from now on (None: always with nsenter)."""
    global _fork_server
    _fork_server = server


async def _pipe_reader(fd: int) -> asyncio.StreamReader:
    loop = asyncio.get_running_loop()
    reader = asyncio.StreamReader(limit=MAX_LOG_LINE, loop=loop)
    await loop.connect_read_pipe(lambda: asyncio.StreamReaderProtocol(reader, loop=loop), open(fd, "rb", 0))
    return reader


async def _start_forked(server: forkserver.ForkServer, sandbox: Sandbox, argv: Sequence[str],
                        env: Mapping[str, str], working_dir: str | None, log_path: str,
                        creds: Credentials | None = None, pid_mode: str = pidns.CONTAINER) -> ContainerProcess:
    namespaces = {"net": sandbox.netns_path, "uts": sandbox.ns_path("uts"), "mnt": sandbox.ns_path("mnt")}
    out_r, out_w = os.pipe2(os.O_CLOEXEC)
    err_r, err_w = os.pipe2(os.O_CLOEXEC)
    listen_r, listen_w = os.pipe2(os.O_CLOEXEC | os.O_NONBLOCK)
    readers: list[int] = [out_r, err_r]  # closed here unless handed to a pipe reader
    started = False
    try:
        try:
            child = await server.spawn(argv, env, working_dir, namespaces, out_w, err_w, listen_w, creds,
                                       pid_namespace=sandbox.ns_path("pid") if pid_mode == pidns.POD else None,
                                       new_pid_namespace=pid_mode == pidns.CONTAINER)
        finally:
            # The server holds its own copies now (or the request failed): ours would keep the
            # pipes from ever reaching EOF.
            for fd in (out_w, err_w, listen_w):
                os.close(fd)
        writer = LogWriter(log_path)
        stdout = await _pipe_reader(readers.pop(0))
        stderr = await _pipe_reader(readers.pop(0))
        started = True
    except forkserver.SpawnFailed as exc:
        raise ContainerStartError(str(exc)) from exc
    finally:
        for fd in readers if started else [*readers, listen_r]:
            os.close(fd)
    pumps = [
        asyncio.ensure_future(_pump(stdout, "stdout", writer)),
        asyncio.ensure_future(_pump(stderr, "stderr", writer)),
    ]
    return ContainerProcess(child.pid, child.wait(), writer, pumps, forked=True, listening_fd=listen_r,
                            namespaces=_own_namespaces(child.pid, pid_mode, sandbox))


@dataclass
class ExecResult:
    exit_code: int
    stdout: bytes
    stderr: bytes


async def exec_in_container(
    sandbox: Sandbox,
    argv: Sequence[str],
    env: Mapping[str, str] | None = None,
    stdin: bytes | None = None,
    working_dir: str | None = None,
    timeout: float | None = None,
    creds: Credentials | None = None,
    image: str | None = None,
    namespaces: Mapping[str, str] | None = None,
) -> ExecResult:
    """Run a command in the sandbox and collect its output (exec probes, non-interactive exec);
    `image`, the container's, lets the command be one of its programs (see exec_argv), and
    `namespaces` are the container's own (ContainerProcess.namespaces).

    For interactive `kubectl exec`, spawn nsenter_argv(...) with exec_argv(container_env(...)) yourself and
    stream its pipes. On timeout the command's process group is killed and TimeoutError raised.
    """
    argv, full_env = exec_argv(image, argv, container_env(sandbox, env))
    try:
        await _check_runnable(sandbox, argv, full_env, working_dir)
    except ContainerStartError as exc:
        # What a runtime's exec reports for a missing program: exit code 126/127 plus a message.
        code = 127 if "not found" in str(exc) else 126
        return ExecResult(code, b"", str(exc).encode() + b"\n")
    proc = await asyncio.create_subprocess_exec(
        *nsenter_argv(sandbox, argv, working_dir, creds, namespaces),
        stdin=subprocess.PIPE if stdin is not None else subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        env=full_env,
        start_new_session=True,
    )
    try:
        out, err = await asyncio.wait_for(proc.communicate(stdin), timeout)
    except TimeoutError:
        try:
            os.killpg(proc.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        await proc.wait()
        raise
    return ExecResult(_exit_code(proc.returncode or 0), out, err)
