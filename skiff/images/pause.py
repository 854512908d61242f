"""registry.k8s.io/pause: does nothing until it is told to stop (SIGTERM or SIGINT), then
exits 0. No asyncio: this is the cheapest process a pod can run."""

from __future__ import annotations

import os
import signal
import sys
from collections.abc import Callable


def wait_for_signal(on_signal: Callable[[int], object] | None = None, reap: bool = False) -> int:
    """Block until SIGTERM or SIGINT. The signals are blocked and then waited for, so one
    arriving at any moment (even before the wait starts) is not lost. With `reap`, children that
    end meanwhile are reaped: the pause process is PID 1 of a pod that shares its PID namespace,
    where orphans end up (as pause.c reaps them)."""
    wanted = {signal.SIGTERM, signal.SIGINT} | ({signal.SIGCHLD} if reap else set())
    signal.pthread_sigmask(signal.SIG_BLOCK, wanted)
    while True:
        sig = signal.sigwait(wanted)
        if sig != signal.SIGCHLD:
            break
        _reap_children()
    if on_signal is not None:
        on_signal(sig)
    return int(sig)


def _reap_children() -> None:
    while True:
        try:
            pid, _ = os.waitpid(-1, os.WNOHANG)
        except ChildProcessError:
            return
        if pid == 0:
            return


def main(argv: list[str]) -> None:
    if argv and argv[0] == "-v":
        print("pause.c (Skiff built-in)")
        raise SystemExit(0)
    wait_for_signal(lambda sig: print(
        f"Shutting down, got signal: {'Terminated' if sig == signal.SIGTERM else 'Interrupt'}",
        file=sys.stderr, flush=True), reap=True)
    raise SystemExit(0)
