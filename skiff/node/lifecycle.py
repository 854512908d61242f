"""Container lifecycle hooks: postStart after a container starts, preStop before it is stopped.

A handler is one of `exec` (a command in the container), `httpGet` (against the pod, or `host`) or
`sleep` (seconds). The preStop hook spends the termination grace period: the kubelet
(skiff.node.kubelet) stops the container when the hook returns or the grace period is over, whichever
comes first, and always leaves the process at least MIN_STOP_GRACE seconds after its SIGTERM.
"""

from __future__ import annotations

import asyncio

from skiff.node import probes

MIN_STOP_GRACE = 2.0  # the kubelet's minimumGracePeriodInSeconds


async def run_handler(handler: dict, host: str, container: dict, run_exec: probes.ExecFn, timeout: float
                      ) -> tuple[bool, str]:
    """Run one hook handler, `timeout` seconds at most: (succeeded, what went wrong)."""
    if handler.get("sleep") is not None:
        await asyncio.sleep(max(0.0, min(float(handler["sleep"].get("seconds") or 0), timeout)))
        return True, ""
    if handler.get("exec") is not None:
        return await probes.exec_check(run_exec, list(handler["exec"].get("command") or []), timeout)
    if handler.get("httpGet") is not None:
        h = handler["httpGet"]
        try:
            port = probes.resolve_port(h.get("port"), container)
        except ValueError as e:
            return False, str(e)
        return await probes.http_get(h.get("host") or host, port, h.get("path") or "/", h.get("scheme") or "HTTP",
                                     h.get("httpHeaders") or [], timeout)
    return False, "the hook names no handler (exec, httpGet or sleep)"
