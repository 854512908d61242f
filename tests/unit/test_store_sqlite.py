"""SQLiteStore: etcd semantics (revisions, CAS, prefix lists, watches, compaction) on a real file."""

from __future__ import annotations

import asyncio
import os
import random
import signal
import sqlite3
import subprocess
import sys
import textwrap
import time
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

import skiff.store.sqlite as sqlite_mod
from skiff.store import AutoCompact, FutureRevision, WatchOverflow, open_store
from skiff.store.interface import (
    Compacted,
    KeyExists,
    KeyNotFound,
    KeyValue,
    RevisionConflict,
    WatchEvent,
)
from skiff.store.sqlite import SQLiteStore

REPO = Path(__file__).resolve().parents[2]


@pytest.fixture
async def store(tmp_path: Path) -> AsyncIterator[SQLiteStore]:
    s = SQLiteStore(str(tmp_path / "state.db"))
    await s.start()
    try:
        yield s
    finally:
        await s.close()


async def take(it: AsyncIterator[WatchEvent], n: int, timeout: float = 2.0) -> list[WatchEvent]:
    out = []
    for _ in range(n):
        out.append(await asyncio.wait_for(anext(it), timeout))
    return out


async def until_live(store: SQLiteStore, watchers: int = 1) -> None:
    """Wait until the watches started by other tasks are registered, so the next writes take
    the live path (fan-out from the writer) rather than the replay from the log."""
    for _ in range(100):
        if len(store._watchers) >= watchers:
            return
        await asyncio.sleep(0)
    raise AssertionError("the watch never went live")


def summary(events: list[WatchEvent]) -> list[tuple[str, str, bytes, int]]:
    return [(e.type, e.kv.key, e.kv.value, e.kv.mod_revision) for e in events]


# -- basic operations ----------------------------------------------------------------------


async def test_fresh_store_starts_at_revision_1_and_each_write_adds_one(store: SQLiteStore) -> None:
    assert store.current_revision() == 1
    assert store.compacted_revision() == 0
    kv = await store.create("/a", b"1")
    assert (kv.mod_revision, kv.create_revision) == (2, 2)
    kv = await store.update("/a", b"2")
    assert (kv.mod_revision, kv.create_revision) == (3, 2)
    kv = await store.delete("/a")
    assert (kv.value, kv.mod_revision, kv.create_revision) == (b"2", 4, 2)
    kv = await store.create("/a", b"3")
    assert (kv.mod_revision, kv.create_revision) == (5, 5)
    assert store.current_revision() == 5
    assert await store.get("/a") == KeyValue("/a", b"3", 5, 5)


async def test_create_existing_key_raises_and_writes_nothing(store: SQLiteStore) -> None:
    await store.create("/a", b"1")
    rev = store.current_revision()
    with pytest.raises(KeyExists):
        await store.create("/a", b"2")
    assert store.current_revision() == rev
    assert (await store.get("/a")).value == b"1"


async def test_missing_keys(store: SQLiteStore) -> None:
    assert await store.get("/nope") is None
    with pytest.raises(KeyNotFound):
        await store.update("/nope", b"x")
    with pytest.raises(KeyNotFound):
        await store.delete("/nope")
    await store.create("/gone", b"x")
    await store.delete("/gone")
    assert await store.get("/gone") is None
    with pytest.raises(KeyNotFound):
        await store.update("/gone", b"y", expected_revision=3)
    with pytest.raises(KeyNotFound):
        await store.delete("/gone")


async def test_compare_and_swap(store: SQLiteStore) -> None:
    first = await store.create("/a", b"1")
    second = await store.update("/a", b"2", expected_revision=first.mod_revision)
    with pytest.raises(RevisionConflict) as err:
        await store.update("/a", b"stale", expected_revision=first.mod_revision)
    assert err.value.current == second
    with pytest.raises(RevisionConflict) as err:
        await store.delete("/a", expected_revision=first.mod_revision)
    assert err.value.current == second
    assert await store.get("/a") == second
    gone = await store.delete("/a", expected_revision=second.mod_revision)
    assert gone.value == b"2"


async def test_values_are_bytes_roundtrip(store: SQLiteStore) -> None:
    blob = bytes(range(256)) * 4
    await store.create("/bin", bytearray(blob))
    kv = await store.get("/bin")
    assert isinstance(kv.value, bytes) and kv.value == blob


# -- lists ---------------------------------------------------------------------------------


async def test_list_by_prefix_never_matches_siblings(store: SQLiteStore) -> None:
    for key in ["/a/b", "/a/b/x", "/a/b/y/z", "/a/bc/x", "/a/b-x", "/a/b0", "/a/b.x", "/a/c", "/b"]:
        await store.create(key, key.encode())
    keys = lambda items: [kv.key for kv in items]  # noqa: E731
    items, rev = await store.list("/a/b/")
    assert keys(items) == ["/a/b/x", "/a/b/y/z"]
    assert rev == store.current_revision()
    # Without the trailing slash it is still a path: the key itself and what is under it.
    assert keys((await store.list("/a/b"))[0]) == ["/a/b", "/a/b/x", "/a/b/y/z"]
    assert keys((await store.list("/a/bc/"))[0]) == ["/a/bc/x"]
    assert keys((await store.list("/a/"))[0]) == ["/a/b", "/a/b-x", "/a/b.x", "/a/b/x", "/a/b/y/z", "/a/b0", "/a/bc/x", "/a/c"]
    assert len((await store.list(""))[0]) == 9
    assert (await store.list("/zzz/"))[0] == []


async def test_list_skips_deleted_keys_and_returns_current_values(store: SQLiteStore) -> None:
    await store.create("/p/a", b"1")
    await store.create("/p/b", b"1")
    await store.update("/p/a", b"2")
    await store.delete("/p/b")
    items, _ = await store.list("/p/")
    assert items == [KeyValue("/p/a", b"2", 4, 2)]


async def test_list_at_past_revisions(store: SQLiteStore) -> None:
    await store.create("/p/a", b"a1")  # 2
    await store.create("/p/b", b"b1")  # 3
    await store.update("/p/a", b"a2")  # 4
    await store.delete("/p/b")  # 5
    await store.create("/p/b", b"b2")  # 6
    await store.create("/q/x", b"x")  # 7

    async def at(rev: int) -> list[tuple[str, bytes]]:
        items, got = await store.list("/p/", rev)
        assert got == rev
        return [(kv.key, kv.value) for kv in items]

    assert await at(1) == []
    assert await at(2) == [("/p/a", b"a1")]
    assert await at(3) == [("/p/a", b"a1"), ("/p/b", b"b1")]
    assert await at(4) == [("/p/a", b"a2"), ("/p/b", b"b1")]
    assert await at(5) == [("/p/a", b"a2")]
    assert await at(7) == [("/p/a", b"a2"), ("/p/b", b"b2")]
    with pytest.raises(FutureRevision):
        await store.list("/p/", 8)


# -- watches -------------------------------------------------------------------------------


async def test_watch_replays_history_then_streams_live_in_order(store: SQLiteStore) -> None:
    await store.create("/w/a", b"1")  # 2
    await store.create("/other", b"x")  # 3
    await store.update("/w/a", b"2")  # 4
    watch = store.watch("/w/", 2)
    replayed = await take(watch, 1)
    assert summary(replayed) == [("PUT", "/w/a", b"2", 4)]
    assert replayed[0].prev == KeyValue("/w/a", b"1", 2, 2)
    assert replayed[0].created is False
    await store.create("/w/b", b"1")  # 5
    await store.create("/other2", b"x")  # 6
    await store.update("/w/b", b"2")  # 7
    live = await take(watch, 2)
    assert summary(live) == [("PUT", "/w/b", b"1", 5), ("PUT", "/w/b", b"2", 7)]
    assert live[0].created and live[0].prev is None
    assert live[1].prev == KeyValue("/w/b", b"1", 5, 5)
    await watch.aclose()


async def test_watch_from_every_revision_sees_exactly_the_later_events(store: SQLiteStore) -> None:
    for i in range(10):
        await store.create(f"/k/{i % 3}/{i}", b"v")
        if i % 2:
            await store.update(f"/k/{i % 3}/{i}", b"w")
    end = store.current_revision()
    for start in range(1, end + 1):
        watch = store.watch("/k/", start)
        events = await take(watch, end - start)
        assert [e.kv.mod_revision for e in events] == list(range(start + 1, end + 1))
        await watch.aclose()


async def test_watch_sees_deletes_with_last_value(store: SQLiteStore) -> None:
    await store.create("/d/a", b"1")
    await store.update("/d/a", b"last")
    watch = store.watch("/d/", store.current_revision())
    pending = asyncio.ensure_future(anext(watch))
    await until_live(store)
    deleted = await store.delete("/d/a")
    event = await asyncio.wait_for(pending, 1)
    assert event.type == "DELETE" and event.prev is None
    assert event.kv == KeyValue("/d/a", b"last", deleted.mod_revision, 2)
    await watch.aclose()
    # The same event replayed from the log.
    replay = store.watch("/d/", deleted.mod_revision - 1)
    again = await take(replay, 1)
    assert again == [event]
    await replay.aclose()


async def test_watch_filters_live_events_by_path_prefix(store: SQLiteStore) -> None:
    watch = store.watch("/ns/a", store.current_revision())
    pending = asyncio.ensure_future(take(watch, 2))
    await until_live(store)
    for key in ["/ns/ab", "/ns/a", "/ns/a-b", "/ns/ab/x", "/ns/a/x"]:
        await store.create(key, b"v")
    assert [e.kv.key for e in await pending] == ["/ns/a", "/ns/a/x"]
    await watch.aclose()


async def test_watch_from_a_future_revision_skips_until_then(store: SQLiteStore) -> None:
    watch = store.watch("/f/", store.current_revision() + 2)
    pending = asyncio.ensure_future(take(watch, 1))
    await until_live(store)
    await store.create("/f/1", b"v")
    await store.create("/f/2", b"v")
    await store.create("/f/3", b"v")
    assert [e.kv.key for e in await pending] == ["/f/3"]
    await watch.aclose()


async def test_slow_watcher_is_ended_without_blocking_writers(tmp_path: Path) -> None:
    s = SQLiteStore(str(tmp_path / "s.db"), watch_queue_limit=5)
    await s.start()
    try:
        start = s.current_revision()
        watch = s.watch("/", start)
        first = asyncio.ensure_future(anext(watch))
        await until_live(s)
        for i in range(20):  # never waits for the watcher
            await s.create(f"/k{i}", b"v")
        # The 5 events pending when the 6th arrived are delivered, then the error.
        got = [await first] + await take(watch, 4)
        assert [e.kv.mod_revision for e in got] == list(range(start + 1, start + 6))
        with pytest.raises(WatchOverflow, match="watch again from the last revision"):
            await anext(watch)
        # Re-watching from the last revision received misses nothing.
        rewatch = s.watch("/", got[-1].kv.mod_revision)
        rest = await take(rewatch, 15)
        assert [e.kv.mod_revision for e in rest] == list(range(start + 6, start + 21))
        await rewatch.aclose()
    finally:
        await s.close()


async def test_close_ends_watches(tmp_path: Path) -> None:
    s = SQLiteStore(str(tmp_path / "s.db"))
    await s.start()
    watch = s.watch("/", s.current_revision())
    pending = asyncio.ensure_future(anext(watch))
    await until_live(s)
    await s.close()
    with pytest.raises(StopAsyncIteration):
        await asyncio.wait_for(pending, 1)


async def test_close_ends_a_watch_that_is_still_replaying(tmp_path: Path, monkeypatch) -> None:
    monkeypatch.setattr(sqlite_mod, "_REPLAY_PAGE", 2)
    s = SQLiteStore(str(tmp_path / "s.db"))
    await s.start()
    for i in range(6):
        await s.create(f"/k{i}", b"v")
    watch = s.watch("/", 1)
    await take(watch, 2)
    await s.close()
    with pytest.raises(StopAsyncIteration):
        await anext(watch)


async def test_watch_event_is_delivered_within_a_millisecond(store: SQLiteStore) -> None:
    watch = store.watch("/lat/", store.current_revision())
    delays = []
    for i in range(200):
        pending = asyncio.ensure_future(anext(watch))
        await asyncio.sleep(0)
        sent = time.perf_counter()
        await store.create(f"/lat/{i}", b"v")
        await pending
        delays.append(time.perf_counter() - sent)
    delays.sort()
    assert delays[len(delays) // 2] < 0.001
    await watch.aclose()


# -- compaction ----------------------------------------------------------------------------


async def test_compaction_keeps_current_values_and_refuses_older_revisions(store: SQLiteStore) -> None:
    await store.create("/c/a", b"a1")  # 2
    await store.create("/c/b", b"b1")  # 3
    await store.update("/c/a", b"a2")  # 4
    await store.delete("/c/b")  # 5
    await store.update("/c/a", b"a3")  # 6
    await store.create("/c/z", b"z1")  # 7
    before = await store.list("/c/", 5)
    await store.compact(5)
    assert store.compacted_revision() == 5
    assert await store.list("/c/", 5) == before
    with pytest.raises(Compacted) as err:
        await store.list("/c/", 4)
    assert (err.value.requested, err.value.compacted) == (4, 5)
    with pytest.raises(Compacted):
        await anext(store.watch("/c/", 4))
    watch = store.watch("/c/", 5)
    events = await take(watch, 2)
    assert summary(events) == [("PUT", "/c/a", b"a3", 6), ("PUT", "/c/z", b"z1", 7)]
    assert events[0].prev == KeyValue("/c/a", b"a2", 4, 2)  # the previous value survived
    await watch.aclose()
    assert (await store.get("/c/a")).value == b"a3"
    assert await store.get("/c/b") is None
    # Superseded rows and the deleted key are gone from the file.
    rows = store.db.execute("SELECT id FROM log ORDER BY id").fetchall()
    assert [r[0] for r in rows] == [4, 6, 7]
    await store.compact(3)  # already done: no-op
    with pytest.raises(FutureRevision):
        await store.compact(8)


async def test_compaction_matches_a_model_of_every_revision(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(sqlite_mod, "_COMPACT_CHUNK", 7)  # exercise chunk boundaries
    rng = random.Random(1234)
    s = SQLiteStore(str(tmp_path / "m.db"))
    await s.start()
    try:
        states: dict[int, dict[str, KeyValue]] = {1: {}}
        live: dict[str, KeyValue] = {}
        for _ in range(400):
            key = f"/m/{rng.randrange(25)}"
            if key not in live:
                live[key] = await s.create(key, os.urandom(4))
            elif rng.random() < 0.3:
                await s.delete(key)
                del live[key]
            else:
                live[key] = await s.update(key, os.urandom(4))
            states[s.current_revision()] = dict(live)
            if rng.random() < 0.05:
                await s.compact(rng.randrange(s.compacted_revision(), s.current_revision() + 1))
        await s.compact(s.current_revision() - 150)
        end = s.current_revision()
        for rev in range(s.compacted_revision(), end + 1):
            items, _ = await s.list("/m/", rev)
            assert items == sorted(states[rev].values(), key=lambda kv: kv.key), rev
        # Replay from the compacted revision reconstructs every later state, prev values included.
        start = s.compacted_revision()
        state = dict(states[start])
        watch = s.watch("/m/", start)
        for event in await take(watch, end - start):
            key = event.kv.key
            if event.type == "DELETE":
                assert event.kv.value == state.pop(key).value
            else:
                assert event.prev == state.get(key)
                assert event.created == (key not in state)
                state[key] = event.kv
            assert state == states[event.kv.mod_revision]
        await watch.aclose()
    finally:
        await s.close()


async def test_compaction_during_replay_ends_the_watch_with_compacted(store: SQLiteStore, monkeypatch) -> None:
    monkeypatch.setattr(sqlite_mod, "_REPLAY_PAGE", 3)
    for i in range(10):
        await store.create("/r/k", b"v") if i == 0 else await store.update("/r/k", str(i).encode())
    watch = store.watch("/r/", 1)
    await take(watch, 3)  # first page delivered
    await store.compact(8)
    with pytest.raises(Compacted):
        await anext(watch)


async def test_auto_compact_keeps_the_last_revisions(tmp_path: Path) -> None:
    s = SQLiteStore(str(tmp_path / "a.db"), auto_compact=AutoCompact(keep_revisions=5, interval=0.02))
    await s.start()
    try:
        for i in range(30):
            await s.create(f"/k{i}", b"v")
        deadline = time.monotonic() + 2
        while s.compacted_revision() != s.current_revision() - 5 and time.monotonic() < deadline:
            await asyncio.sleep(0.01)
        assert s.compacted_revision() == s.current_revision() - 5
        assert len((await s.list("/"))[0]) == 30
    finally:
        await s.close()


# -- durability ----------------------------------------------------------------------------


async def test_state_survives_reopen(tmp_path: Path) -> None:
    path = str(tmp_path / "p.db")
    s = SQLiteStore(path)
    await s.start()
    await s.create("/a", b"1")
    await s.create("/b", b"1")
    await s.update("/a", b"2")
    await s.delete("/b")  # 5
    await s.compact(4)
    await s.close()

    s = SQLiteStore(path)
    await s.start()
    try:
        assert (s.current_revision(), s.compacted_revision()) == (5, 4)
        assert await s.get("/a") == KeyValue("/a", b"2", 4, 2)
        assert await s.get("/b") is None
        # Revisions continue, never reused, even though compaction could delete the newest row.
        await s.compact(5)
        assert (await s.create("/c", b"1")).mod_revision == 6
    finally:
        await s.close()


def test_revision_is_not_reused_after_reopen_when_the_newest_rows_were_compacted(tmp_path: Path) -> None:
    async def run() -> int:
        path = str(tmp_path / "r.db")
        s = SQLiteStore(path)
        await s.start()
        await s.create("/x", b"1")
        await s.delete("/x")  # 3, a tombstone: compaction deletes every row of /x
        await s.compact(3)
        await s.close()
        s = SQLiteStore(path)
        await s.start()
        rev = (await s.create("/y", b"1")).mod_revision
        await s.close()
        return rev

    assert asyncio.run(run()) == 4


CRASH_WRITER = textwrap.dedent(
    """
    import asyncio, sys
    from skiff.store.sqlite import SQLiteStore

    async def main():
        store = SQLiteStore(sys.argv[1])
        await store.start()
        i = 0
        while True:
            kv = await store.create(f"/crash/{i}", b"created-%d" % i)
            print(kv.key, kv.mod_revision, kv.value.decode(), flush=True)
            if i % 3 == 2:
                kv = await store.update(f"/crash/{i - 1}", b"updated-%d" % i, expected_revision=None)
                print(kv.key, kv.mod_revision, kv.value.decode(), flush=True)
            i += 1

    asyncio.run(main())
    """
)


async def test_kill_9_loses_no_acknowledged_write(tmp_path: Path) -> None:
    path = str(tmp_path / "crash.db")
    proc = subprocess.Popen(
        [sys.executable, "-c", CRASH_WRITER, path],
        stdout=subprocess.PIPE,
        cwd=REPO,
        env={**os.environ, "PYTHONPATH": str(REPO)},
    )
    acked: list[tuple[str, int, bytes]] = []
    try:
        target = random.Random().randrange(300, 1500)
        while len(acked) < target:
            line = proc.stdout.readline()
            assert line, "the writer exited early"
            key, rev, value = line.decode().split()
            acked.append((key, int(rev), value.encode()))
        os.kill(proc.pid, signal.SIGKILL)  # mid-loop: it never stops writing on its own
        rest = proc.stdout.read()
    finally:
        proc.kill()
        proc.wait()
        proc.stdout.close()
    assert proc.returncode == -signal.SIGKILL
    for line in rest.decode().split("\n")[:-1]:  # a torn last line was never acknowledged
        key, rev, value = line.split()
        acked.append((key, int(rev), value.encode()))

    s = SQLiteStore(path)
    await s.start()
    try:
        assert s.current_revision() >= acked[-1][1]
        for key, rev, value in acked:
            items, _ = await s.list(key, rev)
            assert items and items[0].key == key and items[0].value == value and items[0].mod_revision == rev
        # The store keeps working after the crash, with fresh revisions.
        assert (await s.create("/after", b"x")).mod_revision == s.current_revision() > acked[-1][1]
        assert sqlite3.connect(path).execute("PRAGMA integrity_check").fetchone() == ("ok",)
    finally:
        await s.close()


# -- factory -------------------------------------------------------------------------------


def test_open_store_accepts_paths_and_sqlite_urls(tmp_path: Path) -> None:
    assert isinstance(open_store(str(tmp_path / "x.db")), SQLiteStore)
    s = open_store(f"sqlite://{tmp_path}/y.db", watch_queue_limit=3)
    assert isinstance(s, SQLiteStore) and s.path == f"{tmp_path}/y.db" and s.watch_queue_limit == 3
    with pytest.raises(ValueError, match="only sqlite"):
        open_store("etcd://127.0.0.1:2379")
    with pytest.raises(ValueError, match="would lose acknowledged writes"):
        SQLiteStore(str(tmp_path / "z.db"), synchronous="OFF")
