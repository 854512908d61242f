"""Pod volumes in a real cluster, driven by the real kubectl: configMap, secret, downwardAPI, emptyDir,
projected token and hostPath volumes, their updates, and the kubelet's FailedMount reports.

Needs root (a cluster). The pods run the `busybox` generic image, that is the host's programs, in
their own mount namespace where the node agent has mounted their volumes.
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
import time

import pytest

from tests.support import wait_for

pytestmark = pytest.mark.skipif(os.geteuid() != 0, reason="needs root for network namespaces")


@pytest.fixture(scope="module")
def k(cluster):
    return cluster.kubectl


@pytest.fixture()
def ns(cluster_ns):
    return cluster_ns


def apply(k, ns: str, manifest: dict | list) -> None:
    docs = manifest if isinstance(manifest, list) else [manifest]
    k("apply", "-n", ns, "-f", "-", input="\n---\n".join(json.dumps(d) for d in docs))


def pod(name: str, volumes: list[dict], containers: list[dict], **spec) -> dict:
    # No automatic token volume unless a test asks for it: these tests are about the volumes they name.
    return {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": name, **spec.pop("metadata", {})},
            "spec": {"automountServiceAccountToken": False, "terminationGracePeriodSeconds": 0,
                     "volumes": volumes, "containers": containers, **spec}}


def sleeper(name: str, mounts: list[dict], command: str = "sleep 3600") -> dict:
    return {"name": name, "image": "busybox", "command": ["sh", "-c", command], "volumeMounts": mounts}


def phase(k, ns: str, name: str) -> str:
    return json.loads(k("get", "pod", "-n", ns, name, "-o", "json"))["status"].get("phase", "")


def wait_running(k, ns: str, name: str, timeout: float = 30) -> None:
    try:
        wait_for(lambda: phase(k, ns, name) == "Running", timeout, 0.2)
    except AssertionError:
        raise AssertionError(k("describe", "pod", "-n", ns, name)) from None


def exec_(k, ns: str, name: str, *argv: str, container: str | None = None) -> str:
    extra = ["-c", container] if container else []
    return k("exec", "-n", ns, name, *extra, "--", *argv)


def try_exec(k, ns: str, name: str, *argv: str, container: str | None = None) -> str:
    """exec_ for polling: "" while the command fails."""
    extra = ["-c", container] if container else []
    proc = k.run("exec", "-n", ns, name, *extra, "--", *argv, check=False)
    return proc.stdout if proc.returncode == 0 else ""


def events(k, ns: str, name: str) -> list[dict]:
    return json.loads(k("get", "events", "-n", ns, "--field-selector", f"involvedObject.name={name}",
                        "-o", "json"))["items"]


def wait_event(k, ns: str, name: str, reason: str, text: str, timeout: float = 20) -> dict:
    return wait_for(lambda: next((e for e in events(k, ns, name)
                                  if e["reason"] == reason and text in e["message"]), None), timeout, 0.3)


def test_configure_a_pod_to_use_a_configmap(k, ns):
    # The Kubernetes docs' example: every key of the ConfigMap becomes a file in /etc/config.
    apply(k, ns, [{"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "special-config"},
                   "data": {"SPECIAL_LEVEL": "very", "SPECIAL_TYPE": "charm"}},
                  pod("dapi-test-pod", [{"name": "config-volume", "configMap": {"name": "special-config"}}],
                      [{"name": "test-container", "image": "registry.k8s.io/busybox",
                        "command": ["/bin/sh", "-c", "ls /etc/config/ && cat /etc/config/SPECIAL_LEVEL"],
                        "volumeMounts": [{"name": "config-volume", "mountPath": "/etc/config"}]}],
                      restartPolicy="Never")])
    wait_for(lambda: phase(k, ns, "dapi-test-pod") == "Succeeded", 30, 0.2)
    assert k("logs", "-n", ns, "dapi-test-pod").split() == ["SPECIAL_LEVEL", "SPECIAL_TYPE", "very"]


def test_secret_volume_with_items_and_modes(k, ns):
    k("create", "secret", "generic", "test-secret", "-n", ns, "--from-literal=username=my-app",
      "--from-literal=password=39528$vdg7Jb")
    apply(k, ns, pod("secret-test", [{"name": "secret-volume", "secret": {
        "secretName": "test-secret", "defaultMode": 0o400, "items": [
            {"key": "username", "path": "my-group/my-username"}, {"key": "password", "path": "password", "mode": 0o640}]}}],
        [sleeper("c", [{"name": "secret-volume", "mountPath": "/etc/secret-volume"}])]))
    wait_running(k, ns, "secret-test")
    assert exec_(k, ns, "secret-test", "cat", "/etc/secret-volume/my-group/my-username") == "my-app"
    assert exec_(k, ns, "secret-test", "cat", "/etc/secret-volume/password") == "39528$vdg7Jb"
    modes = exec_(k, ns, "secret-test", "stat", "-L", "-c", "%a %n", "/etc/secret-volume/my-group/my-username",
                  "/etc/secret-volume/password")
    assert modes.split("\n")[:2] == ["400 /etc/secret-volume/my-group/my-username", "640 /etc/secret-volume/password"]
    # Secret volumes are read-only in the container whatever the mount says.
    write = k.run("exec", "-n", ns, "secret-test", "--", "sh", "-c", "echo x > /etc/secret-volume/new", check=False)
    assert write.returncode != 0 and "Read-only file system" in write.stderr


def test_downward_api_labels_follow_changes(k, ns):
    apply(k, ns, pod("kubernetes-downwardapi-volume-example", [{"name": "podinfo", "downwardAPI": {"items": [
        {"path": "labels", "fieldRef": {"fieldPath": "metadata.labels"}},
        {"path": "annotations", "fieldRef": {"fieldPath": "metadata.annotations"}},
        {"path": "name", "fieldRef": {"fieldPath": "metadata.name"}},
        {"path": "mem_limit", "resourceFieldRef": {"containerName": "client-container", "resource": "limits.memory",
                                                   "divisor": "1Mi"}}]}}],
        [{**sleeper("client-container", [{"name": "podinfo", "mountPath": "/etc/podinfo"}]),
          "resources": {"limits": {"memory": "64Mi"}}}],
        metadata={"labels": {"zone": "us-est-coast", "cluster": "test-cluster1", "rack": "rack-22"},
                  "annotations": {"build": "two", "builder": "john-doe"}}))
    name = "kubernetes-downwardapi-volume-example"
    wait_running(k, ns, name)
    assert exec_(k, ns, name, "cat", "/etc/podinfo/labels") == \
        'cluster="test-cluster1"\nrack="rack-22"\nzone="us-est-coast"'
    assert 'build="two"\nbuilder="john-doe"' in exec_(k, ns, name, "cat", "/etc/podinfo/annotations")
    assert exec_(k, ns, name, "cat", "/etc/podinfo/name") == name
    assert exec_(k, ns, name, "cat", "/etc/podinfo/mem_limit") == "64"
    k("label", "pod", "-n", ns, name, "rack=rack-23", "--overwrite")
    wait_for(lambda: 'rack="rack-23"' in try_exec(k, ns, name, "cat", "/etc/podinfo/labels"), 15, 0.3)


def test_empty_dir_shared_by_two_containers(k, ns):
    reader = {**sleeper("reader", [{"name": "shared-data", "mountPath": "/pod-data"},
                                   {"name": "shared-data", "mountPath": "/mine", "subPathExpr": "$(OWN)"}]),
              "env": [{"name": "OWN", "value": "reader-dir"}]}
    apply(k, ns, pod("two-containers", [{"name": "shared-data", "emptyDir": {"medium": "Memory"}}], [
        sleeper("writer", [{"name": "shared-data", "mountPath": "/pod-data"}],
                "echo Hello from the writer > /pod-data/index.html && echo own > /pod-data/reader-dir/x "
                "&& sleep 3600"), reader]))
    wait_running(k, ns, "two-containers")
    got = wait_for(lambda: try_exec(k, ns, "two-containers", "cat", "/pod-data/index.html", container="reader"), 10, 0.3)
    assert got == "Hello from the writer\n"
    # The subPathExpr directory was made in the volume before the containers started.
    assert wait_for(lambda: try_exec(k, ns, "two-containers", "cat", "/mine/x", container="reader"), 10, 0.3) == "own\n"


def test_configmap_update_propagates_but_sub_path_does_not(k, ns):
    apply(k, ns, [{"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "app"}, "data": {"color": "blue"}},
                  pod("watcher", [{"name": "cfg", "configMap": {"name": "app"}}],
                      [sleeper("c", [{"name": "cfg", "mountPath": "/etc/app"},
                                     {"name": "cfg", "mountPath": "/etc/color.txt", "subPath": "color"}])])])
    wait_running(k, ns, "watcher")
    assert exec_(k, ns, "watcher", "cat", "/etc/app/color") == "blue"
    assert exec_(k, ns, "watcher", "cat", "/etc/color.txt") == "blue"
    k("patch", "configmap", "app", "-n", ns, "-p", '{"data":{"color":"green"}}')
    t0 = time.monotonic()
    wait_for(lambda: try_exec(k, ns, "watcher", "cat", "/etc/app/color") == "green", 15, 0.3)
    assert time.monotonic() - t0 < 15
    assert exec_(k, ns, "watcher", "cat", "/etc/color.txt") == "blue"  # a subPath never updates


def test_missing_configmap_waits_then_starts(k, ns):
    apply(k, ns, pod("waiting", [{"name": "cfg", "configMap": {"name": "later"}}],
                     [sleeper("c", [{"name": "cfg", "mountPath": "/etc/later"}])]))
    wait_event(k, ns, "waiting", "FailedMount", 'MountVolume.SetUp failed for volume "cfg" : configmap "later" not found')
    pod_obj = json.loads(k("get", "pod", "-n", ns, "waiting", "-o", "json"))
    assert pod_obj["status"]["phase"] == "Pending"
    assert "ContainerCreating" in k("get", "pod", "-n", ns, "waiting")
    k("create", "configmap", "later", "-n", ns, "--from-literal=key=value")
    wait_running(k, ns, "waiting", timeout=15)
    assert exec_(k, ns, "waiting", "cat", "/etc/later/key") == "value"


def test_projected_service_account_token(k, ns):
    apply(k, ns, pod("token", [{"name": "api", "projected": {"defaultMode": 0o644, "sources": [
        {"serviceAccountToken": {"expirationSeconds": 3607, "path": "token"}},
        {"configMap": {"name": "kube-root-ca.crt", "items": [{"key": "ca.crt", "path": "ca.crt"}]}},
        {"downwardAPI": {"items": [{"path": "namespace", "fieldRef": {"fieldPath": "metadata.namespace"}}]}}]}}],
        [sleeper("c", [{"name": "api", "mountPath": "/var/run/secrets/kubernetes.io/serviceaccount",
                        "readOnly": True}])]))
    wait_running(k, ns, "token")
    d = "/var/run/secrets/kubernetes.io/serviceaccount"
    assert sorted(exec_(k, ns, "token", "ls", d).split()) == ["ca.crt", "namespace", "token"]
    assert exec_(k, ns, "token", "cat", f"{d}/namespace") == ns
    assert "BEGIN CERTIFICATE" in exec_(k, ns, "token", "cat", f"{d}/ca.crt")
    assert exec_(k, ns, "token", "cat", f"{d}/token").count(".") == 2  # a JWT


def test_host_path_types(k, ns):
    base = tempfile.mkdtemp(prefix="skiff-e2e-hostpath-")
    try:
        made = os.path.join(base, "made")
        apply(k, ns, pod("hostpath", [{"name": "h", "hostPath": {"path": made, "type": "DirectoryOrCreate"}}],
                         [sleeper("c", [{"name": "h", "mountPath": "/host"}], "echo hi > /host/out && sleep 3600")]))
        wait_running(k, ns, "hostpath")
        wait_for(lambda: os.path.exists(os.path.join(made, "out")), 10, 0.2)
        missing = os.path.join(base, "missing")
        apply(k, ns, pod("hostpath-missing", [{"name": "h", "hostPath": {"path": missing, "type": "Directory"}}],
                         [sleeper("c", [{"name": "h", "mountPath": "/host"}])]))
        wait_event(k, ns, "hostpath-missing", "FailedMount",
                   f'MountVolume.SetUp failed for volume "h" : hostPath type check failed: {missing} is not a directory')
        k("delete", "pod", "-n", ns, "hostpath", "hostpath-missing", "--wait=true")
    finally:
        shutil.rmtree(base, ignore_errors=True)


def test_unsupported_volume_and_conflicting_mounts_are_reported(k, ns):
    apply(k, ns, [pod("claims", [{"name": "data", "persistentVolumeClaim": {"claimName": "data"}}],
                      [sleeper("c", [{"name": "data", "mountPath": "/data"}])]),
                  pod("conflict", [{"name": "a", "emptyDir": {}}, {"name": "b", "emptyDir": {}}],
                      [sleeper("one", [{"name": "a", "mountPath": "/data"}]),
                       sleeper("two", [{"name": "b", "mountPath": "/data"}])])])
    wait_event(k, ns, "claims", "FailedMount", "no volume plugin matched: Skiff does not provide persistentVolumeClaim")
    wait_event(k, ns, "conflict", "FailedMount", 'containers "one" and "two" mount different things at /data')
    assert phase(k, ns, "claims") == "Pending" and phase(k, ns, "conflict") == "Pending"
