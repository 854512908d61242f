"""Go conventions the imitated images show to users: flag syntax, log timestamps, durations.

Most of the public images are Go programs; their flags (`-text=x`, `--port 80`), their log lines
(`2024/05/01 12:00:00 ...`) and their printed durations (`1.5ms`) should look the same here.
"""

from __future__ import annotations

import sys
import time


class FlagError(Exception):
    pass


def parse_flags(argv: list[str], defaults: dict[str, bool | int | str],
                interspersed: bool = True) -> tuple[dict[str, bool | int | str], list[str]]:
    """Parse Go `flag` / `pflag` style arguments: `-name`, `--name`, `-name=value`, `-name value`;
    booleans take no separate value (`-flag=false` to turn one off). The type of each flag is the
    type of its default. Returns (values, positional arguments)."""
    values = dict(defaults)
    positional: list[str] = []
    i = 0
    while i < len(argv):
        arg = argv[i]
        i += 1
        if arg == "--":
            positional.extend(argv[i:])
            break
        if not arg.startswith("-") or arg == "-":
            positional.append(arg)
            if not interspersed:
                positional.extend(argv[i:])
                break
            continue
        name, has_value, value = arg.lstrip("-").partition("=")
        if name not in defaults:
            raise FlagError(f"flag provided but not defined: {arg.split('=', 1)[0]}")
        default = defaults[name]
        if isinstance(default, bool):
            if not has_value:
                values[name] = True
                continue
            lowered = value.lower()
            if lowered in ("1", "t", "true"):
                values[name] = True
            elif lowered in ("0", "f", "false"):
                values[name] = False
            else:
                raise FlagError(f'invalid boolean value "{value}" for -{name}')
            continue
        if not has_value:
            if i >= len(argv):
                raise FlagError(f"flag needs an argument: -{name}")
            value = argv[i]
            i += 1
        if isinstance(default, int):
            try:
                values[name] = int(value, 0)
            except ValueError:
                raise FlagError(f'invalid value "{value}" for flag -{name}: parse error') from None
        else:
            values[name] = value
    return values, positional


def flag_failure(program: str, error: Exception) -> int:
    print(f"{error}\nUsage of {program}: see the image's documentation", file=sys.stderr)
    return 2


def log_prefix() -> str:
    """Go's `log` package prefix: `2006/01/02 15:04:05 `."""
    return time.strftime("%Y/%m/%d %H:%M:%S ")


def duration(seconds: float) -> str:
    """Go's `time.Duration.String()`: `850ns`, `1.234567ms`, `10.5s`, `1m30s`, `2h0m0s`."""
    ns = round(seconds * 1e9)
    if ns == 0:
        return "0s"
    sign = "-" if ns < 0 else ""
    ns = abs(ns)
    if ns < 1000:
        return f"{sign}{ns}ns"
    if ns < 1_000_000:
        return sign + _trim(ns, 1000) + "µs"
    if ns < 1_000_000_000:
        return sign + _trim(ns, 1_000_000) + "ms"
    hours, rest = divmod(ns, 3600 * 10**9)
    minutes, rest = divmod(rest, 60 * 10**9)
    text = _trim(rest, 10**9) + "s"
    if hours:
        return f"{sign}{hours}h{minutes}m{text}"
    if minutes:
        return f"{sign}{minutes}m{text}"
    return sign + text


def _trim(value: int, unit: int) -> str:
    whole, frac = divmod(value, unit)
    if not frac:
        return str(whole)
    digits = len(str(unit)) - 1
    return f"{whole}.{frac:0{digits}d}".rstrip("0")


_START = time.monotonic()


def now_string() -> str:
    """Go's `time.Now().String()`, monotonic reading included, in the container's zone (UTC)."""
    t = time.time()
    g = time.gmtime(t)
    nanos = f"{int((t % 1) * 1e9):09d}".rstrip("0")
    frac = "." + nanos if nanos else ""
    return (time.strftime("%Y-%m-%d %H:%M:%S", g) + frac + " +0000 UTC"
            + f" m=+{time.monotonic() - _START:.9f}")
