"""RFC 6902 JSON patch (`application/json-patch+json`), with kube-apiserver's error answers.

kube-apiserver decodes the operations first (a body that is not a list of objects is a 400), refuses
more than 10000 operations (413), and turns every failure while applying (a failed `test`, a missing
path, an unknown op) into a 422 whose message is the generic "the server rejected our request due to
an error in our request": kubectl then prints `The request is invalid: ...`.
"""

from __future__ import annotations

import copy

import jsonpatch
import jsonpointer

from skiff.api.errors import APIError
from skiff.api.patch.failures import go_type, malformed, unprocessable

MAX_OPERATIONS = 10000

_GO_PATCH_TYPE = "jsonpatch.Patch"
_GO_OP_TYPE = "jsonpatch.Operation"


def _decode_error(value: object, into: str) -> APIError:
    kind = {"map[string]interface {}": "object", "[]interface {}": "array", "int64": "number",
            "float64": "number", "<nil>": "null"}.get(go_type(value), go_type(value))
    return malformed(f"json: cannot unmarshal {kind} into Go value of type {into}")


def apply_json_patch(obj: dict, ops: list) -> dict:
    """Apply RFC 6902 operations to a copy of `obj`; `obj` is left untouched."""
    if ops is None:
        ops = []
    if not isinstance(ops, list):
        raise _decode_error(ops, _GO_PATCH_TYPE)
    for op in ops:
        if op is not None and not isinstance(op, dict):
            raise _decode_error(op, _GO_OP_TYPE)
    if len(ops) > MAX_OPERATIONS:
        raise APIError(413, "RequestEntityTooLarge", "Request entity too large: The allowed maximum operations "
                       f"in a JSON patch is {MAX_OPERATIONS}, got {len(ops)}")
    doc = copy.deepcopy(obj)
    for op in ops:
        # A null element decodes to an operation without fields; evanphx/json-patch rejects its "unknown" kind.
        if op is None or not isinstance(op.get("op"), str) or not isinstance(op.get("path"), str):
            raise unprocessable()
        try:
            doc = jsonpatch.JsonPatch([op]).apply(doc, in_place=True)
        except (jsonpatch.JsonPatchException, jsonpointer.JsonPointerException, KeyError, IndexError,
                TypeError, ValueError) as exc:
            raise unprocessable() from exc
    if not isinstance(doc, dict):
        raise unprocessable()
    return doc
