"""Image references, parsed the way container runtimes read them.

`nginx`, `nginx:1.25`, `docker.io/library/nginx:latest`, `registry.k8s.io/pause:3.9`,
`localhost:5000/app@sha256:...` all name a domain, a repository path and a tag or digest.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

DEFAULT_DOMAIN = "docker.io"
_COMPONENT = re.compile(r"^[a-z0-9]+(?:(?:[._]|__|-+)[a-z0-9]+)*$")
_TAG = re.compile(r"^[\w][\w.-]{0,127}$")
_DIGEST = re.compile(r"^[A-Za-z][A-Za-z0-9]*(?:[-_+.][A-Za-z][A-Za-z0-9]*)*:[0-9a-fA-F]{32,}$")
_DOMAIN = re.compile(r"^(?:[a-zA-Z0-9](?:[a-zA-Z0-9-]*[a-zA-Z0-9])?)(?:\.[a-zA-Z0-9](?:[a-zA-Z0-9-]*[a-zA-Z0-9])?)*"
                     r"(?::[0-9]+)?$|^\[[0-9a-fA-F:.]+\](?::[0-9]+)?$")


class InvalidImageName(ValueError):
    """The reference cannot be parsed; the kubelet reports this as `InvalidImageName`."""

    def __init__(self, image: str, why: str) -> None:
        super().__init__(f'couldn\'t parse image name "{image}": invalid reference format: {why}')
        self.image = image


@dataclass(frozen=True)
class Reference:
    domain: str
    path: str  # e.g. "library/nginx", "e2e-test-images/agnhost"
    tag: str | None
    digest: str | None

    @property
    def short_path(self) -> str:
        """The path as people write it for Docker Hub's official images: `nginx`, not `library/nginx`."""
        if self.domain == DEFAULT_DOMAIN and self.path.startswith("library/"):
            return self.path[len("library/"):]
        return self.path

    def canonical(self) -> str:
        """Fully qualified, as the kubelet reports it in `status.containerStatuses[].image`."""
        text = f"{self.domain}/{self.path}"
        if self.tag or not self.digest:
            text += ":" + (self.tag or "latest")
        if self.digest:
            text += "@" + self.digest
        return text


def parse(image: str) -> Reference:
    if not image or image != image.strip():
        raise InvalidImageName(image, "empty or surrounded by whitespace")
    name, _, digest = image.partition("@")
    if digest and not _DIGEST.match(digest):
        raise InvalidImageName(image, "invalid digest")
    tag = None
    slash = name.rfind("/")
    colon = name.rfind(":")
    if colon > slash:
        name, tag = name[:colon], name[colon + 1:]
        if not _TAG.match(tag):
            raise InvalidImageName(image, "invalid tag")
    parts = name.split("/")
    domain = DEFAULT_DOMAIN
    if len(parts) > 1 and ("." in parts[0] or ":" in parts[0] or parts[0] == "localhost"
                           or parts[0] != parts[0].lower()):
        domain = parts.pop(0)
        if not _DOMAIN.match(domain):
            raise InvalidImageName(image, "invalid registry host")
    if domain in ("index.docker.io", "registry-1.docker.io"):
        domain = DEFAULT_DOMAIN
    for part in parts:
        if not _COMPONENT.match(part):
            if part.lower() != part:
                raise InvalidImageName(image, f"repository name ({'/'.join(parts)}) must be lowercase")
            raise InvalidImageName(image, f"invalid repository path component {part!r}")
    if domain == DEFAULT_DOMAIN and len(parts) == 1:
        parts.insert(0, "library")
    return Reference(domain, "/".join(parts), tag, digest or None)


def tag_of(image: str) -> str:
    """The reference's tag, or "" when it has none or cannot be parsed (the built-in images read
    their version from it)."""
    try:
        return parse(image).tag or ""
    except InvalidImageName:
        return ""
