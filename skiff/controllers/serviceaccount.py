"""kube-controller-manager's ServiceAccount controller and root CA publisher: every namespace has a
`default` ServiceAccount (what a pod without `serviceAccountName` runs as) and a `kube-root-ca.crt`
ConfigMap with the cluster's CA certificate, the bundle in-cluster clients verify the API server with.
Both come back if deleted, and the ConfigMap's data is put back if changed."""

from __future__ import annotations

import copy
import logging

from skiff.api.resources import lookup
from skiff.client.informer import WorkQueue, run_workers
from skiff.client.rest import ClientError
from skiff.controllers.base import NAMESPACES

log = logging.getLogger("skiff.controllers.serviceaccount")
SERVICE_ACCOUNTS = lookup("", "v1", "serviceaccounts")
CONFIGMAPS = lookup("", "v1", "configmaps")
DEFAULT_SERVICE_ACCOUNT = "default"
ROOT_CA_CONFIGMAP = "kube-root-ca.crt"
DESCRIPTION = ("The cluster's CA certificate, to verify the API server at its in-cluster addresses "
               "(the kubernetes Service, kubernetes.default.svc).")


def root_ca_configmap(namespace: str, ca_pem: str) -> dict:
    return {"apiVersion": "v1", "kind": "ConfigMap",
            "metadata": {"name": ROOT_CA_CONFIGMAP, "namespace": namespace,
                         "annotations": {"kubernetes.io/description": DESCRIPTION}},
            "data": {"ca.crt": ca_pem}}


async def run(ctx) -> None:
    client = ctx.client
    ca_pem = (ctx.state_dir / "pki" / "ca.crt").read_text()
    namespaces = ctx.informer(NAMESPACES)
    accounts = ctx.informer(SERVICE_ACCOUNTS)
    configmaps = ctx.informer(CONFIGMAPS)
    queue = WorkQueue()
    namespaces.add_handler(lambda t, o, old: queue.add(o["metadata"]["name"]) if t != "DELETED" else None)
    accounts.add_handler(lambda t, o, old: queue.add(o["metadata"]["namespace"])
                         if t == "DELETED" and o["metadata"]["name"] == DEFAULT_SERVICE_ACCOUNT else None)
    configmaps.add_handler(lambda t, o, old: queue.add(o["metadata"]["namespace"])
                           if o["metadata"]["name"] == ROOT_CA_CONFIGMAP else None)
    await ctx.wait_synced(NAMESPACES, SERVICE_ACCOUNTS, CONFIGMAPS)

    async def create(info, ns: str, body: dict) -> None:
        try:
            await client.create(info, ns, body)
        except ClientError as e:
            # 409: it exists after all; 403/404: the namespace is going away, nothing to keep.
            if e.code not in (403, 404, 409):
                raise

    async def sync(ns: str) -> None:
        namespace = namespaces.get(ns)
        if namespace is None or namespace["metadata"].get("deletionTimestamp"):
            return
        if accounts.get(f"{ns}/{DEFAULT_SERVICE_ACCOUNT}") is None:
            await create(SERVICE_ACCOUNTS, ns, {"apiVersion": "v1", "kind": "ServiceAccount",
                                                "metadata": {"name": DEFAULT_SERVICE_ACCOUNT}})
        cm = configmaps.get(f"{ns}/{ROOT_CA_CONFIGMAP}")
        want = root_ca_configmap(ns, ca_pem)
        if cm is None:
            await create(CONFIGMAPS, ns, want)
        elif cm.get("data") != want["data"] or cm.get("binaryData"):
            new = copy.deepcopy(cm)
            new["data"] = want["data"]
            new.pop("binaryData", None)
            await client.replace(CONFIGMAPS, ns, ROOT_CA_CONFIGMAP, new)

    await run_workers(queue, sync, workers=2, name="serviceaccount")
