"""registry.k8s.io/pause: does nothing until it is told to stop (SIGTERM or SIGINT), then
exits 0. No asyncio: this is the cheapest process a pod can run."""

from __future__ import annotations

import signal
import sys
from collections.abc import Callable


def wait_for_signal(on_signal: Callable[[int], object] | None = None) -> int:
    """Block until SIGTERM or SIGINT. The signals are blocked and then waited for, so one
    arriving at any moment (even before the wait starts) is not lost."""
    wanted = {signal.SIGTERM, signal.SIGINT}
    signal.pthread_sigmask(signal.SIG_BLOCK, wanted)
    sig = signal.sigwait(wanted)
    if on_signal is not None:
        on_signal(sig)
    return int(sig)


def main(argv: list[str]) -> None:
    if argv and argv[0] == "-v":
        print("pause.c (Skiff built-in)")
        raise SystemExit(0)
    wait_for_signal(lambda sig: print(
        f"Shutting down, got signal: {'Terminated' if sig == signal.SIGTERM else 'Interrupt'}",
        file=sys.stderr, flush=True))
    raise SystemExit(0)
