"""Remove UDP conntrack entries that would keep sending packets to endpoints that are gone.

UDP has no connection teardown, so a client that keeps sending (DNS, statsd) refreshes a
conntrack entry that still DNATs to a deleted pod. As kube-proxy does, after a successful sync
we delete entries whose original destination is a service IP/port (or NodePort) and whose reply
source is an endpoint that is no longer used; and when a UDP service gains its first endpoint
we delete entries created while it had none (those were never DNATed and would stay that way).
"""

from __future__ import annotations

import asyncio
import re
from collections.abc import Mapping
from dataclasses import dataclass

from skiff.proxy.model import NODEPORT_ANY_IP

_NONE_DELETED = re.compile(r"\b0 flow entries have been deleted")


@dataclass(frozen=True, order=True)
class StaleFlow:
    """One `conntrack -D -p udp` filter. orig_dst None matches any destination (NodePorts)."""

    orig_dst: str | None
    orig_port_dst: int
    reply_src: str | None = None

    def argv(self) -> list[str]:
        args = ["conntrack", "-D", "-p", "udp"]
        if self.orig_dst:
            args += ["--orig-dst", self.orig_dst]
        args += ["--orig-port-dst", str(self.orig_port_dst)]
        if self.reply_src:
            args += ["--reply-src", self.reply_src]
        return args


def stale_udp_flows(
    before: Mapping[tuple[str, int], frozenset[str]], after: Mapping[tuple[str, int], frozenset[str]]
) -> list[StaleFlow]:
    """Filters for flows made stale by going from `before` to `after` (Ruleset.udp_destinations)."""
    flows: set[StaleFlow] = set()
    for (dst, port), old_eps in before.items():
        new_eps = after.get((dst, port), frozenset())
        ip = None if dst == NODEPORT_ANY_IP else dst
        for ep in old_eps - new_eps:
            flows.add(StaleFlow(ip, port, ep))
    for (dst, port), new_eps in after.items():
        if new_eps and not before.get((dst, port)):
            flows.add(StaleFlow(None if dst == NODEPORT_ANY_IP else dst, port))
    return sorted(flows, key=lambda f: (f.orig_dst or "", f.orig_port_dst, f.reply_src or ""))


async def delete_flows(flows: list[StaleFlow], netns: str | None = None) -> int:
    """Run conntrack -D for each filter; returns how many commands deleted something.

    conntrack exits 1 when nothing matched, which is not an error here.
    """
    deleted = 0
    for flow in flows:
        argv = (["ip", "netns", "exec", netns] if netns else []) + flow.argv()
        proc = await asyncio.create_subprocess_exec(
            *argv, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE
        )
        _, err = await proc.communicate()
        text = err.decode()
        if proc.returncode == 0:
            deleted += 0 if _NONE_DELETED.search(text) else 1
        elif not _NONE_DELETED.search(text):
            raise RuntimeError(f"{' '.join(flow.argv())} failed: {text.strip()}")
    return deleted
