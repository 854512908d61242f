"""Generic images: base images whose containers run the user's own command (`sh -c ...`,
`sleep 3600`, `curl ...`, `python3 -c ...`). With no image filesystem, those commands run with
the host's programs; this module knows the images' defaults and how to find each program here.
"""

from __future__ import annotations

import os
import re
import shutil
import sys

from skiff.images.catalog import ImageSpec

GENERIC: tuple[ImageSpec, ...] = (
    ImageSpec(name="busybox", reference="busybox",
              repositories=("busybox", "radial/busyboxplus", "google-containers/busybox",
                            "google_containers/busybox", "e2e-test-images/busybox"),
              cmd=("sh",)),
    ImageSpec(name="alpine", reference="alpine", repositories=("alpine",), cmd=("/bin/sh",)),
    ImageSpec(name="debian", reference="debian", repositories=("debian",), cmd=("bash",)),
    ImageSpec(name="ubuntu", reference="ubuntu", repositories=("ubuntu",), cmd=("/bin/bash",)),
    ImageSpec(name="bash", reference="bash", repositories=("bash",),
              entrypoint=("docker-entrypoint.sh",), cmd=("bash",),
              wrappers={"docker-entrypoint.sh": "bash"}),
    ImageSpec(name="python", reference="python", repositories=("python",), cmd=("python3",)),
    ImageSpec(name="curl", reference="curlimages/curl", repositories=("curlimages/curl",),
              entrypoint=("/entrypoint.sh",), cmd=("curl",), wrappers={"entrypoint.sh": "curl"}),
    # The DNS-debugging images of the Kubernetes docs and of network troubleshooting guides: their
    # tools (dig, nslookup, curl) are the host's here, as for the images above.
    ImageSpec(name="dnsutils", reference="registry.k8s.io/e2e-test-images/jessie-dnsutils",
              repositories=("e2e-test-images/jessie-dnsutils", "kubernetes-e2e-test-images/dnsutils",
                            "tutum/dnsutils"),
              cmd=("bash",)),
    ImageSpec(name="netshoot", reference="nicolaka/netshoot", repositories=("nicolaka/netshoot",),
              cmd=("zsh",), wrappers={"zsh": "bash"}),
)

_PYTHON = re.compile(r"^python(?:3(?:\.\d+)?)?$")


def host_argv(argv: list[str]) -> list[str]:
    """Point a command written for an image at the host's programs: any `python`/`python3.x`
    becomes this interpreter (always present, unlike the image's), and an absolute path that
    exists only inside the image (`/usr/local/bin/curl`) becomes the host program of that name."""
    if not argv:
        return argv
    program = argv[0]
    base = os.path.basename(program)
    if _PYTHON.match(base):
        return [sys.executable, *argv[1:]]
    if os.path.isabs(program) and not os.path.exists(program):
        found = shutil.which(base)
        if found:
            return [found, *argv[1:]]
    return list(argv)
