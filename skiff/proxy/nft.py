"""Make one nftables table match a Ruleset: a full replace first, then O(change) transactions.

Every sync is a single `nft -f -` transaction, so the kernel never sees a half-applied state.
The applier remembers the last ruleset it applied successfully; after any failure it forgets it,
because the kernel's state is then unknown, and the next sync replaces the whole table.
"""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass

from skiff.proxy.model import Ruleset
from skiff.proxy.render import diff, render_diff, render_full


class NftError(RuntimeError):
    """nft rejected a transaction; the message carries nft's own error text."""


@dataclass(frozen=True)
class SyncResult:
    kind: str  # "full", "partial" or "noop"
    seconds: float
    transaction: str


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
                result = SyncResult("noop", time.perf_counter() - start, "")
                self.last_result = result
                return result
            script = render_diff(d, ruleset, self.table)
            try:
                await run_nft(script, netns=self.netns)
            except NftError:
                # Our idea of the kernel state was wrong (or the transaction was); start over.
                self._applied = None
            else:
                self._applied = ruleset
                self._syncs_since_full += 1
                result = SyncResult("partial", time.perf_counter() - start, script)
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

    async def delete_table(self) -> None:
        """Remove the table if it exists (node shutdown, tests)."""
        await run_nft(f"add table ip {self.table}\ndelete table ip {self.table}\n", netns=self.netns)
        self._applied = None

    async def list_table(self) -> str:
        return await run_nft("", args=("list", "table", "ip", self.table), netns=self.netns)
