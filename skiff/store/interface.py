"""The storage interface: etcd's semantics, whatever sits underneath.

Values are opaque bytes (the API server stores JSON). Every write gets the next cluster-wide
revision; a key's `mod_revision` is the revision of its last write. Updates and deletes can be
made conditional on the `mod_revision` the caller read (compare-and-swap). Watches deliver every
change after a given revision, in order; revisions older than the last compaction are gone and
the watch fails with `Compacted` so the caller relists, as etcd clients do.

Nothing above this module may depend on a particular backend.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Protocol


class StoreError(Exception):
    pass


class KeyExists(StoreError):
    """create() of a key that is already present."""


class KeyNotFound(StoreError):
    """update()/delete() of a key that is absent."""


class RevisionConflict(StoreError):
    """The key's mod_revision is not the one the caller expected."""

    def __init__(self, key: str, current: KeyValue):
        super().__init__(key)
        self.current = current


class Compacted(StoreError):
    """The requested revision is older than the oldest one still kept."""

    def __init__(self, requested: int, compacted: int):
        super().__init__(f"required revision {requested} has been compacted (oldest kept: {compacted})")
        self.requested = requested
        self.compacted = compacted


@dataclass(frozen=True)
class KeyValue:
    key: str
    value: bytes
    mod_revision: int
    create_revision: int


@dataclass(frozen=True)
class WatchEvent:
    """type is "PUT" or "DELETE". For DELETE, `kv.value` is the last value and `prev` is None."""

    type: str
    kv: KeyValue
    prev: KeyValue | None
    created: bool = False  # PUT that created the key


class Store(Protocol):
    async def start(self) -> None: ...

    async def close(self) -> None: ...

    def current_revision(self) -> int: ...

    def compacted_revision(self) -> int: ...

    async def get(self, key: str) -> KeyValue | None: ...

    async def list(self, prefix: str, revision: int = 0) -> tuple[list[KeyValue], int]:
        """All keys under prefix, sorted by key, as of `revision` (0 = now). Returns (items, revision)."""
        ...

    async def create(self, key: str, value: bytes) -> KeyValue:
        """Raises KeyExists."""
        ...

    async def update(self, key: str, value: bytes, expected_revision: int | None = None) -> KeyValue:
        """Raises KeyNotFound, or RevisionConflict when expected_revision is given and stale."""
        ...

    async def delete(self, key: str, expected_revision: int | None = None) -> KeyValue:
        """Returns the deleted key's last value (with the delete's revision as mod_revision).
        Raises KeyNotFound or RevisionConflict."""
        ...

    def watch(self, prefix: str, from_revision: int) -> AsyncIterator[WatchEvent]:
        """Events for keys under prefix with revision > from_revision, then live ones, in order.
        Raises Compacted (on first iteration) if from_revision is too old."""
        ...

    async def compact(self, revision: int) -> None:
        """Forget history at and below revision; current values are kept."""
        ...
