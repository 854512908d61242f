"""API server benchmark: Service creates per second through the API, and watch delivery latency.

Baseline, measured in the same run: raw create() calls into the same kind of store on this
machine. Every Service created has a selector, so the control plane's endpoint controllers write an
Endpoints object and an EndpointSlice for each one while the benchmark runs, as a real cluster does. Prints creates/s as a fraction of that, and the watch latency (write sent -> event
received) median and p99.

    .venv/bin/python bench/api_throughput.py [creates] [concurrency]
"""

from __future__ import annotations

import asyncio
import json
import ssl
import statistics
import sys
import tempfile
import time
from pathlib import Path

import aiohttp

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.store_raw import raw_insert_rate  # noqa: E402
from tests.support import ControlPlane  # noqa: E402


def _svc(i: int) -> dict:
    return {"apiVersion": "v1", "kind": "Service", "metadata": {"name": f"b{i}"},
            "spec": {"selector": {"app": f"a{i}"}, "ports": [{"port": 80, "targetPort": 8080}]}}


async def creates_per_second(cp: ControlPlane, n: int, concurrency: int) -> float:
    ctx = ssl.create_default_context(cafile=str(cp.state_dir / "pki" / "ca.crt"))
    headers = {"Authorization": f"Bearer {cp.cfg.token}", "Content-Type": "application/json"}
    url = f"{cp.cfg.server_url}/api/v1/namespaces/default/services"
    async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(ssl=ctx, limit=concurrency),
                                     headers=headers) as s:
        counter = iter(range(n))

        async def worker() -> None:
            for i in counter:
                async with s.post(url, data=json.dumps(_svc(i))) as r:
                    if r.status != 201:
                        raise RuntimeError(f"create failed: {r.status} {await r.text()}")
                    await r.read()
        t0 = time.perf_counter()
        await asyncio.gather(*(worker() for _ in range(concurrency)))
        return n / (time.perf_counter() - t0)


async def watch_latency(cp: ControlPlane, n: int) -> list[float]:
    ctx = ssl.create_default_context(cafile=str(cp.state_dir / "pki" / "ca.crt"))
    headers = {"Authorization": f"Bearer {cp.cfg.token}", "Content-Type": "application/json"}
    base = f"{cp.cfg.server_url}/api/v1/namespaces/default/configmaps"
    sent: dict[str, float] = {}
    lat: list[float] = []
    async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(ssl=ctx), headers=headers) as s:
        async with s.get(base) as r:
            rv = (await r.json())["metadata"]["resourceVersion"]
        async with s.get(base, params={"watch": "true", "resourceVersion": rv},
                         timeout=aiohttp.ClientTimeout(total=None)) as w:
            async def writer() -> None:
                for i in range(n):
                    name = f"w{i}"
                    sent[name] = time.perf_counter()
                    async with s.post(base, data=json.dumps({"metadata": {"name": name}})) as r:
                        await r.read()
                    await asyncio.sleep(0.002)
            task = asyncio.create_task(writer())
            while len(lat) < n:
                line = await w.content.readline()
                ev = json.loads(line)
                name = ev["object"]["metadata"]["name"]
                if ev["type"] == "ADDED" and name in sent:
                    lat.append(time.perf_counter() - sent[name])
            await task
    return lat


def main() -> None:
    n = int(sys.argv[1]) if len(sys.argv) > 1 else 3000
    conc = int(sys.argv[2]) if len(sys.argv) > 2 else 32
    with tempfile.TemporaryDirectory() as d:
        raw = raw_insert_rate(str(Path(d) / "raw.db"), n)
    cp = ControlPlane().start()
    try:
        # Watch latency first, on a quiet server: after the bulk creates, the controllers are still
        # writing an Endpoints object and an EndpointSlice for each new Service for a while.
        lat = sorted(asyncio.run(watch_latency(cp, 300)))
        api = asyncio.run(creates_per_second(cp, n, conc))
    finally:
        cp.cleanup()
    p50 = statistics.median(lat) * 1000
    p99 = lat[int(len(lat) * 0.99) - 1] * 1000
    print(f"raw store creates/s (baseline):   {raw:10.0f}")
    print(f"API Service creates/s:            {api:10.0f}   ratio to raw store: {api / raw:.3f}   "
          f"(target >= 1000/s: {'met' if api >= 1000 else 'NOT met'})")
    print(f"watch delivery latency:           p50 {p50:.2f} ms   p99 {p99:.2f} ms   "
          f"(target p99 < 20 ms: {'met' if p99 < 20 else 'NOT met'})")


if __name__ == "__main__":
    main()
