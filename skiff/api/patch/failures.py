"""The Status errors kube-apiserver answers for patches that cannot be applied.

The patch handler maps the patch libraries' errors in three ways: malformed patches are 400 BadRequest
with the library's message; json patch application failures and a few strategic merge patch errors
become a generic 422 whose message hides the cause; any other strategic merge patch error is not a
Status at all, so it reaches the client as a 500 with an empty reason and the Go error text. Messages
that print patch values use Go's `%v` formatting, reproduced by `go_value`.
"""

from __future__ import annotations

from typing import Any

from skiff.api.errors import APIError, bad_request

GENERIC_INVALID = "the server rejected our request due to an error in our request"


def unprocessable() -> APIError:
    """`NewGenericServerResponse(422, ...)`: the underlying reason is deliberately not in the message."""
    return APIError(422, "Invalid", GENERIC_INVALID, {})


def unexpected(message: str) -> APIError:
    """A plain Go error returned by the patch code: 500 with an empty (Unknown) reason."""
    return APIError(500, "", message)


def malformed(message: str) -> APIError:
    return bad_request(message)


def go_value(value: Any) -> str:
    """Go's `fmt` `%v` of a decoded JSON value (maps print with sorted keys)."""
    if value is None:
        return "<nil>"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, float):
        if value.is_integer() and abs(value) < 1e21:
            return str(int(value))
        return repr(value)
    if isinstance(value, dict):
        return "map[" + " ".join(f"{k}:{go_value(value[k])}" for k in sorted(value)) + "]"
    if isinstance(value, list):
        return "[" + " ".join(go_value(v) for v in value) + "]"
    return str(value)


def go_type(value: Any) -> str:
    """The Go type a decoded JSON value has (`reflect.TypeOf`), ints preserved as the apiserver decodes them."""
    if value is None:
        return "<nil>"
    if isinstance(value, bool):
        return "bool"
    if isinstance(value, int):
        return "int64"
    if isinstance(value, float):
        return "float64"
    if isinstance(value, str):
        return "string"
    if isinstance(value, dict):
        return "map[string]interface {}"
    if isinstance(value, list):
        return "[]interface {}"
    return type(value).__name__


def go_equal(a: Any, b: Any) -> bool:
    """`==` on Go interface values: equal only when the dynamic types are equal too."""
    return go_type(a) == go_type(b) and a == b
