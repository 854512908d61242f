"""The embedded store: etcd's semantics on one SQLite file, after the design of k3s' kine.

The database is a log. Every write appends one row, and the row's id is the write's revision,
so revisions are cluster-wide, increasing and never reused (AUTOINCREMENT keeps its high-water
mark even after compaction deletes the newest rows). A row says which key it is about, whether
it created or deleted the key, the key's create revision, the id of the key's previous row and
the value (for a delete: the last value). A key's current state is its newest row; its state at
revision R is its newest row with id <= R.

The API server is the only process that writes, on one asyncio event loop, and every call into
sqlite3 is synchronous (tens of microseconds; see `bench/store_raw.py`). Each operation is
therefore atomic with respect to the others without locks, and watches are fed straight from
the write path: a write commits, then puts its event into the queue of every matching watcher.
A watch that starts in the past first replays the log, then switches to its queue; both happen
without an `await` in between so no event is lost or repeated.

Prefixes are paths: `list("/a/b/")` and `list("/a/b")` both return the keys under `/a/b/`
(the latter also `/a/b` itself), never the sibling `/a/bc`. A caller that forgets the trailing
slash on a namespace prefix therefore cannot leak a neighbour's objects.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import sqlite3
from collections.abc import AsyncIterator

from skiff.store import AutoCompact, FutureRevision, WatchOverflow
from skiff.store.interface import (
    Compacted,
    KeyExists,
    KeyNotFound,
    KeyValue,
    RevisionConflict,
    WatchEvent,
)

log = logging.getLogger(__name__)

_SCHEMA = """
CREATE TABLE IF NOT EXISTS log (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    key TEXT NOT NULL,
    created INTEGER NOT NULL,
    deleted INTEGER NOT NULL,
    create_revision INTEGER NOT NULL,
    prev_revision INTEGER NOT NULL,
    value BLOB NOT NULL
);
CREATE INDEX IF NOT EXISTS log_key_id ON log (key, id);
CREATE TABLE IF NOT EXISTS meta (name TEXT PRIMARY KEY, value INTEGER NOT NULL);
"""

_COMPACTED = "compacted_revision"

# Rows replayed to a watcher per query; small enough that one page does not hold the loop long.
_REPLAY_PAGE = 1000
# Revisions compacted per transaction, for the same reason (~15 ms of deletes on the dev machine).
_COMPACT_CHUNK = 2000


class _Prefix:
    """Path-prefix matching, identical in SQL (for the log) and in Python (for live events)."""

    def __init__(self, prefix: str):
        self.prefix = prefix
        if prefix == "":
            self.exact: str | None = None
            self.under: str = ""
        elif prefix.endswith("/"):
            self.exact, self.under = None, prefix
        else:
            self.exact, self.under = prefix, prefix + "/"
        # '0' is the character after '/', so [under, upper) is exactly the keys starting with `under`.
        self.upper = self.under[:-1] + "0" if self.under else ""

    def matches(self, key: str) -> bool:
        return key.startswith(self.under) or key == self.exact

    def sql(self, column: str = "key") -> tuple[str, tuple[str, ...]]:
        if not self.under:
            return "1", ()
        if self.exact is None:
            return f"({column} >= ? AND {column} < ?)", (self.under, self.upper)
        # One index range [exact, upper) holds the key itself, the keys under it, and keys like
        # "exact-x" (characters below '/') that the last condition drops.
        return (
            f"({column} >= ? AND {column} < ? AND ({column} = ? OR {column} >= ?))",
            (self.exact, self.upper, self.exact, self.under),
        )


class _Closed:
    """Queue marker: the store closed, end the watch."""


_CLOSED = _Closed()


_QueueItem = WatchEvent | WatchOverflow | _Closed


class _Watcher:
    def __init__(self, prefix: _Prefix, limit: int):
        self.prefix = prefix
        self.limit = limit
        # Unbounded on purpose: the bound is enforced by the writer (see _notify), which must
        # always be able to append the final error or close marker.
        self.queue: asyncio.Queue[_QueueItem] = asyncio.Queue()


class SQLiteStore:
    """The `Store` protocol (skiff/store/interface.py) on a SQLite file.

    `auto_compact`: compact periodically while started (None: only when `compact()` is called).
    `watch_queue_limit`: events a watcher may have pending before its watch is ended with
    `WatchOverflow`. `synchronous`: SQLite's synchronous mode, see `_open`.
    """

    def __init__(
        self,
        path: str,
        *,
        auto_compact: AutoCompact | None = None,
        watch_queue_limit: int = 10_000,
        synchronous: str = "NORMAL",
    ):
        if synchronous.upper() not in ("NORMAL", "FULL", "EXTRA"):
            raise ValueError(f"synchronous={synchronous!r} would lose acknowledged writes; use NORMAL or FULL")
        self.path = path
        self.auto_compact = auto_compact
        self.watch_queue_limit = watch_queue_limit
        self.synchronous = synchronous.upper()
        self._db: sqlite3.Connection | None = None
        self._rev = 0
        self._compacted = 0
        self._watchers: set[_Watcher] = set()
        self._compactor: asyncio.Task[None] | None = None

    # -- lifecycle ---------------------------------------------------------------------------

    async def start(self) -> None:
        if self._db is not None:
            return
        self._db = self._open()
        if self.auto_compact is not None:
            self._compactor = asyncio.create_task(self._auto_compact(self.auto_compact))

    def _open(self) -> sqlite3.Connection:
        # isolation_level=None: autocommit, so each single-statement write is its own
        # transaction and is committed by the time execute() returns; multi-statement work
        # uses explicit BEGIN IMMEDIATE ... COMMIT.
        db = sqlite3.connect(self.path, isolation_level=None)
        try:
            db.execute("PRAGMA journal_mode=WAL")
            # WAL + synchronous=NORMAL: a commit is write()n to the WAL before execute() returns,
            # so it lives in the kernel's page cache and survives the process being killed at
            # any moment (kill -9, OOM); only a power loss or kernel crash can lose the last
            # commits (never corrupting the file). FULL adds an fsync per commit, which also
            # survives power loss but costs ~5x the write rate (bench/store_raw.py on the 2-core
            # dev machine: ~16,000-21,000 creates/s with NORMAL, ~3,100 with FULL, below the
            # 5,000/s target). Process-crash safety is the requirement for a development
            # cluster, so NORMAL is the default; FULL is available as an option.
            db.execute(f"PRAGMA synchronous={self.synchronous}")
            db.execute("PRAGMA busy_timeout=5000")
            db.executescript(_SCHEMA)
            db.execute(f"INSERT OR IGNORE INTO meta (name, value) VALUES ('{_COMPACTED}', 0)")
            row = db.execute("SELECT seq FROM sqlite_sequence WHERE name = 'log'").fetchone()
            if row is None:
                # A fresh store is at revision 1, like a fresh etcd, so that no list ever
                # reports revision 0 (which Kubernetes reads as "any version").
                db.execute("INSERT INTO sqlite_sequence (name, seq) VALUES ('log', 1)")
                row = (1,)
            self._rev = int(row[0])
            self._compacted = int(
                db.execute("SELECT value FROM meta WHERE name = ?", (_COMPACTED,)).fetchone()[0]
            )
        except BaseException:
            db.close()
            raise
        return db

    async def close(self) -> None:
        if self._compactor is not None:
            self._compactor.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._compactor
            self._compactor = None
        for watcher in self._watchers:
            watcher.queue.put_nowait(_CLOSED)
        self._watchers.clear()
        if self._db is not None:
            self._db.close()
            self._db = None

    @property
    def db(self) -> sqlite3.Connection:
        if self._db is None:
            raise RuntimeError("the store is not started: await store.start() first")
        return self._db

    # -- reads -------------------------------------------------------------------------------

    def current_revision(self) -> int:
        return self._rev

    def compacted_revision(self) -> int:
        return self._compacted

    async def get(self, key: str) -> KeyValue | None:
        row = self._latest(key)
        if row is None or row[1]:
            return None
        return row[0]

    def _latest(self, key: str) -> tuple[KeyValue, bool] | None:
        """The key's newest row as (KeyValue, deleted)."""
        row = self.db.execute(
            "SELECT id, deleted, create_revision, value FROM log WHERE key = ? ORDER BY id DESC LIMIT 1",
            (key,),
        ).fetchone()
        if row is None:
            return None
        return KeyValue(key, row[3], row[0], row[2]), bool(row[1])

    async def list(self, prefix: str, revision: int = 0) -> tuple[list[KeyValue], int]:
        """All keys at or under the path `prefix`, sorted by key, as of `revision` (0 = now)."""
        if revision < 0:
            raise ValueError(f"revision must be >= 0, not {revision}")
        if revision == 0:
            revision = self._rev
        elif revision < self._compacted:
            raise Compacted(revision, self._compacted)
        elif revision > self._rev:
            raise FutureRevision(revision, self._rev)
        where, params = _Prefix(prefix).sql()
        rows = self.db.execute(
            "SELECT l.key, l.value, l.id, l.create_revision FROM log AS l"
            f" JOIN (SELECT MAX(id) AS id FROM log WHERE {where} AND id <= ? GROUP BY key) AS newest"
            " ON l.id = newest.id WHERE l.deleted = 0 ORDER BY l.key",
            (*params, revision),
        ).fetchall()
        return [KeyValue(*row) for row in rows], revision

    # -- writes ------------------------------------------------------------------------------

    def _append(self, key: str, value: bytes, *, created: bool, deleted: bool, create_rev: int, prev_rev: int) -> int:
        rev = self._rev + 1
        if created:
            create_rev = rev
        # The id is given explicitly so the create revision can be in the same row; were another
        # process writing (it must not), the insert would fail instead of reusing a revision.
        self.db.execute(
            "INSERT INTO log (id, key, created, deleted, create_revision, prev_revision, value)"
            " VALUES (?, ?, ?, ?, ?, ?, ?)",
            (rev, key, int(created), int(deleted), create_rev, prev_rev, value),
        )
        self._rev = rev
        return rev

    async def create(self, key: str, value: bytes) -> KeyValue:
        value = bytes(value)
        latest = self._latest(key)
        if latest is not None and not latest[1]:
            raise KeyExists(key)
        prev_rev = latest[0].mod_revision if latest is not None else 0
        rev = self._append(key, value, created=True, deleted=False, create_rev=0, prev_rev=prev_rev)
        kv = KeyValue(key, value, rev, rev)
        self._notify(WatchEvent("PUT", kv, None, created=True))
        return kv

    def _current(self, key: str, expected_revision: int | None) -> KeyValue:
        latest = self._latest(key)
        if latest is None or latest[1]:
            raise KeyNotFound(key)
        current = latest[0]
        if expected_revision is not None and expected_revision != current.mod_revision:
            raise RevisionConflict(key, current)
        return current

    async def update(self, key: str, value: bytes, expected_revision: int | None = None) -> KeyValue:
        value = bytes(value)
        prev = self._current(key, expected_revision)
        rev = self._append(
            key, value, created=False, deleted=False, create_rev=prev.create_revision, prev_rev=prev.mod_revision
        )
        kv = KeyValue(key, value, rev, prev.create_revision)
        self._notify(WatchEvent("PUT", kv, prev))
        return kv

    async def delete(self, key: str, expected_revision: int | None = None) -> KeyValue:
        prev = self._current(key, expected_revision)
        rev = self._append(
            key, prev.value, created=False, deleted=True, create_rev=prev.create_revision, prev_rev=prev.mod_revision
        )
        kv = KeyValue(key, prev.value, rev, prev.create_revision)
        self._notify(WatchEvent("DELETE", kv, None))
        return kv

    # -- watch -------------------------------------------------------------------------------

    def _notify(self, event: WatchEvent) -> None:
        overflowed = []
        for watcher in self._watchers:
            if not watcher.prefix.matches(event.kv.key):
                continue
            if watcher.queue.qsize() >= watcher.limit:
                watcher.queue.put_nowait(WatchOverflow(watcher.prefix.prefix, watcher.limit))
                overflowed.append(watcher)
            else:
                watcher.queue.put_nowait(event)
        for watcher in overflowed:
            self._watchers.discard(watcher)

    async def watch(self, prefix: str, from_revision: int) -> AsyncIterator[WatchEvent]:
        """Events for keys at or under `prefix` with revision > from_revision, in revision order:
        first replayed from the log, then live. Raises Compacted if history after from_revision
        is gone, WatchOverflow if the caller falls `watch_queue_limit` events behind; ends when
        the store closes."""
        if from_revision < self._compacted:
            raise Compacted(from_revision, self._compacted)
        match = _Prefix(prefix)
        watcher = _Watcher(match, self.watch_queue_limit)
        # From here on live events reach the queue; everything up to `live_from` is in the log.
        self._watchers.add(watcher)
        live_from = self._rev
        last = from_revision
        try:
            while last < live_from:
                if self._db is None:  # closed while we replayed
                    return
                if last < self._compacted:  # compacted while we replayed
                    raise Compacted(last, self._compacted)
                page = self._history(match, last, live_from)
                for event in page:
                    last = event.kv.mod_revision
                    yield event
                if len(page) < _REPLAY_PAGE:
                    break
            while True:
                item = await watcher.queue.get()
                if isinstance(item, WatchEvent):
                    if item.kv.mod_revision > last:
                        last = item.kv.mod_revision
                        yield item
                elif isinstance(item, WatchOverflow):
                    raise item
                else:
                    return
        finally:
            self._watchers.discard(watcher)

    def _history(self, match: _Prefix, after: int, until: int) -> list[WatchEvent]:
        where, params = match.sql("l.key")
        rows = self.db.execute(
            "SELECT l.id, l.key, l.created, l.deleted, l.create_revision, l.value, p.id, p.create_revision, p.value"
            " FROM log AS l LEFT JOIN log AS p ON p.id = l.prev_revision AND l.created = 0 AND l.deleted = 0"
            f" WHERE l.id > ? AND l.id <= ? AND {where} ORDER BY l.id LIMIT {_REPLAY_PAGE}",
            (after, until, *params),
        ).fetchall()
        events = []
        for rev, key, created, deleted, create_rev, value, prev_rev, prev_create, prev_value in rows:
            kv = KeyValue(key, value, rev, create_rev)
            if deleted:
                events.append(WatchEvent("DELETE", kv, None))
            else:
                # Compaction keeps the row before every row it keeps, so an update's previous
                # value is always here (see compact()).
                prev = KeyValue(key, prev_value, prev_rev, prev_create) if prev_rev is not None else None
                events.append(WatchEvent("PUT", kv, prev, created=bool(created)))
        return events

    # -- compaction --------------------------------------------------------------------------

    async def compact(self, revision: int) -> None:
        """Forget history at and below `revision`: delete every row superseded by a row at or
        below it, and deleted keys' rows. Each key's newest row at or below `revision` stays, so
        reads at `revision` and later still work, and so does every later event's previous value.

        Works in chunks of revisions, yielding to the event loop between them; every chunk
        commits together with the new compacted revision, so a crash leaves a consistent state.
        """
        if revision > self._rev:
            raise FutureRevision(revision, self._rev)
        while self._compacted < revision:
            self._compact_chunk(min(revision, self._compacted + _COMPACT_CHUNK))
            await asyncio.sleep(0)

    def _compact_chunk(self, upto: int) -> None:
        # Every row but a key's first is named by exactly one prev_revision: its successor's.
        # So the rows superseded by a row in (done, upto] are the prev_revisions of those rows;
        # rows superseded earlier were deleted by earlier chunks. That keeps a chunk's cost
        # proportional to the chunk, not to the whole log.
        done = self._compacted
        db = self.db
        db.execute("BEGIN IMMEDIATE")
        try:
            db.execute(
                "DELETE FROM log WHERE id IN"
                " (SELECT prev_revision FROM log WHERE id > ? AND id <= ? AND prev_revision > 0)",
                (done, upto),
            )
            db.execute("DELETE FROM log WHERE id > ? AND id <= ? AND deleted = 1", (done, upto))
            db.execute("UPDATE meta SET value = ? WHERE name = ?", (upto, _COMPACTED))
            db.execute("COMMIT")
        except BaseException:
            db.execute("ROLLBACK")
            raise
        self._compacted = upto

    async def _auto_compact(self, policy: AutoCompact) -> None:
        while True:
            await asyncio.sleep(policy.interval)
            target = self._rev - policy.keep_revisions
            if target <= self._compacted:
                continue
            try:
                await self.compact(target)
            except Exception:  # keep compacting later; a failed chunk rolled back
                log.exception("automatic compaction to revision %d failed", target)
