"""The storage baseline: how fast raw `SQLiteStore.create()` calls go on this machine.

The API benchmark prints its creates/s as a ratio of `raw_insert_rate()` measured in the same
run, so the number says how much the HTTP/validation layers cost, independent of the disk.

    .venv/bin/python -m bench.store_raw [n]
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import os
import sys
import tempfile
import time

from skiff.store.sqlite import SQLiteStore

# About the size of a small ConfigMap or Service as the API server stores it (JSON).
_VALUE = b'{"apiVersion":"v1","kind":"ConfigMap","metadata":{"name":"x"},"data":{"k":"' + b"v" * 900 + b'"}}'


async def _measure(path: str, n: int, synchronous: str) -> float:
    store = SQLiteStore(path, synchronous=synchronous)
    await store.start()
    try:
        start = time.perf_counter()
        for i in range(n):
            await store.create(f"/registry/configmaps/bench/cm-{i}", _VALUE)
        return n / (time.perf_counter() - start)
    finally:
        await store.close()


def raw_insert_rate(path: str, n: int, synchronous: str = "NORMAL") -> float:
    """create() calls per second, one after another, of ~1 KiB values into a new store at `path`
    (which must not exist yet). Callable with or without a running event loop."""
    if os.path.exists(path):
        raise FileExistsError(f"{path} exists; raw_insert_rate() measures a fresh store")
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        return asyncio.run(_measure(path, n, synchronous))
    # Inside a running loop (the API benchmark): measure on a loop of our own in a thread.
    with concurrent.futures.ThreadPoolExecutor(1) as pool:
        return pool.submit(asyncio.run, _measure(path, n, synchronous)).result()


async def _watch_latency(path: str, n: int) -> float:
    """Median microseconds from create() returning to the watcher holding the event."""
    store = SQLiteStore(path)
    await store.start()
    try:
        received: asyncio.Queue[float] = asyncio.Queue()

        async def consume() -> None:
            async for _ in store.watch("/registry/", store.current_revision()):
                received.put_nowait(time.perf_counter())

        task = asyncio.create_task(consume())
        await asyncio.sleep(0.01)
        delays = []
        for i in range(n):
            sent = time.perf_counter()
            await store.create(f"/registry/pods/bench/p-{i}", _VALUE)
            delays.append(await received.get() - sent)
        task.cancel()
        delays.sort()
        return delays[len(delays) // 2] * 1e6
    finally:
        await store.close()


def main() -> None:
    n = int(sys.argv[1]) if len(sys.argv) > 1 else 5000
    with tempfile.TemporaryDirectory() as tmp:
        print(f"raw store creates/s (synchronous=NORMAL, default): {raw_insert_rate(f'{tmp}/normal.db', n):,.0f}")
        full_n = max(1, n // 20)
        rate = raw_insert_rate(f"{tmp}/full.db", full_n, synchronous="FULL")
        print(f"raw store creates/s (synchronous=FULL, fsync per commit): {rate:,.0f}")
        latency = asyncio.run(_watch_latency(f"{tmp}/watch.db", 1000))
        print(f"watch delivery, median µs from create() returning: {latency:,.0f}")


if __name__ == "__main__":
    main()
