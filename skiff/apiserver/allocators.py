"""ClusterIP and NodePort allocation, as kube-apiserver's Service REST storage does it.

- `IPAllocator`: a bitmap over a service CIDR (KK `pkg/registry/core/service/ipallocator`). The
  network address and the IPv4 broadcast address are never handed out; IPv6 ranges are capped
  at 65536 addresses. KEP-3070 splits the range: the lower band (`min(max(16, size/16), 256)`
  addresses) is left for users who pick an IP, and `allocate_next` takes a random free address
  from the upper band first.
- `PortAllocator`: the same over a port range (KK `portallocator`), KEP-3668 bands
  (`min(max(16, size/32), 128)`; 30000-32767 -> static band 30000-30085).
- `ServiceAllocations`: the Service-level logic of KK `pkg/registry/core/service/storage/alloc.go`:
  which Services get IPs and nodePorts, what a type change releases or adds, the exact error
  messages, rollback, snapshots (like the `RangeAllocation` objects kube keeps in etcd) and the
  repair pass of the repair controllers.

Pure Python and no I/O: the API server persists `snapshot()` and calls `repair()` at start-up.
"""

from __future__ import annotations

import base64
import ipaddress
import random
import re
from collections.abc import Iterator
from typing import Any

from skiff.api import errors
from skiff.api.errors import FieldError, invalid
from skiff.api.validation.service import (
    go_string_slice,
    invalid_go,
    needs_health_check,
    normalize_cluster_ips,
    patch_allocated_values,
    validate_cluster_ips_related_fields,
)


class AllocationError(Exception):
    """Base of the allocators' errors; str() is kube-apiserver's message."""


class ErrAllocated(AllocationError):
    pass


class ErrNotInRange(AllocationError):
    pass


class ErrFull(AllocationError):
    def __init__(self) -> None:
        super().__init__("range is full")


_NOT_FULL_BYTE = re.compile(rb"[^\xff]")


class _Bitmap:
    """A fixed-size set of offsets with kube's random-scan-with-offset strategy.

    Bit i lives in byte i // 8, bit i % 8 (little-endian), so the bytes read as one little-endian
    integer are the integer kube stores (big.Int), and a regex finds non-full bytes at C speed.
    """

    def __init__(self, size: int, offset: int, rng: random.Random):
        self.size = size
        # A static band as large as the range would leave nothing for dynamic allocation.
        self.offset = offset if 0 < offset < size else 0
        self.rng = rng
        self.bits = bytearray((size + 7) // 8)
        self.count = 0

    def has(self, i: int) -> bool:
        return bool(self.bits[i >> 3] & (1 << (i & 7)))

    def allocate(self, i: int) -> bool:
        if self.has(i):
            return False
        self.bits[i >> 3] |= 1 << (i & 7)
        self.count += 1
        return True

    def release(self, i: int) -> None:
        if self.has(i):
            self.bits[i >> 3] &= ~(1 << (i & 7)) & 0xFF
            self.count -= 1

    def _first_free(self, lo: int, hi: int) -> int | None:
        """The first clear bit in [lo, hi)."""
        i = lo
        while i < hi:
            if i & 7 == 0:
                m = _NOT_FULL_BYTE.search(self.bits, i >> 3, (hi + 7) >> 3)
                if m is None:
                    return None
                i = max(i, m.start() * 8)
                if i >= hi:
                    return None
            if not self.has(i):
                return i
            i += 1
        return None

    def _scan(self, lo: int, hi: int) -> int | None:
        # Random start, then forward with wrap-around, inside [lo, hi).
        if hi <= lo:
            return None
        start = lo + self.rng.randrange(hi - lo)
        found = self._first_free(start, hi)
        return found if found is not None else self._first_free(lo, start)

    def allocate_next(self) -> int | None:
        if self.count >= self.size:
            return None
        # Dynamic allocations use the upper band until it is exhausted (KEP-3070 / KEP-3668).
        found = self._scan(self.offset, self.size)
        if found is None:
            found = self._scan(0, self.offset)
        if found is not None:
            self.allocate(found)
        return found

    def __iter__(self) -> Iterator[int]:
        for byte_index, byte in enumerate(self.bits):
            if byte:
                for bit in range(8):
                    if byte & (1 << bit):
                        yield byte_index * 8 + bit

    def to_bytes(self) -> bytes:
        """big.Int.Bytes(): big-endian, no leading zero bytes."""
        value = int.from_bytes(self.bits, "little")
        return value.to_bytes((value.bit_length() + 7) // 8, "big")

    def load(self, data: bytes) -> None:
        value = int.from_bytes(data, "big")
        if value.bit_length() > self.size:
            value &= (1 << self.size) - 1
        self.bits = bytearray(value.to_bytes(len(self.bits), "little"))
        self.count = value.bit_count()


def _band_offset(size: int, lo: int, hi: int, step: int) -> int:
    """min(max(lo, size/step), hi), and no static band for ranges of `lo` or fewer values."""
    if size <= lo:
        return 0
    return min(max(lo, size // step), hi)


class IPAllocator:
    """Service IPs from one CIDR (`--service-cluster-ip-range`)."""

    def __init__(self, cidr: str, rng: random.Random | None = None):
        self.network = ipaddress.ip_network(cidr, strict=False)
        self.cidr = str(self.network)
        self.family = "IPv6" if self.network.version == 6 else "IPv4"
        total = self.network.num_addresses
        size = total - 1  # never the network address
        if self.family == "IPv4":
            size -= 1  # nor the broadcast address
        else:
            size = min(size, 65536)
        self.size = max(size, 0)
        self._base = int(self.network.network_address) + 1
        self.static_band = _band_offset(total, 16, 256, 16)
        self._bitmap = _Bitmap(self.size, self.static_band, rng or random.Random())

    def _offset(self, ip: str) -> int | None:
        try:
            addr = ipaddress.ip_address(ip)
        except ValueError:
            return None
        if addr.version != self.network.version or addr not in self.network:
            return None
        offset = int(addr) - self._base
        return offset if 0 <= offset < self.size else None

    def _ip(self, offset: int) -> str:
        return str(ipaddress.ip_address(self._base + offset))

    def allocate(self, ip: str) -> None:
        offset = self._offset(ip)
        if offset is None:
            raise ErrNotInRange(f"the provided IP ({ip}) is not in the valid range. "
                                f"The range of valid IPs is {self.cidr}")
        if not self._bitmap.allocate(offset):
            raise ErrAllocated("provided IP is already allocated")

    def allocate_next(self) -> str:
        offset = self._bitmap.allocate_next()
        if offset is None:
            raise ErrFull()
        return self._ip(offset)

    def release(self, ip: str) -> None:
        """Releasing a free or out-of-range IP is a no-op, as in kube."""
        offset = self._offset(ip)
        if offset is not None:
            self._bitmap.release(offset)

    def has(self, ip: str) -> bool:
        offset = self._offset(ip)
        return offset is not None and self._bitmap.has(offset)

    def contains(self, ip: str) -> bool:
        return self._offset(ip) is not None

    def free(self) -> int:
        return self.size - self._bitmap.count

    def used(self) -> int:
        return self._bitmap.count

    def allocated(self) -> list[str]:
        return [self._ip(i) for i in self._bitmap]

    def snapshot(self) -> dict:
        """A RangeAllocation-like record: {"range": cidr, "data": base64 of the big-endian bitmap}."""
        return {"range": self.cidr, "data": base64.b64encode(self._bitmap.to_bytes()).decode()}

    def restore(self, snap: dict) -> None:
        if snap.get("range") != self.cidr:
            raise ValueError("the provided range does not match the current range")
        self._bitmap.load(base64.b64decode(snap.get("data") or ""))


def parse_port_range(spec: str) -> tuple[int, int]:
    """`30000-32767`, `30000+2768` or `30000` -> (base, size), as utilnet.ParsePortRange."""
    s = spec.strip()
    if "-" in s:
        lo, hi = (int(x) for x in s.split("-", 1))
        base, size = lo, hi - lo + 1
    elif "+" in s:
        lo, n = (int(x) for x in s.split("+", 1))
        base, size = lo, n + 1
    else:
        base, size = int(s), 1
    if base < 0 or size < 1 or base + size - 1 > 65535:
        raise ValueError(f"invalid port range: {spec!r}")
    return base, size


class PortAllocator:
    """NodePorts from `--service-node-port-range`."""

    def __init__(self, port_range: str = "30000-32767", rng: random.Random | None = None):
        self.base, self.size = parse_port_range(port_range)
        self.range = f"{self.base}-{self.base + self.size - 1}"
        self.static_band = _band_offset(self.size, 16, 128, 32)
        self._bitmap = _Bitmap(self.size, self.static_band, rng or random.Random())

    def _offset(self, port: int) -> int | None:
        if isinstance(port, bool) or not isinstance(port, int):
            return None
        offset = port - self.base
        return offset if 0 <= offset < self.size else None

    def allocate(self, port: int) -> None:
        offset = self._offset(port)
        if offset is None:
            raise ErrNotInRange(f"provided port is not in the valid range. The range of valid ports is {self.range}")
        if not self._bitmap.allocate(offset):
            raise ErrAllocated("provided port is already allocated")

    def allocate_next(self) -> int:
        offset = self._bitmap.allocate_next()
        if offset is None:
            raise ErrFull()
        return self.base + offset

    def release(self, port: int) -> None:
        offset = self._offset(port)
        if offset is not None:
            self._bitmap.release(offset)

    def has(self, port: int) -> bool:
        offset = self._offset(port)
        return offset is not None and self._bitmap.has(offset)

    def contains(self, port: int) -> bool:
        return self._offset(port) is not None

    def free(self) -> int:
        return self.size - self._bitmap.count

    def used(self) -> int:
        return self._bitmap.count

    def allocated(self) -> list[int]:
        return [self.base + i for i in self._bitmap]

    def snapshot(self) -> dict:
        return {"range": self.range, "data": base64.b64encode(self._bitmap.to_bytes()).decode()}

    def restore(self, snap: dict) -> None:
        if snap.get("range") != self.range:
            raise ValueError("the provided range does not match the current range")
        self._bitmap.load(base64.b64decode(snap.get("data") or ""))


# ---- Service-level allocation --------------------------------------------------------------


def _spec(svc: dict | None) -> dict:
    spec = (svc or {}).get("spec")
    return spec if isinstance(spec, dict) else {}


def _ports(spec: dict) -> list[dict]:
    ports = spec.get("ports")
    return [p for p in ports if isinstance(p, dict)] if isinstance(ports, list) else []


def _uses_node_ports(spec: dict) -> bool:
    return spec.get("type") in ("NodePort", "LoadBalancer")


def _should_allocate_node_ports(spec: dict) -> bool:
    if spec.get("type") == "NodePort":
        return True
    return spec.get("type") == "LoadBalancer" and spec.get("allocateLoadBalancerNodePorts") is not False


def _name(svc: dict) -> str:
    md = svc.get("metadata") or {}
    return f"{md.get('namespace', '')}/{md.get('name', '')}"


def _ip_family(ip: str) -> str | None:
    try:
        return "IPv6" if ipaddress.ip_address(ip).version == 6 else "IPv4"
    except ValueError:
        return None


class _Undo:
    """What one call allocated, so that a failure part-way leaves the bitmaps as they were."""

    def __init__(self, owner: ServiceAllocations):
        self.owner = owner
        self.ips: list[str] = []
        self.ports: list[int] = []

    def revert(self) -> None:
        for ip in self.ips:
            self.owner.ips.release(ip)
        for port in self.ports:
            self.owner.ports.release(port)


class ServiceAllocations:
    """ClusterIPs and nodePorts of all Services, held in two bitmaps."""

    def __init__(self, ips: IPAllocator, ports: PortAllocator):
        self.ips = ips
        self.ports = ports
        self._ip_leaks: dict[str, int] = {}
        self._port_leaks: dict[int, int] = {}

    # ---- what a Service holds ----

    def held_ips(self, svc: dict) -> set[str]:
        spec = _spec(svc)
        if spec.get("type") == "ExternalName":
            return set()
        return {ip for ip in spec.get("clusterIPs") or [] if ip and ip != "None" and self.ips.contains(ip)}

    def held_ports(self, svc: dict) -> set[int]:
        spec = _spec(svc)
        # A Service moving to ClusterIP/ExternalName gives its nodePorts up even before the
        # strategy wipes them from the object.
        held = {p["nodePort"] for p in _ports(spec) if p.get("nodePort")} if _uses_node_ports(spec) else set()
        if spec.get("healthCheckNodePort") and spec.get("type") == "LoadBalancer":
            held.add(spec["healthCheckNodePort"])
        return {p for p in held if self.ports.contains(p)}

    # ---- IP families ----

    def init_ip_family_fields(self, svc: dict, old: dict | None) -> list[FieldError]:
        """Default ipFamilyPolicy / ipFamilies the way kube's `initIPFamilyFields` does for a
        single-stack cluster (headless selectorless Services ask for dual-stack)."""
        spec = svc.setdefault("spec", {})
        if spec.get("type") == "ExternalName":
            return []
        ospec = _spec(old)
        if spec.get("ipFamilyPolicy") is None:
            if old is not None and ospec.get("ipFamilyPolicy") is not None:
                spec["ipFamilyPolicy"] = ospec["ipFamilyPolicy"]
            elif spec.get("clusterIP") == "None" and not spec.get("selector"):
                spec["ipFamilyPolicy"] = "RequireDualStack"
            else:
                spec["ipFamilyPolicy"] = "SingleStack"
        errs = validate_cluster_ips_related_fields(svc)
        if errs:
            return errs
        policy = spec["ipFamilyPolicy"]
        cluster_ips = spec.get("clusterIPs") or []
        if old is not None:
            if policy == "SingleStack":
                if (ospec.get("clusterIPs") or []) == cluster_ips and len(cluster_ips) > 1:
                    spec["clusterIPs"] = cluster_ips = cluster_ips[:1]
                families = spec.get("ipFamilies") or []
                if ospec.get("ipFamilies") == spec.get("ipFamilies") and len(families) > 1:
                    spec["ipFamilies"] = families[:1]
            else:
                if cluster_ips and len(cluster_ips) < len(ospec.get("clusterIPs") or []):
                    errs.append(invalid("spec.ipFamilyPolicy", policy,
                                        "must be 'SingleStack' to release the secondary cluster IP"))
                new_f = spec.get("ipFamilies") or []
                if new_f and len(new_f) < len(ospec.get("ipFamilies") or []):
                    errs.append(invalid("spec.ipFamilyPolicy", policy,
                                        "must be 'SingleStack' to release the secondary IP family"))
        if policy == "SingleStack":
            if len(cluster_ips) == 2:
                errs.append(invalid("spec.ipFamilyPolicy", policy, "must be 'RequireDualStack' or "
                                    "'PreferDualStack' when multiple cluster IPs are specified"))
            if len(spec.get("ipFamilies") or []) == 2:
                errs.append(invalid("spec.ipFamilyPolicy", policy, "must be 'RequireDualStack' or "
                                    "'PreferDualStack' when multiple IP families are specified"))
        families = list(spec.get("ipFamilies") or [])
        for i, ip in enumerate(cluster_ips):
            if ip == "None":
                break
            fam = _ip_family(ip)
            if i >= len(families):
                if fam != self.ips.family:
                    errs.append(invalid_go(f"spec.clusterIPs[{i}]", cluster_ips, go_string_slice(cluster_ips),
                                           f"{fam} is not configured on this cluster"))
                else:
                    families.append(fam)
        if errs:
            return errs
        if families:
            spec["ipFamilies"] = families
        if spec.get("clusterIP") == "None" and not spec.get("selector"):
            if not families:
                families = [self.ips.family]
            if len(families) < 2 and policy != "SingleStack":
                families.append("IPv6" if families[0] == "IPv4" else "IPv4")
            spec["ipFamilies"] = families
            return []
        if policy == "RequireDualStack":
            errs.append(invalid("spec.ipFamilyPolicy", policy, "this cluster is not configured for dual-stack services"))
        for i, fam in enumerate(families):
            if fam != self.ips.family:
                errs.append(invalid(f"spec.ipFamilies[{i}]", fam, "not configured on this cluster"))
        if errs:
            return errs
        if not families:
            spec["ipFamilies"] = [self.ips.family]
        return []

    # ---- allocation steps ----

    def _alloc_cluster_ips(self, svc: dict, undo: _Undo) -> list[FieldError]:
        spec = svc["spec"]
        if spec.get("type") == "ExternalName" or (spec.get("clusterIPs") or [None])[0] == "None":
            return []
        cluster_ips = list(spec.get("clusterIPs") or [])
        # One family on this cluster: validation above rejected anything asking for two.
        requested = cluster_ips[0] if cluster_ips else ""
        if requested:
            try:
                self.ips.allocate(requested)
            except AllocationError as e:
                return [invalid_go("spec.clusterIPs", cluster_ips, go_string_slice(spec.get("clusterIPs")),
                                   f"failed to allocate IP {requested}: {e}")]
            ip = requested
        else:
            try:
                ip = self.ips.allocate_next()
            except AllocationError as e:
                undo.revert()
                raise errors.internal(f"failed to allocate a serviceIP: {e}") from None
        undo.ips.append(ip)
        spec["clusterIP"] = ip
        spec["clusterIPs"] = [ip] + cluster_ips[1:]
        return []

    def _take_port(self, port: int, undo: _Undo) -> None:
        self.ports.allocate(port)
        undo.ports.append(port)

    def _next_port(self, undo: _Undo) -> int:
        try:
            port = self.ports.allocate_next()
        except AllocationError as e:
            undo.revert()
            raise errors.internal(f"failed to allocate a nodePort: {e}") from None
        undo.ports.append(port)
        return port

    def _init_node_ports(self, svc: dict, undo: _Undo) -> list[FieldError]:
        spec = svc["spec"]
        ports = _ports(spec)
        by_port: dict[Any, int] = {}
        for i, sp in enumerate(ports):
            if not sp.get("nodePort") and not _should_allocate_node_ports(spec):
                continue  # no new ports, but honour explicit requests
            assigned = by_port.get(sp.get("port"), 0)
            if not assigned:
                # A later entry for the same port number may name the nodePort it wants.
                wanted = next((p.get("nodePort") for p in ports[i:]
                               if p.get("port") == sp.get("port") and p.get("nodePort")), 0)
                if wanted:
                    try:
                        self._take_port(wanted, undo)
                    except AllocationError as e:
                        return [invalid(f"spec.ports[{i}].nodePort", wanted, str(e))]
                    sp["nodePort"] = wanted
                else:
                    sp["nodePort"] = self._next_port(undo)
                by_port[sp.get("port")] = sp["nodePort"]
            elif sp.get("nodePort") != assigned:
                # TCP and UDP on one port number share a nodePort unless the user says otherwise.
                if not sp.get("nodePort"):
                    sp["nodePort"] = assigned
                else:
                    try:
                        self._take_port(sp["nodePort"], undo)
                    except AllocationError as e:
                        return [invalid(f"spec.ports[{i}].nodePort", sp["nodePort"], str(e))]
        return []

    def _alloc_health_check_port(self, svc: dict, undo: _Undo) -> None:
        spec = svc["spec"]
        requested = spec.get("healthCheckNodePort") or 0
        if requested:
            try:
                self._take_port(requested, undo)
            except AllocationError as e:
                undo.revert()
                raise errors.internal(f"failed to allocate requested HealthCheck NodePort {requested}: {e}") from None
        else:
            spec["healthCheckNodePort"] = self._next_port(undo)

    # ---- public operations ----

    def allocate_create(self, svc: dict) -> list[FieldError]:
        """Assign clusterIP(s), nodePorts and healthCheckNodePort to a new Service (in place).

        Returns field errors (then nothing stays allocated); raises APIError 500 when a range is
        full, as kube-apiserver does. Undo a success with `release(svc)`."""
        normalize_cluster_ips(svc, None)
        errs = self.init_ip_family_fields(svc, None)
        if errs:
            return errs
        undo = _Undo(self)
        errs = self._alloc_cluster_ips(svc, undo)
        if not errs and _uses_node_ports(svc["spec"]):
            errs = self._init_node_ports(svc, undo)
        if errs:
            undo.revert()
            return errs
        if needs_health_check(svc["spec"]):
            self._alloc_health_check_port(svc, undo)
        return []

    def allocate_update(self, new: dict, old: dict) -> list[FieldError]:
        """Carry over, add and release allocations for an update (in place on `new`).

        What the update drops is released only once everything else succeeded; undo a success
        with `rollback_update(new, old)`."""
        patch_allocated_values(new, old)
        normalize_cluster_ips(new, old)
        errs = self.init_ip_family_fields(new, old)
        if errs:
            return errs
        spec, ospec = new["spec"], _spec(old)
        undo = _Undo(self)
        release_ips: set[str] = set()
        release_ports: set[int] = set()

        otype, ntype = ospec.get("type"), spec.get("type")
        if otype == "ExternalName" and ntype != "ExternalName":
            errs = self._alloc_cluster_ips(new, undo)
        elif otype != "ExternalName" and ntype == "ExternalName" and (ospec.get("clusterIPs") or [None])[0] != "None":
            release_ips |= self.held_ips(old)
        if errs:
            undo.revert()
            return errs

        old_node_ports = {p["nodePort"] for p in _ports(ospec) if p.get("nodePort")}
        if _uses_node_ports(ospec) and not _uses_node_ports(spec):
            release_ports |= old_node_ports
        if _uses_node_ports(spec):
            errs = self._update_node_ports(new, old_node_ports, undo, release_ports)
            if errs:
                undo.revert()
                return errs

        old_hc = ospec.get("healthCheckNodePort") or 0
        if not needs_health_check(ospec) and needs_health_check(spec):
            self._alloc_health_check_port(new, undo)
        elif needs_health_check(ospec) and not needs_health_check(spec) and old_hc:
            release_ports.add(old_hc)
            if spec.get("healthCheckNodePort") == old_hc:
                spec.pop("healthCheckNodePort", None)

        still_held = self.held_ports(new)
        for ip in release_ips - self.held_ips(new):
            self.ips.release(ip)
        for port in release_ports - still_held:
            self.ports.release(port)
        return []

    def _update_node_ports(self, new: dict, old_node_ports: set[int], undo: _Undo,
                           release_ports: set[int]) -> list[FieldError]:
        spec = new["spec"]
        taken: set[int] = set()
        seen: list[tuple[str, int]] = []
        for i, sp in enumerate(_ports(spec)):
            if not sp.get("nodePort") and not _should_allocate_node_ports(spec):
                continue
            node_port = sp.get("nodePort") or 0
            if node_port:
                if node_port not in old_node_ports and node_port not in taken:
                    try:
                        self._take_port(node_port, undo)
                    except AllocationError as e:
                        return [invalid(f"spec.ports[{i}].nodePort", node_port, str(e))]
                    taken.add(node_port)
            else:
                node_port = self._next_port(undo)
                sp["nodePort"] = node_port
            key = (sp.get("protocol") or "TCP", node_port)
            if key in seen:
                undo.revert()
                raise errors.internal(f"duplicate nodePort: {{{key[0]} {key[1]}}}")
            seen.append(key)
        new_numbers = {p["nodePort"] for p in _ports(spec) if p.get("nodePort")}
        release_ports |= old_node_ports - new_numbers
        return []

    def release(self, svc: dict) -> None:
        """Give back everything a Service holds (after a delete, or to undo a create)."""
        for ip in self.held_ips(svc):
            self.ips.release(ip)
        for port in self.held_ports(svc):
            self.ports.release(port)

    def rollback_update(self, new: dict, old: dict) -> None:
        """Undo a successful `allocate_update` whose write then failed."""
        for ip in self.held_ips(new) - self.held_ips(old):
            self.ips.release(ip)
        for port in self.held_ports(new) - self.held_ports(old):
            self.ports.release(port)
        # Whatever the update released goes back to the old owner, unless someone took it since.
        for ip in self.held_ips(old) - self.held_ips(new):
            try:
                self.ips.allocate(ip)
            except AllocationError:
                pass
        for port in self.held_ports(old) - self.held_ports(new):
            try:
                self.ports.allocate(port)
            except AllocationError:
                pass

    def rollback(self, new: dict, old: dict | None = None) -> None:
        """Undo `allocate_create(new)` (old is None) or `allocate_update(new, old)`."""
        if old is None:
            self.release(new)
        else:
            self.rollback_update(new, old)

    # ---- persistence and repair ----

    def snapshot(self) -> dict:
        return {"serviceIPs": self.ips.snapshot(), "serviceNodePorts": self.ports.snapshot()}

    def restore(self, snap: dict) -> None:
        """Load a snapshot; ValueError when it was taken with other ranges (then rely on repair)."""
        self.ips.restore(snap["serviceIPs"])
        self.ports.restore(snap["serviceNodePorts"])

    def repair(self, services: list[dict], *, leak_grace: int = 0) -> list[str]:
        """Rebuild both bitmaps from the live Services, as kube's repair controllers do, and
        return what they would log. Leaked values (allocated, owned by nobody) are kept for
        `leak_grace` further repair runs before being freed: a periodic repair that may race with
        in-flight creates should pass 2 (kube keeps them for 3 runs); a start-up repair, 0."""
        messages: list[str] = []
        messages += self._repair_ips(services, leak_grace)
        messages += self._repair_ports(services, leak_grace)
        return messages

    def _repair_ips(self, services: list[dict], leak_grace: int) -> list[str]:
        msgs: list[str] = []
        stored = IPAllocator(self.ips.cidr)
        stored.restore(self.ips.snapshot())
        rebuilt = IPAllocator(self.ips.cidr, self.ips._bitmap.rng)
        for svc in services:
            spec = _spec(svc)
            if spec.get("type") == "ExternalName":
                continue
            for ip in spec.get("clusterIPs") or ([spec["clusterIP"]] if spec.get("clusterIP") else []):
                if not ip or ip == "None":
                    continue
                if _ip_family(ip) is None:
                    msgs.append(f"the cluster IP {ip} for service {_name(svc)} is not a valid IP; please recreate")
                    continue
                if _ip_family(ip) != self.ips.family:
                    continue  # another family's allocator would own it
                try:
                    rebuilt.allocate(ip)
                except ErrAllocated:
                    msgs.append(f"the cluster IP {ip} for service {_name(svc)} was assigned to multiple services; "
                                "please recreate")
                    continue
                except ErrNotInRange:
                    msgs.append(f"the cluster IP {ip} for service {_name(svc)} is not within the service CIDR "
                                f"{self.ips.cidr}; please recreate")
                    continue
                if stored.has(ip):
                    stored.release(ip)
                else:
                    msgs.append(f"the cluster IP {ip} for service {_name(svc)} is not allocated; repairing")
                self._ip_leaks.pop(ip, None)
        for ip in stored.allocated():
            count = self._ip_leaks.get(ip)
            if count is None:
                count = leak_grace
                if count > 0:
                    msgs.append(f"the cluster IP {ip} may have leaked: flagging for later clean up")
            if count > 0:
                self._ip_leaks[ip] = count - 1
                rebuilt.allocate(ip)
            else:
                self._ip_leaks.pop(ip, None)
                msgs.append(f"the cluster IP {ip} appears to have leaked: cleaning up")
        self.ips.restore(rebuilt.snapshot())
        return msgs

    def _repair_ports(self, services: list[dict], leak_grace: int) -> list[str]:
        msgs: list[str] = []
        stored = PortAllocator(self.ports.range)
        stored.restore(self.ports.snapshot())
        rebuilt = PortAllocator(self.ports.range, self.ports._bitmap.rng)
        for svc in services:
            spec = _spec(svc)
            # A Service's TCP and UDP entries may share one nodePort; count it once.
            held: list[int] = []
            for p in _ports(spec):
                if p.get("nodePort") and p["nodePort"] not in held:
                    held.append(p["nodePort"])
            if spec.get("healthCheckNodePort") and spec["healthCheckNodePort"] not in held:
                held.append(spec["healthCheckNodePort"])
            for port in held:
                try:
                    rebuilt.allocate(port)
                except ErrAllocated:
                    msgs.append(f"the node port {port} for service {_name(svc)} was assigned to multiple services; "
                                "please recreate")
                    continue
                except ErrNotInRange:
                    msgs.append(f"the node port {port} for service {_name(svc)} is not within the port range "
                                f"{self.ports.range}; please recreate")
                    continue
                if stored.has(port):
                    stored.release(port)
                else:
                    msgs.append(f"the node port {port} for service {_name(svc)} is not allocated; repairing")
                self._port_leaks.pop(port, None)
        for port in stored.allocated():
            count = self._port_leaks.get(port)
            if count is None:
                count = leak_grace
                if count > 0:
                    msgs.append(f"the node port {port} may have leaked: flagging for later clean up")
            if count > 0:
                self._port_leaks[port] = count - 1
                rebuilt.allocate(port)
            else:
                self._port_leaks.pop(port, None)
                msgs.append(f"the node port {port} appears to have leaked: cleaning up")
        self.ports.restore(rebuilt.snapshot())
        return msgs
