"""Which IngressClass a new Ingress without a class gets (skiff.apiserver.ingressclass)."""

from __future__ import annotations

from skiff.apiserver.ingressclass import default_class, needs_class


def ic(name: str, created: str, default: bool | str = True) -> dict:
    ann = {"ingressclass.kubernetes.io/is-default-class": default if isinstance(default, str) else str(default).lower()}
    return {"metadata": {"name": name, "creationTimestamp": created, "annotations": ann}}


def test_the_newest_default_class_wins_and_ties_go_to_the_first_name():
    assert default_class([]) is None
    assert default_class([ic("a", "2026-01-01T00:00:00Z", default=False)]) is None
    assert default_class([ic("a", "2026-01-01T00:00:00Z", default="True")]) is None  # only "true" counts
    assert default_class([ic("old", "2026-01-01T00:00:00Z"), ic("new", "2026-02-01T00:00:00Z")]) == "new"
    assert default_class([ic("b", "2026-01-01T00:00:00Z"), ic("a", "2026-01-01T00:00:00Z")]) == "a"


def test_a_class_given_either_way_is_kept():
    assert needs_class({"metadata": {}, "spec": {}})
    assert not needs_class({"metadata": {}, "spec": {"ingressClassName": "other"}})
    assert not needs_class({"metadata": {"annotations": {"kubernetes.io/ingress.class": "nginx"}}, "spec": {}})
