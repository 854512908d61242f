"""NetworkPolicy in a real cluster: what enforcement costs on the data path, and how long a policy
takes from its API POST (or DELETE) to holding in the kernel.

Run as root: .venv/bin/python bench/network_policy.py [--rounds 5] [--duration 2] [--iterations 20]

Method. A 2-node cluster: a client pod (pause) on the control-plane node and one hello-app backend
pod behind a ClusterIP Service on the worker, so every connection crosses nodes and meets both
checks, the client's egress on its node and the backend's ingress on the other. The data path is
loaded from the client pod's netns with wrk (keep-alive: established connections, which the forward
chain accepts on its first rule) to the backend's pod IP and to its ClusterIP; new connections,
whose SYN walks the per-pod chains on both nodes, are timed by a loop that opens one at a time,
1,000 a second, and closes each with RST (p50/p99 of connect(): SYN out, SYN-ACK back; paced
because an unpaced loop overflows hello-app's accept queue now and then, and the 1 s SYN retransmit
swamps any rate). Each target runs in two states, in rounds that alternate their order (ABBA): (a)
no NetworkPolicy in the cluster (the agent then has no forward hook at all), and (b) 22 policies:
one isolating the backend for ingress and allowing the client by podSelector on TCP 8080, one
isolating the client for egress and allowing the backend on 8080, and 20 others in the same
namespace that select the same two pods and allow only ipBlocks and ports never used (10 per
direction, 4 rules each); their names sort first, so the allowing rule is the last one matched
before the chain's drop. Between states the bench creates or deletes the policies through the API
and waits until `nft list table ip skiff-netpol` in both node netns shows them all (or no forward
chain left). A ratio is the median over rounds of (b)/(a) within a round (req/s; connect() p50 for
new connections), which cancels the machine's drift between rounds. Programming latency: a poller
in the client pod's netns starts a non-blocking connect to the backend every 2 ms, each given 30
ms; the bench POSTs a policy that denies all ingress to the backend and times until the start of
the first attempt that got no answer (and whose next two attempts got none either, so a stray slow
connect is not taken for the policy); then DELETEs it and times until the start of the first
attempt that connected. That runs N times with no other policy in the cluster (the first policy
also starts the agents' pod and namespace watches, the last one stops them), and N times while an
unrelated policy that selects no pod exists (watches already running). Everything the bench starts
is removed at the end.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import re
import signal
import statistics
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import aiohttp  # noqa: E402

from bench.cluster_workloads import api_session, check_root, pct, pod_netns, wait_pods_ready  # noqa: E402
from bench.service_traffic import (  # noqa: E402
    CLIENT,
    close_poller,
    hello_app,
    paired_ratio,
    wait_connectable,
    wrk,
)
from skiff.net import names  # noqa: E402
from skiff.netpol.rules import TABLE  # noqa: E402
from tests.support import Cluster  # noqa: E402

NAMESPACE = "default"
POLICIES = f"/apis/networking.k8s.io/v1/namespaces/{NAMESPACE}/networkpolicies"
BACKEND = {"app": "backend"}  # the labels hello_app("backend", ...) gives its pods
CLIENT_LABELS = {"bench": "client"}  # service_traffic's CLIENT pod
PORT = 8080
NONE, POLICED = "no policy", "22 policies"
HANDSHAKE = "pod IP, TCP handshake"

# Runs in the client pod's netns, one command per stdin line: "blocked HOST PORT" or "open HOST
# PORT". Starts a non-blocking connect every SPACING s, each given TIMEOUT s, prints "armed" once
# the first one is under way, then the CLOCK_MONOTONIC start of the first attempt with the wanted
# outcome (which the bench's clock shares): "open" = connected; "blocked" = no connection (a
# dropped SYN times out), and CONFIRM attempts in a row so. Judged in start order, so an attempt
# still pending never loses to a later one that resolved first.
POLLER = r"""
import errno, selectors, socket, struct, sys, time
SPACING, TIMEOUT, CONFIRM = float(sys.argv[1]), float(sys.argv[2]), int(sys.argv[3])
LINGER0 = struct.pack("ii", 1, 0)  # close with RST: no TIME_WAIT pile-up at 500 connects/s

def run(host, port, want_open):
    sel = selectors.DefaultSelector()
    attempts, pending = [], {}
    judged = streak_start = streak = 0
    deadline = time.monotonic() + 15
    next_at = time.monotonic()
    armed = False
    try:
        while True:
            now = time.monotonic()
            if now >= next_at:
                s = socket.socket()
                s.setblocking(False)
                s.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, LINGER0)
                rec = [now, None]
                attempts.append(rec)
                err = s.connect_ex((host, port))
                if err == errno.EINPROGRESS:
                    pending[s] = rec
                    sel.register(s, selectors.EVENT_WRITE)
                else:
                    rec[1] = err == 0
                    s.close()
                next_at = now + SPACING
                if not armed:
                    print("armed", flush=True)
                    armed = True
            for key, _ in sel.select(max(0.0, next_at - time.monotonic())):
                s = key.fileobj
                pending.pop(s)[1] = s.getsockopt(socket.SOL_SOCKET, socket.SO_ERROR) == 0
                sel.unregister(s)
                s.close()
            now = time.monotonic()
            for s, rec in list(pending.items()):
                if now - rec[0] >= TIMEOUT:
                    rec[1] = False
                    del pending[s]
                    sel.unregister(s)
                    s.close()
            while judged < len(attempts) and attempts[judged][1] is not None:
                start, ok = attempts[judged]
                judged += 1
                if want_open and ok:
                    return str(start)
                if not want_open:
                    if ok:
                        streak = 0
                    else:
                        streak_start = start if streak == 0 else streak_start
                        streak += 1
                        if streak >= CONFIRM:
                            return str(streak_start)
            if now > deadline:
                return "timeout"
    finally:
        for s in pending:
            s.close()
        sel.close()

for line in sys.stdin:
    what, host, port = line.split()
    print(run(host, int(port), what == "open"), flush=True)
"""
POLL_SPACING, POLL_TIMEOUT, POLL_CONFIRM = 0.002, 0.03, 3

# New connections at a steady pace, one at a time, each closed with RST at once (no TIME_WAIT):
# the time connect() takes is the SYN's way out through both nodes' forward hooks, where a new
# connection walks the per-pod chains, and the SYN-ACK's way back. Paced well below what the
# backend accepts: unpaced, hello-app's accept queue overflows now and then (ListenDrops), and the
# 1 s SYN retransmit that follows would swamp a rate. A timed-out attempt counts as an error.
HANDSHAKES = r"""
import json, socket, struct, sys, time
host, port, seconds, rate = sys.argv[1], int(sys.argv[2]), float(sys.argv[3]), float(sys.argv[4])
linger0 = struct.pack("ii", 1, 0)
lat, errors = [], 0
t0 = next_at = time.perf_counter()
while next_at - t0 < seconds:
    time.sleep(max(0.0, next_at - time.perf_counter()))
    s = socket.socket()
    s.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, linger0)
    s.settimeout(1)
    t = time.perf_counter()
    try:
        s.connect((host, port))
        lat.append((time.perf_counter() - t) * 1000)
    except OSError:
        errors += 1
    finally:
        s.close()
    next_at = max(next_at + 1 / rate, time.perf_counter())  # no catching up in a burst after a stall
lat.sort()
print(json.dumps({"p50": lat[len(lat) // 2], "p99": lat[min(len(lat) - 1, round(0.99 * (len(lat) - 1)))],
                  "errors": errors, "n": len(lat)}))
"""
HANDSHAKE_RATE = 1000  # per second


# ---- policies ------------------------------------------------------------------------------------


def policy(name: str, selector: dict[str, str], direction: str, rules: list[dict] | None) -> dict:
    spec: dict = {"podSelector": {"matchLabels": selector}, "policyTypes": [direction]}
    if rules is not None:
        spec[direction.lower()] = rules
    return {"apiVersion": "networking.k8s.io/v1", "kind": "NetworkPolicy",
            "metadata": {"name": name, "namespace": NAMESPACE}, "spec": spec}


def data_path_policies(extra: int = 20) -> list[dict]:
    """The allowing pair plus `extra` policies that add rules to the same two pods' chains and
    match nothing the bench sends (ipBlocks in the documentation ranges, ports nobody serves)."""
    out = []
    for i in range(1, extra + 1):
        peers = [{"ipBlock": {"cidr": f"198.51.100.{i}/32"}}, {"ipBlock": {"cidr": f"203.0.113.{i}/32"}}]
        ports = [{"protocol": "TCP", "port": 9000 + i}, {"protocol": "TCP", "port": 9100 + i}]
        if i % 2:
            out.append(policy(f"extra-{i:02d}", BACKEND, "Ingress", [{"from": peers, "ports": ports}]))
        else:
            out.append(policy(f"extra-{i:02d}", CLIENT_LABELS, "Egress", [{"to": peers, "ports": ports}]))
    allowed_port = [{"protocol": "TCP", "port": PORT}]
    # Named to sort after the others: the chains are built in policy-name order.
    out.append(policy("zz-backend-from-client", BACKEND, "Ingress",
                      [{"from": [{"podSelector": {"matchLabels": CLIENT_LABELS}}], "ports": allowed_port}]))
    out.append(policy("zz-client-to-backend", CLIENT_LABELS, "Egress",
                      [{"to": [{"podSelector": {"matchLabels": BACKEND}}], "ports": allowed_port}]))
    return out


DENY_BACKEND = policy("deny-backend-ingress", BACKEND, "Ingress", None)
SELECTS_NOTHING = policy("selects-no-pod", {"bench": "nothing-has-this"}, "Ingress", None)


async def create(s: aiohttp.ClientSession, obj: dict) -> None:
    async with s.post(POLICIES, data=json.dumps(obj)) as r:
        if r.status != 201:
            raise RuntimeError(f"create {obj['metadata']['name']}: {r.status} {await r.text()}")
        await r.read()


async def delete(s: aiohttp.ClientSession, name: str) -> None:
    async with s.delete(f"{POLICIES}/{name}") as r:
        if r.status not in (200, 202):
            raise RuntimeError(f"delete {name}: {r.status} {await r.text()}")
        await r.read()


async def set_policies(cluster: Cluster, objs: list[dict], present: bool) -> None:
    async with api_session(cluster) as s:
        if present:
            await asyncio.gather(*(create(s, o) for o in objs))
        else:
            await asyncio.gather(*(delete(s, o["metadata"]["name"]) for o in objs))


# ---- the kernel side -----------------------------------------------------------------------------


def netpol_table(node_netns: str) -> str:
    """`nft list table ip skiff-netpol` in a node's netns; "" when there is no such table."""
    out = subprocess.run(["ip", "netns", "exec", node_netns, "nft", "list", "table", "ip", TABLE],
                         capture_output=True, text=True)
    return out.stdout if out.returncode == 0 else ""


def wait_programmed(wanted: dict[str, list[str]], timeout: float = 20) -> None:
    """Until each node netns's table holds a rule of every policy named for it; with no names,
    until it has no forward chain (the agent then leaves an empty table, or none)."""
    deadline = time.monotonic() + timeout
    while True:
        tables = {ns: netpol_table(ns) for ns in wanted}
        if all((all(f'"{NAMESPACE}/{n} ' in tables[ns] for n in want) if want else "hook forward" not in tables[ns])
               for ns, want in wanted.items()):
            return
        if time.monotonic() > deadline:
            raise RuntimeError(f"policies not programmed within {timeout}s:\n" + "\n".join(tables.values()))
        time.sleep(0.02)


def chain_rules(table: str, marker: str) -> int:
    """Rules in the chain of `table` that ends in the drop whose comment holds `marker`."""
    for chain in re.split(r"\n\s*chain ", table):
        if marker in chain:
            return chain.count(' comment "')
    return 0


# ---- measurements --------------------------------------------------------------------------------


def handshakes(host: str, port: int, netns: str, duration: float) -> dict:
    """Paced connects for `duration` s: connect() time p50/p99 (ms), errors; "rps" holds the p50
    too, so that median_run and paired_ratio work on it as on a wrk run."""
    out = subprocess.run(["ip", "netns", "exec", netns, sys.executable, "-c", HANDSHAKES, host, str(port),
                          str(duration), str(HANDSHAKE_RATE)], capture_output=True, text=True, timeout=duration + 30)
    if out.returncode != 0:
        raise RuntimeError(f"handshake loop failed: {out.stderr}")
    r = json.loads(out.stdout)
    return {**r, "rps": r["p50"]}


def median_run(runs: list[dict]) -> dict:
    """The median run by req/s, with every round's req/s in "per_round" (for paired_ratio)."""
    return {**sorted(runs, key=lambda r: r["rps"])[len(runs) // 2], "per_round": [r["rps"] for r in runs]}


def data_path(cluster: Cluster, info: dict, rounds: int, duration: float, connections: int,
              threads: int) -> tuple[dict[str, dict[str, dict]], dict[str, int]]:
    """{target: {state: median run}} over `rounds` rounds, and the chains' sizes under policy."""
    ns = info["client_ns"]
    targets = {"pod IP (wrk, keep-alive)": {"url": f"http://{info['pod_ip']}:{PORT}/"},
               "ClusterIP (wrk, keep-alive)": {"url": f"http://{info['cluster_ip']}/"},
               HANDSHAKE: None}
    objs = data_path_policies()
    wanted = {info["backend_node_ns"]: [o["metadata"]["name"] for o in objs if "ingress" in o["spec"]],
              info["client_node_ns"]: [o["metadata"]["name"] for o in objs if "egress" in o["spec"]]}
    unprogrammed: dict[str, list[str]] = {n: [] for n in wanted}

    def run(spec: dict | None, d: float) -> dict:
        if spec is None:
            return handshakes(info["pod_ip"], PORT, ns, d)
        return wrk(duration=d, netns=ns, connections=connections, threads=threads, **spec)

    for spec in targets.values():
        run(spec, 1)  # warm-up, as interleaved() does
    runs: dict[str, dict[str, list[dict]]] = {t: {NONE: [], POLICED: []} for t in targets}
    sizes: dict[str, int] = {}
    state = NONE
    for i in range(rounds):
        # ABBA: each state goes first in half the rounds, and a round needs one switch only.
        for want in ((NONE, POLICED) if i % 2 == 0 else (POLICED, NONE)):
            if want != state:
                asyncio.run(set_policies(cluster, objs, want == POLICED))
                wait_programmed(wanted if want == POLICED else unprogrammed)
                state = want
                if want == POLICED and not sizes:
                    sizes = check_enforced(info)
            for name, spec in targets.items():
                runs[name][want].append(run(spec, duration))
    if state == POLICED:
        asyncio.run(set_policies(cluster, objs, False))
        wait_programmed(unprogrammed)
    return {t: {s: median_run(r) for s, r in by_state.items()} for t, by_state in runs.items()}, sizes


def check_enforced(info: dict) -> dict[str, int]:
    """With the 22 policies programmed, another source (the host) must not reach the backend, or
    the policed figures would measure nothing; returns the two chains' rule counts."""
    probe = subprocess.run(["curl", "-s", "-o", "/dev/null", "--max-time", "0.5",
                            f"http://{info['pod_ip']}:{PORT}/"])
    if probe.returncode == 0:
        raise RuntimeError("the host reached the isolated backend: policies not enforced")
    return {"ingress": chain_rules(netpol_table(info["backend_node_ns"]), "isolated for ingress"),
            "egress": chain_rules(netpol_table(info["client_node_ns"]), "isolated for egress")}


async def programming_latency(cluster: Cluster, client_ns: str, backend_ip: str, n: int,
                              warm: bool) -> tuple[list[float], list[float]]:
    """(POST deny -> first blocked attempt, DELETE -> first connected attempt) per iteration, in s."""
    poller = await asyncio.create_subprocess_exec(
        "ip", "netns", "exec", client_ns, sys.executable, "-c", POLLER,
        str(POLL_SPACING), str(POLL_TIMEOUT), str(POLL_CONFIRM), stdin=subprocess.PIPE, stdout=subprocess.PIPE)

    async def line() -> str:
        return (await asyncio.wait_for(poller.stdout.readline(), 30)).decode().strip()

    async def timed(s: aiohttp.ClientSession, command: str, action) -> float:
        poller.stdin.write(f"{command} {backend_ip} {PORT}\n".encode())
        await poller.stdin.drain()
        if await line() != "armed":
            raise RuntimeError("poller did not start")
        t0 = time.monotonic()
        await action(s)
        answer = await line()
        if answer == "timeout":
            raise RuntimeError(f"backend never became {command} within 15 s")
        return float(answer) - t0

    blocked, reopened = [], []
    try:
        async with api_session(cluster) as s:
            if warm:
                await create(s, SELECTS_NOTHING)
                await asyncio.sleep(1.0)  # let both agents start their pod and namespace watches
            for _ in range(n):
                blocked.append(await timed(s, "blocked", lambda s: create(s, DENY_BACKEND)))
                reopened.append(await timed(s, "open", lambda s: delete(s, DENY_BACKEND["metadata"]["name"])))
                await asyncio.sleep(0.1)  # the agents' follow-up work is not the next iteration's
            if warm:
                await delete(s, SELECTS_NOTHING["metadata"]["name"])
    finally:
        await close_poller(poller)
    return blocked, reopened


# ---- set-up and report ---------------------------------------------------------------------------


def setup(cluster: Cluster) -> dict:
    cfg = cluster.cfg
    cluster.kubectl("apply", "-f", "-", input="\n---".join([
        hello_app("backend", 1, cfg.node_name(1), service_type="ClusterIP"),
        CLIENT.replace("CLIENT_NODE", cfg.node_name(0))]))
    backend = wait_pods_ready(cluster, "app=backend", 1)[0]
    client = wait_pods_ready(cluster, "bench=client", 1)[0]
    svc = json.loads(cluster.kubectl("get", "svc", "backend", "-o", "json"))
    info = {"client_ns": pod_netns(client), "pod_ip": backend["status"]["podIP"],
            "cluster_ip": svc["spec"]["clusterIP"],
            "client_node": client["spec"]["nodeName"], "backend_node": backend["spec"]["nodeName"],
            "client_node_ns": names.node_netns_name(client["spec"]["nodeName"]),
            "backend_node_ns": names.node_netns_name(backend["spec"]["nodeName"])}
    wait_connectable(info["pod_ip"], PORT, info["client_ns"])
    wait_connectable(info["cluster_ip"], 80, info["client_ns"])
    return info


def ms(values: list[float]) -> str:
    return (f"p50 {statistics.median(values) * 1000:6.1f} ms   p99 {pct(values, 0.99) * 1000:6.1f} ms   "
            f"max {max(values) * 1000:6.1f} ms")


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--rounds", type=int, default=5, help="interleaved data-path rounds (median)")
    ap.add_argument("--duration", type=float, default=2, help="seconds per wrk / connect-loop run")
    ap.add_argument("--iterations", type=int, default=20, help="programming-latency iterations per case")
    ap.add_argument("--connections", type=int, default=20)
    ap.add_argument("--threads", type=int, default=2)
    args = ap.parse_args()
    check_root()
    # `kill` must tear the cluster down as Ctrl-C does: through the finally below.
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))

    t_start = time.monotonic()
    cluster = Cluster(nodes=2)
    try:
        cluster.up()
        info = setup(cluster)
        res, sizes = data_path(cluster, info, args.rounds, args.duration, args.connections, args.threads)
        cold = asyncio.run(programming_latency(cluster, info["client_ns"], info["pod_ip"], args.iterations, False))
        warm = asyncio.run(programming_latency(cluster, info["client_ns"], info["pod_ip"], args.iterations, True))
        load = os.getloadavg()
    finally:
        cluster.down()

    print(f"load average at end: {load[0]:.2f} {load[1]:.2f} {load[2]:.2f}, {os.cpu_count()} CPUs; "
          f"client pod on {info['client_node']}, hello-app backend on {info['backend_node']}; "
          f"run took {time.monotonic() - t_start:.0f} s")
    print(f"data path, client pod -> backend on the other node: wrk -t{args.threads} -c{args.connections} "
          f"-d{args.duration:g}s, {args.rounds} ABBA rounds (median run); ratio = median over rounds of "
          f"({POLICED} / {NONE}) in the same round, per-round ratios beside it to show the noise")
    print(f"  under policy: backend's ingress chain {sizes.get('ingress', 0)} rules, client's egress chain "
          f"{sizes.get('egress', 0)} rules (the allowing rule last before the drop); the host was refused")
    print(f"  {'target':28} {'state':12} {'req/s':>8} {'p50 ms':>7} {'p99 ms':>8} {'errors':>6} {'ratio':>6}")
    ratios = {}
    for target, by_state in res.items():
        base, pol = by_state[NONE], by_state[POLICED]
        ratios[target] = paired_ratio(pol, base)
        rounds = " ".join(f"{a / b:.2f}" for a, b in zip(pol["per_round"], base["per_round"], strict=True))
        if target == HANDSHAKE:
            print(f"  new connections to the pod IP, {HANDSHAKE_RATE}/s one at a time for {args.duration:g} s "
                  f"in the same rounds (median run by p50); connect() time = SYN out, SYN-ACK back:")
            print(f"  {'':28} {'state':12} {'p50 us':>8} {'p99 us':>7} {'errors':>8} {'p50 ratio':>13}")
            for state, r in by_state.items():
                ratio = f"{ratios[target]:6.3f}  ({rounds})" if state == POLICED else ""
                print(f"  {'':28} {state:12} {r['p50'] * 1000:8.1f} {r['p99'] * 1000:7.1f} {r['errors']:8d}"
                      f"        {ratio}")
            continue
        for state, r in by_state.items():
            ratio = f"{ratios[target]:6.3f}  ({rounds})" if state == POLICED else ""
            print(f"  {target if state == NONE else '':28} {state:12} {r['rps']:8.0f} {r['p50']:7.3f} "
                  f"{r['p99']:8.2f} {r['errors']:6d} {ratio}")
    print(f"policy programming latency, {args.iterations} iterations per case; a connect attempt every "
          f"{POLL_SPACING * 1000:g} ms from the client pod's netns, {POLL_TIMEOUT * 1000:g} ms each; timed from "
          f"just before the API request is sent (aiohttp, no kubectl) to the start of the first attempt that shows "
          f"the change (blocked: {POLL_CONFIRM} attempts in a row got no answer; open: connected):")
    cases = {"only policy in the cluster (starts/stops the pod watches)": cold,
             "beside a policy that selects no pod": warm}
    for case, (blk, opn) in cases.items():
        print(f"  {case}:")
        print(f"    POST deny-all-ingress to backend -> first blocked attempt:   {ms(blk)}")
        print(f"    DELETE it -> first attempt that connects:                  {ms(opn)}")
    print("summary:")
    for target in res:
        if target != HANDSHAKE:
            r = res[target]
            print(f"  {target.split(' (')[0]:9} req/s 22 policies / none: {ratios[target]:.3f}   p50/p99 ms: "
                  f"none {r[NONE]['p50']:.3f}/{r[NONE]['p99']:.2f}, policed {r[POLICED]['p50']:.3f}/"
                  f"{r[POLICED]['p99']:.2f}")
    hs = res[HANDSHAKE]
    print(f"  new connection (connect() time) p50: none {hs[NONE]['p50'] * 1000:.1f} us, policed "
          f"{hs[POLICED]['p50'] * 1000:.1f} us, ratio {ratios[HANDSHAKE]:.3f} (>1 = slower)")
    for case, (blk, opn) in cases.items():
        print(f"  programming ({case.split(' (')[0]}): deny p50 {statistics.median(blk) * 1000:.0f} ms "
              f"p99 {pct(blk, 0.99) * 1000:.0f} ms; un-deny p50 {statistics.median(opn) * 1000:.0f} ms "
              f"p99 {pct(opn, 0.99) * 1000:.0f} ms")


if __name__ == "__main__":
    main()
