"""API discovery documents: aggregated (apidiscovery.k8s.io/v2) and legacy, built from the registry."""

from __future__ import annotations

from skiff.api.resources import ALL_VERBS, RESOURCES, REVIEW_KINDS, SUB_VERBS, ResourceInfo, group_versions

AGGREGATED_CT = "application/json;g=apidiscovery.k8s.io;v=v2;as=APIGroupDiscoveryList"

VERSION = {
    "major": "1",
    "minor": "33",
    "emulationMajor": "1",
    "emulationMinor": "33",
    "minCompatibilityMajor": "1",
    "minCompatibilityMinor": "32",
    "gitVersion": "v1.33.0-skiff",
    "gitCommit": "0000000000000000000000000000000000000000",
    "gitTreeState": "clean",
    "buildDate": "2026-11-27T00:00:00Z",
    "goVersion": "go1.24.0",
    "compiler": "gc",
    "platform": "linux/amd64",
}

# Subresources that are not plain get/patch/update.
_SUB_VERBS_SPECIAL = {
    "log": ["get"], "exec": ["create", "get"], "attach": ["create", "get"],
    "portforward": ["create", "get"], "binding": ["create"], "eviction": ["create"],
    "finalize": ["update"], "token": ["create"],
}
# Subresources whose kind lives in another group than the resource's.
_SUB_GROUPS = {
    "Scale": {"group": "autoscaling", "version": "v1", "kind": "Scale"},
    "Eviction": {"group": "policy", "version": "v1", "kind": "Eviction"},
    "TokenRequest": {"group": "authentication.k8s.io", "version": "v1", "kind": "TokenRequest"},
}


def _sub_kind(info: ResourceInfo, sub: str, kind: str) -> dict:
    if kind in _SUB_GROUPS:
        return dict(_SUB_GROUPS[kind])
    if kind in ("", None):
        return {"group": info.group, "version": info.version, "kind": info.kind}
    return {"group": info.group if kind == info.kind else "", "version": "v1", "kind": kind}


def _verbs(info: ResourceInfo) -> list[str]:
    if info.kind in REVIEW_KINDS:
        return ["create"]
    if info.kind == "Namespace":
        return ["create", "delete", "get", "list", "patch", "update", "watch"]
    return list(ALL_VERBS)


def aggregated(core: bool) -> dict:
    items = []
    for group, version in group_versions():
        if (group == "") != core:
            continue
        resources = []
        for r in RESOURCES:
            if (r.group, r.version) != (group, version):
                continue
            entry: dict = {
                "resource": r.plural,
                "responseKind": {"group": r.group, "version": r.version, "kind": r.kind},
                "scope": "Namespaced" if r.namespaced else "Cluster",
                "singularResource": r.singular,
                "verbs": _verbs(r),
            }
            if r.short_names:
                entry["shortNames"] = list(r.short_names)
            if r.categories:
                entry["categories"] = list(r.categories)
            if r.subresources:
                entry["subresources"] = [
                    {"subresource": s, "responseKind": _sub_kind(r, s, k),
                     "verbs": _SUB_VERBS_SPECIAL.get(s, SUB_VERBS)}
                    for s, k in r.subresources.items()
                ]
            resources.append(entry)
        md: dict = {"creationTimestamp": None}
        if group:
            md["name"] = group
        items.append({"metadata": md, "versions": [{"version": version, "resources": resources,
                                                    "freshness": "Current"}]})
    return {"kind": "APIGroupDiscoveryList", "apiVersion": "apidiscovery.k8s.io/v2", "metadata": {},
            "items": items}


def api_versions(server_address: str) -> dict:
    return {"kind": "APIVersions", "versions": ["v1"],
            "serverAddressByClientCIDRs": [{"clientCIDR": "0.0.0.0/0", "serverAddress": server_address}]}


def _group_entry(group: str) -> dict:
    versions = [{"groupVersion": f"{g}/{v}", "version": v} for g, v in group_versions() if g == group]
    return {"name": group, "versions": versions, "preferredVersion": versions[0]}


def api_group_list() -> dict:
    groups: list[str] = []
    for g, _v in group_versions():
        if g and g not in groups:
            groups.append(g)
    return {"kind": "APIGroupList", "apiVersion": "v1", "groups": [_group_entry(g) for g in groups]}


def api_group(group: str) -> dict | None:
    if not any(g == group for g, _ in group_versions()):
        return None
    return {"kind": "APIGroup", "apiVersion": "v1", **_group_entry(group)}


def resource_list(group: str, version: str) -> dict | None:
    if (group, version) not in group_versions():
        return None
    out = []
    for r in RESOURCES:
        if (r.group, r.version) != (group, version):
            continue
        entry: dict = {"name": r.plural, "singularName": r.singular, "namespaced": r.namespaced,
                       "kind": r.kind, "verbs": _verbs(r)}
        if r.short_names:
            entry["shortNames"] = list(r.short_names)
        if r.categories:
            entry["categories"] = list(r.categories)
        out.append(entry)
        for s, k in r.subresources.items():
            sk = _sub_kind(r, s, k)
            sub = {"name": f"{r.plural}/{s}", "singularName": "", "namespaced": r.namespaced,
                   "kind": sk["kind"], "verbs": _SUB_VERBS_SPECIAL.get(s, SUB_VERBS)}
            if sk["group"] != r.group:
                sub["group"], sub["version"] = sk["group"], sk["version"]
            out.append(sub)
    gv = f"{group}/{version}" if group else version
    return {"kind": "APIResourceList", "apiVersion": "v1", "groupVersion": gv, "resources": out}
