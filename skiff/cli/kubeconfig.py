"""kubeconfig documents: the one a cluster prints, and merging it into the user's file, as kind does."""

from __future__ import annotations

import base64
import os
from pathlib import Path

import yaml

from skiff.config import ClusterConfig


def context_name(cfg: ClusterConfig) -> str:
    return f"skiff-{cfg.name}"


def build(cfg: ClusterConfig, in_cluster: bool = False) -> dict:
    ca = (cfg.state_dir / "pki" / "ca.crt").read_bytes()
    name = context_name(cfg)
    return {
        "apiVersion": "v1",
        "kind": "Config",
        "preferences": {},
        "clusters": [{"name": name, "cluster": {
            "server": cfg.in_cluster_server_url if in_cluster else cfg.server_url,
            "certificate-authority-data": base64.b64encode(ca).decode()}}],
        "users": [{"name": name, "user": {"token": cfg.token}}],
        "contexts": [{"name": name, "context": {"cluster": name, "user": name}}],
        "current-context": name,
    }


def render(cfg: ClusterConfig) -> str:
    return yaml.safe_dump(build(cfg), sort_keys=False)


def user_kubeconfig_path() -> Path:
    env = os.environ.get("KUBECONFIG")
    if env:
        return Path(env.split(os.pathsep)[0])
    return Path.home() / ".kube" / "config"


def _upsert(items: list, entry: dict) -> list:
    return [i for i in items if i.get("name") != entry["name"]] + [entry]


def merge_into_user(cfg: ClusterConfig) -> Path:
    path = user_kubeconfig_path()
    doc: dict = {}
    if path.exists():
        doc = yaml.safe_load(path.read_text()) or {}
    doc.setdefault("apiVersion", "v1")
    doc.setdefault("kind", "Config")
    ours = build(cfg)
    for section in ("clusters", "users", "contexts"):
        doc[section] = _upsert(doc.get(section) or [], ours[section][0])
    doc["current-context"] = context_name(cfg)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".skiff-tmp")
    tmp.write_text(yaml.safe_dump(doc, sort_keys=False))
    os.chmod(tmp, 0o600)
    tmp.replace(path)
    return path


def remove_from_user(cluster_name: str) -> None:
    path = user_kubeconfig_path()
    if not path.exists():
        return
    doc = yaml.safe_load(path.read_text()) or {}
    name = f"skiff-{cluster_name}"
    changed = False
    for section in ("clusters", "users", "contexts"):
        items = doc.get(section) or []
        kept = [i for i in items if i.get("name") != name]
        if len(kept) != len(items):
            doc[section] = kept
            changed = True
    if doc.get("current-context") == name:
        doc["current-context"] = ""
        changed = True
    if changed:
        path.write_text(yaml.safe_dump(doc, sort_keys=False))
