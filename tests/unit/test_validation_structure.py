"""Structural validation (unknown fields, type errors) and ObjectMeta validation messages."""

from __future__ import annotations

import pytest

from skiff.api.errors import invalid_object
from skiff.api.validation import (
    go_time_parse_error,
    is_dns1035_label,
    is_dns1123_label,
    is_dns1123_subdomain,
    is_qualified_name,
    quantity_error,
    strict_decoding_error,
    type_errors,
    unknown_field_warning,
    unknown_fields,
    validate_object_meta,
    validate_object_meta_update,
)


def _svc(spec: dict, **meta) -> dict:
    return {"apiVersion": "v1", "kind": "Service", "metadata": {"name": "web", **meta}, "spec": spec}


# --- unknown fields --------------------------------------------------------------------------


def test_valid_objects_have_no_unknown_fields():
    svc = _svc({"type": "NodePort", "selector": {"app": "web", "any/key": "x"},
                "ports": [{"name": "http", "port": 80, "targetPort": "http", "protocol": "TCP"}]},
               labels={"app": "web"}, annotations={"a": "b"}, creationTimestamp=None)
    assert unknown_fields(svc, "", "v1", "Service") == []
    dep = {"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": "web"},
           "spec": {"replicas": 2, "selector": {"matchLabels": {"app": "web"}},
                    "template": {"metadata": {"labels": {"app": "web"}},
                                 "spec": {"containers": [{"name": "c", "image": "nginx",
                                                          "resources": {"limits": {"cpu": "500m"}},
                                                          "env": [{"name": "A", "value": "1"}]}]}}}}
    assert unknown_fields(dep, "apps", "v1", "Deployment") == []
    cm = {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "c"}, "data": {"anything": "x"}}
    assert unknown_fields(cm, "", "v1", "ConfigMap") == []


def test_unknown_fields_are_reported_with_apiserver_paths_in_document_order():
    svc = _svc({"foo": 1, "ports": [{"port": 80}, {"port": 81, "bogus": True}], "bar": {"x": 1}},
               labelz={"a": "b"})
    svc["extra"] = 1
    assert unknown_fields(svc, "", "v1", "Service") == [
        "metadata.labelz", "spec.foo", "spec.ports[1].bogus", "spec.bar", "extra"]


def test_unknown_fields_in_nested_lists_and_opaque_fields():
    dep = {"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {
        "name": "web", "managedFields": [{"manager": "m", "fieldsV1": {"f:spec": {"f:anything": {}}}}]},
        "spec": {"template": {"spec": {"containers": [{"name": "c", "imagee": "nginx",
                                                       "ports": [{"containerPort": 80, "hostname": "x"}]}]}}}}
    assert unknown_fields(dep, "apps", "v1", "Deployment") == [
        "spec.template.spec.containers[0].imagee", "spec.template.spec.containers[0].ports[0].hostname"]


def test_unknown_kind_has_no_schema_to_check():
    assert unknown_fields({"spec": {"foo": 1}}, "example.com", "v1", "Widget") == []
    assert type_errors({"spec": {"foo": 1}}, "example.com", "v1", "Widget") is None


def test_strict_and_warning_messages():
    assert strict_decoding_error("Service", "v1", ["spec.foo", "spec.bar"]) == (
        'Service in version "v1" cannot be handled as a Service: strict decoding error: '
        'unknown field "spec.foo", unknown field "spec.bar"')
    assert unknown_field_warning("spec.ports[0].bogus") == 'unknown field "spec.ports[0].bogus"'


# --- type errors ------------------------------------------------------------------------------

_PREFIX = 'Service in version "v1" cannot be handled as a Service: '


@pytest.mark.parametrize("spec, detail", [
    ({"ports": [{"port": "80"}]},
     "json: cannot unmarshal string into Go struct field ServicePort.spec.ports.port of type int32"),
    ({"ports": [{"port": 80.5}]},
     "json: cannot unmarshal number 80.5 into Go struct field ServicePort.spec.ports.port of type int32"),
    ({"ports": [{"port": 2**31}]},
     "json: cannot unmarshal number 2147483648 into Go struct field ServicePort.spec.ports.port of type int32"),
    ({"ports": [{"port": 80, "targetPort": True}]},
     "json: cannot unmarshal bool into Go struct field ServicePort.spec.ports.targetPort of type int32"),
    ({"ports": "80"},
     "json: cannot unmarshal string into Go struct field ServiceSpec.spec.ports of type []v1.ServicePort"),
    ({"ports": [{"port": 80, "protocol": 6}]},
     "json: cannot unmarshal number into Go struct field ServicePort.spec.ports.protocol of type v1.Protocol"),
    ({"selector": ["app"]},
     "json: cannot unmarshal array into Go struct field ServiceSpec.spec.selector of type map[string]string"),
    ({"selector": {"app": 1}},
     "json: cannot unmarshal number into Go struct field ServiceSpec.spec.selector of type string"),
    ({"publishNotReadyAddresses": "yes"},
     "json: cannot unmarshal string into Go struct field ServiceSpec.spec.publishNotReadyAddresses of type bool"),
])
def test_type_errors_read_like_go_json(spec, detail):
    assert type_errors(_svc(spec), "", "v1", "Service") == _PREFIX + detail


def test_type_error_on_a_whole_struct_and_in_metadata():
    assert type_errors({"spec": "x"}, "", "v1", "Service") == (
        _PREFIX + "json: cannot unmarshal string into Go struct field Service.spec of type v1.ServiceSpec")
    assert type_errors(_svc({}, labels={"a": 1}), "", "v1", "Service") == (
        _PREFIX + "json: cannot unmarshal number into Go struct field ObjectMeta.metadata.labels of type string")


def test_first_type_error_wins_but_custom_decoders_abort():
    both = _svc({"ports": [{"port": "80"}], "selector": 5})
    assert "spec.ports.port" in type_errors(both, "", "v1", "Service")
    # IntOrString's own decoder returns its error at once, replacing an earlier saved one.
    aborted = _svc({"ports": [{"port": "80", "targetPort": 1.5}]})
    assert type_errors(aborted, "", "v1", "Service") == (
        _PREFIX + "json: cannot unmarshal number 1.5 into Go struct field ServicePort.spec.ports.targetPort "
                  "of type int32")


def test_int_or_string_null_and_valid_values_pass():
    for target in (8080, "http", None):
        assert type_errors(_svc({"ports": [{"port": 80, "targetPort": target}]}), "", "v1", "Service") is None
    assert type_errors(_svc({"clusterIP": None}, creationTimestamp=None), "", "v1", "Service") is None


def _dep_limits(limits) -> dict:
    return {"spec": {"replicas": 1, "template": {"spec": {"containers": [
        {"name": "c", "image": "x", "resources": {"limits": limits}}]}}}}


def test_quantities():
    assert type_errors(_dep_limits({"cpu": "500m", "memory": "128Mi", "x": 2, "y": "1e3"}),
                       "apps", "v1", "Deployment") is None
    err = type_errors(_dep_limits({"cpu": "lots"}), "apps", "v1", "Deployment")
    assert err == ('Deployment in version "v1" cannot be handled as a Deployment: quantities must match the '
                   "regular expression '^([+-]?[0-9.]+)([eEinumkKMGTP]*[-+]?[0-9]*)$'")
    assert quantity_error("1Gi5") == "unable to parse quantity's suffix"
    assert quantity_error("true") is not None
    assert type_errors(_dep_limits("x"), "apps", "v1", "Deployment").endswith(
        "Go struct field ResourceRequirements.spec.template.spec.containers.resources.limits of type "
        "v1.ResourceList")


def test_bytes_and_times():
    secret = {"data": {"a": "YWJj", "b": "not base64!"}}
    assert type_errors(secret, "", "v1", "Secret") == (
        'Secret in version "v1" cannot be handled as a Secret: illegal base64 data at input byte 3')
    assert type_errors({"data": {"a": 1}}, "", "v1", "Secret").endswith(
        "json: cannot unmarshal number into Go struct field Secret.data of type []uint8")
    assert go_time_parse_error("2024-01-02T03:04:05Z") is None
    assert go_time_parse_error("2024-01-02T03:04:05.123+02:00") is None
    assert go_time_parse_error("yesterday") == (
        'parsing time "yesterday" as "2006-01-02T15:04:05Z07:00": cannot parse "yesterday" as "2006"')
    assert go_time_parse_error("2024-13-01T00:00:00Z") == 'parsing time "2024-13-01T00:00:00Z": month out of range'
    assert go_time_parse_error("2024-02-30T00:00:00Z") == 'parsing time "2024-02-30T00:00:00Z": day out of range'
    assert type_errors(_svc({}, creationTimestamp=5), "", "v1", "Service") == (
        _PREFIX + "json: cannot unmarshal number into Go struct field ObjectMeta.metadata.creationTimestamp "
                  "of type string")


# --- ObjectMeta -----------------------------------------------------------------------------------


def test_name_validators_use_apimachinery_messages():
    assert is_dns1123_subdomain("web.example") == []
    assert is_dns1123_subdomain("Web") == [
        "a lowercase RFC 1123 subdomain must consist of lower case alphanumeric characters, '-' or '.', and must "
        "start and end with an alphanumeric character (e.g. 'example.com', regex used for validation is "
        "'[a-z0-9]([-a-z0-9]*[a-z0-9])?(\\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*')"]
    assert is_dns1123_label("a.b") == ["must not contain dots"]
    assert is_dns1123_label("x" * 64) == ["must be no more than 63 characters"]
    assert is_dns1035_label("1web") == [
        "a DNS-1035 label must consist of lower case alphanumeric characters or '-', start with an alphabetic "
        "character, and end with an alphanumeric character (e.g. 'my-name',  or 'abc-123', regex used for "
        "validation is '[a-z]([-a-z0-9]*[a-z0-9])?')"]
    assert is_qualified_name("example.com/app") == []
    assert is_qualified_name("/app") == ["prefix part must be non-empty"]


def test_invalid_service_name_and_ports_read_like_kubectl_shows_them():
    errs = validate_object_meta({"metadata": {"name": "Bad_Svc", "namespace": "default"}}, True, is_dns1035_label)
    assert [str(e) for e in errs] == [
        "metadata.name: Invalid value: \"Bad_Svc\": a DNS-1035 label must consist of lower case alphanumeric "
        "characters or '-', start with an alphabetic character, and end with an alphanumeric character "
        "(e.g. 'my-name',  or 'abc-123', regex used for validation is '[a-z]([-a-z0-9]*[a-z0-9])?')"]
    status = invalid_object("Service", "", "Bad_Svc", errs).status()
    assert status["details"]["causes"][0]["field"] == "metadata.name"


def test_name_namespace_required_and_forbidden():
    errs = validate_object_meta({"metadata": {}}, True, is_dns1123_subdomain)
    assert [str(e) for e in errs] == ["metadata.name: Required value: name or generateName is required",
                                      "metadata.namespace: Required value"]
    errs = validate_object_meta({"metadata": {"name": "n1", "namespace": "default"}}, False, is_dns1123_label)
    assert [str(e) for e in errs] == ["metadata.namespace: Forbidden: not allowed on this type"]
    errs = validate_object_meta({"metadata": {"name": "x", "namespace": "Bad.NS"}}, True, is_dns1123_subdomain)
    assert errs[0].field == "metadata.namespace"


def test_generate_name_allows_trailing_dash():
    meta = {"metadata": {"generateName": "web-", "name": "web-x7k2p", "namespace": "default"}}
    assert validate_object_meta(meta, True, is_dns1123_subdomain) == []
    meta["metadata"]["generateName"] = "Web-"
    assert validate_object_meta(meta, True, is_dns1123_subdomain)[0].field == "metadata.generateName"


def test_labels_and_annotations():
    errs = validate_object_meta({"metadata": {"name": "x", "namespace": "d", "labels": {
        "app": "web", "bad key": "ok", "k": "bad value", "example.com/x": "y" * 64}}}, True, is_dns1123_subdomain)
    assert [(e.field, e.value) for e in errs] == [
        ("metadata.labels", "bad key"), ("metadata.labels", "bad value"), ("metadata.labels", "y" * 64)]
    assert errs[0].body().startswith('Invalid value: "bad key": name part must consist of alphanumeric')
    assert errs[2].detail == "must be no more than 63 characters"
    big = {"metadata": {"name": "x", "namespace": "d", "annotations": {"a": "v" * (256 * 1024)}}}
    errs = validate_object_meta(big, True, is_dns1123_subdomain)
    assert [str(e) for e in errs] == ["metadata.annotations: Too long: may not be more than 262144 bytes"]
    ok = {"metadata": {"name": "x", "namespace": "d", "annotations": {"Example.COM/Thing": "anything at all"}}}
    assert validate_object_meta(ok, True, is_dns1123_subdomain) == []


def test_owner_references_and_finalizers():
    meta = {"metadata": {"name": "x", "namespace": "d", "finalizers": ["orphan", "foregroundDeletion", "a b"],
                         "ownerReferences": [{"apiVersion": "apps/v1", "kind": "ReplicaSet", "name": "rs",
                                              "uid": ""}]}}
    errs = [str(e) for e in validate_object_meta(meta, True, is_dns1123_subdomain)]
    assert 'metadata.ownerReferences.uid: Invalid value: "": uid must not be empty' in errs
    assert any(e.startswith('metadata.finalizers: Invalid value: "a b": name part') for e in errs)
    assert any(e.endswith("finalizer orphan and foregroundDeletion cannot be both set") for e in errs)


def test_update_keeps_identity_immutable():
    old = {"metadata": {"name": "a", "namespace": "d", "uid": "u1", "resourceVersion": "5"}}
    new = {"metadata": {"name": "b", "namespace": "d", "uid": "u1"}}
    assert [str(e) for e in validate_object_meta_update(new, old)] == [
        'metadata.resourceVersion: Invalid value: "": must be specified for an update',
        'metadata.name: Invalid value: "b": field is immutable']
