"""Where pods wait between scheduling attempts, after kube-scheduler's scheduling queue.

A pod that fits no node is parked in the unschedulable pool. It is tried again only when a cluster
event could change the verdict (the scheduler decides which, from the filters that rejected it), or
after MAX_IN_UNSCHEDULABLE at the latest; in both cases no sooner than its backoff allows, which
doubles with every failed attempt from INITIAL_BACKOFF up to MAX_BACKOFF. Nothing here does I/O or
reads a clock other than the one given, so the bookkeeping can be tested on its own.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field

# kube-scheduler's defaults: podInitialBackoffSeconds, podMaxBackoffSeconds,
# podMaxInUnschedulablePodsDuration, and the period of the leftover flush.
INITIAL_BACKOFF = 1.0
MAX_BACKOFF = 10.0
MAX_IN_UNSCHEDULABLE = 300.0
FLUSH_PERIOD = 30.0


def backoff_duration(attempts: int, initial: float = INITIAL_BACKOFF, maximum: float = MAX_BACKOFF) -> float:
    """Seconds a pod waits after its `attempts`-th failed attempt: initial, doubled per attempt, capped."""
    if attempts <= 0:
        return 0.0
    duration = initial
    for _ in range(attempts - 1):
        if duration >= maximum / 2:
            return maximum
        duration *= 2
    return min(duration, maximum)


@dataclass
class _Pod:
    attempts: int = 0
    failed_at: float = 0.0
    # Set while the pod sits in the unschedulable pool: since when, and which filters rejected it.
    parked_at: float | None = None
    rejected_by: frozenset[str] = field(default_factory=frozenset)
    # Released from the pool and waiting for its backoff to end (or already queued).
    released: bool = False


class UnschedulablePods:
    """Per-pod attempts, backoff and the unschedulable pool, keyed by namespace/name."""

    def __init__(self, clock: Callable[[], float] = time.monotonic) -> None:
        self.clock = clock
        self._pods: dict[str, _Pod] = {}

    def knows(self, key: str) -> bool:
        """The pod has been tried at least once since it was last forgotten."""
        return key in self._pods

    def attempt(self, key: str) -> int:
        """A scheduling attempt starts; -> its number."""
        p = self._pods.setdefault(key, _Pod())
        p.attempts += 1
        p.parked_at = None
        p.released = False
        return p.attempts

    def park(self, key: str, rejected_by: frozenset[str] | set[str]) -> None:
        """The attempt failed: the pod waits for a cluster event (or the leftover flush)."""
        p = self._pods.setdefault(key, _Pod())
        now = self.clock()
        p.failed_at = now
        p.parked_at = now
        p.rejected_by = frozenset(rejected_by)
        p.released = False

    def is_parked(self, key: str) -> bool:
        p = self._pods.get(key)
        return bool(p and p.parked_at is not None)

    def parked(self) -> list[tuple[str, frozenset[str]]]:
        """(key, filters that rejected the pod) for every parked pod."""
        return [(k, p.rejected_by) for k, p in self._pods.items() if p.parked_at is not None]

    def release(self, key: str) -> float | None:
        """Take a parked pod out of the pool -> seconds of backoff it still has to wait (0 when none),
        or None when it was not parked (already released, being tried, or unknown)."""
        p = self._pods.get(key)
        if p is None or p.parked_at is None:
            return None
        p.parked_at = None
        p.released = True
        return max(0.0, p.failed_at + backoff_duration(p.attempts) - self.clock())

    def backoff_over(self, key: str, attempts: int) -> bool:
        """A backoff timer set after attempt number `attempts` fires: is the pod still waiting for it?
        False when it was tried, parked again or forgotten in the meantime."""
        p = self._pods.get(key)
        return bool(p and p.released and p.attempts == attempts)

    def attempts(self, key: str) -> int:
        p = self._pods.get(key)
        return p.attempts if p else 0

    def expired(self, max_age: float = MAX_IN_UNSCHEDULABLE) -> list[str]:
        """Parked pods that have waited longer than `max_age` for an event that helps."""
        now = self.clock()
        return [k for k, p in self._pods.items() if p.parked_at is not None and now - p.parked_at > max_age]

    def forget(self, key: str) -> None:
        """The pod was bound, deleted or handed to another scheduler: start afresh if it comes back."""
        self._pods.pop(key, None)
