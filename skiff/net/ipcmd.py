"""Running iproute2: one `ip -batch` process per namespace instead of one process per command.

Spawning `ip` costs a few milliseconds; a cluster network is dozens of commands, so they are
grouped into batches, one per network namespace (``ip -n <ns>`` switches namespace once).
"""

from __future__ import annotations

import asyncio
import subprocess
from collections.abc import Sequence


class CommandError(RuntimeError):
    def __init__(self, argv: Sequence[str], returncode: int, stderr: str, stdin: str | None = None):
        self.argv = list(argv)
        self.returncode = returncode
        self.stderr = stderr.strip()
        detail = f"\n--- input ---\n{stdin}" if stdin else ""
        super().__init__(f"{' '.join(self.argv)} failed (exit {returncode}): {self.stderr}{detail}")


def batch_argv(netns: str | None, force: bool = False) -> list[str]:
    argv = ["ip"]
    if netns:
        argv += ["-n", netns]
    if force:
        # Keep going after a failed line: used by cleanup, where "already gone" is fine.
        argv.append("-force")
    return argv + ["-batch", "-"]


async def run(argv: Sequence[str], input: str | None = None, check: bool = True) -> tuple[int, str, str]:
    proc = await asyncio.create_subprocess_exec(
        *argv,
        stdin=subprocess.PIPE if input is not None else subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    out, err = await proc.communicate(input.encode() if input is not None else None)
    rc = proc.returncode or 0
    if check and rc != 0:
        raise CommandError(argv, rc, err.decode(errors="replace"), input)
    return rc, out.decode(errors="replace"), err.decode(errors="replace")


def run_sync(argv: Sequence[str], input: str | None = None, check: bool = True) -> tuple[int, str, str]:
    proc = subprocess.run(
        list(argv),
        input=input,
        stdin=None if input is not None else subprocess.DEVNULL,
        capture_output=True,
        text=True,
    )
    if check and proc.returncode != 0:
        raise CommandError(argv, proc.returncode, proc.stderr, input)
    return proc.returncode, proc.stdout, proc.stderr


async def ip_batch(lines: Sequence[str], netns: str | None = None) -> None:
    if lines:
        await run(batch_argv(netns), "\n".join(lines) + "\n")


def ip_batch_sync(lines: Sequence[str], netns: str | None = None, force: bool = False) -> tuple[int, str]:
    """Run a batch; with force=True failures are returned (exit code, stderr) instead of raised."""
    if not lines:
        return 0, ""
    rc, _, err = run_sync(batch_argv(netns, force), "\n".join(lines) + "\n", check=not force)
    return rc, err
