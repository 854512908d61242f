"""Events written in the background (skiff.controllers.base.BackgroundEvents), against a real API server."""

from __future__ import annotations

import asyncio
import time

import pytest

from skiff.client.rest import Client, resource
from skiff.controllers.base import BackgroundEvents, EventRecorder
from tests.support import ControlPlane

EVENTS = resource("v1", "events")
PODS = resource("v1", "pods")


@pytest.fixture(scope="module")
def cp():
    plane = ControlPlane()
    try:
        plane.start()
        yield plane
    finally:
        plane.cleanup()


async def _reasons(client: Client, uid: str) -> list[str]:
    items = (await client.list(EVENTS, "default"))["items"]
    # Only this test's recorder: the control plane's scheduler reports these pods unschedulable.
    mine = [e for e in items if e["involvedObject"].get("uid") == uid and e["source"]["component"] == "test"]
    return [e["reason"] for e in sorted(mine, key=lambda e: e["metadata"]["name"])]


async def _pod(client: Client, name: str) -> dict:
    return await client.create(PODS, "default", {"metadata": {"name": name},
                                                 "spec": {"containers": [{"name": "c", "image": "nginx"}]}})


def test_events_wait_while_busy_then_go_out_in_order(cp):
    async def run() -> None:
        client = Client.for_state_dir(cp.state_dir)
        try:
            pod = await _pod(client, "busy-then-quiet")
            uid = pod["metadata"]["uid"]
            busy = [True]
            events = BackgroundEvents(EventRecorder(client, "test"), busy=lambda: busy[0], max_delay=30)
            for reason in ("Pulled", "Created", "Started"):
                events.record(pod, "Normal", reason, f"{reason} it")
            await asyncio.sleep(0.3)
            assert await _reasons(client, uid) == []  # held back while busy
            busy[0] = False
            deadline = time.monotonic() + 5
            while await _reasons(client, uid) != ["Pulled", "Created", "Started"]:
                assert time.monotonic() < deadline, await _reasons(client, uid)
                await asyncio.sleep(0.02)
            await events.drain(1)
        finally:
            await client.close()
    asyncio.run(run())


def test_a_busy_component_delays_an_event_by_max_delay_at_most_and_drain_writes_the_rest(cp):
    async def run() -> None:
        client = Client.for_state_dir(cp.state_dir)
        try:
            pod = await _pod(client, "always-busy")
            uid = pod["metadata"]["uid"]
            events = BackgroundEvents(EventRecorder(client, "test"), busy=lambda: True, max_delay=0.3)
            t0 = time.monotonic()
            events.record(pod, "Normal", "Scheduled", "placed")
            while await _reasons(client, uid) != ["Scheduled"]:
                assert time.monotonic() - t0 < 3
                await asyncio.sleep(0.02)
            assert time.monotonic() - t0 >= 0.3

            slow = BackgroundEvents(EventRecorder(client, "test"), busy=lambda: True, max_delay=60)
            slow.record(pod, "Normal", "Killing", "stopping")
            await slow.drain(2)  # does not wait for quiet
            assert await _reasons(client, uid) == ["Scheduled", "Killing"]
        finally:
            await client.close()
    asyncio.run(run())
