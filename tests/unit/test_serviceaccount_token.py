"""ServiceAccount tokens without a cluster: the signing key, the claims, TokenRequest's checks and the
authenticator, over a real SQLite store (skiff.apiserver.serviceaccounttoken, .authentication)."""

from __future__ import annotations

import base64
import hashlib
import json
import time
from collections.abc import AsyncIterator
from pathlib import Path

import jwt
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec

from skiff.api.errors import APIError
from skiff.api.protobuf import decode
from skiff.api.resources import lookup
from skiff.apiserver import authentication
from skiff.apiserver import serviceaccounttoken as sat
from skiff.apiserver.authentication import ADMIN, Authenticator, service_account_user
from skiff.apiserver.certs import ensure_certificates, ensure_service_account_key
from skiff.apiserver.registry import Registry
from skiff.apiserver.server import _differs, kubernetes_endpoints
from skiff.store import open_store
from tests.unit.test_protobuf import envelope, lfield, object_meta, vfield

ISSUER = "https://kubernetes.default.svc.cluster.local"
AUDS = [ISSUER]
NAMESPACES = lookup("", "v1", "namespaces")


def _signer() -> sat.Signer:
    return sat.Signer(ec.generate_private_key(ec.SECP256R1()), ISSUER)


def _sa(ns: str = "team", name: str = "robot", uid: str = "sa-uid") -> dict:
    return {"metadata": {"namespace": ns, "name": name, "uid": uid}}


# ---- the key ---------------------------------------------------------------------------------
def test_the_key_is_made_once_and_an_old_pki_gets_one(tmp_path: Path):
    pki = tmp_path / "pki"
    ensure_certificates(pki, "c", ["127.0.0.1"], ["localhost"])
    key = (pki / "sa.key").read_bytes()
    assert oct((pki / "sa.key").stat().st_mode & 0o777) == "0o600"
    loaded = serialization.load_pem_private_key(key, None)
    assert isinstance(loaded, ec.EllipticCurvePrivateKey) and loaded.curve.name == "secp256r1"
    ensure_certificates(pki, "c", ["127.0.0.1"], ["localhost"])
    assert (pki / "sa.key").read_bytes() == key
    # A cluster made before ServiceAccount tokens: its CA stays, and it gets a key.
    ca = (pki / "ca.crt").read_bytes()
    (pki / "sa.key").unlink()
    (pki / "sa.pub").unlink()
    ensure_certificates(pki, "c", ["127.0.0.1"], ["localhost"])
    assert (pki / "ca.crt").read_bytes() == ca
    assert (pki / "sa.key").read_bytes() != key
    pub = serialization.load_pem_public_key((pki / "sa.pub").read_bytes())
    assert pub.public_numbers() == serialization.load_pem_private_key(
        (pki / "sa.key").read_bytes(), None).public_key().public_numbers()


def test_signer_loads_the_pki_key_and_names_it_like_kube_apiserver(tmp_path: Path):
    ensure_service_account_key(tmp_path)
    signer = sat.Signer.load(tmp_path, ISSUER)
    der = signer.public_key.public_bytes(serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)
    assert signer.kid == base64.urlsafe_b64encode(hashlib.sha256(der).digest()).rstrip(b"=").decode()
    token = signer.sign({"sub": "x"})
    assert jwt.get_unverified_header(token) == {"alg": "ES256", "kid": signer.kid}
    (key,) = signer.jwks()["keys"]
    assert key["kid"] == signer.kid and key["alg"] == "ES256" and key["crv"] == "P-256"
    # The published key verifies the token, as an external OIDC verifier would use it.
    public = jwt.PyJWK(key).key
    assert jwt.decode(token, public, algorithms=["ES256"]) == {"sub": "x"}
    doc = signer.openid_configuration("https://h:1/openid/v1/jwks")
    assert doc["issuer"] == ISSUER and doc["id_token_signing_alg_values_supported"] == ["ES256"]


# ---- claims and checks --------------------------------------------------------------------------
def test_claims_of_a_pod_bound_token_name_the_pod_and_its_node():
    pod = {"metadata": {"name": "web", "uid": "pod-uid"}}
    node = {"metadata": {"name": "n1", "uid": "node-uid"}}
    c = sat.token_claims(ISSUER, _sa(), ["a", "b"], 3600, 1000, "jti-1", pod=pod, node=node)
    assert c == {"aud": ["a", "b"], "exp": 4600, "iat": 1000, "nbf": 1000, "iss": ISSUER, "jti": "jti-1",
                 "sub": "system:serviceaccount:team:robot",
                 "kubernetes.io": {"namespace": "team", "serviceaccount": {"name": "robot", "uid": "sa-uid"},
                                   "pod": {"name": "web", "uid": "pod-uid"},
                                   "node": {"name": "n1", "uid": "node-uid"}}}
    # A pod whose Node object is gone: the node is named without a uid.
    c = sat.token_claims(ISSUER, _sa(), AUDS, 3600, 0, "j", pod=pod, node={"metadata": {"name": "n1"}},
                         warn_after_seconds=3607)
    assert c["kubernetes.io"]["node"] == {"name": "n1"} and c["kubernetes.io"]["warnafter"] == 3607
    c = sat.token_claims(ISSUER, _sa(), AUDS, 3600, 0, "j", secret={"metadata": {"name": "s", "uid": "s1"}})
    assert c["kubernetes.io"]["secret"] == {"name": "s", "uid": "s1"} and "warnafter" not in c["kubernetes.io"]


def test_expiration_and_bound_kind_checks_use_kube_apiserver_words():
    assert sat.expiration_errors(600) == []
    assert [str(e) for e in sat.expiration_errors(599)] == [
        "spec.expirationSeconds: Invalid value: 599: may not specify a duration less than 10 minutes"]
    assert [str(e) for e in sat.expiration_errors((1 << 32) + 1)] == [
        "spec.expirationSeconds: Invalid value: 4294967297: may not specify a duration larger than 2^32 seconds"]
    assert sat.bound_kind({"apiVersion": "v1", "kind": "Pod"}) == "Pod"
    assert sat.bound_kind({"apiVersion": "v1", "kind": "Node"}) == "Node"
    with pytest.raises(APIError) as e:
        sat.bound_kind({"apiVersion": "apps/v1", "kind": "Deployment"})
    assert (e.value.code, e.value.message) == (400, "cannot bind token to object of type apps/v1, Kind=Deployment")
    with pytest.raises(APIError) as e:
        sat.check_request_identity({"metadata": {"name": "other"}}, "team", "robot")
    assert e.value.code == 422 and e.value.message == (
        'TokenRequest.authentication.k8s.io "robot" is invalid: metadata.name: Invalid value: "other": '
        'must match the service account name if specified')


def test_only_the_kubelet_s_pod_bound_api_tokens_are_extended():
    assert sat.extends(3607, True, AUDS, AUDS)
    assert not sat.extends(3607, False, AUDS, AUDS)
    assert not sat.extends(3600, True, AUDS, AUDS)
    assert not sat.extends(3607, True, ["vault"], AUDS)


def test_verify_rejects_what_kube_apiserver_rejects():
    signer = _signer()
    now = int(time.time())
    good = sat.token_claims(ISSUER, _sa(), AUDS, 3600, now, "j")
    assert signer.verify(signer.sign(good), AUDS)["sub"] == "system:serviceaccount:team:robot"
    bad = {
        "expired": {**good, "exp": now - 120, "iat": now - 4000, "nbf": now - 4000},
        "not yet valid": {**good, "nbf": now + 600},
        "other audience": {**good, "aud": ["vault"]},
        "other issuer": {**good, "iss": "https://elsewhere"},
        "no kubernetes.io claim": {k: v for k, v in good.items() if k != "kubernetes.io"},
    }
    for why, claims in bad.items():
        with pytest.raises(sat.InvalidToken):
            signer.verify(signer.sign(claims), AUDS)
            pytest.fail(why)
    # Within the minute of leeway, an expired token still passes, as with go-jose.
    assert signer.verify(signer.sign({**good, "exp": now - 30}), AUDS)
    with pytest.raises(sat.InvalidToken):  # another cluster's key
        signer.verify(_signer().sign(good), AUDS)
    token = signer.sign(good)
    head, body, sig = token.split(".")
    forged = base64.urlsafe_b64encode(json.dumps({**good, "sub": "system:serviceaccount:kube-system:admin"})
                                      .encode()).rstrip(b"=").decode()
    with pytest.raises(sat.InvalidToken):
        signer.verify(f"{head}.{forged}.{sig}", AUDS)
    unsigned = jwt.encode(good, None, algorithm="none")
    with pytest.raises(sat.InvalidToken):
        signer.verify(unsigned, AUDS)


def test_service_account_user_has_kube_apiserver_groups_and_extras():
    claims = sat.token_claims(ISSUER, _sa(), AUDS, 3600, 0, "abc", pod={"metadata": {"name": "p", "uid": "pu"}},
                              node={"metadata": {"name": "n", "uid": "nu"}})
    user = service_account_user(claims)
    assert user.to_json() == {
        "username": "system:serviceaccount:team:robot", "uid": "sa-uid",
        "groups": ["system:serviceaccounts", "system:serviceaccounts:team", "system:authenticated"],
        "extra": {"authentication.kubernetes.io/pod-name": ["p"], "authentication.kubernetes.io/pod-uid": ["pu"],
                  "authentication.kubernetes.io/node-name": ["n"], "authentication.kubernetes.io/node-uid": ["nu"],
                  "authentication.kubernetes.io/credential-id": ["JTI=abc"]}}
    assert ADMIN.to_json() == {"username": "kubernetes-admin", "groups": ["system:masters", "system:authenticated"]}


def test_kubernetes_service_endpoints_are_what_kube_apiserver_writes():
    ep, sl = kubernetes_endpoints("172.18.0.1", 6443)
    assert ep["metadata"]["labels"] == {"endpointslice.kubernetes.io/skip-mirror": "true"}
    assert ep["subsets"] == [{"addresses": [{"ip": "172.18.0.1"}],
                              "ports": [{"name": "https", "port": 6443, "protocol": "TCP"}]}]
    assert sl["metadata"]["labels"] == {"kubernetes.io/service-name": "kubernetes"}
    assert sl["addressType"] == "IPv4" and sl["ports"] == [{"name": "https", "port": 6443, "protocol": "TCP"}]
    assert sl["endpoints"] == [{"addresses": ["172.18.0.1"], "conditions": {"ready": True}}]
    stored = json.loads(json.dumps(sl))
    stored["metadata"].update(uid="u", resourceVersion="5", labels={**stored["metadata"]["labels"], "x": "y"})
    assert not _differs(stored, sl)
    stored["ports"][0]["port"] = 1
    assert _differs(stored, sl)


def test_kubectl_s_protobuf_token_request_decodes():
    ref = lfield(1, "Pod") + lfield(2, "v1") + lfield(3, "web") + lfield(4, "pod-uid")
    spec = lfield(1, "vault") + lfield(1, ISSUER) + vfield(4, 3600) + lfield(3, ref)
    obj = decode(envelope("authentication.k8s.io/v1", "TokenRequest", lfield(1, object_meta("")) + lfield(2, spec)))
    assert obj["kind"] == "TokenRequest" and obj["spec"] == {
        "audiences": ["vault", ISSUER], "expirationSeconds": 3600,
        "boundObjectRef": {"kind": "Pod", "apiVersion": "v1", "name": "web", "uid": "pod-uid"}}
    review = decode(envelope("authentication.k8s.io/v1", "SelfSubjectReview", lfield(1, object_meta(""))))
    assert review["kind"] == "SelfSubjectReview"


# ---- against a real store -------------------------------------------------------------------------
@pytest.fixture
async def registry(tmp_path: Path) -> AsyncIterator[Registry]:
    store = open_store(str(tmp_path / "state.db"))
    await store.start()
    reg = Registry(store)
    for ns in ("team",):
        await reg.create(NAMESPACES, None, {"metadata": {"name": ns}})
    try:
        yield reg
    finally:
        await store.close()


async def _create(reg: Registry, plural: str, ns: str | None, obj: dict) -> dict:
    return await reg.create(lookup("", "v1", plural), ns, obj)


async def test_token_request_checks_and_binds(registry: Registry):
    signer = _signer()
    rest = sat.TokenRequestREST(registry, signer, AUDS)
    with pytest.raises(APIError) as e:
        await rest.create("team", "robot", {})
    assert (e.value.code, e.value.message) == (404, 'serviceaccounts "robot" not found')
    sa = await _create(registry, "serviceaccounts", "team", {"metadata": {"name": "robot"}})
    out = await rest.create("team", "robot", {"spec": {}})
    assert out["spec"] == {"audiences": AUDS, "expirationSeconds": 3600, "boundObjectRef": None}
    assert out["metadata"]["name"] == "robot" and out["metadata"]["namespace"] == "team"
    claims = signer.verify(out["status"]["token"], AUDS)
    assert claims["exp"] - claims["iat"] == 3600
    assert claims["kubernetes.io"]["serviceaccount"] == {"name": "robot", "uid": sa["metadata"]["uid"]}

    with pytest.raises(APIError) as e:
        await rest.create("team", "robot", {"spec": {"expirationSeconds": 60}})
    assert e.value.code == 422 and e.value.message == (
        'TokenRequest.authentication.k8s.io "" is invalid: spec.expirationSeconds: Invalid value: 60: '
        'may not specify a duration less than 10 minutes')

    pod_ref = {"apiVersion": "v1", "kind": "Pod", "name": "web"}
    with pytest.raises(APIError) as e:
        await rest.create("team", "robot", {"spec": {"boundObjectRef": pod_ref}})
    assert (e.value.code, e.value.message) == (404, 'pods "web" not found')
    await _create(registry, "nodes", None, {"metadata": {"name": "n1"}})
    pod = await _create(registry, "pods", "team", {"metadata": {"name": "web"}, "spec": {
        "serviceAccountName": "robot", "nodeName": "n1", "containers": [{"name": "c", "image": "nginx"}]}})
    other = await _create(registry, "pods", "team", {"metadata": {"name": "other"}, "spec": {
        "serviceAccountName": "default", "containers": [{"name": "c", "image": "nginx"}]}})
    with pytest.raises(APIError) as e:
        await rest.create("team", "robot", {"spec": {"boundObjectRef": {**pod_ref, "name": "other"}}})
    assert (e.value.code, e.value.message) == (
        400, 'cannot bind token for serviceaccount "robot" to pod running with different serviceaccount name.')
    assert other
    with pytest.raises(APIError) as e:
        await rest.create("team", "robot", {"spec": {"boundObjectRef": {**pod_ref, "uid": "stale"}}})
    assert e.value.code == 409 and e.value.message == (
        'Operation cannot be fulfilled on Pod "web": the UID in the bound object reference (stale) does not match '
        'the UID in record. The object might have been deleted and then recreated')

    # The kubelet's request: 3607 s, bound to its pod, for the API server.
    out = await rest.create("team", "robot", {"spec": {"expirationSeconds": 3607, "boundObjectRef": {
        **pod_ref, "uid": pod["metadata"]["uid"]}}})
    claims = signer.verify(out["status"]["token"], AUDS)
    k8s = claims["kubernetes.io"]
    assert claims["exp"] - claims["iat"] == sat.EXTENDED_EXPIRATION_SECONDS
    assert k8s["warnafter"] - claims["iat"] == 3607
    assert k8s["pod"] == {"name": "web", "uid": pod["metadata"]["uid"]} and k8s["node"]["name"] == "n1"
    assert k8s["node"]["uid"]
    # The status says when the kubelet should refresh: the requested end, not the extended one.
    expires = time.mktime(time.strptime(out["status"]["expirationTimestamp"], "%Y-%m-%dT%H:%M:%SZ")) - time.timezone
    assert abs(expires - (claims["iat"] + 3607)) <= 2
    # For another audience, no extension.
    out = await rest.create("team", "robot", {"spec": {"expirationSeconds": 3607, "audiences": ["vault"],
                                                       "boundObjectRef": pod_ref}})
    claims = signer.verify(out["status"]["token"], ["vault"])
    assert claims["exp"] - claims["iat"] == 3607 and "warnafter" not in claims["kubernetes.io"]


async def test_authenticator_follows_deletions(registry: Registry, monkeypatch: pytest.MonkeyPatch):
    signer = _signer()
    rest = sat.TokenRequestREST(registry, signer, AUDS)
    authn = Authenticator("admin-token", registry, signer, AUDS)
    assert await authn.authenticate("admin-token") is ADMIN
    assert await authn.authenticate("nope") is None
    assert await authn.authenticate("a.b.c") is None
    await _create(registry, "serviceaccounts", "team", {"metadata": {"name": "robot"}})
    pod = await _create(registry, "pods", "team", {"metadata": {"name": "web"}, "spec": {
        "serviceAccountName": "robot", "containers": [{"name": "c", "image": "nginx"}]}})
    plain = (await rest.create("team", "robot", {}))["status"]["token"]
    bound = (await rest.create("team", "robot", {"spec": {"boundObjectRef": {
        "apiVersion": "v1", "kind": "Pod", "name": "web"}}}))["status"]["token"]
    vault = (await rest.create("team", "robot", {"spec": {"audiences": ["vault"]}}))["status"]["token"]
    user = await authn.authenticate(bound)
    assert user is not None and user.username == "system:serviceaccount:team:robot"
    assert user.extra[authentication.EXTRA_POD_UID] == [pod["metadata"]["uid"]]
    assert await authn.authenticate(vault) is None  # not for this API server
    assert (await authn.authenticate(vault, ["vault"])) is not None  # TokenReview for vault

    monkeypatch.setattr(authentication, "RECHECK_SECONDS", 0.0)
    await registry.delete(lookup("", "v1", "pods"), "team", "web", {"gracePeriodSeconds": 0})
    assert await authn.authenticate(bound) is None
    assert await authn.authenticate(plain) is not None
    sa_info = lookup("", "v1", "serviceaccounts")
    await registry.delete(sa_info, "team", "robot", {})
    assert await authn.authenticate(plain) is None
    # A new ServiceAccount of the same name is another identity: the old tokens stay refused.
    await _create(registry, "serviceaccounts", "team", {"metadata": {"name": "robot"}})
    assert await authn.authenticate(plain) is None


def test_discovery_lists_the_token_subresource_and_the_authentication_group():
    from skiff.apiserver import discovery

    core = discovery.aggregated(core=True)["items"][0]["versions"][0]["resources"]
    (sa,) = [r for r in core if r["resource"] == "serviceaccounts"]
    assert sa["subresources"] == [{"subresource": "token", "verbs": ["create"], "responseKind": {
        "group": "authentication.k8s.io", "version": "v1", "kind": "TokenRequest"}}]
    groups = {i["metadata"].get("name"): i for i in discovery.aggregated(core=False)["items"]}
    authn = groups["authentication.k8s.io"]["versions"][0]["resources"]
    assert {(r["resource"], tuple(r["verbs"]), r["scope"]) for r in authn} == {
        ("selfsubjectreviews", ("create",), "Cluster"), ("tokenreviews", ("create",), "Cluster")}


async def test_a_secret_bound_token_stops_with_its_secret(registry: Registry, monkeypatch: pytest.MonkeyPatch):
    signer = _signer()
    rest = sat.TokenRequestREST(registry, signer, AUDS)
    authn = Authenticator("admin-token", registry, signer, AUDS)
    await _create(registry, "serviceaccounts", "team", {"metadata": {"name": "robot"}})
    secret = await _create(registry, "secrets", "team", {"metadata": {"name": "s"}})
    out = await rest.create("team", "robot", {"spec": {"boundObjectRef": {"apiVersion": "v1", "kind": "Secret",
                                                                          "name": "s"}}})
    token = out["status"]["token"]
    assert signer.verify(token, AUDS)["kubernetes.io"]["secret"] == {"name": "s", "uid": secret["metadata"]["uid"]}
    assert await authn.authenticate(token) is not None
    # Cached for RECHECK_SECONDS, then looked up again.
    await registry.delete(lookup("", "v1", "secrets"), "team", "s", {})
    monkeypatch.setattr(authentication, "RECHECK_SECONDS", 0.0)
    assert await authn.authenticate(token) is None
