"""User-defined images: `SKIFF_IMAGE_MAP` names a JSON or YAML file mapping image references to
what to run, so a cluster can run images Skiff does not know:

    myorg/api:1.2: ["python3", "/srv/api/main.py"]          # the ENTRYPOINT, run on the host
    myorg/worker:                                            # no tag: any tag matches
      entrypoint: ["/usr/bin/env", "python3", "-m", "worker"]
      cmd: ["--queue", "default"]
      env: {"WORKER_MODE": "k8s"}

Entries win over the built-in images.
"""

from __future__ import annotations

import json
import os

from skiff.images.catalog import IMAGE_PATH, ImageSpec
from skiff.images.reference import InvalidImageName, Reference, parse

ENV_VAR = "SKIFF_IMAGE_MAP"

_cache: dict[str, tuple[float, list[tuple[Reference, ImageSpec]]]] = {}


class ImageMapError(ValueError):
    pass


def _load(path: str) -> list[tuple[Reference, ImageSpec]]:
    try:
        mtime = os.stat(path).st_mtime
    except OSError as e:
        raise ImageMapError(f"{ENV_VAR}={path}: cannot read it: {e.strerror}") from None
    cached = _cache.get(path)
    if cached and cached[0] == mtime:
        return cached[1]
    with open(path, encoding="utf-8") as f:
        text = f.read()
    try:
        if path.endswith((".yaml", ".yml")):
            import yaml

            data = yaml.safe_load(text) or {}
        else:
            data = json.loads(text)
    except Exception as e:
        raise ImageMapError(f"{ENV_VAR}={path}: not valid {'YAML' if path.endswith(('yaml', 'yml')) else 'JSON'}: "
                            f"{e}") from None
    if not isinstance(data, dict):
        raise ImageMapError(f"{ENV_VAR}={path}: must map image references to argv lists or objects")
    entries = []
    for key, value in data.items():
        try:
            ref = parse(str(key))
        except InvalidImageName as e:
            raise ImageMapError(f"{ENV_VAR}={path}: {e}") from None
        if isinstance(value, list):
            value = {"entrypoint": value}
        if not isinstance(value, dict) or not set(value) <= {"entrypoint", "cmd", "env"}:
            raise ImageMapError(f"{ENV_VAR}={path}: entry {key!r} must be an argv list or an object with "
                                "entrypoint, cmd and env")
        entrypoint = [str(a) for a in value.get("entrypoint") or []]
        cmd = [str(a) for a in value.get("cmd") or []]
        env = {"PATH": IMAGE_PATH, **{str(k): str(v) for k, v in (value.get("env") or {}).items()}}
        entries.append((ref, ImageSpec(name=str(key), reference=str(key), repositories=(ref.short_path,),
                                       entrypoint=tuple(entrypoint), cmd=tuple(cmd), env=env)))
    _cache[path] = (mtime, entries)
    return entries


def user_images() -> list[tuple[Reference, ImageSpec]]:
    path = os.environ.get(ENV_VAR)
    return _load(path) if path else []


def find(ref: Reference) -> ImageSpec | None:
    for key, spec in user_images():
        if key.domain == ref.domain and key.path == ref.path and key.tag in (None, ref.tag or "latest"):
            return spec
    return None
