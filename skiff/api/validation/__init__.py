"""Request-body validation that does not depend on the kind: structure (unknown fields, wrong types)
against the official schema, and ObjectMeta. Kind-specific rules live in `service.py` and friends."""

from skiff.api.validation.meta import (
    NameValidator,
    is_dns1035_label,
    is_dns1123_label,
    is_dns1123_subdomain,
    is_qualified_name,
    is_valid_label_value,
    mask_trailing_dash,
    validate_annotations,
    validate_labels,
    validate_object_meta,
    validate_object_meta_update,
)
from skiff.api.validation.structure import (
    decode_error,
    duplicate_field_warning,
    go_time_parse_error,
    quantity_error,
    strict_decoding_error,
    type_errors,
    unknown_field_warning,
    unknown_fields,
)

__all__ = [
    "NameValidator",
    "decode_error",
    "duplicate_field_warning",
    "go_time_parse_error",
    "is_dns1035_label",
    "is_dns1123_label",
    "is_dns1123_subdomain",
    "is_qualified_name",
    "is_valid_label_value",
    "mask_trailing_dash",
    "quantity_error",
    "strict_decoding_error",
    "type_errors",
    "unknown_field_warning",
    "unknown_fields",
    "validate_annotations",
    "validate_labels",
    "validate_object_meta",
    "validate_object_meta_update",
]
