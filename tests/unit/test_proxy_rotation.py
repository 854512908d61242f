"""skiff.node.proxyloop.Rotation: the kubelet waits until its node's proxy has programmed a
terminating pod out of rotation before it starts the drain."""

from __future__ import annotations

import asyncio

from skiff.node.proxyloop import Rotation


def slice_with(*endpoints: tuple[str, bool | None]) -> dict:
    return {"endpoints": [{"addresses": [ip], **({"conditions": {"ready": ready}} if ready is not None else {})}
                          for ip, ready in endpoints]}


def test_waits_until_a_sync_no_longer_lists_the_ip_as_ready():
    async def scenario() -> None:
        rotation = Rotation()
        await asyncio.wait_for(rotation.out_of_rotation("10.0.0.5"), 0.1)  # nothing programmed yet
        programmed = [slice_with(("10.0.0.5", True), ("10.0.0.6", None))]
        rotation.synced(lambda: programmed)
        waiting = asyncio.ensure_future(rotation.out_of_rotation("10.0.0.5"))
        other = asyncio.ensure_future(rotation.out_of_rotation("10.0.0.6"))  # no condition: ready
        await asyncio.sleep(0.01)
        assert not waiting.done() and not other.done()
        programmed = [slice_with(("10.0.0.5", False), ("10.0.0.6", None))]  # terminating: ready=false
        rotation.synced(lambda: programmed)
        await asyncio.wait_for(waiting, 0.1)
        assert not other.done()
        programmed = []
        rotation.synced(lambda: programmed)  # the slice went away altogether
        await asyncio.wait_for(other, 0.1)
        assert rotation._waiters == []

    asyncio.run(scenario())
