"""Storage for the API server: etcd's semantics (see `interface.py`) over a pluggable backend.

`open_store()` picks the backend from a URL or a path. The errors below complement those in
`interface.py`; every backend raises them, so callers never depend on a particular backend.
"""

from __future__ import annotations

from dataclasses import dataclass

from skiff.store.interface import (
    Compacted,
    KeyExists,
    KeyNotFound,
    KeyValue,
    RevisionConflict,
    Store,
    StoreError,
    WatchEvent,
)


@dataclass(frozen=True)
class AutoCompact:
    """Compact every `interval` seconds, keeping the last `keep_revisions` revisions of history.

    History is what lets a client resume a watch after a disconnect instead of relisting; the
    Kubernetes API server compacts etcd every 5 minutes for the same trade-off.
    """

    keep_revisions: int = 10_000
    interval: float = 300.0


class WatchOverflow(StoreError):
    """A watcher fell too far behind the writers and its watch was ended.

    Writers never wait for watchers; a watcher that does not keep up loses its watch instead.
    Every event before this error was delivered, so the caller re-watches from the last
    revision it received (the way a Kubernetes client re-watches after its stream closes).
    """

    def __init__(self, prefix: str, limit: int):
        super().__init__(
            f"watch on {prefix!r} fell more than {limit} events behind the writers and was closed; "
            "watch again from the last revision received"
        )
        self.prefix = prefix
        self.limit = limit


class FutureRevision(StoreError):
    """A read asked for a revision the store has not reached yet."""

    def __init__(self, requested: int, current: int):
        super().__init__(f"required revision {requested} is a future revision (current: {current})")
        self.requested = requested
        self.current = current


def open_store(url_or_path: str, **options: object) -> Store:
    """Open the store named by `url_or_path`: `sqlite:///abs/path.db`, `sqlite://rel.db` or a plain
    file path (SQLite). Options go to the backend (for SQLite: `auto_compact`, `watch_queue_limit`,
    `synchronous`). The caller still has to `await store.start()`."""
    scheme, sep, rest = url_or_path.partition("://")
    if not sep:
        path = url_or_path
    elif scheme == "sqlite":
        path = rest
    else:
        raise ValueError(f"unsupported store URL {url_or_path!r}: only sqlite:// URLs and file paths are available")
    if not path:
        raise ValueError(f"store URL {url_or_path!r} names no database file")
    from skiff.store.sqlite import SQLiteStore  # late import: sqlite.py imports the errors above

    return SQLiteStore(path, **options)  # type: ignore[arg-type]


__all__ = [
    "AutoCompact",
    "Compacted",
    "FutureRevision",
    "KeyExists",
    "KeyNotFound",
    "KeyValue",
    "RevisionConflict",
    "Store",
    "StoreError",
    "WatchEvent",
    "WatchOverflow",
    "open_store",
]
