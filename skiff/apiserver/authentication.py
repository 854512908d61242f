"""Who a request comes from: the cluster's administrator token (the kubeconfig's), or a ServiceAccount
token this API server issued, as kube-apiserver's token authenticators decide it.

Authorization stays "everything allowed" (Skiff has no RBAC); who the user is matters for
`kubectl auth whoami` (SelfSubjectReview), TokenReview, and for refusing tokens whose
ServiceAccount or bound object is gone.
"""

from __future__ import annotations

import datetime as dt
import hmac
import logging
import time
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from skiff.api.errors import APIError
from skiff.apiserver import serviceaccounttoken as sat
from skiff.apiserver.serviceaccounttoken import InvalidToken, Signer

if TYPE_CHECKING:
    from skiff.apiserver.registry import Registry

log = logging.getLogger("skiff.apiserver.authentication")

AUTHENTICATED = "system:authenticated"
SERVICE_ACCOUNTS_GROUP = "system:serviceaccounts"
EXTRA_POD_NAME = "authentication.kubernetes.io/pod-name"
EXTRA_POD_UID = "authentication.kubernetes.io/pod-uid"
EXTRA_NODE_NAME = "authentication.kubernetes.io/node-name"
EXTRA_NODE_UID = "authentication.kubernetes.io/node-uid"
EXTRA_CREDENTIAL_ID = "authentication.kubernetes.io/credential-id"

# A verified token is trusted this long before its ServiceAccount and bound object are looked up
# again: kube-apiserver caches successful authentications for 10 s; shorter here, so that deleting a
# pod or ServiceAccount stops its tokens within a couple of seconds.
RECHECK_SECONDS = 2.0
_CACHE_SIZE = 4096


@dataclass(frozen=True)
class UserInfo:
    username: str
    uid: str = ""
    groups: tuple[str, ...] = ()
    extra: dict[str, list[str]] = field(default_factory=dict)

    def to_json(self) -> dict:
        """authentication.k8s.io/v1 UserInfo, with Go's omitempty."""
        out: dict = {"username": self.username}
        if self.uid:
            out["uid"] = self.uid
        if self.groups:
            out["groups"] = list(self.groups)
        if self.extra:
            out["extra"] = {k: list(v) for k, v in self.extra.items()}
        return out


# What kind's kubeconfig user is called. The group is system:masters because that is what the token
# can do (Skiff authorizes everything); kubeadm >= 1.29 names its admin's group kubeadm:cluster-admins
# and binds it to cluster-admin, which Skiff, without RBAC, has no use for.
ADMIN = UserInfo("kubernetes-admin", groups=("system:masters", AUTHENTICATED))


def service_account_user(claims: dict) -> UserInfo:
    """The user a verified ServiceAccount token stands for, extras as kube-apiserver sets them."""
    k8s = claims["kubernetes.io"]
    ns, sa = k8s["namespace"], k8s["serviceaccount"]
    extra: dict[str, list[str]] = {}
    pod, node = k8s.get("pod"), k8s.get("node")
    if pod:
        extra[EXTRA_POD_NAME] = [pod["name"]]
        extra[EXTRA_POD_UID] = [pod["uid"]]
    if node:
        if node.get("name"):
            extra[EXTRA_NODE_NAME] = [node["name"]]
        if node.get("uid"):
            extra[EXTRA_NODE_UID] = [node["uid"]]
    if claims.get("jti"):
        extra[EXTRA_CREDENTIAL_ID] = [f"JTI={claims['jti']}"]
    return UserInfo(sat.username(ns, sa["name"]), sa.get("uid", ""),
                    (SERVICE_ACCOUNTS_GROUP, f"{SERVICE_ACCOUNTS_GROUP}:{ns}", AUTHENTICATED), extra)


def looks_like_jwt(token: str) -> bool:
    return token.count(".") == 2


@dataclass
class _Verified:
    user: UserInfo
    claims: dict
    expires: float  # wall clock, exp + leeway
    checked: float  # monotonic time of the last look at the ServiceAccount and bound object


class Authenticator:
    """Bearer tokens -> users. The administrator's token is a constant-time comparison and nothing
    else, so that hot path costs what it did before ServiceAccount tokens existed."""

    def __init__(self, admin_token: str, registry: Registry, signer: Signer | None,
                 api_audiences: list[str]) -> None:
        self._admin = admin_token.encode()
        self.registry = registry
        self.signer = signer
        self.api_audiences = api_audiences
        self._cache: dict[str, _Verified] = {}

    def admin(self, token: str) -> UserInfo | None:
        return ADMIN if hmac.compare_digest(token.encode(), self._admin) else None

    async def authenticate(self, token: str, audiences: list[str] | None = None) -> UserInfo | None:
        """The user `token` stands for, None if it stands for nobody (a 401). `audiences` (TokenReview)
        replaces the API server's own."""
        user = self.admin(token)
        if user is not None:
            return user
        if self.signer is None or not looks_like_jwt(token):
            return None
        if audiences is not None:
            verified = await self._verify(token, audiences, remember=False)
            return None if verified is None else verified[0]
        entry = self._cache.get(token)
        if entry is None:
            verified = await self._verify(token, self.api_audiences, remember=True)
            return None if verified is None else verified[0]
        if time.time() > entry.expires:
            self._cache.pop(token, None)
            return None
        if time.monotonic() - entry.checked >= RECHECK_SECONDS:
            if not await self._objects_valid(entry.claims):
                self._cache.pop(token, None)
                return None
            entry.checked = time.monotonic()
        return entry.user

    async def review(self, token: str, audiences: list[str]) -> tuple[UserInfo | None, list[str]]:
        """TokenReview: who `token` is and which of `audiences` it is good for; (None, []) when it is
        nobody or good for none of them. The administrator's token is for this API server only."""
        if self.admin(token) is not None:
            matched = [a for a in audiences if a in self.api_audiences]
            return (ADMIN, matched) if matched else (None, [])
        if self.signer is None or not looks_like_jwt(token):
            return None, []
        verified = await self._verify(token, audiences, remember=False)
        if verified is None:
            return None, []
        user, claims = verified
        aud = claims.get("aud") or []
        matched = [a for a in audiences if a in ([aud] if isinstance(aud, str) else aud)]
        return (user, matched) if matched else (None, [])

    async def _verify(self, token: str, audiences: list[str], remember: bool) -> tuple[UserInfo, dict] | None:
        """(user, verified claims) of a ServiceAccount token good for one of `audiences`, or None."""
        assert self.signer is not None
        try:
            claims = self.signer.verify(token, audiences)
        except InvalidToken as e:
            log.debug("rejected a bearer token: %s", e)
            return None
        if not await self._objects_valid(claims):
            return None
        try:
            user = service_account_user(claims)
        except (KeyError, TypeError):
            return None
        if remember:
            if len(self._cache) >= _CACHE_SIZE:
                self._cache.pop(next(iter(self._cache)))
            self._cache[token] = _Verified(user, claims, claims["exp"] + sat.LEEWAY_SECONDS, time.monotonic())
        return user, claims

    async def _objects_valid(self, claims: dict) -> bool:
        """The ServiceAccount still exists with the token's uid, and so does the object it is bound to
        (a pod's node is only informative); objects marked for deletion more than the leeway ago count
        as gone."""
        k8s = claims.get("kubernetes.io") or {}
        ns = k8s.get("namespace") or ""
        sa = k8s.get("serviceaccount") or {}
        checks = [(sat.SERVICE_ACCOUNTS, ns, sa)]
        if k8s.get("secret"):
            checks.append((sat.SECRETS, ns, k8s["secret"]))
        if k8s.get("pod"):
            checks.append((sat.PODS, ns, k8s["pod"]))
        elif k8s.get("node"):
            checks.append((sat.NODES, None, k8s["node"]))
        cutoff = time.time() - sat.LEEWAY_SECONDS
        for info, namespace, ref in checks:
            if not isinstance(ref, dict) or not ref.get("name"):
                return False
            try:
                obj = await self.registry.get(info, namespace, ref["name"])
            except APIError:
                return False
            md = obj["metadata"]
            if md.get("uid") != ref.get("uid"):
                return False
            deleted = md.get("deletionTimestamp")
            if deleted and _parse_time(deleted) < cutoff:
                return False
        return True


def _parse_time(value: str) -> float:
    try:
        return dt.datetime.fromisoformat(value.replace("Z", "+00:00")).timestamp()
    except ValueError:
        return 0.0


def self_subject_review(user: UserInfo, now_rfc3339: str) -> dict:
    """The answer to a SelfSubjectReview (`kubectl auth whoami`)."""
    return {"kind": "SelfSubjectReview", "apiVersion": sat.API_VERSION,
            "metadata": {"creationTimestamp": now_rfc3339}, "status": {"userInfo": user.to_json()}}


def token_review_status(user: UserInfo | None, audiences: list[str], token: str) -> dict:
    """TokenReview status: who `token` is, for which of the requested audiences."""
    if user is None:
        status: dict = {"user": {}}
        if looks_like_jwt(token):
            status["error"] = "invalid bearer token"
        return status
    return {"authenticated": True, "user": user.to_json(), "audiences": list(audiences)}
