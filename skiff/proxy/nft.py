"""Make one nftables table match a Ruleset: a full replace first, then O(change) transactions.

Every sync is a single transaction, so the kernel never sees a half-applied state. Full syncs go
through `nft -f -`. Partial syncs go straight to the kernel as one nf_tables netlink batch when
every operation in them compiles (expressions.py); `nft` would first dump and parse the whole
table, which at tens of thousands of chains costs more than the commit. Anything that does not
compile, or a batch the kernel refuses, goes through `nft` as before.
The applier remembers the last ruleset it applied successfully; after any failure it forgets it,
because the kernel's state is then unknown, and the next sync replaces the whole table.
"""

from __future__ import annotations

import asyncio
import logging
import time
from dataclasses import dataclass

from skiff.proxy.expressions import compile_element, compile_rule, compile_set
from skiff.proxy.model import Ruleset
from skiff.proxy.netlink import MAX_BATCH_MESSAGES, Batch, NetlinkError, NftSocket
from skiff.proxy.render import RulesetDiff, diff, render_diff, render_full

log = logging.getLogger("skiff.proxy")


class NftError(RuntimeError):
    """nft rejected a transaction; the message carries nft's own error text."""


@dataclass(frozen=True)
class SyncResult:
    """transaction is the nft text of the change, also when it was sent as netlink (for logs and tests)."""

    kind: str  # "full", "partial" or "noop"
    seconds: float
    transaction: str
    via: str = "nft"  # "netlink" or "nft"; "" for a noop


async def run_nft(script: str, args: tuple[str, ...] = ("-f", "-"), netns: str | None = None) -> str:
    """Run nft with `script` on stdin, in `netns` if given (else in the caller's namespace)."""
    argv = (["ip", "netns", "exec", netns] if netns else []) + ["nft", *args]
    proc = await asyncio.create_subprocess_exec(
        *argv,
        stdin=asyncio.subprocess.PIPE,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    out, err = await proc.communicate(script.encode())
    if proc.returncode != 0:
        raise NftError(f"nft {' '.join(args)} failed ({proc.returncode}): {err.decode().strip()[:4000]}")
    return out.decode()


def netlink_batch(d: RulesetDiff, new: Ruleset, table: str) -> Batch | None:
    """The partial transaction of render_diff as one netlink batch, operation for operation in the
    same order, or None when any part of it has no netlink encoding here (then nft applies it)."""
    b = Batch(table)
    for name in d.new_sets:
        attrs = compile_set(new.sets[name])
        if attrs is None:
            return None
        b.new_set(name, attrs, new.sets[name].body())
    for name in d.new_chains:
        if new.chains[name].hook:
            return None
        b.new_chain(name)
    for name in d.changed_chains:
        if name not in d.new_chains:
            b.flush_chain(name)
        for rule in new.chains[name].rules:
            exprs = compile_rule(rule)
            if exprs is None:
                return None
            b.add_rule(name, exprs, rule)
    for name in sorted(d.element_deletes):
        encoded = _encode_elements(new, name, [(k, "") for k in d.element_deletes[name]])
        if encoded is None:
            return None
        b.delete_elements(name, *encoded)
    for name in sorted(d.element_adds):
        encoded = _encode_elements(new, name, d.element_adds[name])
        if encoded is None:
            return None
        b.add_elements(name, *encoded)
    for name in d.stale_chains:
        b.flush_chain(name)
    for name in d.stale_chains:
        b.delete_chain(name)
    for name in d.stale_sets:
        b.delete_set(name)
    return b if len(b) <= MAX_BATCH_MESSAGES else None


def _encode_elements(rs: Ruleset, set_name: str, items: list[tuple[str, str]]) -> tuple[list[bytes], list[str]] | None:
    """Netlink elements of set `set_name` (keys, and map values unless "") plus their nft texts."""
    s = rs.sets.get(set_name)
    if s is None:
        return None
    encoded = []
    for key, value in items:
        element = compile_element(s, key, value)
        if element is None:
            return None
        encoded.append(element)
    return encoded, [f"{k} : {v}" if v else k for k, v in items]


async def sync_or_retry_later(applier: NftApplier, ruleset: Ruleset, retry: asyncio.Event,
                              what: str) -> SyncResult | None:
    """applier.sync(ruleset); on failure log it, forget what the kernel holds and, half a second
    later, ask (through `retry`) for another sync, which will be a full one. None when it failed."""
    try:
        return await applier.sync(ruleset)
    except Exception:
        log.exception("programming %s failed; retrying with a full sync", what)
        applier.force_full_sync()
        await asyncio.sleep(0.5)
        retry.set()
        return None


class NftApplier:
    """Keeps table `table_name` (family ip) in sync with successive desired Rulesets.

    full_sync_every: every Nth sync is a full one, which repairs anything changed behind our back.
    """

    def __init__(self, table_name: str = "skiff-proxy", *, netns: str | None = None, full_sync_every: int = 100):
        self.table = table_name
        self.netns = netns
        self.full_sync_every = max(1, full_sync_every)
        self._applied: Ruleset | None = None
        self._syncs_since_full = 0
        self._socket: NftSocket | None = None
        self.last_result: SyncResult | None = None

    def force_full_sync(self) -> None:
        self._applied = None

    async def sync(self, ruleset: Ruleset) -> SyncResult:
        start = time.perf_counter()
        d = None
        if self._applied is not None and self._syncs_since_full < self.full_sync_every:
            d = diff(self._applied, ruleset)
        if d is not None:
            if d.is_empty():
                result = SyncResult("noop", time.perf_counter() - start, "", via="")
                self.last_result = result
                return result
            script = render_diff(d, ruleset, self.table)
            via = await self._apply_partial(d, ruleset, script)
            if via is None:
                # Our idea of the kernel state was wrong (or the transaction was); start over.
                self._applied = None
            else:
                self._applied = ruleset
                self._syncs_since_full += 1
                result = SyncResult("partial", time.perf_counter() - start, script, via=via)
                self.last_result = result
                return result
        script = render_full(ruleset, self.table)
        self._applied = None
        await run_nft(script, netns=self.netns)
        self._applied = ruleset
        self._syncs_since_full = 0
        result = SyncResult("full", time.perf_counter() - start, script)
        self.last_result = result
        return result

    async def _apply_partial(self, d: RulesetDiff, ruleset: Ruleset, script: str) -> str | None:
        """Apply one partial transaction; returns how ("netlink" or "nft"), or None if it failed."""
        try:
            batch = netlink_batch(d, ruleset, self.table)
        except ValueError:  # e.g. a name too long for a netlink attribute: nft will say what is wrong
            batch = None
        if batch is not None:
            try:
                # The commit blocks for as long as the kernel validates the table: keep the loop free.
                await asyncio.to_thread(self._commit, batch)
                return "netlink"
            except asyncio.CancelledError:
                self._applied = None  # the thread may still commit: the kernel state is unknown
                raise
            except (NetlinkError, OSError) as exc:
                log.warning("netlink partial sync of table %s failed, retrying with nft: %s", self.table, exc)
                self._close_socket()
        try:
            await run_nft(script, netns=self.netns)
        except NftError:
            return None
        return "nft"

    def _commit(self, batch: Batch) -> None:
        if self._socket is not None and self._socket.namespace_replaced():
            self._close_socket()
        if self._socket is None:
            self._socket = NftSocket(self.netns)
        self._socket.commit(batch)

    def _close_socket(self) -> None:
        if self._socket is not None:
            self._socket.close()
            self._socket = None

    async def delete_table(self) -> None:
        """Remove the table if it exists (node shutdown, tests)."""
        self._close_socket()
        await run_nft(f"add table ip {self.table}\ndelete table ip {self.table}\n", netns=self.netns)
        self._applied = None

    async def list_table(self) -> str:
        return await run_nft("", args=("list", "table", "ip", self.table), netns=self.netns)
