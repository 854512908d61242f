"""The remote command channel protocol (exec, attach) over WebSocket: `*.channel.k8s.io`.

Every binary message starts with a channel byte: 0 stdin, 1 stdout, 2 stderr, 3 error/status,
4 terminal resize; v5 adds 255, a CLOSE signal whose payload is the channel being closed
(``ff 00`` is stdin EOF). From v4 on, the status channel carries one JSON metav1.Status, which
is how kubectl learns the command's exit code; older protocols carry only an error's text.

Pure: message encoding and the Status objects, no I/O.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

STDIN = 0
STDOUT = 1
STDERR = 2
ERROR = 3
RESIZE = 4
CLOSE = 255

V5 = "v5.channel.k8s.io"
V4 = "v4.channel.k8s.io"
# In order of preference; kubelet serves these binary protocols over WebSocket.
SUPPORTED_PROTOCOLS = (V5, V4, "v3.channel.k8s.io", "v2.channel.k8s.io", "channel.k8s.io")


def negotiate(offered: list[str]) -> str | None:
    """The protocol we answer with: our most preferred one among those the client offers."""
    for proto in SUPPORTED_PROTOCOLS:
        if proto in offered:
            return proto
    return None


def status_is_json(protocol: str) -> bool:
    return protocol in (V4, V5)


def supports_close(protocol: str) -> bool:
    return protocol == V5


def frame(channel: int, data: bytes = b"") -> bytes:
    return bytes([channel]) + data


def parse(message: bytes) -> tuple[int, bytes]:
    """(channel, payload) of a client message; an empty message is (-1, b"")."""
    if not message:
        return -1, b""
    return message[0], message[1:]


@dataclass
class Resize:
    width: int
    height: int


def parse_resize(payload: bytes) -> Resize | None:
    try:
        obj = json.loads(payload)
        return Resize(int(obj.get("Width", 0)), int(obj.get("Height", 0)))
    except (ValueError, TypeError, AttributeError):
        return None


# ---- status (channel 3) ----------------------------------------------------------------------------


def success_status() -> dict[str, Any]:
    return {"metadata": {}, "status": "Success"}


def exit_code_status(argv: list[str], code: int) -> dict[str, Any]:
    """The status of a command that ran and exited non-zero; kubectl exits with `code`.

    The message is what kubelet reports through containerd's streaming server.
    """
    return {
        "metadata": {},
        "status": "Failure",
        "message": f"command terminated with non-zero exit code: error executing command "
                   f"[{' '.join(argv)}], exit code {code}",
        "reason": "NonZeroExitCode",
        "details": {"causes": [{"reason": "ExitCode", "message": str(code)}]},
    }


def internal_error_status(message: str) -> dict[str, Any]:
    """A command that could not be started (e.g. not found): kubelet's InternalError Status."""
    return {
        "metadata": {},
        "status": "Failure",
        "message": f"Internal error occurred: {message}",
        "reason": "InternalError",
        "details": {"causes": [{"message": message}]},
        "code": 500,
    }


def status_message(protocol: str, status: dict[str, Any]) -> bytes | None:
    """The channel-3 message for `status`, or None when this protocol sends nothing (success, < v4)."""
    if status_is_json(protocol):
        return frame(ERROR, json.dumps(status, separators=(",", ":")).encode())
    if status.get("status") == "Success":
        return None
    return frame(ERROR, str(status.get("message", "")).encode())
