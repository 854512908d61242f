"""The kubelet's restart back-off (skiff.node.kubelet.Backoff), measured from each exit."""

from __future__ import annotations

from skiff.node.kubelet import Backoff, go_duration


def test_back_off_counts_from_the_exit_even_for_a_container_that_ran_a_while():
    b = Backoff()
    t = 1000.0
    assert b.wait_time(t, t) == 0  # the first restart is immediate
    b.record_restart(t, t)
    t += 12  # it ran 12 s, longer than the 10 s back-off, then failed again
    assert b.wait_time(t, t) == 10
    b.record_restart(t + 10, t)
    t += 10 + 12
    assert b.wait_time(t, t) == 20
    b.record_restart(t + 20, t)
    assert b.delay == 40  # the next exit waits 40 s


def test_back_off_doubles_to_five_minutes_and_resets_after_ten_minutes_of_running():
    b = Backoff()
    t = 0.0
    for _ in range(8):
        t += b.wait_time(t, t)
        b.record_restart(t, t)
    assert b.delay == 300
    t += 601  # ran for more than 10 minutes since the last restart
    assert b.wait_time(t, t) == 0
    b.record_restart(t, t)
    assert b.delay == 10


def test_durations_are_printed_as_go_does():
    assert [go_duration(s) for s in (10, 40, 80, 160, 300)] == ["10s", "40s", "1m20s", "2m40s", "5m0s"]
