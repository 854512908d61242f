"""The `nginx` image with its stock configuration: port 80, the welcome page at `/` and
`/index.html`, `/50x.html`, a 404 page for anything else, and one access-log line per request
on stdout in the image's `main` log format (combined + `"$http_x_forwarded_for"`).

Content a pod mounts under the document root /usr/share/nginx/html (a ConfigMap or emptyDir volume
there, or one file of it by subPath) is served from that mount, as the real image serves whatever
the volume holds. Only mounts count: the host's own /usr/share/nginx/html is not the image's.

$NGINX_PORT changes the port. Arguments are nginx's command line (`nginx -g 'daemon off;'` is the image's CMD).
"""

from __future__ import annotations

import asyncio
import mimetypes
import os
import posixpath
import signal
import sys
import time

from skiff.images import server
from skiff.images.reference import tag_of
from skiff.net.ns import mount_points

DEFAULT_VERSION = "1.27.5"
HTML_ROOT = "/usr/share/nginx/html"

WELCOME = """<!DOCTYPE html>
<html>
<head>
<title>Welcome to nginx!</title>
<style>
html { color-scheme: light dark; }
body { width: 35em; margin: 0 auto; font-family: Tahoma, Verdana, Arial, sans-serif; }
</style>
</head>
<body>
<h1>Welcome to nginx!</h1>
<p>If you see this page, the nginx web server is running. This is Skiff's built-in
imitation of the nginx image: it serves this page and nothing else.</p>

<p><em>Thank you for using nginx.</em></p>
</body>
</html>
"""

ERROR_50X = """<!DOCTYPE html>
<html>
<head>
<title>Error</title>
</head>
<body>
<h1>An error occurred.</h1>
<p>Sorry, the page you are looking for is currently unavailable.<br/>
Please try again later.</p>
</body>
</html>
"""


def error_page(status: int, version: str) -> bytes:
    title = f"{status} {server.reason(status)}"
    return (f"<html>\r\n<head><title>{title}</title></head>\r\n<body>\r\n"
            f"<center><h1>{title}</h1></center>\r\n<hr><center>nginx/{version}</center>\r\n"
            "</body>\r\n</html>\r\n").encode()


def version_from_image(image: str) -> str:
    """`nginx:1.25.3` reports itself as nginx/1.25.3; other tags get a recent stable version."""
    tag = tag_of(image).split("-")[0]
    parts = tag.split(".")
    if len(parts) == 3 and all(p.isdigit() for p in parts):
        return tag
    return DEFAULT_VERSION


def mounts_under(root: str, mountinfo: str) -> list[str]:
    """The mount points at or below `root`, from /proc/self/mountinfo's text."""
    return [p for p in mount_points(mountinfo) if p == root or p.startswith(root.rstrip("/") + "/")]


def mounted_path(root: str, mounts: list[str], path: str) -> str | None:
    """The file under `root` that serves `path` when it lies in a mounted volume, or None when the
    image's own pages answer. `path` is the request's path; `..` cannot climb out of `root`."""
    if not mounts:
        return None
    clean = posixpath.normpath("/" + path.lstrip("/"))
    target = root.rstrip("/") + ("" if clean == "/" else clean)
    if path.endswith("/") and clean != "/":
        target += "/"
    for point in mounts:
        if target == point or target.startswith(point.rstrip("/") + "/"):
            return target
    return None


def serve_file(target: str, path: str) -> tuple[int, bytes, str, list[tuple[str, str]]]:
    """(status, body, content type, extra headers) for a path served from a mounted volume, as nginx's
    static module answers: index.html for a directory, a 301 to add a directory's slash."""
    if os.path.isdir(target):
        if not path.endswith("/"):
            return 301, b"", "text/html", [("Location", path + "/")]
        target = os.path.join(target, "index.html")
        if not os.path.exists(target):
            return 403, b"", "text/html", []
    try:
        with open(target, "rb") as f:
            body = f.read()
            stat = os.fstat(f.fileno())
    except FileNotFoundError:
        return 404, b"", "text/html", []
    except OSError:
        return 403, b"", "text/html", []
    ctype = mimetypes.guess_type(target)[0] or "application/octet-stream"
    return 200, body, ctype, [("Last-Modified", server.http_date(stat.st_mtime)),
                              ("ETag", f'"{int(stat.st_mtime):x}-{len(body):x}"'), ("Accept-Ranges", "bytes")]


# `nginx -s <name>` and the signal the master process gets.
SIGNALS = {"stop": signal.SIGTERM, "quit": signal.SIGQUIT, "reopen": signal.SIGUSR1, "reload": signal.SIGHUP}


def _notice(text: str) -> str:
    return f"{time.strftime('%Y/%m/%d %H:%M:%S')} [notice] {os.getpid()}#{os.getpid()}: {text}"


def _master_pid() -> int | None:
    """The lowest pid in this PID namespace running this image's nginx: PID 1 of a container's own
    namespace, or the container's in a pod that shares one."""
    for entry in sorted((e for e in os.listdir("/proc") if e.isdigit()), key=int):
        try:
            with open(f"/proc/{entry}/cmdline", "rb") as f:
                args = f.read().split(b"\0")
        except OSError:
            continue
        if args[1:4] == [b"-m", b"skiff.images", b"nginx"] and int(entry) != os.getpid():
            return int(entry)
    return None


def send_signal(name: str) -> int:
    """`nginx -s stop|quit|reopen|reload`: signal the master process. The real one finds it in
    /run/nginx.pid; this image keeps no pid file on the node's disk, and finds it where a container
    of the image has it, in the container's PID namespace."""
    sig = SIGNALS.get(name)
    if sig is None:
        print(f'nginx: invalid option: "-s {name}"', file=sys.stderr)
        return 1
    master = _master_pid()
    try:
        if master is None:
            raise FileNotFoundError
        os.kill(master, sig)
    except OSError:
        print('nginx: [error] open() "/run/nginx.pid" failed (2: No such file or directory)', file=sys.stderr)
        return 1
    print(_notice("signal process started"), file=sys.stderr)
    return 0


def main(argv: list[str]) -> None:
    version = version_from_image(os.environ.get("SKIFF_IMAGE", ""))
    i = 0
    while i < len(argv):
        arg = argv[i]
        if arg in ("-v", "-V"):
            print(f"nginx version: nginx/{version}", file=sys.stderr)
            raise SystemExit(0)
        if arg in ("-t", "-T"):
            print("nginx: the configuration file /etc/nginx/nginx.conf syntax is ok\n"
                  "nginx: configuration file /etc/nginx/nginx.conf test is successful", file=sys.stderr)
            raise SystemExit(0)
        if arg in ("-g", "-c", "-p", "-e", "-s"):
            if arg == "-s":
                raise SystemExit(send_signal(argv[i + 1] if i + 1 < len(argv) else ""))
            i += 2
            continue
        if arg == "-q":
            i += 1
            continue
        print(f'nginx: invalid option: "{arg.lstrip("-")}"', file=sys.stderr)
        raise SystemExit(1)

    mtime = time.time()
    modified = server.http_date(mtime)
    pages = {"/": WELCOME.encode(), "/index.html": WELCOME.encode(), "/50x.html": ERROR_50X.encode()}
    etags = {path: f'"{int(mtime):x}-{len(body):x}"' for path, body in pages.items()}
    not_found = error_page(404, version)
    not_allowed = error_page(405, version)
    mounted: list[str] = []

    def read_mounts() -> None:
        try:
            with open("/proc/self/mountinfo") as f:
                mounted[:] = mounts_under(HTML_ROOT, f.read())
        except OSError:
            mounted.clear()

    read_mounts()

    def from_volume(request: server.Request, target: str) -> server.Response:
        if request.method not in ("GET", "HEAD"):
            return server.Response(not_allowed, status=405, content_type="text/html")
        status, body, ctype, headers = serve_file(target, request.path)
        if status == 200:
            return server.Response(body, content_type=ctype, headers=headers)
        return server.Response(error_page(status, version), status=status, content_type="text/html", headers=headers)

    def handle(request: server.Request) -> server.Response:
        target = mounted_path(HTML_ROOT, mounted, request.path)
        body = pages.get(request.path)
        if target is not None:
            response = from_volume(request, target)
        elif body is not None and request.method in ("GET", "HEAD"):
            response = server.Response(body, content_type="text/html", headers=[
                ("Last-Modified", modified), ("ETag", etags[request.path]), ("Accept-Ranges", "bytes")])
        elif body is not None:
            response = server.Response(not_allowed, status=405, content_type="text/html")
        else:
            response = server.Response(not_found, status=404, content_type="text/html")
        sent = 0 if request.method == "HEAD" else len(response.body)  # type: ignore[arg-type]
        stamp = time.strftime("%d/%b/%Y:%H:%M:%S +0000", time.gmtime())
        server.log(
            f'{request.peer[0]} - - [{stamp}] "{request.method} {request.target} {request.version}" '
            f'{response.status} {sent} "{request.header("referer", "-")}" '
            f'"{request.header("user-agent", "-")}" "{request.header("x-forwarded-for", "-")}"')
        return response

    async def start() -> None:
        # The real image changes its port through config templates, conventionally with
        # $NGINX_PORT; with no config files to template, the variable is honoured directly.
        port = int(os.environ.get("NGINX_PORT") or 80)
        await server.start_http(handle, port, server_header=f"nginx/{version}")
        stamp = time.strftime("%Y/%m/%d %H:%M:%S")
        server.log("/docker-entrypoint.sh: Configuration complete; ready for start up")
        server.log(f"{stamp} [notice] {os.getpid()}#{os.getpid()}: nginx/{version}")
        server.log(f"{stamp} [notice] {os.getpid()}#{os.getpid()}: start worker processes")
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGHUP, signal.SIGUSR1, signal.SIGQUIT):
            loop.add_signal_handler(sig, on_signal, sig)

    def on_signal(sig: int) -> None:
        # The master's answers to `nginx -s`, in its words.
        name = signal.Signals(sig).name
        if sig == signal.SIGHUP:
            server.log(_notice(f"signal {int(sig)} ({name}) received, reconfiguring"))
            server.log(_notice("reconfiguring"))
            read_mounts()
            server.log(_notice("start worker processes"))
        elif sig == signal.SIGUSR1:
            server.log(_notice(f"signal {int(sig)} ({name}) received, reopening logs"))
            server.log(_notice("reopening logs"))
        else:  # SIGQUIT: a graceful shutdown, which is what SIGTERM does here too
            server.log(_notice(f"signal {int(sig)} ({name}) received, shutting down"))
            os.kill(os.getpid(), signal.SIGTERM)

    server.run(start)
