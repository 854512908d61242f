"""Keeps the zone current from the API server: informers on Services, EndpointSlices and
Namespaces (and Pods for `pods verified`), like CoreDNS's kubernetes plugin.

The zone reports "not synced" (SERVFAIL instead of NXDOMAIN, /ready failing) until every
informer has listed once.
"""

from __future__ import annotations

import asyncio
import logging
import os

from skiff.client.informer import Informer
from skiff.client.rest import Client, resource
from skiff.dns.records import Zone

log = logging.getLogger("skiff.dns.source")


class ZoneSource:
    def __init__(self, zone: Zone, client: Client):
        self.zone = zone
        self.client = client
        kinds = [("v1", "services", zone.upsert_service, zone.delete_service),
                 ("discovery.k8s.io/v1", "endpointslices", zone.upsert_endpoint_slice,
                  zone.delete_endpoint_slice),
                 ("v1", "namespaces", None, None)]
        if zone.pods == "verified":
            kinds.append(("v1", "pods", zone.upsert_pod, zone.delete_pod))
        self.informers: list[Informer] = []
        for api_version, plural, upsert, delete in kinds:
            inf = Informer(client, resource(api_version, plural))
            inf.add_handler(self._handler(plural, upsert, delete))
            self.informers.append(inf)

    def _handler(self, plural, upsert, delete):
        def handle(event: str, obj: dict, _old: dict | None) -> None:
            if plural == "namespaces":
                # Informer objects from a watch may lack `kind`; say which kind this is.
                self.zone.update(event, {**obj, "kind": "Namespace"})
            elif event == "DELETED":
                delete(obj)
            else:
                upsert(obj)
        return handle

    @classmethod
    def in_cluster(cls, zone: Zone) -> ZoneSource:
        """The node agent passes SKIFF_STATE_DIR to system pods; it holds the cluster's
        settings, token and CA."""
        client = Client.for_state_dir(os.environ["SKIFF_STATE_DIR"], in_cluster=True, user_agent="skiff-dns")
        return cls(zone, client)

    async def run(self) -> None:
        """Start the informers, mark the zone synced once all have listed, then keep going."""
        for inf in self.informers:
            inf.start()
        await asyncio.gather(*(inf.synced.wait() for inf in self.informers))
        self.zone.synced = True
        log.info("zone synced: %d services", sum(1 for _ in self.informers[0].cache))

    async def stop(self) -> None:
        for inf in self.informers:
            await inf.stop()
        await self.client.close()
