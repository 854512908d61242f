"""Every PATCH flavour kube-apiserver accepts, as pure functions over plain JSON dicts.

- `application/json-patch+json`: `apply_json_patch(obj, ops)`
- `application/merge-patch+json`: `apply_merge_patch(obj, patch)`
- `application/strategic-merge-patch+json`: `apply_strategic_merge_patch(obj, patch, group, version, kind)`
- `application/apply-patch+yaml`: server-side apply lives in `skiff.api.managedfields`.

Failures raise `skiff.api.errors.APIError` carrying the Status kube-apiserver would answer.
"""

from skiff.api.patch.json_patch import apply_json_patch
from skiff.api.patch.merge_patch import apply_merge_patch
from skiff.api.patch.strategic import apply_strategic_merge_patch

__all__ = ["apply_json_patch", "apply_merge_patch", "apply_strategic_merge_patch"]
