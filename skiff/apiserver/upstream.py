"""The HTTP client session the API server's proxies (node agents, pods, services) talk through."""

from __future__ import annotations

from typing import Any

import aiohttp


class UpstreamSession:
    """An aiohttp ClientSession made on first use, inside the running event loop, and closed with
    the server."""

    def __init__(self, **options: Any) -> None:
        self._options = options
        self._session: aiohttp.ClientSession | None = None

    def get(self) -> aiohttp.ClientSession:
        if self._session is None or self._session.closed:
            self._session = aiohttp.ClientSession(**self._options)
        return self._session

    async def close(self) -> None:
        if self._session is not None:
            await self._session.close()
