"""Kubernetes API errors: `metav1.Status` bodies with kube-apiserver's reasons and messages.

kubectl only prints a server error nicely when the body decodes as a Status with
`status: Failure`, so every failure the API server answers goes through `APIError`.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

from skiff.api.resources import ResourceInfo


def _fmt_value(value: Any) -> str:
    """Render a bad value the way apimachinery's field errors do (strings quoted, numbers bare)."""
    if isinstance(value, str):
        return json.dumps(value)
    if isinstance(value, bool):
        return "true" if value else "false"
    if value is None:
        return "null"
    if isinstance(value, (int, float)):
        return str(value)
    return json.dumps(value, separators=(",", ":"))


@dataclass
class FieldError:
    """One `field.Error`: type is one of Invalid, Required, Forbidden, NotSupported, Duplicate, TooLong,
    TooMany, NotFound; `detail` is the human message after the type's prefix."""

    type: str
    field: str
    value: Any = None
    detail: str = ""
    supported: tuple[str, ...] = ()

    @property
    def reason(self) -> str:
        return {
            "Invalid": "FieldValueInvalid",
            "Required": "FieldValueRequired",
            "Forbidden": "FieldValueForbidden",
            "NotSupported": "FieldValueNotSupported",
            "Duplicate": "FieldValueDuplicate",
            "TooLong": "FieldValueTooLong",
            "TooMany": "FieldValueTooMany",
            "NotFound": "FieldValueNotFound",
        }.get(self.type, "FieldValueInvalid")

    def body(self) -> str:
        """The message without the field path, as it appears in a StatusCause."""
        if self.type == "Required":
            return "Required value" + (f": {self.detail}" if self.detail else "")
        if self.type == "Forbidden":
            return "Forbidden" + (f": {self.detail}" if self.detail else "")
        if self.type == "NotSupported":
            quoted = ", ".join(json.dumps(s) for s in self.supported)
            return f"Unsupported value: {_fmt_value(self.value)}: supported values: {quoted}"
        if self.type == "Duplicate":
            return f"Duplicate value: {_fmt_value(self.value)}"
        if self.type == "NotFound":
            return f"Not found: {_fmt_value(self.value)}"
        if self.type == "TooLong":
            return f"Too long: {self.detail}" if self.detail else "Too long"
        if self.type == "TooMany":
            return f"Too many: {self.detail}" if self.detail else "Too many"
        return f"Invalid value: {_fmt_value(self.value)}" + (f": {self.detail}" if self.detail else "")

    def __str__(self) -> str:
        return f"{self.field}: {self.body()}"


def invalid(field: str, value: Any, detail: str) -> FieldError:
    return FieldError("Invalid", field, value, detail)


def required(field: str, detail: str = "") -> FieldError:
    return FieldError("Required", field, None, detail)


def forbidden(field: str, detail: str) -> FieldError:
    return FieldError("Forbidden", field, None, detail)


def not_supported(field: str, value: Any, supported: list[str] | tuple[str, ...]) -> FieldError:
    return FieldError("NotSupported", field, value, "", tuple(supported))


def duplicate(field: str, value: Any) -> FieldError:
    return FieldError("Duplicate", field, value)


class APIError(Exception):
    """An error answered to the client as a `Status` object."""

    def __init__(self, code: int, reason: str, message: str, details: dict | None = None,
                 headers: dict[str, str] | None = None):
        super().__init__(message)
        self.code = code
        self.reason = reason
        self.message = message
        self.details = details
        self.headers = headers or {}

    def status(self) -> dict:
        body: dict[str, Any] = {
            "kind": "Status",
            "apiVersion": "v1",
            "metadata": {},
            "status": "Failure",
            "message": self.message,
            "reason": self.reason,
            "code": self.code,
        }
        if self.details is not None:
            body["details"] = self.details
        return body


def _details(info: ResourceInfo, name: str) -> dict:
    return {"name": name, "group": info.group, "kind": info.plural}


def not_found(info: ResourceInfo, name: str) -> APIError:
    return APIError(404, "NotFound", f'{info.group_resource} "{name}" not found', _details(info, name))


def already_exists(info: ResourceInfo, name: str) -> APIError:
    return APIError(409, "AlreadyExists", f'{info.group_resource} "{name}" already exists', _details(info, name))


def conflict(info: ResourceInfo, name: str, why: str = "the object has been modified; please apply your "
             "changes to the latest version and try again") -> APIError:
    return APIError(409, "Conflict", f'Operation cannot be fulfilled on {info.group_resource} "{name}": {why}',
                    _details(info, name))


def invalid_object(kind: str, group: str, name: str, errors: list[FieldError]) -> APIError:
    """422 Invalid, as kube-apiserver answers a failed validation."""
    causes = [{"reason": e.reason, "message": e.body(), "field": e.field} for e in errors]
    if len(errors) == 1:
        summary = str(errors[0])
    else:
        summary = "[" + ", ".join(str(e) for e in errors) + "]"
    return APIError(422, "Invalid", f'{kind} "{name}" is invalid: {summary}',
                    {"name": name, "group": group, "kind": kind, "causes": causes})


def bad_request(message: str) -> APIError:
    return APIError(400, "BadRequest", message)


def method_not_allowed(message: str = "the server does not allow this method on the requested resource") -> APIError:
    return APIError(405, "MethodNotAllowed", message)


def gone(message: str) -> APIError:
    return APIError(410, "Expired", message)


def internal(message: str) -> APIError:
    return APIError(500, "InternalError", f"Internal error occurred: {message}")


def unsupported_media_type(content_type: str) -> APIError:
    return APIError(415, "UnsupportedMediaType", f'the body of the request was in an unknown format - '
                    f'accepted media types include: application/json, application/yaml, '
                    f'application/vnd.kubernetes.protobuf (got "{content_type}")')


def unauthorized() -> APIError:
    return APIError(401, "Unauthorized", "Unauthorized")


def too_large() -> APIError:
    return APIError(413, "RequestEntityTooLarge", "Request entity too large: limit is 3145728")
