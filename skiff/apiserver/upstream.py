"""The HTTP client session the API server's proxies (node agents, pods, services) talk through."""

from __future__ import annotations

from typing import Any

import aiohttp
from aiohttp import web


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


async def relay_body(request: web.Request, resp: web.StreamResponse, upstream: aiohttp.ClientResponse
                     ) -> web.StreamResponse:
    """Send `resp` (status and headers already set) with the upstream's body, as it arrives."""
    await resp.prepare(request)
    async for chunk in upstream.content.iter_any():
        await resp.write(chunk)
    await resp.write_eof()
    return resp
