"""Image references -> programs to run. The node agent calls `resolve()` when it starts a
container; there is no container runtime, so an image is a known behaviour, not a filesystem.

    resolve("registry.k8s.io/e2e-test-images/agnhost:2.53", None, ["netexec", "--http-port=8080"])
    -> ResolvedImage(argv=[python, "-m", "skiff.images", "agnhost", "netexec", "--http-port=8080"],
                     env={"PATH": ..., ...}, name="agnhost")

An unknown image raises ImageNotFound, which the node agent reports as ErrImagePull and then
ImagePullBackOff, like a kubelet whose registry has no such image.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Sequence
from dataclasses import dataclass

from skiff.images import generic, usermap
from skiff.images.catalog import BUILTIN, IMAGE_PATH, ImageSpec
from skiff.images.reference import InvalidImageName, Reference, parse

__all__ = ["ImageNotFound", "InvalidImageName", "NoCommandSpecified", "ResolvedImage",
           "available_images", "builtin_program", "canonical_reference", "effective_command", "resolve"]

# The directory holding the `skiff` package, so built-ins start even from a pod's working directory
# when Skiff runs from a source checkout rather than an installed package.
_SOURCE_ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


@dataclass(frozen=True)
class ResolvedImage:
    argv: list[str]  # what to exec, argv[0] a path or a name looked up in env["PATH"]
    env: dict[str, str]  # the image's environment; the container's `env` goes on top
    name: str  # the image's short name in the catalogue ("agnhost", "busybox", a SKIFF_IMAGE_MAP key)


class ImageNotFound(LookupError):
    def __init__(self, image: str, available: list[str]) -> None:
        super().__init__(
            f'image "{image}" is not available: Skiff has no container runtime and no registry, and '
            f"this is neither a built-in image nor listed in ${usermap.ENV_VAR} (a JSON/YAML file "
            f"mapping images to commands). Available images: {', '.join(available)}")
        self.image = image
        self.available = available


class NoCommandSpecified(ValueError):
    """The image has no ENTRYPOINT/CMD and the container gave no command."""

    def __init__(self, image: str) -> None:
        super().__init__(f'image "{image}": no command specified')
        self.image = image


def effective_command(entrypoint: list[str], cmd: list[str], command: list[str] | None,
                      args: list[str] | None) -> list[str]:
    """Kubernetes' rule: `command` replaces the image's ENTRYPOINT and `args` its CMD; a
    `command` without `args` ignores the CMD."""
    if command:
        return [*command, *(args or [])]
    if args:
        return [*entrypoint, *args]
    return [*entrypoint, *cmd]


def canonical_reference(image: str) -> str:
    """`nginx` -> `docker.io/library/nginx:latest`, as the kubelet reports container images."""
    return parse(image).canonical()


def available_images() -> list[str]:
    user = [spec.reference for _, spec in usermap.user_images()]
    return [*user, *(spec.reference for spec in BUILTIN), *(spec.reference for spec in generic.GENERIC)]


def _find(ref: Reference) -> ImageSpec | None:
    spec = usermap.find(ref)
    if spec is not None:
        return spec
    path = ref.short_path
    for spec in (*BUILTIN, *generic.GENERIC):
        if path in spec.repositories and (not spec.tags or ref.digest or ref.tag in spec.tags):
            return spec
    return None


def _unwrap(spec: ImageSpec, argv: list[str]) -> list[str]:
    """Drop entrypoint scripts that merely exec their arguments (adding the program they default to)."""
    while argv and os.path.basename(argv[0]) in spec.wrappers:
        default = spec.wrappers[os.path.basename(argv[0])]
        argv = argv[1:]
        if default and (not argv or argv[0].startswith("-")):
            argv = [default, *argv]
    return argv


def resolve(image: str, command: list[str] | None, args: list[str] | None) -> ResolvedImage:
    """The argv and environment that run a container of `image` with the given command/args.

    Raises InvalidImageName (kubelet reason InvalidImageName), ImageNotFound (ErrImagePull), or
    NoCommandSpecified (the runtime's "no command specified"). SKIFF_IMAGE_MAP is read when set."""
    ref = parse(image)
    spec = _find(ref)
    if spec is None:
        raise ImageNotFound(image, available_images())
    argv = effective_command(list(spec.entrypoint), list(spec.cmd), command, args)
    argv = _unwrap(spec, argv)
    if not argv:
        raise NoCommandSpecified(image)
    builtin = _as_builtin(spec, image, argv)
    if builtin is not None:
        return builtin
    return ResolvedImage(generic.host_argv(argv), {"PATH": IMAGE_PATH, **spec.env}, spec.name)


def builtin_program(image: str, argv: Sequence[str], on_host: bool = False) -> ResolvedImage | None:
    """What resolve() runs for the command `argv` when its program is one of `image`'s own
    (`/agnhost connect ...`, `nginx -s reload`): Skiff's stand-in, with the image's environment.
    None for any other program, for an image that is unknown or cannot be looked up, and, when
    the host has the program (`on_host`), for one whose stand-in plays only the image's own command
    (ImageSpec.host_first: the bootcamp image's `node`).

    For commands run in an already started container (`kubectl exec`, exec probes and hooks),
    where the image's programs exist only as built-ins."""
    try:
        spec = _find(parse(image))
    except (InvalidImageName, usermap.ImageMapError):
        # The container started, so its image resolved then; an exec must not fail on a lookup
        # that breaks later (an edited $SKIFF_IMAGE_MAP), only go without the built-in.
        return None
    if spec is None or not argv or (on_host and os.path.basename(argv[0]) in spec.host_first):
        return None
    return _as_builtin(spec, image, list(argv))


def _as_builtin(spec: ImageSpec, image: str, argv: list[str]) -> ResolvedImage | None:
    module = spec.programs.get(os.path.basename(argv[0]))
    if module is None:
        return None
    # Skiff's stand-in for the image's own program, told which image (and so which version) it is playing.
    env = {"PATH": IMAGE_PATH, **spec.env, "SKIFF_IMAGE": image, "PYTHONPATH": _SOURCE_ROOT}
    return ResolvedImage([sys.executable, "-m", *module, *argv[1:]], env, spec.name)
