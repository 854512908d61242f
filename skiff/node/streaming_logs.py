"""`kubectl logs` options: PodLogOptions from the query string the API server forwards.

Pure. Field names, parsing and messages follow PodLogOptions and its validation.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from skiff.node import runtime


class LogOptionsError(ValueError):
    """A PodLogOptions value that does not validate (answered with 400 BadRequest)."""


@dataclass
class LogOptions:
    follow: bool = False
    previous: bool = False
    timestamps: bool = False
    tail_lines: int | None = None
    since: datetime | None = None
    limit_bytes: int | None = None


def _bool(query: Mapping[str, str], name: str) -> bool:
    value = query.get(name)
    if value is None or value == "":
        return False
    if value.lower() in ("true", "1", "t"):
        return True
    if value.lower() in ("false", "0", "f"):
        return False
    raise LogOptionsError(f'{name}: Invalid value: "{value}": must be a boolean')


def _int(query: Mapping[str, str], name: str) -> int | None:
    value = query.get(name)
    if value is None or value == "":
        return None
    try:
        return int(value)
    except ValueError:
        raise LogOptionsError(f'{name}: Invalid value: "{value}": must be an integer') from None


def parse_log_options(query: Mapping[str, str], now: datetime | None = None) -> LogOptions:
    opts = LogOptions(
        follow=_bool(query, "follow"),
        previous=_bool(query, "previous"),
        timestamps=_bool(query, "timestamps"),
        tail_lines=_int(query, "tailLines"),
        limit_bytes=_int(query, "limitBytes"),
    )
    since_seconds = _int(query, "sinceSeconds")
    since_time = query.get("sinceTime") or None
    if since_seconds is not None and since_time is not None:
        raise LogOptionsError("at most one of `sinceTime` or `sinceSeconds` may be specified")
    if opts.tail_lines is not None and opts.tail_lines < 0:
        raise LogOptionsError(f"tailLines: Invalid value: {opts.tail_lines}: must be greater than or equal to 0")
    if opts.limit_bytes is not None and opts.limit_bytes < 1:
        raise LogOptionsError(f"limitBytes: Invalid value: {opts.limit_bytes}: must be greater than 0")
    if since_seconds is not None:
        if since_seconds < 1:
            raise LogOptionsError(f"sinceSeconds: Invalid value: {since_seconds}: must be greater than 0")
        opts.since = (now or datetime.now(UTC)) - timedelta(seconds=since_seconds)
    elif since_time is not None:
        try:
            ns = runtime.parse_timestamp(since_time)
        except (ValueError, IndexError):
            raise LogOptionsError(f'sinceTime: Invalid value: "{since_time}": must be an RFC3339 time') from None
        seconds, rest = divmod(ns, 1_000_000_000)
        opts.since = datetime.fromtimestamp(seconds, UTC) + timedelta(microseconds=rest // 1000)
    return opts
