"""What each known image is: the repositories that name it, its ENTRYPOINT/CMD/ENV as published,
and which of its executables Skiff replaces with a Python program.

Keeping the real ENTRYPOINT and CMD is what makes a container's `command`/`args` mean the same
here as on a real node: `args: [netexec]` on agnhost runs `/agnhost netexec`, while
`command: [sh, -c, ...]` on the same image runs a shell.
"""

from __future__ import annotations

from dataclasses import dataclass, field

# The PATH of the usual Linux base images; pods started from them expect to find programs there.
IMAGE_PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"


@dataclass(frozen=True)
class ImageSpec:
    name: str  # short name shown in errors and reported by resolve()
    reference: str  # the reference people usually write, for messages
    repositories: tuple[str, ...]  # repository paths (registry-less, `library/` dropped) that mean it
    entrypoint: tuple[str, ...] = ()
    cmd: tuple[str, ...] = ()
    env: dict[str, str] = field(default_factory=dict)
    # basename of an executable in the image -> Python module (and leading arguments) that
    # stands in for it, run as `python -m <module> <leading...> <rest of argv>`.
    programs: dict[str, tuple[str, ...]] = field(default_factory=dict)
    # Entrypoint scripts that only `exec "$@"`, with the program some of them put in front when
    # the arguments are empty or start with "-" (curl's and bash's do; nginx's does not).
    wrappers: dict[str, str | None] = field(default_factory=dict)
    # The tags that exist, when not every tag does (a reference with a digest is taken as it is).
    tags: tuple[str, ...] = ()
    # Programs whose stand-in plays only the image's own command (an interpreter running the image's
    # script): an exec of one in a running container means the real program, the host's if it has one.
    host_first: tuple[str, ...] = ()


def _builtin(program: str) -> tuple[str, ...]:
    return ("skiff.images", program)


BUILTIN: tuple[ImageSpec, ...] = (
    ImageSpec(
        name="hello-app", reference="gcr.io/google-samples/hello-app",
        repositories=("google-samples/hello-app", "google-samples/containers/gke/hello-app"),
        cmd=("/hello-app",), env={"PORT": "8080"}, programs={"hello-app": _builtin("hello-app")}),
    ImageSpec(
        name="http-echo", reference="hashicorp/http-echo", repositories=("hashicorp/http-echo",),
        entrypoint=("/http-echo",), programs={"http-echo": _builtin("http-echo")}),
    ImageSpec(
        name="whoami", reference="traefik/whoami", repositories=("traefik/whoami", "containous/whoami"),
        entrypoint=("/whoami",), programs={"whoami": _builtin("whoami")}),
    ImageSpec(
        name="nginx", reference="nginx", repositories=("nginx",),
        entrypoint=("/docker-entrypoint.sh",), cmd=("nginx", "-g", "daemon off;"),
        programs={"nginx": _builtin("nginx"), "nginx-debug": _builtin("nginx")},
        wrappers={"docker-entrypoint.sh": None}),
    ImageSpec(
        name="nginx-unprivileged", reference="nginxinc/nginx-unprivileged",
        repositories=("nginxinc/nginx-unprivileged",),
        entrypoint=("/docker-entrypoint.sh",), cmd=("nginx", "-g", "daemon off;"),
        env={"NGINX_PORT": "8080"},
        programs={"nginx": _builtin("nginx"), "nginx-debug": _builtin("nginx")},
        wrappers={"docker-entrypoint.sh": None}),
    # The docs' StatefulSet tutorials' nginx (an old Kubernetes test image; no entrypoint script).
    ImageSpec(
        name="nginx-slim", reference="registry.k8s.io/nginx-slim",
        repositories=("nginx-slim", "google_containers/nginx-slim", "google-containers/nginx-slim"),
        cmd=("nginx", "-g", "daemon off;"), programs={"nginx": _builtin("nginx")}),
    ImageSpec(
        name="agnhost", reference="registry.k8s.io/e2e-test-images/agnhost",
        repositories=("e2e-test-images/agnhost", "kubernetes-e2e-test-images/agnhost"),
        entrypoint=("/agnhost",), cmd=("pause",),
        programs={"agnhost": _builtin("agnhost"), "agnhost-2": _builtin("agnhost")}),
    # The Kubernetes Basics tutorial's app: v1 at Google, v2 (its "update your app" step) elsewhere.
    # Only the tags that exist: the tutorial's rollback step relies on `:v10` failing to pull.
    ImageSpec(
        name="kubernetes-bootcamp", reference="gcr.io/google-samples/kubernetes-bootcamp:v1",
        repositories=("google-samples/kubernetes-bootcamp",), tags=("v1",),
        cmd=("node", "server.js"), programs={"node": _builtin("kubernetes-bootcamp")}, host_first=("node",)),
    ImageSpec(
        name="kubernetes-bootcamp", reference="jocatalin/kubernetes-bootcamp:v2",
        repositories=("jocatalin/kubernetes-bootcamp",), tags=("v1", "v2"),
        cmd=("node", "server.js"), programs={"node": _builtin("kubernetes-bootcamp")}, host_first=("node",)),
    ImageSpec(
        name="echo-server", reference="kicbase/echo-server:1.0", repositories=("kicbase/echo-server",),
        entrypoint=("/echo-server",), programs={"echo-server": _builtin("echo-server")}),
    ImageSpec(
        name="echoserver", reference="registry.k8s.io/echoserver:1.10",
        repositories=("echoserver", "google_containers/echoserver", "google-containers/echoserver"),
        tags=("1.4", "1.8", "1.9", "1.10"), cmd=("nginx", "-g", "daemon off;"),
        programs={"nginx": _builtin("echoserver")}),
    ImageSpec(
        name="pause", reference="registry.k8s.io/pause",
        repositories=("pause", "google_containers/pause", "google-containers/pause"),
        entrypoint=("/pause",), programs={"pause": _builtin("pause")}),
    # Skiff's own system pods.
    ImageSpec(
        name="skiff/dns", reference="skiff/dns", repositories=("skiff/dns",),
        entrypoint=("/skiff-dns",), programs={"skiff-dns": ("skiff.dns",)}),
    ImageSpec(
        name="skiff/ingress-controller", reference="skiff/ingress-controller",
        repositories=("skiff/ingress-controller",),
        entrypoint=("/skiff-ingress-controller",), programs={"skiff-ingress-controller": ("skiff.ingress",)}),
)
