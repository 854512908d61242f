"""Request body decoding (JSON, YAML, protobuf) and response encoding, with kube-apiserver's errors."""

from __future__ import annotations

import json
from typing import Any

import yaml
from aiohttp import web

from skiff.api import errors

MAX_BODY = 3 * 1024 * 1024


def _json_error(e: json.JSONDecodeError) -> errors.APIError:
    return errors.bad_request(f"error decoding request body: invalid JSON at line {e.lineno}, column {e.colno}: "
                              f"{e.msg}")


def parse_json(raw: bytes) -> Any:
    try:
        return json.loads(raw)
    except json.JSONDecodeError as e:
        raise _json_error(e) from None
    except UnicodeDecodeError as e:
        raise errors.bad_request(f"error decoding request body: not valid UTF-8 ({e.reason})") from None


def parse_yaml(raw: bytes) -> Any:
    try:
        return yaml.safe_load(raw)
    except yaml.MarkedYAMLError as e:
        mark = e.problem_mark
        where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark else ""
        raise errors.bad_request(f"error decoding request body: invalid YAML{where}: {e.problem}") from None
    except yaml.YAMLError as e:
        raise errors.bad_request(f"error decoding request body: invalid YAML: {e}") from None


async def read_body(request: web.Request) -> bytes:
    if request.content_length is not None and request.content_length > MAX_BODY:
        raise errors.too_large()
    try:
        raw = await request.read()
    except web.HTTPRequestEntityTooLarge:
        raise errors.too_large() from None
    if len(raw) > MAX_BODY:
        raise errors.too_large()
    return raw


def media_type(request: web.Request) -> str:
    ct = request.headers.get("Content-Type", "")
    return ct.split(";", 1)[0].strip().lower()


async def read_object(request: web.Request) -> dict:
    """Decode a create/update body into an object dict, whatever its media type."""
    raw = await read_body(request)
    ct = media_type(request)
    if not raw.strip():
        raise errors.bad_request("Object 'Kind' is missing in ''")
    if ct in ("", "application/json", "*/*"):
        obj = parse_json(raw)
    elif ct in ("application/yaml", "application/x-yaml", "text/yaml"):
        obj = parse_yaml(raw)
    elif ct == "application/vnd.kubernetes.protobuf":
        from skiff.api import protobuf

        obj = protobuf.decode(raw)
    else:
        raise errors.unsupported_media_type(ct)
    if not isinstance(obj, dict):
        raise errors.bad_request("error decoding request body: expected a JSON object")
    return obj


def wants_table(request: web.Request) -> bool:
    accept = request.headers.get("Accept", "")
    return "as=Table" in accept


def json_response(body: Any, status: int = 200, headers: dict | None = None) -> web.Response:
    return web.Response(body=json.dumps(body, separators=(",", ":")).encode(), status=status,
                        content_type="application/json", headers=headers)


def raw_json_response(body: bytes, status: int = 200, headers: dict | None = None) -> web.Response:
    """A response whose body is already the JSON json_response would have made."""
    return web.Response(body=body, status=status, content_type="application/json", headers=headers)


def status_response(err: errors.APIError) -> web.Response:
    return json_response(err.status(), err.code, err.headers or None)
