import asyncio
import json

import pytest

from skiff.net.ipam import IPPool, PodIPAM, PoolExhausted


def test_skips_network_gateway_and_broadcast():
    pool = IPPool("10.244.1.0/24")
    assert pool.gateway == "10.244.1.1"
    assert pool.capacity == 253
    got = {pool.allocate(f"pod-{i}") for i in range(253)}
    assert "10.244.1.0" not in got and "10.244.1.1" not in got and "10.244.1.255" not in got
    assert len(got) == 253
    with pytest.raises(PoolExhausted, match="no free pod IP left in 10.244.1.0/24"):
        pool.allocate("one-too-many")


def test_same_owner_gets_same_address_and_first_is_dot_two():
    pool = IPPool("10.244.0.0/24")
    assert pool.allocate("a") == "10.244.0.2"
    assert pool.allocate("a") == "10.244.0.2"
    assert pool.allocate("b") == "10.244.0.3"
    assert pool.owner_of("10.244.0.3") == "b"


def test_next_fit_does_not_reuse_a_just_released_address():
    pool = IPPool("10.0.0.0/29")  # hosts .1-.6; .1 is the gateway -> .2..6 usable
    a, b = pool.allocate("a"), pool.allocate("b")
    assert pool.release("a") == a
    assert pool.allocate("c") == "10.0.0.4"
    assert pool.allocate("d") == "10.0.0.5"
    assert pool.allocate("e") == "10.0.0.6"
    # Wraps around to the lowest free address only when the end of the range is reached.
    assert pool.allocate("f") == a
    assert b == "10.0.0.3"
    with pytest.raises(PoolExhausted):
        pool.allocate("g")


def test_reserved_addresses_and_release_of_unknown_owner():
    pool = IPPool("10.0.0.0/29", reserved=["10.0.0.2"])
    assert pool.allocate("a") == "10.0.0.3"
    assert pool.release("nobody") is None


def test_retain_only_releases_dead_owners():
    pool = IPPool("10.0.0.0/24")
    for owner in "abcd":
        pool.allocate(owner)
    assert pool.retain_only(["b", "d"]) == ["10.0.0.2", "10.0.0.4"]
    assert set(pool.allocations.values()) == {"b", "d"}


def test_allocations_outside_the_range_are_rejected():
    with pytest.raises(ValueError, match="not in 10.0.0.0/24"):
        IPPool("10.0.0.0/24", allocations={"10.9.9.9": "x"})


def test_persisted_state_survives_a_restart(tmp_path):
    path = tmp_path / "node" / "ipam.json"
    ipam = PodIPAM("10.244.2.0/24", path)
    assert ipam.allocate("uid-1") == "10.244.2.2"
    assert ipam.allocate("uid-2") == "10.244.2.3"
    ipam.release("uid-1")

    again = PodIPAM("10.244.2.0/24", path)
    assert again.ip_of("uid-2") == "10.244.2.3"
    assert again.ip_of("uid-1") is None
    # Continues after the last address handed out, even across the restart.
    assert again.allocate("uid-3") == "10.244.2.4"
    saved = json.loads(path.read_text())
    assert saved["allocations"] == {"10.244.2.3": "uid-2", "10.244.2.4": "uid-3"}
    assert not list(path.parent.glob("*.tmp"))


def test_a_burst_inside_the_event_loop_is_saved_once_after_the_delay(tmp_path):
    path = tmp_path / "ipam.json"

    async def burst() -> tuple[bool, dict]:
        ipam = PodIPAM("10.244.2.0/24", path, save_delay=0.05)
        for i in range(20):
            ipam.allocate(f"uid-{i}")
        written_at_once = path.exists()
        await asyncio.sleep(0.2)
        return written_at_once, json.loads(path.read_text())

    written_at_once, saved = asyncio.run(burst())
    assert not written_at_once
    assert len(saved["allocations"]) == 20


def test_flush_writes_a_pending_save_right_away(tmp_path):
    path = tmp_path / "ipam.json"

    async def allocate_and_flush() -> None:
        ipam = PodIPAM("10.244.2.0/24", path, save_delay=60)
        ipam.allocate("uid-1")
        ipam.flush()

    asyncio.run(allocate_and_flush())
    assert PodIPAM("10.244.2.0/24", path).ip_of("uid-1") == "10.244.2.2"


def test_state_for_another_range_is_discarded(tmp_path):
    path = tmp_path / "ipam.json"
    PodIPAM("10.244.2.0/24", path).allocate("old")
    fresh = PodIPAM("10.250.0.0/24", path)
    assert fresh.allocations == {}
    assert fresh.allocate("new") == "10.250.0.2"
