"""Pod IP address management for one node's pod CIDR (the host-local IPAM role).

`IPPool` is the pure allocator. `PodIPAM` persists it to a small JSON file after every change, so
a restarted node agent knows which addresses running pods still hold.

Allocation is next-fit: it continues after the last address handed out instead of reusing the
lowest free one, so an address just released (whose old pod may still sit in other nodes'
Endpoints or conntrack entries for a moment) is the last to be handed out again.
"""

from __future__ import annotations

import asyncio
import ipaddress
import json
import os
from collections.abc import Iterable
from pathlib import Path


class PoolExhausted(RuntimeError):
    pass


class IPPool:
    def __init__(
        self,
        cidr: str,
        reserved: Iterable[str] = (),
        allocations: dict[str, str] | None = None,
        last: str | None = None,
    ):
        """`reserved`: extra addresses never handed out (network, gateway and broadcast always are).

        `allocations` maps IP -> owner (a pod UID).
        """
        self.network = ipaddress.ip_network(cidr)
        hosts = list(self.network.hosts())
        self.gateway = str(hosts[0]) if len(hosts) > 1 else None
        never = {str(self.network.network_address), str(self.network.broadcast_address), *reserved}
        if self.gateway:
            never.add(self.gateway)
        self._candidates = [str(ip) for ip in hosts if str(ip) not in never]
        self._by_ip: dict[str, str] = {}
        self._by_owner: dict[str, str] = {}
        self.last = last
        for ip, owner in (allocations or {}).items():
            self._assign(ip, owner)

    def _assign(self, ip: str, owner: str) -> None:
        if ipaddress.ip_address(ip) not in self.network:
            raise ValueError(f"{ip} is not in {self.network}")
        self._by_ip[ip] = owner
        self._by_owner[owner] = ip

    @property
    def allocations(self) -> dict[str, str]:
        """IP -> owner."""
        return dict(self._by_ip)

    @property
    def capacity(self) -> int:
        return len(self._candidates)

    def ip_of(self, owner: str) -> str | None:
        return self._by_owner.get(owner)

    def owner_of(self, ip: str) -> str | None:
        return self._by_ip.get(ip)

    def allocate(self, owner: str) -> str:
        """An address for `owner`; asking again for the same owner returns the same address."""
        if owner in self._by_owner:
            return self._by_owner[owner]
        n = len(self._candidates)
        start = 0
        if self.last in self._candidates:
            start = self._candidates.index(self.last) + 1
        for step in range(n):
            ip = self._candidates[(start + step) % n]
            if ip not in self._by_ip:
                self._assign(ip, owner)
                self.last = ip
                return ip
        raise PoolExhausted(f"no free pod IP left in {self.network} ({n} addresses in use)")

    def release(self, owner: str) -> str | None:
        ip = self._by_owner.pop(owner, None)
        if ip is not None:
            del self._by_ip[ip]
        return ip

    def retain_only(self, owners: Iterable[str]) -> list[str]:
        """Release every address whose owner is not in `owners`; returns the released addresses."""
        keep = set(owners)
        released = []
        for owner in [o for o in self._by_owner if o not in keep]:
            ip = self.release(owner)
            if ip:
                released.append(ip)
        return sorted(released, key=ipaddress.ip_address)

    def to_dict(self) -> dict:
        return {"cidr": str(self.network), "last": self.last, "allocations": self.allocations}


class PodIPAM:
    """An IPPool saved to `path` (atomic replace) after every change.

    Inside a running event loop the save is deferred by `save_delay` so that a burst of new pods
    costs one file, not one per pod (each replace allocates an inode, which is slow on a busy
    ext4). What that can lose is harmless: the file only keeps pod IPs stable across agent
    restarts, and a restarted agent rebuilds every sandbox anyway. `flush()` writes now.
    """

    def __init__(self, cidr: str, path: str | Path, reserved: Iterable[str] = (), save_delay: float = 0.05):
        self.path = Path(path)
        self.save_delay = save_delay
        self._pending: asyncio.TimerHandle | None = None
        state: dict = {}
        if self.path.exists():
            state = json.loads(self.path.read_text() or "{}")
            if state.get("cidr") not in (None, str(ipaddress.ip_network(cidr))):
                # The node's range changed (a new cluster with the same state dir): old leases are void.
                state = {}
        self.pool = IPPool(cidr, reserved, state.get("allocations"), state.get("last"))

    @property
    def gateway(self) -> str | None:
        return self.pool.gateway

    def _save(self) -> None:
        if self._pending is not None:
            return
        try:
            loop = asyncio.get_running_loop()
        except RuntimeError:
            self.flush()
            return
        self._pending = loop.call_later(self.save_delay, self.flush)

    def flush(self) -> None:
        if self._pending is not None:
            self._pending.cancel()
            self._pending = None
        self.path.parent.mkdir(parents=True, exist_ok=True)
        tmp = self.path.with_name(self.path.name + ".tmp")
        tmp.write_text(json.dumps(self.pool.to_dict(), indent=1, sort_keys=True))
        os.replace(tmp, self.path)

    def allocate(self, owner: str) -> str:
        before = self.pool.ip_of(owner)
        ip = self.pool.allocate(owner)
        if before is None:
            self._save()
        return ip

    def release(self, owner: str) -> str | None:
        ip = self.pool.release(owner)
        if ip is not None:
            self._save()
        return ip

    def retain_only(self, owners: Iterable[str]) -> list[str]:
        released = self.pool.retain_only(owners)
        if released:
            self._save()
        return released

    def ip_of(self, owner: str) -> str | None:
        return self.pool.ip_of(owner)

    @property
    def allocations(self) -> dict[str, str]:
        return self.pool.allocations
