"""ServiceAccount tokens: the JWTs kube-apiserver issues through TokenRequest
(`POST .../serviceaccounts/<name>/token`) and accepts back as bearer tokens.

The pure parts (the claims a token carries, TokenRequest validation, signing and checking a
signature) are functions of their inputs; `TokenRequestREST` adds the store lookups: the
ServiceAccount and the object a token is bound to must exist.
"""

from __future__ import annotations

import base64
import datetime as dt
import hashlib
import time
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import jwt
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec

from skiff.api import errors
from skiff.api.errors import APIError, FieldError
from skiff.api.resources import ResourceInfo, lookup
from skiff.apiserver.certs import SA_KEY

if TYPE_CHECKING:
    from skiff.apiserver.registry import Registry

GROUP = "authentication.k8s.io"
API_VERSION = f"{GROUP}/v1"
# Only for field checks of request bodies: TokenRequest is a subresource's kind, never stored.
TOKEN_REQUEST = ResourceInfo(GROUP, "v1", "TokenRequest", "tokenrequests", "tokenrequest", True)
SERVICE_ACCOUNTS = lookup("", "v1", "serviceaccounts")
PODS = lookup("", "v1", "pods")
SECRETS = lookup("", "v1", "secrets")
NODES = lookup("", "v1", "nodes")

DEFAULT_EXPIRATION_SECONDS = 3600
MIN_EXPIRATION_SECONDS = 600
MAX_EXPIRATION_SECONDS = 1 << 32
# The kubelet asks for 3607 s: kube-apiserver (service-account-extend-token-expiration, on by default)
# then signs a pod-bound token for a year and records the requested end as `warnafter`, so that a
# client that fails to reload its token keeps working while the cluster can see it is stale.
WARN_ONLY_EXPIRATION_SECONDS = 3607
EXTENDED_EXPIRATION_SECONDS = 365 * 24 * 3600
# go-jose's default clock skew allowance, which kube-apiserver's checks of exp, nbf and iat use, and
# how long an object may have been marked for deletion before its tokens stop working.
LEEWAY_SECONDS = 60
ALGORITHM = "ES256"


def issuer_url(cluster_domain: str) -> str:
    """The `iss` of every token, as kind and kubeadm configure --service-account-issuer."""
    return f"https://kubernetes.default.svc.{cluster_domain}"


def username(namespace: str, name: str) -> str:
    return f"system:serviceaccount:{namespace}:{name}"


def _b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def key_id(public_key: ec.EllipticCurvePublicKey) -> str:
    """The `kid` header: the SHA-256 of the DER public key, base64url, as kube-apiserver derives it,
    so verifiers can pick the key from /openid/v1/jwks."""
    der = public_key.public_bytes(serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)
    return _b64url(hashlib.sha256(der).digest())


class InvalidToken(Exception):
    """A token this issuer did not sign, or one that is expired, not yet valid or for another audience."""


@dataclass
class Signer:
    """Signs and checks ServiceAccount JWTs with the cluster's P-256 key (ES256)."""

    key: ec.EllipticCurvePrivateKey
    issuer: str

    def __post_init__(self) -> None:
        self.public_key = self.key.public_key()
        self.kid = key_id(self.public_key)

    @classmethod
    def load(cls, pki_dir: Path, issuer: str) -> Signer:
        key = serialization.load_pem_private_key((pki_dir / SA_KEY).read_bytes(), password=None)
        if not isinstance(key, ec.EllipticCurvePrivateKey):
            raise ValueError(f"{pki_dir / SA_KEY}: not an EC private key")
        return cls(key, issuer)

    def sign(self, claims: dict) -> str:
        # go-jose writes no "typ" header; PyJWT drops it when given None.
        return jwt.encode(claims, self.key, algorithm=ALGORITHM, headers={"kid": self.kid, "typ": None})

    def verify(self, token: str, audiences: list[str]) -> dict:
        """The claims of a token this issuer signed, valid now (with the leeway) for one of `audiences`.
        Raises InvalidToken otherwise."""
        try:
            header = jwt.get_unverified_header(token)
        except jwt.PyJWTError as e:
            raise InvalidToken(str(e)) from None
        if header.get("alg") != ALGORITHM:
            raise InvalidToken("unexpected signing algorithm")
        try:
            claims = jwt.decode(token, self.public_key, algorithms=[ALGORITHM], issuer=self.issuer,
                                audience=audiences, leeway=LEEWAY_SECONDS,
                                options={"require": ["exp", "iat", "nbf", "sub", "iss", "aud"]})
        except jwt.PyJWTError as e:
            raise InvalidToken(str(e)) from None
        if not isinstance(claims.get("kubernetes.io"), dict):
            raise InvalidToken("not a ServiceAccount token")
        return claims

    def jwks(self) -> dict:
        """The JSON Web Key Set /openid/v1/jwks serves: the public key that verifies every token."""
        numbers = self.public_key.public_numbers()
        return {"keys": [{"use": "sig", "kty": "EC", "kid": self.kid, "crv": "P-256", "alg": ALGORITHM,
                          "x": _b64url(numbers.x.to_bytes(32, "big")),
                          "y": _b64url(numbers.y.to_bytes(32, "big"))}]}

    def openid_configuration(self, jwks_uri: str) -> dict:
        """/.well-known/openid-configuration (ServiceAccountIssuerDiscovery)."""
        return {"issuer": self.issuer, "jwks_uri": jwks_uri, "response_types_supported": ["id_token"],
                "subject_types_supported": ["public"], "id_token_signing_alg_values_supported": [ALGORITHM]}


def _ref(obj: dict) -> dict:
    md = obj["metadata"]
    return {"name": md["name"], "uid": md.get("uid", "")}


def token_claims(issuer: str, sa: dict, audiences: list[str], expiration_seconds: int, now: int, jti: str,
                 pod: dict | None = None, secret: dict | None = None, node: dict | None = None,
                 warn_after_seconds: int = 0) -> dict:
    """The claims of a token for ServiceAccount `sa`, bound to `pod` (with the `node` it runs on),
    `secret` or `node` alone. `node` may be a name-only stand-in for a pod's missing Node."""
    md = sa["metadata"]
    k8s: dict[str, Any] = {"namespace": md["namespace"], "serviceaccount": _ref(sa)}
    if pod is not None:
        k8s["pod"] = _ref(pod)
        if node is not None:
            k8s["node"] = {k: v for k, v in _ref(node).items() if v}
    elif secret is not None:
        k8s["secret"] = _ref(secret)
    elif node is not None:
        k8s["node"] = _ref(node)
    if warn_after_seconds:
        k8s["warnafter"] = now + warn_after_seconds
    return {"aud": list(audiences), "exp": now + expiration_seconds, "iat": now, "iss": issuer, "jti": jti,
            "kubernetes.io": k8s, "nbf": now, "sub": username(md["namespace"], md["name"])}


def _invalid(name: str, errs: list[FieldError]) -> APIError:
    """422 as kube-apiserver words it for this kind: `TokenRequest.authentication.k8s.io "x" is invalid`."""
    e = errors.invalid_object("TokenRequest", GROUP, name, errs)
    e.message = f"TokenRequest.{GROUP}" + e.message[len("TokenRequest"):]
    return e


def check_request_identity(req: dict, namespace: str, name: str) -> None:
    """A name or namespace in the body must be the URL's."""
    md = req.get("metadata") or {}
    if md.get("name") and md["name"] != name:
        raise _invalid(name, [errors.invalid("metadata.name", md["name"],
                                             "must match the service account name if specified")])
    if md.get("namespace") and md["namespace"] != namespace:
        raise _invalid(name, [errors.invalid("metadata.namespace", md["namespace"],
                                             "must match the service account namespace if specified")])


def expiration_errors(seconds: Any) -> list[FieldError]:
    if not isinstance(seconds, int) or isinstance(seconds, bool):
        return [errors.invalid("spec.expirationSeconds", seconds, "must be an integer")]
    out = []
    if seconds < MIN_EXPIRATION_SECONDS:
        out.append(errors.invalid("spec.expirationSeconds", seconds, "may not specify a duration less than 10 minutes"))
    if seconds > MAX_EXPIRATION_SECONDS:
        out.append(errors.invalid("spec.expirationSeconds", seconds,
                                  "may not specify a duration larger than 2^32 seconds"))
    return out


def bound_kind(ref: dict) -> str:
    """`Pod`, `Secret` or `Node` for a boundObjectRef kube-apiserver accepts; a 400 otherwise."""
    api_version, kind = ref.get("apiVersion") or "", ref.get("kind") or ""
    group, _, version = api_version.rpartition("/")
    if group == "" and kind in ("Pod", "Secret", "Node"):
        return kind
    raise errors.bad_request(f"cannot bind token to object of type {group}/{version}, Kind={kind}")


def extends(expiration_seconds: int, bound_to_pod: bool, audiences: list[str], api_audiences: list[str]) -> bool:
    """Whether kube-apiserver would extend this request: the kubelet's 3607 s, for a pod, for the API."""
    return (bound_to_pod and expiration_seconds == WARN_ONLY_EXPIRATION_SECONDS
            and set(audiences) <= set(api_audiences))


def _rfc3339(ts: float) -> str:
    return dt.datetime.fromtimestamp(int(ts), dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


class TokenRequestREST:
    """kube-apiserver's serviceaccounts/token subresource."""

    def __init__(self, registry: Registry, signer: Signer, api_audiences: list[str]) -> None:
        self.registry = registry
        self.signer = signer
        self.api_audiences = api_audiences

    async def create(self, namespace: str, name: str, req: dict) -> dict:
        """The TokenRequest answered, with status.token; APIError with kube-apiserver's answers."""
        check_request_identity(req, namespace, name)
        sa = await self.registry.get(SERVICE_ACCOUNTS, namespace, name)
        spec = dict(req.get("spec") or {})
        audiences = list(spec.get("audiences") or self.api_audiences)
        seconds = spec.get("expirationSeconds")
        if seconds is None:
            seconds = DEFAULT_EXPIRATION_SECONDS
        now = time.time()
        errs = expiration_errors(seconds)
        if errs:
            raise _invalid("", errs)
        pod = secret = node = None
        ref = spec.get("boundObjectRef")
        if ref:
            kind = bound_kind(ref)
            ref_name = ref.get("name") or ""
            if kind == "Pod":
                pod = await self.registry.get(PODS, namespace, ref_name)
                if (pod.get("spec") or {}).get("serviceAccountName") != name:
                    raise errors.bad_request(f'cannot bind token for serviceaccount "{name}" to pod running with '
                                             f'different serviceaccount name.')
                bound = pod
                node_name = (pod.get("spec") or {}).get("nodeName")
                if node_name:
                    try:
                        node = await self.registry.get(NODES, None, node_name)
                    except APIError as e:
                        if e.code != 404:
                            raise
                        # kube-apiserver still names the node, without a uid, when its object is gone.
                        node = {"metadata": {"name": node_name}}
            elif kind == "Secret":
                bound = secret = await self.registry.get(SECRETS, namespace, ref_name)
            else:
                bound = node = await self.registry.get(NODES, None, ref_name)
            if ref.get("uid") and ref["uid"] != bound["metadata"].get("uid"):
                raise APIError(409, "Conflict",
                               f'Operation cannot be fulfilled on {kind} "{ref_name}": the UID in the bound object '
                               f'reference ({ref["uid"]}) does not match the UID in record. The object might have '
                               f'been deleted and then recreated', {"name": ref_name, "group": "", "kind": kind})
        lifetime, warn_after = seconds, 0
        if extends(seconds, pod is not None, audiences, self.api_audiences):
            lifetime, warn_after = EXTENDED_EXPIRATION_SECONDS, seconds
        claims = token_claims(self.signer.issuer, sa, audiences, lifetime, int(now), str(uuid.uuid4()), pod=pod, secret=secret,
                              node=node, warn_after_seconds=warn_after)
        token = self.signer.sign(claims)
        md = dict(req.get("metadata") or {})
        md.update(name=name, namespace=namespace, creationTimestamp=_rfc3339(now))
        out_spec = {"audiences": audiences, "expirationSeconds": seconds, "boundObjectRef": ref or None}
        return {"kind": "TokenRequest", "apiVersion": API_VERSION, "metadata": md, "spec": out_spec,
                # The requested end, not the extended one: the kubelet refreshes on this schedule.
                "status": {"token": token, "expirationTimestamp": _rfc3339(now + seconds)}}
