"""Container probes (startup, liveness, readiness) with the kubelet's timing and threshold rules.

A probe action (`httpGet`, `tcpSocket`, `exec`) is one async check returning (success, message);
`ProbeWorker` runs it every `periodSeconds` after `initialDelaySeconds`, bounds each run by
`timeoutSeconds`, and reports a result only after `successThreshold` consecutive successes or
`failureThreshold` consecutive failures, as the kubelet's prober worker does. Messages are the
ones the kubelet puts in its `Unhealthy` events.
"""

from __future__ import annotations

import asyncio
import functools
import ssl
import time
from collections.abc import Awaitable, Callable, Sequence

from skiff.node.runtime import ExecResult

USER_AGENT = "kube-probe/1.33"
Check = Callable[[], Awaitable[tuple[bool, str]]]
ExecFn = Callable[[Sequence[str], float], Awaitable[ExecResult]]

LIVENESS, READINESS, STARTUP = "Liveness", "Readiness", "Startup"


def resolve_port(port: int | str, container: dict) -> int:
    """A probe's port: a number, or the name of one of the container's ports."""
    if isinstance(port, int):
        return port
    if isinstance(port, str) and port.isdigit():
        return int(port)
    for p in container.get("ports") or []:
        if p.get("name") == port:
            return int(p["containerPort"])
    raise ValueError(f"couldn't find port {port!r} in container {container.get('name')!r}")


def _hostport(host: str, port: int) -> str:
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


@functools.cache
def _insecure() -> ssl.SSLContext:
    # Built on first use: loading the CA store costs ~20 ms, which every agent would pay at start-up.
    ctx = ssl.create_default_context()
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE
    return ctx


def _dial_error(e: OSError) -> str:
    if isinstance(e, ConnectionRefusedError):
        return "connect: connection refused"
    if isinstance(e, ConnectionResetError):
        return "read: connection reset by peer"
    return f"connect: {e.strerror or e}".lower() if e.strerror else str(e)


async def http_get(host: str, port: int, path: str = "/", scheme: str = "HTTP",
                   headers: Sequence[dict] = (), timeout: float = 1.0) -> tuple[bool, str]:
    """Success for a 2xx/3xx answer. Redirects are not followed (a 3xx already counts)."""
    if not path.startswith("/"):
        path = "/" + path
    hp = _hostport(host, port)
    url = f"{scheme.lower()}://{hp}{path}"
    hdrs = {"Host": hp, "User-Agent": USER_AGENT, "Accept": "*/*"}
    for h in headers:
        if h.get("name"):
            hdrs[h["name"].title() if h["name"].lower() in ("host", "user-agent", "accept") else h["name"]] = \
                h.get("value", "")
    request = f"GET {path} HTTP/1.1\r\n" + "".join(f"{k}: {v}\r\n" for k, v in hdrs.items()) + \
        "Connection: close\r\n\r\n"
    writer = None
    try:
        async with asyncio.timeout(timeout):
            reader, writer = await asyncio.open_connection(
                host, port, ssl=_insecure() if scheme.upper() == "HTTPS" else None)
            writer.write(request.encode("latin-1"))
            await writer.drain()
            line = await reader.readline()
    except TimeoutError:
        return False, f'Get "{url}": context deadline exceeded (Client.Timeout exceeded while awaiting headers)'
    except OSError as e:
        what = "dial tcp " + hp + ": " if writer is None else ""
        return False, f'Get "{url}": {what}{_dial_error(e)}'
    finally:
        if writer is not None:
            writer.close()
    parts = line.decode("latin-1").split()
    if len(parts) < 2 or not parts[1].isdigit():
        return False, f'Get "{url}": EOF' if not line else f'Get "{url}": malformed HTTP response {line[:40]!r}'
    code = int(parts[1])
    if 200 <= code < 400:
        return True, ""
    return False, f"HTTP probe failed with statuscode: {code}"


async def tcp_socket(host: str, port: int, timeout: float = 1.0) -> tuple[bool, str]:
    hp = _hostport(host, port)
    try:
        async with asyncio.timeout(timeout):
            _, writer = await asyncio.open_connection(host, port)
    except TimeoutError:
        return False, f"dial tcp {hp}: i/o timeout"
    except OSError as e:
        return False, f"dial tcp {hp}: {_dial_error(e)}"
    writer.close()
    return True, ""


async def exec_check(run: ExecFn, command: Sequence[str], timeout: float) -> tuple[bool, str]:
    try:
        res = await run(command, timeout)
    except TimeoutError:
        return False, f"command {' '.join(command)!r} timed out"
    out = (res.stdout + res.stderr).decode(errors="replace")
    if res.exit_code == 0:
        return True, out
    return False, out or f"command {' '.join(command)!r} exited with {res.exit_code}"


def make_check(probe: dict, host: str, container: dict, run_exec: ExecFn | None) -> Check:
    """The probe's action bound to its target; `host` is the pod IP."""
    timeout = float(probe.get("timeoutSeconds") or 1)
    if "httpGet" in probe:
        h = probe["httpGet"]
        port = resolve_port(h.get("port"), container)
        target = h.get("host") or host
        return lambda: http_get(target, port, h.get("path") or "/", h.get("scheme") or "HTTP",
                                h.get("httpHeaders") or [], timeout)
    if "tcpSocket" in probe:
        t = probe["tcpSocket"]
        port = resolve_port(t.get("port"), container)
        target = t.get("host") or host
        return lambda: tcp_socket(target, port, timeout)
    if "exec" in probe:
        if run_exec is None:
            raise ValueError("exec probes need a way to run commands in the container")
        command = list(probe["exec"].get("command") or [])
        return lambda: exec_check(run_exec, command, timeout)
    raise ValueError("probe has no supported handler (httpGet, tcpSocket or exec)")


class ProbeWorker:
    """Runs one probe of one container and reports thresholded results.

    `on_result(ok)` is called with the first result and whenever the result flips; `on_failure(msg)`
    for every failed run (the kubelet's Unhealthy event). Liveness and startup probes stop once they
    report failure (the container is about to be restarted) and startup probes once they succeed.
    """

    def __init__(self, kind: str, probe: dict, check: Check, on_result: Callable[[bool], object],
                 on_failure: Callable[[str], object] | None = None, started_at: float | None = None):
        self.kind = kind
        self.check = check
        self.on_result = on_result
        self.on_failure = on_failure
        self.initial_delay = float(probe.get("initialDelaySeconds") or 0)
        self.period = float(probe.get("periodSeconds") or 10)
        self.timeout = float(probe.get("timeoutSeconds") or 1)
        self.success_threshold = int(probe.get("successThreshold") or 1)
        self.failure_threshold = int(probe.get("failureThreshold") or 3)
        self.started_at = started_at if started_at is not None else time.time()
        self.result: bool | None = None
        self._last: bool | None = None
        self._run = 0
        self._task: asyncio.Task | None = None

    def start(self) -> None:
        self._task = asyncio.get_running_loop().create_task(self.run(), name=f"probe-{self.kind}")

    def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()

    def observe(self, ok: bool) -> bool:
        """Feed one probe outcome; True when the reported result changed (or was first set)."""
        if ok == self._last:
            self._run += 1
        else:
            self._last = ok
            self._run = 1
        needed = self.success_threshold if ok else self.failure_threshold
        if self._run < needed or self.result is ok:
            return False
        self.result = ok
        return True

    async def probe_once(self) -> tuple[bool, str]:
        try:
            # The action enforces the timeout itself (with the right message); this is a backstop.
            return await asyncio.wait_for(self.check(), self.timeout + 1)
        except TimeoutError:
            return False, "probe timed out"
        except Exception as e:  # a probe that cannot even run counts as a failure
            return False, str(e)

    async def run(self) -> None:
        delay = self.started_at + self.initial_delay - time.time()
        if delay > 0:
            await asyncio.sleep(delay)
        while True:
            t0 = time.monotonic()
            ok, msg = await self.probe_once()
            if not ok and self.on_failure is not None:
                self.on_failure(msg)
            if self.observe(ok):
                self.on_result(ok)
                if (self.kind != READINESS and not ok) or (self.kind == STARTUP and ok):
                    return
            await asyncio.sleep(max(0.0, self.period - (time.monotonic() - t0)))
