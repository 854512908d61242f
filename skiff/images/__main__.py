"""`python -m skiff.images <builtin> [args...]`: run one built-in image's program.

Only the chosen program's module is imported: every pod start pays for what is imported here.
"""

from __future__ import annotations

import importlib
import sys

PROGRAMS = {
    "hello-app": "skiff.images.hello_app",
    "http-echo": "skiff.images.http_echo",
    "whoami": "skiff.images.whoami",
    "nginx": "skiff.images.nginx",
    "agnhost": "skiff.images.agnhost",
    "pause": "skiff.images.pause",
    "kubernetes-bootcamp": "skiff.images.bootcamp",
    "echo-server": "skiff.images.echo_server",
    "echoserver": "skiff.images.echoserver",
}


def main(argv: list[str]) -> None:
    if not argv or argv[0] not in PROGRAMS:
        given = repr(argv[0]) if argv else "nothing"
        print(f"skiff.images: unknown built-in program {given}; available: {', '.join(sorted(PROGRAMS))}",
              file=sys.stderr)
        raise SystemExit(2)
    module = importlib.import_module(PROGRAMS[argv[0]])
    module.main(argv[1:])


if __name__ == "__main__":
    main(sys.argv[1:])
