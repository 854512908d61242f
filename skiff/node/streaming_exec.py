"""`kubectl exec` and `kubectl attach` sessions on an accepted WebSocket (see execproto).

exec runs the command inside the pod's sandbox (runtime.nsenter_argv) with its stdio streamed,
not buffered: pipes, or with tty=true one pseudo-terminal for stdin/stdout/stderr that is the
command's controlling terminal (`setsid --ctty`), so shells get job control and resizes apply.
When the command ends, the rest of its output is sent, then the channel-3 status carrying the
exit code, then a WebSocket close with code 1000.

attach streams what the container's main process writes from now on (read from its log, where
the runtime pumps its pipes) until the container stops. The runtime starts containers with
stdin at /dev/null, so attach has no stdin to write to.
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import fcntl
import logging
import os
import shutil
import signal
import struct
import subprocess
import termios
from collections.abc import Callable, Mapping

import aiohttp
from aiohttp import web

from skiff.node import execproto, runtime
from skiff.node.sandbox import Sandbox
from skiff.node.securitycontext import Credentials

log = logging.getLogger(__name__)

READ_CHUNK = 32 * 1024
# After the command exits, how long its output may keep flowing: a background child that
# inherited the pipes would otherwise hold the session open forever.
DRAIN_GRACE = 2.0
# How long a terminal session waits for the client's first resize before starting the command.
INITIAL_SIZE_WAIT = 0.2


class _Sender:
    """Serialises messages from several pumps onto one WebSocket."""

    def __init__(self, ws: web.WebSocketResponse):
        self.ws = ws
        self._lock = asyncio.Lock()

    async def send(self, message: bytes) -> None:
        async with self._lock:
            if not self.ws.closed:
                await self.ws.send_bytes(message)


def _exit_code(returncode: int) -> int:
    return 128 - returncode if returncode < 0 else returncode


def exec_start_error(sandbox: Sandbox | None, argv: list[str], env: Mapping[str, str]) -> str | None:
    """Why the command cannot start, in the words kubelet/containerd use; None when it can."""
    if sandbox is None or not sandbox.is_alive():
        return "error executing command in container: container is not running"
    if not argv:
        return "error executing command in container: no command specified"
    if shutil.which(argv[0], path=env.get("PATH", runtime.DEFAULT_PATH)) is None:
        if "/" in argv[0]:
            why = f'exec: "{argv[0]}": stat {argv[0]}: no such file or directory'
        else:
            why = f'exec: "{argv[0]}": executable file not found in $PATH'
        return ("error executing command in container: failed to exec in container: OCI runtime exec failed: "
                f"exec failed: unable to start container process: {why}: unknown")
    return None


async def _finish(sender: _Sender, protocol: str, status: dict) -> None:
    message = execproto.status_message(protocol, status)
    with contextlib.suppress(ConnectionError, RuntimeError):
        if message is not None:
            await sender.send(message)
        await sender.ws.close(code=aiohttp.WSCloseCode.OK)


class _Pty:
    """The master side of a pseudo-terminal, read and written without blocking the loop."""

    def __init__(self, master: int):
        self.fd = master
        os.set_blocking(master, False)
        self.loop = asyncio.get_running_loop()

    async def read(self) -> bytes:
        while True:
            try:
                return os.read(self.fd, READ_CHUNK)
            except BlockingIOError:
                await self._wait(self.loop.add_reader, self.loop.remove_reader)
            except OSError as exc:
                if exc.errno == errno.EIO:  # every slave end is closed: the terminal's EOF
                    return b""
                raise

    async def write(self, data: bytes) -> None:
        view = memoryview(data)
        while view:
            try:
                view = view[os.write(self.fd, view):]
            except BlockingIOError:
                await self._wait(self.loop.add_writer, self.loop.remove_writer)

    async def _wait(self, add: Callable, remove: Callable) -> None:
        fut = self.loop.create_future()
        add(self.fd, lambda: fut.done() or fut.set_result(None))
        try:
            await fut
        finally:
            remove(self.fd)

    def resize(self, width: int, height: int) -> None:
        with contextlib.suppress(OSError):
            fcntl.ioctl(self.fd, termios.TIOCSWINSZ, struct.pack("HHHH", height, width, 0, 0))

    def close(self) -> None:
        with contextlib.suppress(OSError):
            os.close(self.fd)


async def serve_exec(
    ws: web.WebSocketResponse,
    protocol: str,
    sandbox: Sandbox | None,
    argv: list[str],
    env: Mapping[str, str] | None,
    stdin: bool,
    stdout: bool,
    stderr: bool,
    tty: bool,
    creds: Credentials | None = None,
    image: str | None = None,
    namespaces: Mapping[str, str] | None = None,
) -> int | None:
    """Run `argv` in the sandbox, as `creds` (the container's user; None: root), for a prepared
    WebSocket; returns the exit code (None: not started). `image`, the container's, lets `argv`
    be one of its programs (runtime.exec_argv); `namespaces` are the container's own, which the
    command joins (runtime.ContainerProcess.namespaces)."""
    sender = _Sender(ws)
    full_env = runtime.container_env(sandbox, env) if sandbox is not None else dict(env or {})
    # Statuses keep naming `argv`: it is the command the user asked for, built-in or not.
    run_argv, full_env = runtime.exec_argv(image, argv, full_env)
    problem = exec_start_error(sandbox, run_argv, full_env)
    if problem is not None:
        await _finish(sender, protocol, execproto.internal_error_status(problem))
        return None
    assert sandbox is not None
    cmd = runtime.nsenter_argv(sandbox, run_argv, creds=creds, namespaces=namespaces)
    pty: _Pty | None = None
    first: aiohttp.WSMessage | None = None
    try:
        if tty:
            master, slave = os.openpty()
            pty = _Pty(master)
            first = await _initial_size(ws, pty)
            # setsid --ctty makes the terminal (its stdin) the controlling one; --wait keeps its
            # pid the command's even if it had to fork.
            try:
                proc = await asyncio.create_subprocess_exec(
                    "setsid", "--ctty", "--wait", *cmd, stdin=slave, stdout=slave, stderr=slave, env=full_env)
            finally:
                os.close(slave)
        else:
            proc = await asyncio.create_subprocess_exec(
                *cmd,
                stdin=subprocess.PIPE if stdin else subprocess.DEVNULL,
                stdout=subprocess.PIPE if stdout else subprocess.DEVNULL,
                stderr=subprocess.PIPE if stderr else subprocess.DEVNULL,
                env=full_env, start_new_session=True)
    except OSError as exc:
        if pty is not None:
            pty.close()
        await _finish(sender, protocol, execproto.internal_error_status(
            f"error executing command in container: {exc}"))
        return None

    async def pump_pipe(reader: asyncio.StreamReader, channel: int) -> None:
        while chunk := await reader.read(READ_CHUNK):
            await sender.send(execproto.frame(channel, chunk))

    async def pump_pty() -> None:
        assert pty is not None
        while chunk := await pty.read():
            await sender.send(execproto.frame(execproto.STDOUT, chunk))

    pumps: list[asyncio.Task] = []
    if pty is not None:
        pumps.append(asyncio.create_task(pump_pty()))
    else:
        if proc.stdout is not None:
            pumps.append(asyncio.create_task(pump_pipe(proc.stdout, execproto.STDOUT)))
        if proc.stderr is not None:
            pumps.append(asyncio.create_task(pump_pipe(proc.stderr, execproto.STDERR)))
    client = asyncio.create_task(_read_client(ws, protocol, proc, pty, stdin, first))
    waiter = asyncio.create_task(proc.wait())
    try:
        await asyncio.wait({waiter, client}, return_when=asyncio.FIRST_COMPLETED)
        if not waiter.done():
            # The client went away before the command ended; do not leave it running unattended.
            _kill_group(proc.pid)
            await waiter
            return _exit_code(proc.returncode or 0)
        code = _exit_code(proc.returncode or 0)
        _, pending = await asyncio.wait(pumps, timeout=DRAIN_GRACE) if pumps else (set(), set())
        for task in pending:
            task.cancel()
        status = execproto.success_status() if code == 0 else execproto.exit_code_status(argv, code)
        await _finish(sender, protocol, status)
        return code
    finally:
        client.cancel()
        for task in pumps:
            task.cancel()
        await asyncio.gather(client, *pumps, return_exceptions=True)
        if proc.returncode is None:
            _kill_group(proc.pid)
            await proc.wait()
        if pty is not None:
            pty.close()


def _kill_group(pid: int) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(pid, signal.SIGKILL)


async def _initial_size(ws: web.WebSocketResponse, pty: _Pty) -> aiohttp.WSMessage | None:
    """kubectl sends the terminal's size first thing: apply it before the command starts, so that
    the command sees its real size from the start (a resize handled after the start comes too late
    for a quick `stty size` or a shell's first prompt). Waits INITIAL_SIZE_WAIT at most; returns a
    first message that is something else, to be handled as the session goes on."""
    try:
        msg = await ws.receive(timeout=INITIAL_SIZE_WAIT)
    except TimeoutError:
        return None
    if msg.type == aiohttp.WSMsgType.BINARY:
        channel, payload = execproto.parse(msg.data)
        if channel == execproto.RESIZE:
            _resize(pty, payload)
            return None
    return msg


def _resize(pty: _Pty, payload: bytes) -> None:
    size = execproto.parse_resize(payload)
    if size is not None:
        pty.resize(size.width, size.height)


async def _read_client(ws: web.WebSocketResponse, protocol: str, proc: asyncio.subprocess.Process,
                       pty: _Pty | None, stdin: bool, first: aiohttp.WSMessage | None = None) -> None:
    """Client → command: stdin bytes, stdin EOF, terminal resizes (`first`, already received,
    before the rest). Returns when the client leaves."""
    if first is not None and not await _handle_client_message(first, protocol, proc, pty, stdin):
        return
    async for msg in ws:
        if not await _handle_client_message(msg, protocol, proc, pty, stdin):
            return


async def _handle_client_message(msg: aiohttp.WSMessage, protocol: str, proc: asyncio.subprocess.Process,
                                 pty: _Pty | None, stdin: bool) -> bool:
    """Act on one message from the client; False when the client is leaving."""
    if msg.type != aiohttp.WSMsgType.BINARY:
        return msg.type not in (aiohttp.WSMsgType.ERROR, aiohttp.WSMsgType.CLOSE)
    channel, payload = execproto.parse(msg.data)
    try:
        if channel == execproto.STDIN and stdin and payload:
            if pty is not None:
                await pty.write(payload)
            elif proc.stdin is not None:
                proc.stdin.write(payload)
                await proc.stdin.drain()
        elif channel == execproto.CLOSE and execproto.supports_close(protocol) and payload[:1] == b"\x00":
            if pty is not None:
                await pty.write(b"\x04")  # a terminal's EOF is the EOT character at line start
            elif proc.stdin is not None:
                proc.stdin.close()
        elif channel == execproto.RESIZE and pty is not None:
            _resize(pty, payload)
    except (BrokenPipeError, ConnectionResetError):
        pass  # the command closed its stdin or exited; its status is on the way
    return True


# ---- attach ------------------------------------------------------------------------------------------


async def serve_attach(
    ws: web.WebSocketResponse,
    protocol: str,
    log_path: str,
    running: Callable[[], bool],
    stdout: bool,
    stderr: bool,
    poll_interval: float = 0.1,
    from_start: bool = False,
) -> None:
    """Stream the container's output from now (or `from_start`, all of this run's) until it stops,
    then a Success status and close."""
    sender = _Sender(ws)
    try:
        offset = 0 if from_start else os.path.getsize(log_path)
    except OSError:
        offset = 0
    wanted = {"stdout": execproto.STDOUT if stdout else None, "stderr": execproto.STDERR if stderr else None}

    async def follow() -> None:
        nonlocal offset
        while True:
            alive = running()
            try:
                with open(log_path, "rb") as f:
                    f.seek(offset)
                    data = f.read()
            except FileNotFoundError:
                data = b""
            end = data.rfind(b"\n") + 1
            offset += end
            for line in data[:end].splitlines():
                record = runtime.parse_log_record(line)
                channel = wanted.get(record.stream) if record is not None else None
                if record is not None and channel is not None:
                    body = record.content if record.partial else record.content + b"\n"
                    await sender.send(execproto.frame(channel, body))
            if not alive:
                return
            await asyncio.sleep(poll_interval)

    async def drain_client() -> None:
        async for msg in ws:  # nothing to forward (no stdin), but pings/close must be processed
            if msg.type in (aiohttp.WSMsgType.ERROR, aiohttp.WSMsgType.CLOSE):
                return

    follower = asyncio.create_task(follow())
    client = asyncio.create_task(drain_client())
    try:
        await asyncio.wait({follower, client}, return_when=asyncio.FIRST_COMPLETED)
        if follower.done() and follower.exception() is None:
            await _finish(sender, protocol, execproto.success_status())
    finally:
        for task in (follower, client):
            task.cancel()
        await asyncio.gather(follower, client, return_exceptions=True)
