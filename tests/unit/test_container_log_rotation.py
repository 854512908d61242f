"""Container logs rotate as the kubelet rotates them (containerLogMaxSize/MaxFiles), and
`kubectl logs -f` follows a log across its rotations."""

from __future__ import annotations

import asyncio
import os
import re

from skiff.node.runtime import LOG_MAX_BYTES, LOG_MAX_FILES, LogWriter, follow_log, read_log


def lines(n: int, start: int = 0) -> list[bytes]:
    return [f"line {i:04d} {'x' * 40}".encode() for i in range(start, start + n)]


def test_defaults_are_the_kubelets():
    assert (LOG_MAX_BYTES, LOG_MAX_FILES) == (10 * 1024 * 1024, 5)


def test_a_full_log_is_rotated_and_the_oldest_files_go(tmp_path):
    path = tmp_path / "hello" / "0.log"
    w = LogWriter(str(path), max_bytes=1000, max_files=3)
    written = lines(200)
    for line in written:
        w.write("stdout", line)
    w.close()
    files = sorted(os.listdir(path.parent))
    rotated = [f for f in files if f != "0.log"]
    # The current file and max_files - 1 rotated ones, named <file>.<UTC YYYYmmdd-HHMMSS>[.NNN].
    assert "0.log" in files and len(rotated) == 2, files
    assert all(re.fullmatch(r"0\.log\.\d{8}-\d{6}(\.\d{3})?", f) for f in rotated), rotated
    assert all(os.path.getsize(path.parent / f) <= 1000 for f in files)
    # What is kept is the newest lines, in order, with nothing lost between the kept files.
    kept = b"".join(read_log(str(path.parent / f)) for f in rotated) + read_log(str(path))
    assert kept.splitlines() == written[-len(kept.splitlines()):]
    assert len(kept.splitlines()) >= 25  # about 10 records a file, 3 files
    # `kubectl logs` shows the current file only, as on Kubernetes.
    assert read_log(str(path)).splitlines() == written[-len(read_log(str(path)).splitlines()):]


def test_a_restarted_writer_appends_and_counts_what_is_there(tmp_path):
    path = str(tmp_path / "0.log")
    w = LogWriter(path, max_bytes=1000)
    w.write("stdout", b"a" * 600)
    w.close()
    w = LogWriter(path, max_bytes=1000)
    w.write("stdout", b"b" * 600)  # would pass the limit: the first record goes to a rotated file
    w.close()
    assert read_log(path) == b"b" * 600 + b"\n"
    assert len(os.listdir(tmp_path)) == 2


def test_following_goes_across_rotations(tmp_path):
    path = str(tmp_path / "0.log")
    w = LogWriter(path, max_bytes=2000, max_files=10)
    first = lines(10)
    for line in first:
        w.write("stdout", line)
    written = first + lines(300, start=10)
    done = False

    async def scenario() -> bytes:
        nonlocal done
        got = []

        async def follow() -> None:
            async for chunk in follow_log(path, lambda: not done, tail=3, poll_interval=0.01):
                got.append(chunk)

        task = asyncio.create_task(follow())
        await asyncio.sleep(0.05)
        for i, line in enumerate(written[10:]):
            w.write("stdout", line)
            if i % 25 == 0:
                await asyncio.sleep(0.005)  # the follower reads between rotations, or not
        await asyncio.sleep(0.05)
        done = True
        await asyncio.wait_for(task, 5)
        return b"".join(got)

    out = asyncio.run(scenario())
    w.close()
    assert len(os.listdir(tmp_path)) > 5  # it did rotate, several times
    # Every line once, in order: the last 3 before following, then all that came after.
    assert out.splitlines() == written[7:]
