"""ServiceAccount tokens with the real kubectl: `kubectl create token`, `kubectl auth whoami`, tokens
refused once their ServiceAccount or pod is gone, TokenReview, issuer discovery, and a pod reaching
the API server through the `kubernetes` Service with such a token.

The cluster test needs root (`skiff up` creates network namespaces and nftables tables); the others
run against a control plane alone.
"""

from __future__ import annotations

import json
import os

import jwt
import pytest
import yaml

from tests.support import Kubectl, unique_name, wait_for

ISSUER = "https://kubernetes.default.svc.cluster.local"


def as_token(kubectl: Kubectl, token: str) -> Kubectl:
    """A kubectl whose kubeconfig holds `token` instead of the administrator's."""
    config = yaml.safe_load(kubectl.kubeconfig.read_text())
    for user in config["users"]:
        user["user"] = {"token": token}
    path = kubectl.kubeconfig.with_name(f"kubeconfig-{unique_name('tok')}")
    path.write_text(yaml.safe_dump(config))
    return Kubectl(path, kubectl.home)


def claims(token: str) -> dict:
    return jwt.decode(token, options={"verify_signature": False})


def test_create_token_and_whoami(kubectl, ns):
    token = kubectl("create", "token", "default", "-n", ns).strip()
    c = claims(token)
    assert c["iss"] == ISSUER and c["aud"] == [ISSUER] and c["sub"] == f"system:serviceaccount:{ns}:default"
    assert c["exp"] - c["iat"] == 3600 and c["nbf"] == c["iat"] and c["jti"]
    sa_uid = kubectl("get", "sa", "default", "-n", ns, "-o", "jsonpath={.metadata.uid}")
    assert c["kubernetes.io"] == {"namespace": ns, "serviceaccount": {"name": "default", "uid": sa_uid}}

    robot = as_token(kubectl, token)
    try:
        out = robot("auth", "whoami", "-o", "json")
        info = json.loads(out)["status"]["userInfo"]
        assert info["username"] == f"system:serviceaccount:{ns}:default" and info["uid"] == sa_uid
        assert info["groups"] == ["system:serviceaccounts", f"system:serviceaccounts:{ns}", "system:authenticated"]
        assert info["extra"] == {"authentication.kubernetes.io/credential-id": [f"JTI={c['jti']}"]}
        table = robot("auth", "whoami")
        assert f"system:serviceaccount:{ns}:default" in table and "system:authenticated" in table
        # Skiff has no RBAC: the token may do what the administrator may.
        assert robot("get", "pods", "-n", ns, "-o", "name") == ""
        assert robot("auth", "can-i", "create", "pods", "-n", ns).strip() == "yes"
    finally:
        robot.kubeconfig.unlink()
    admin = kubectl("auth", "whoami")
    assert "kubernetes-admin" in admin and "[system:masters system:authenticated]" in admin

    longer = claims(kubectl("create", "token", "default", "-n", ns, "--duration=2h", "--audience=vault").strip())
    assert longer["exp"] - longer["iat"] == 7200 and longer["aud"] == ["vault"]


def test_token_request_errors_are_kube_apiserver_s(kubectl, ns):
    r = kubectl.run("create", "token", "default", "-n", ns, "--duration=5m", check=False)
    assert r.returncode != 0
    assert ('TokenRequest.authentication.k8s.io "" is invalid: spec.expirationSeconds: Invalid value: 300: '
            'may not specify a duration less than 10 minutes') in r.stderr
    r = kubectl.run("create", "token", "ghost", "-n", ns, check=False)
    assert 'serviceaccounts "ghost" not found' in r.stderr
    r = kubectl.run("create", "token", "default", "-n", ns, "--bound-object-kind=Pod", "--bound-object-name=nope",
                    check=False)
    assert 'pods "nope" not found' in r.stderr


def test_tokens_stop_with_their_pod_and_service_account(kubectl, ns):
    kubectl("create", "serviceaccount", "robot", "-n", ns)
    kubectl("run", "holder", "-n", ns, "--image=nginx", "--overrides",
            json.dumps({"spec": {"serviceAccountName": "robot"}}))
    r = kubectl.run("create", "token", "default", "-n", ns, "--bound-object-kind=Pod",
                    "--bound-object-name=holder", check=False)
    assert "cannot bind token for serviceaccount \"default\" to pod running with different serviceaccount name." \
        in r.stderr
    pod_uid = kubectl("get", "pod", "holder", "-n", ns, "-o", "jsonpath={.metadata.uid}")
    bound = kubectl("create", "token", "robot", "-n", ns, "--bound-object-kind=Pod",
                    "--bound-object-name=holder", f"--bound-object-uid={pod_uid}").strip()
    assert claims(bound)["kubernetes.io"]["pod"] == {"name": "holder", "uid": pod_uid}
    plain = kubectl("create", "token", "robot", "-n", ns).strip()
    by_pod, by_sa = as_token(kubectl, bound), as_token(kubectl, plain)
    try:
        info = json.loads(by_pod("auth", "whoami", "-o", "json"))["status"]["userInfo"]
        assert info["extra"]["authentication.kubernetes.io/pod-name"] == ["holder"]
        assert info["extra"]["authentication.kubernetes.io/pod-uid"] == [pod_uid]
        kubectl("delete", "pod", "holder", "-n", ns, "--grace-period=0", "--force")

        def refused(k: Kubectl) -> bool:
            r = k.run("get", "serviceaccounts", "-n", ns, check=False)
            return r.returncode != 0 and "Unauthorized" in r.stderr
        wait_for(lambda: refused(by_pod), 8, 0.2)
        assert not refused(by_sa)
        kubectl("delete", "serviceaccount", "robot", "-n", ns)
        wait_for(lambda: refused(by_sa), 8, 0.2)
        # A new ServiceAccount of the same name is someone else.
        kubectl("create", "serviceaccount", "robot", "-n", ns)
        assert refused(by_sa)
    finally:
        by_pod.kubeconfig.unlink()
        by_sa.kubeconfig.unlink()


def test_discovery_token_review_and_issuer_discovery(kubectl, ns):
    core = json.loads(kubectl("get", "--raw", "/api/v1"))
    (token_sub,) = [r for r in core["resources"] if r["name"] == "serviceaccounts/token"]
    assert token_sub == {"name": "serviceaccounts/token", "singularName": "", "namespaced": True,
                         "group": "authentication.k8s.io", "version": "v1", "kind": "TokenRequest",
                         "verbs": ["create"]}
    resources = kubectl("api-resources", "--api-group=authentication.k8s.io", "-o", "name").split()
    assert resources == ["selfsubjectreviews.authentication.k8s.io", "tokenreviews.authentication.k8s.io"]

    token = kubectl("create", "token", "default", "-n", ns).strip()
    review = {"apiVersion": "authentication.k8s.io/v1", "kind": "TokenReview", "spec": {"token": token}}
    out = json.loads(kubectl("create", "-o", "json", "-f", "-", input=json.dumps(review)))
    assert out["status"]["authenticated"] is True and out["status"]["audiences"] == [ISSUER]
    assert out["status"]["user"]["username"] == f"system:serviceaccount:{ns}:default"
    review["spec"]["token"] = token[:-4] + ("AAAA" if not token.endswith("AAAA") else "BBBB")
    out = json.loads(kubectl("create", "-o", "json", "-f", "-", input=json.dumps(review)))
    assert not out["status"].get("authenticated")

    config = json.loads(kubectl("get", "--raw", "/.well-known/openid-configuration"))
    assert config["issuer"] == ISSUER and config["jwks_uri"].endswith("/openid/v1/jwks")
    keys = json.loads(kubectl("get", "--raw", "/openid/v1/jwks"))["keys"]
    (key,) = [k for k in keys if k["kid"] == jwt.get_unverified_header(token)["kid"]]
    assert jwt.decode(token, jwt.PyJWK(key).key, algorithms=["ES256"], audience=ISSUER)["sub"].endswith(":default")


@pytest.mark.skipif(os.geteuid() != 0, reason="needs root for network namespaces")
def test_a_pod_reaches_the_api_server_through_the_kubernetes_service(cluster):
    k = cluster.kubectl
    cfg = cluster.cfg
    ep = json.loads(k("get", "endpointslice", "kubernetes", "-o", "json"))
    assert ep["endpoints"][0]["addresses"] == [cfg.host_ip] and ep["ports"][0]["port"] == cfg.api_port
    token = k("create", "token", "default").strip()
    cluster.wait_dns()
    name = unique_name("api")
    # The token goes in by env: this test is about the Service and authentication, not the volume.
    pod = {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": name}, "spec": {
        "restartPolicy": "Never",
        "containers": [{"name": "curl", "image": "curlimages/curl", "env": [{"name": "TOKEN", "value": token}],
                        "command": ["sh", "-c",
                                    "curl -sk --max-time 5 https://kubernetes.default.svc/version && echo && "
                                    "curl -sk --max-time 5 -H \"Authorization: Bearer $TOKEN\" "
                                    f"https://{cfg.kubernetes_service_ip}/api/v1/namespaces/default/serviceaccounts/default"]}]}}
    k("apply", "-f", "-", input=json.dumps(pod))
    try:
        wait_for(lambda: k("get", "pod", name, "-o", "jsonpath={.status.phase}") in ("Succeeded", "Failed"), 30, 0.3)
        lines = k("logs", name).splitlines()
        assert len(lines) == 2, (lines, k("get", "pod", name, "-o", "yaml"))
        assert json.loads(lines[0])["gitVersion"].startswith("v1.33"), lines
        assert json.loads(lines[1])["metadata"]["name"] == "default", lines
    finally:
        k("delete", "pod", name, "--grace-period=0", "--force", check=False)


def test_tokens_survive_a_control_plane_restart(cp, ns):
    # The signing key lives with the cluster's other keys: a restart must not log every pod out.
    token = cp.kubectl("create", "token", "default", "-n", ns).strip()
    cp.restart()
    robot = as_token(cp.kubectl, token)
    try:
        assert f"system:serviceaccount:{ns}:default" in robot("auth", "whoami")
    finally:
        robot.kubeconfig.unlink()
