"""The API server driven by the real kubectl and the official Python client (issue: the API server).

One control plane (API server + controllers, 127.0.0.1 only) serves the module; tests that need a
clean slate use their own namespace.
"""

from __future__ import annotations

import asyncio
import ipaddress
import json
import re
import signal
import ssl
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Awaitable, Callable

import pytest

from skiff.client.rest import Client, resource
from skiff.controllers.base import BackgroundEvents, EventRecorder
from tests.support import SEED, unique_name, wait_for


def _apply_seed(kubectl, ns):
    return kubectl("apply", "-n", ns, "-f", str(SEED))


def test_version_and_discovery(kubectl):
    out = kubectl("version", "-o", "json")
    assert json.loads(out)["serverVersion"]["gitVersion"].startswith("v1.33")
    res = kubectl("api-resources", "--no-headers")
    for name in ("pods", "services", "deployments", "endpointslices", "ingresses", "leases", "events"):
        assert re.search(rf"^{name}\s", res, re.M), name


def test_default_namespaces_and_kubernetes_service(kubectl):
    nss = kubectl("get", "ns", "-o", "name").split()
    for n in ("default", "kube-system", "kube-public", "kube-node-lease"):
        assert f"namespace/{n}" in nss
    svc = json.loads(kubectl("get", "svc", "kubernetes", "-n", "default", "-o", "json"))
    assert svc["spec"]["clusterIP"] == "10.96.0.1"


def test_apply_seed_created_unchanged_configured(kubectl, ns):
    out = _apply_seed(kubectl, ns)
    lines = out.strip().splitlines()
    assert len(lines) == 9 and all(line.endswith(" created") for line in lines), out
    again = _apply_seed(kubectl, ns)
    assert all(line.endswith(" unchanged") for line in again.strip().splitlines()), again
    edited = (SEED / "nodeport.yaml").read_text().replace("replicas: 3", "replicas: 4")
    out = kubectl("apply", "-n", ns, "-f", "-", input=edited)
    assert "deployment.apps/my-app configured" in out
    assert "service/teva-nodeport-service unchanged" in out
    assert json.loads(kubectl("get", "deploy", "my-app", "-n", ns, "-o", "json"))["spec"]["replicas"] == 4


def test_server_side_apply(kubectl, ns):
    out = kubectl("apply", "--server-side", "-n", ns, "-f", str(SEED / "clusterip.yaml"))
    assert "deployment.apps/backend serverside-applied" in out
    out = kubectl("apply", "--server-side", "-n", ns, "-f", str(SEED / "clusterip.yaml"))
    assert "service/backend-service serverside-applied" in out
    obj = json.loads(kubectl("get", "deploy", "backend", "-n", ns, "-o", "json", "--show-managed-fields"))
    managers = {m["manager"]: m["operation"] for m in obj["metadata"]["managedFields"]}
    assert managers.get("kubectl") == "Apply"


def test_get_svc_columns(kubectl, ns):
    _apply_seed(kubectl, ns)
    out = kubectl("get", "svc", "-n", ns)
    header, *rows = out.strip().splitlines()
    assert header.split() == ["NAME", "TYPE", "CLUSTER-IP", "EXTERNAL-IP", "PORT(S)", "AGE"]
    by_name = {r.split()[0]: r.split() for r in rows}
    assert by_name["teva-nodeport-service"][1] == "NodePort"
    # Generation is for kinds whose strategy tracks it (Deployments, Ingresses, ...), not Services.
    svc = json.loads(kubectl("get", "svc", "teva-nodeport-service", "-n", ns, "-o", "json"))
    deploy = json.loads(kubectl("get", "deploy", "my-app", "-n", ns, "-o", "json"))
    assert "generation" not in svc["metadata"] and deploy["metadata"]["generation"] == 1
    assert by_name["teva-nodeport-service"][4] == "80:30008/TCP"
    assert by_name["backend-service"][3] == "<none>"
    assert by_name["backend"][1] == "LoadBalancer"
    assert re.match(r"^80:3\d{4}/TCP$", by_name["backend"][4])
    for row in by_name.values():
        assert ipaddress.ip_address(row[2]) in ipaddress.ip_network("10.96.0.0/12")
        assert re.match(r"^\d+(s|m)", row[5])
    wide = kubectl("get", "svc", "-o", "wide", "-n", ns)
    assert "SELECTOR" in wide.splitlines()[0] and "app=my-app" in wide
    everything = kubectl("get", "all", "-n", ns)
    assert "service/teva-nodeport-service" in everything and "deployment.apps/my-app" in everything
    labels = kubectl("get", "svc", "--show-labels", "-n", ns)
    assert "LABELS" in labels.splitlines()[0]
    all_ns = kubectl("get", "svc", "-A")
    assert all_ns.splitlines()[0].split()[0] == "NAMESPACE" and ns in all_ns


def test_describe_yaml_explain_delete(kubectl, ns):
    _apply_seed(kubectl, ns)
    d = kubectl("describe", "svc", "teva-nodeport-service", "-n", ns)
    assert re.search(r"NodePort:\s+<unset>\s+30008/TCP", d)
    assert re.search(r"IP Families:\s+IPv4", d)
    y = kubectl("get", "svc", "teva-nodeport-service", "-n", ns, "-o", "yaml")
    assert "nodePort: 30008" in y and "clusterIP: 10." in y
    ex = kubectl("explain", "service.spec.ports")
    assert "FIELD: ports <[]ServicePort>" in ex and "nodePort" in ex
    out = kubectl("delete", "-n", ns, "-f", str(SEED / "nodeport.yaml"))
    assert 'deployment.apps "my-app" deleted' in out and 'service "teva-nodeport-service" deleted' in out
    assert kubectl.run("get", "svc", "teva-nodeport-service", "-n", ns, check=False).returncode == 1


def test_create_subcommands_protobuf(kubectl, ns):
    assert "deployment.apps/web created" in kubectl("create", "deployment", "web", "--image=nginx", "-n", ns)
    assert "service/web created" in kubectl("create", "service", "clusterip", "web", "--tcp=80:80", "-n", ns)
    assert "secret/s1 created" in kubectl("create", "secret", "generic", "s1", "--from-literal=a=b", "-n", ns)
    assert "configmap/c1 created" in kubectl("create", "configmap", "c1", "--from-literal=a=b", "-n", ns)
    assert "ingress.networking.k8s.io/i1 created" in kubectl(
        "create", "ingress", "i1", "--rule=foo.test/=web:80", "-n", ns)
    dep = json.loads(kubectl("get", "deploy", "web", "-n", ns, "-o", "json"))
    assert dep["spec"]["template"]["spec"]["containers"][0]["image"] == "nginx"
    assert json.loads(kubectl("get", "secret", "s1", "-n", ns, "-o", "json"))["data"] == {"a": "Yg=="}


@pytest.mark.parametrize("manifest,message", [
    ("spec: {type: NodePort, selector: {app: w}, ports: [{port: 80, nodePort: 80}]}",
     'The Service "{name}" is invalid: spec.ports[0].nodePort: Invalid value: 80: provided port is not in the '
     'valid range. The range of valid ports is 30000-32767'),
    ("spec: {selector: {app: w}, ports: [{port: 80}, {port: 81}]}",
     'The Service "{name}" is invalid: \n* spec.ports[0].name: Required value\n* spec.ports[1].name: Required value'),
    ("spec: {selector: {app: w}, bogus: 1, ports: [{port: 80}]}",
     'Service in version "v1" cannot be handled as a Service: strict decoding error: unknown field "spec.bogus"'),
])
def test_invalid_services_refused(kubectl, ns, manifest, message):
    name = unique_name("bad")
    proc = kubectl.run("apply", "-n", ns, "-f", "-", check=False,
                       input=f"apiVersion: v1\nkind: Service\nmetadata: {{name: {name}}}\n{manifest}\n")
    assert proc.returncode == 1
    assert message.replace("{name}", name) in proc.stderr
    assert kubectl.run("get", "svc", name, "-n", ns, check=False).returncode == 1  # nothing was stored


def test_node_port_taken_and_cluster_ip_immutable(kubectl, ns):
    _apply_seed(kubectl, ns)
    name = unique_name("clash")
    proc = kubectl.run("apply", "-n", ns, "-f", "-", check=False, input=(
        f"apiVersion: v1\nkind: Service\nmetadata: {{name: {name}}}\n"
        "spec: {type: NodePort, selector: {app: w}, ports: [{port: 80, nodePort: 30008}]}\n"))
    assert proc.returncode == 1
    assert "spec.ports[0].nodePort: Invalid value: 30008: provided port is already allocated" in proc.stderr
    ip = json.loads(kubectl("get", "svc", "backend-service", "-n", ns, "-o", "json"))["spec"]["clusterIP"]
    new_ip = "10.96.200.200" if ip != "10.96.200.200" else "10.96.200.201"
    proc = kubectl.run("patch", "svc", "backend-service", "-n", ns, "-p",
                       json.dumps({"spec": {"clusterIP": new_ip, "clusterIPs": [new_ip]}}), check=False)
    assert proc.returncode == 1 and "may not change once set" in proc.stderr
    after = json.loads(kubectl("get", "svc", "backend-service", "-n", ns, "-o", "json"))["spec"]["clusterIP"]
    assert after == ip


def test_watch_streams_changes(kubectl, ns):
    kubectl("create", "service", "clusterip", "w1", "--tcp=80:80", "-n", ns)
    proc = kubectl.popen("get", "svc", "-w", "-n", ns, "--output-watch-events")
    try:
        time.sleep(1.0)
        kubectl("label", "svc", "w1", "tier=x", "-n", ns)
        kubectl("delete", "svc", "w1", "-n", ns)
        time.sleep(1.0)
    finally:
        proc.terminate()
        out, _ = proc.communicate(timeout=5)
    events = [line.split()[0] for line in out.splitlines()[1:] if "w1" in line]
    assert events[:1] == ["ADDED"] and "MODIFIED" in events and events[-1] == "DELETED", out


def _client(cp):
    import kubernetes

    conf = kubernetes.client.Configuration()
    conf.host = cp.cfg.server_url
    conf.api_key = {"authorization": "Bearer " + cp.cfg.token}
    conf.ssl_ca_cert = str(cp.state_dir / "pki" / "ca.crt")
    return kubernetes.client.ApiClient(conf)


def test_python_client_list_watch_patch(cp, ns):
    import kubernetes

    api = kubernetes.client.CoreV1Api(_client(cp))
    initial = api.list_namespaced_config_map(ns)
    seen: list[tuple[str, str]] = []
    w = kubernetes.watch.Watch()

    def watcher():
        for ev in w.stream(api.list_namespaced_config_map, ns, resource_version=initial.metadata.resource_version,
                           timeout_seconds=10):
            seen.append((ev["type"], ev["object"].metadata.name))
            if ev["type"] == "DELETED":
                w.stop()
    t = threading.Thread(target=watcher)
    t.start()
    time.sleep(0.3)
    api.create_namespaced_config_map(ns, {"metadata": {"name": "pc"}, "data": {"a": "1"}})
    patched = api.patch_namespaced_config_map("pc", ns, {"data": {"a": "2"}})
    assert patched.data == {"a": "2"}
    assert [c.metadata.name for c in api.list_namespaced_config_map(ns).items] == ["kube-root-ca.crt", "pc"]
    api.delete_namespaced_config_map("pc", ns)
    t.join(15)
    assert seen == [("ADDED", "pc"), ("MODIFIED", "pc"), ("DELETED", "pc")]


def test_unauthenticated_and_bad_bodies(cp):
    ctx = ssl.create_default_context(cafile=str(cp.state_dir / "pki" / "ca.crt"))

    def call(path, method="GET", body=None, token=True, ctype="application/json"):
        req = urllib.request.Request(cp.cfg.server_url + path, method=method, data=body)
        if token:
            req.add_header("Authorization", "Bearer " + cp.cfg.token)
        req.add_header("Content-Type", ctype)
        try:
            with urllib.request.urlopen(req, context=ctx) as r:
                return r.status, json.loads(r.read())
        except urllib.error.HTTPError as e:
            return e.code, json.loads(e.read())

    code, body = call("/api/v1/namespaces", token=False)
    assert code == 401 and body["kind"] == "Status" and body["reason"] == "Unauthorized"
    code, body = call("/api/v1/namespaces/default/configmaps", "POST", b'{"metadata": {"name": "x",}}')
    assert code == 400 and "line 1, column 27" in body["message"]
    code, body = call("/api/v1/namespaces/default/configmaps", "POST", b"x" * (3 * 1024 * 1024 + 10))
    assert code == 413 and body["kind"] == "Status"


def test_restart_keeps_objects_and_allocations(cp, kubectl, ns):
    _apply_seed(kubectl, ns)
    before = json.loads(kubectl("get", "svc", "-n", ns, "-o", "json"))["items"]
    cp.restart()
    after = json.loads(kubectl("get", "svc", "-n", ns, "-o", "json"))["items"]
    key = lambda s: (s["metadata"]["name"], s["spec"].get("clusterIP"),  # noqa: E731
                     tuple(p.get("nodePort") for p in s["spec"]["ports"]), s["metadata"]["uid"])
    assert sorted(map(key, before)) == sorted(map(key, after))
    # The NodePort is still held after the restart.
    proc = kubectl.run("create", "service", "nodeport", unique_name("np"), "--tcp=80:80", "--node-port=30008",
                       "-n", ns, check=False)
    assert proc.returncode == 1 and "provided port is already allocated" in proc.stderr


WRITER = r"""
import json, ssl, sys, urllib.request
server, token, ca, ns = sys.argv[1:5]
ctx = ssl.create_default_context(cafile=ca)
i = 0
while True:
    body = json.dumps({"metadata": {"name": f"k{i}"}, "data": {"i": str(i)}}).encode()
    req = urllib.request.Request(f"{server}/api/v1/namespaces/{ns}/configmaps", data=body, method="POST",
                                 headers={"Authorization": "Bearer " + token, "Content-Type": "application/json"})
    try:
        urllib.request.urlopen(req, context=ctx, timeout=5).read()
    except Exception:
        continue
    print(f"k{i}", flush=True)
    i += 1
"""


def test_kill_9_loses_no_acknowledged_write(cp, kubectl, ns):
    writer = subprocess.Popen([sys.executable, "-c", WRITER, cp.cfg.server_url, cp.cfg.token,
                               str(cp.state_dir / "pki" / "ca.crt"), ns], stdout=subprocess.PIPE, text=True)
    acked: list[str] = []
    try:
        deadline = time.monotonic() + 20
        while len(acked) < 150 and time.monotonic() < deadline:
            acked.append(writer.stdout.readline().strip())
        cp.stop(signal.SIGKILL)
    finally:
        writer.kill()
        rest, _ = writer.communicate()
    acked += [line for line in rest.split() if line]
    cp.start()
    stored = set(kubectl("get", "configmaps", "-n", ns, "-o", "name").split())
    missing = [a for a in acked if f"configmap/{a}" not in stored]
    assert len(acked) >= 150 and not missing, f"{len(missing)} acknowledged writes lost: {missing[:5]}"


def test_kind_list_manifest(kubectl, ns):
    doc = ("apiVersion: v1\nkind: List\nitems:\n- apiVersion: v1\n  kind: ConfigMap\n  metadata: {name: l1}\n"
           "- apiVersion: v1\n  kind: Service\n  metadata: {name: l2}\n  spec: {ports: [{port: 80}]}\n")
    out = kubectl("apply", "-n", ns, "-f", "-", input=doc)
    assert "configmap/l1 created" in out and "service/l2 created" in out


def test_namespace_deletion_removes_its_content(kubectl):
    name = unique_name("gone")
    kubectl("create", "namespace", name)
    kubectl("create", "configmap", "c", "--from-literal=a=b", "-n", name)
    kubectl("create", "deployment", "d", "--image=nginx", "-n", name)
    out = kubectl("delete", "namespace", name, "--timeout=20s")
    assert f'namespace "{name}" deleted' in out
    assert kubectl.run("get", "namespace", name, check=False).returncode == 1


def test_the_cluster_s_own_namespaces_may_not_be_deleted_and_a_terminating_one_takes_nothing_new(kubectl):
    for name in ("default", "kube-system", "kube-public"):
        r = kubectl.run("delete", "namespace", name, check=False)
        assert r.returncode == 1
        assert f'Error from server (Forbidden): namespaces "{name}" is forbidden: this namespace may not be deleted' \
            in r.stderr
    assert "kubernetes" in kubectl("get", "svc", "-n", "default", "-o", "name")
    name = unique_name("ending")
    kubectl("create", "namespace", name)
    kubectl("apply", "-n", name, "-f", "-", input=json.dumps(
        {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "held", "finalizers": ["example.com/hold"]}}))
    kubectl("delete", "namespace", name, "--wait=false")
    try:
        r = kubectl.run("create", "configmap", "late", "-n", name, check=False)
        assert f'configmaps "late" is forbidden: unable to create new content in namespace {name} because it is ' \
               f"being terminated" in r.stderr
    finally:
        kubectl("patch", "configmap", "held", "-n", name, "--type=merge", "-p", '{"metadata":{"finalizers":null}}')


def test_garbage_collection_follows_owner_references(kubectl, ns):
    kubectl("create", "deployment", "owner", "--image=nginx", "--replicas=2", "-n", ns)
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline and len(kubectl("get", "pods", "-n", ns, "-o", "name").split()) < 2:
        time.sleep(0.05)
    rs = json.loads(kubectl("get", "rs", "-n", ns, "-o", "json"))["items"]
    assert len(rs) == 1 and rs[0]["metadata"]["ownerReferences"][0]["kind"] == "Deployment"
    kubectl("delete", "deployment", "owner", "-n", ns)
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline and (kubectl("get", "rs", "-n", ns, "-o", "name").strip()
                                           or kubectl("get", "pods", "-n", ns, "-o", "name").strip()):
        time.sleep(0.05)
    assert not kubectl("get", "rs,pods", "-n", ns, "-o", "name").strip()
    kubectl("create", "deployment", "fg", "--image=nginx", "-n", ns)
    time.sleep(0.5)
    out = kubectl("delete", "deployment", "fg", "-n", ns, "--cascade=foreground", "--timeout=20s")
    assert 'deployment.apps "fg" deleted' in out
    assert not kubectl("get", "rs", "-n", ns, "-o", "name").strip()


def test_auth_can_i(kubectl):
    assert kubectl("auth", "can-i", "create", "deployments").strip() == "yes"


def test_write_burst_reaches_every_watcher_as_written(cp, kubectl, ns):
    """Concurrent creates and status merge patches: the events queued for a watcher go out together,
    and each event's object is exactly what the write answered (one serialization serves both)."""
    import asyncio

    from skiff.client.rest import Client, resource

    pods = resource("v1", "pods")
    n = 30
    proc = kubectl.popen("get", "pods", "-w", "-n", ns, "--output-watch-events")

    async def run() -> tuple[list, list, dict]:
        client = Client.for_state_dir(cp.state_dir, user_agent="burst-test")
        watched: list[tuple[str, dict]] = []
        try:
            start = (await client.list(pods, ns))["metadata"]["resourceVersion"]

            async def watch() -> None:
                async for etype, obj in client.watch(pods, ns, start, timeout_seconds=30):
                    watched.append((etype, obj))
                    if len(watched) == 3 * n:
                        return

            watcher = asyncio.create_task(watch())
            await asyncio.sleep(0.5)

            async def one(i: int) -> list[dict]:
                pod = {"metadata": {"name": f"b{i}", "labels": {"i": str(i)}},
                       "spec": {"schedulerName": "nobody", "containers": [{"name": "c", "image": "hello:1"}]}}
                out = [await client.create(pods, ns, pod)]
                for phase, ready in (("Pending", "False"), ("Running", "True")):
                    status = {"phase": phase, "podIP": f"10.1.0.{i + 2}" if ready == "True" else None,
                              "conditions": [{"type": "Ready", "status": ready, "lastProbeTime": None,
                                              "lastTransitionTime": "2026-01-01T00:00:00Z"}],
                              "containerStatuses": [{"name": "c", "ready": ready == "True", "restartCount": 0,
                                                     "image": "hello:1", "imageID": "", "state": {}}]}
                    out.append(await client.patch(pods, ns, f"b{i}", {"status": status}, "merge", sub="status"))
                return out
            answers = [obj for objs in await asyncio.gather(*(one(i) for i in range(n))) for obj in objs]
            await asyncio.wait_for(watcher, 20)
            final = {o["metadata"]["name"]: o for o in (await client.list(pods, ns))["items"]}
            return answers, watched, final
        finally:
            await client.close()

    try:
        answers, watched, final = asyncio.run(run())
        time.sleep(1.0)
    finally:
        proc.terminate()
        out, _ = proc.communicate(timeout=5)
    revisions = [int(o["metadata"]["resourceVersion"]) for _, o in watched]
    assert revisions == sorted(set(revisions))
    by_rv = {o["metadata"]["resourceVersion"]: o for o in answers}
    created = {o["metadata"]["resourceVersion"] for i, o in enumerate(answers) if i % 3 == 0}
    assert len(by_rv) == 3 * n
    for etype, obj in watched:
        answer = by_rv[obj["metadata"]["resourceVersion"]]
        assert etype == ("ADDED" if answer["metadata"]["resourceVersion"] in created else "MODIFIED")
        assert json.dumps(obj) == json.dumps(answer)  # same content, same key order
    for name, obj in final.items():
        assert json.dumps(obj) == json.dumps(max((o for o in answers if o["metadata"]["name"] == name),
                                                 key=lambda o: int(o["metadata"]["resourceVersion"])))
        assert obj["status"]["phase"] == "Running" and obj["status"]["podIP"]
    lines = [line.split()[0] for line in out.splitlines()[1:] if re.search(r"\bb\d+\b", line)]
    assert lines.count("ADDED") == n and lines.count("MODIFIED") == 2 * n, out


def test_watch_timeout_ends_the_stream(cp, ns):
    import asyncio

    from skiff.client.rest import Client, resource

    async def run() -> float:
        client = Client.for_state_dir(cp.state_dir)
        try:
            t0 = time.monotonic()
            async for _ in client.watch(resource("v1", "configmaps"), ns, "", timeout_seconds=1):
                pass
            return time.monotonic() - t0
        finally:
            await client.close()
    assert 0.9 < asyncio.run(run()) < 5


def test_watch_bookmarks_after_initial_events_and_when_idle(cp, ns):
    """sendInitialEvents ends with the initial-events-end bookmark; an idle watch gets a bookmark
    every 15 s, at the store's current revision."""
    import asyncio

    import aiohttp

    from skiff.client.rest import Client, resource

    cms = resource("v1", "configmaps")

    async def run() -> tuple[list[dict], list[float], int]:
        client = Client.for_state_dir(cp.state_dir)
        try:
            for i in range(3):
                await client.create(cms, ns, {"metadata": {"name": f"bm{i}"}, "data": {"i": str(i)}})
            listed = int((await client.list(cms, ns))["metadata"]["resourceVersion"])
            params = {"watch": "true", "sendInitialEvents": "true", "allowWatchBookmarks": "true",
                      "resourceVersionMatch": "NotOlderThan", "timeoutSeconds": "17"}
            events, times = [], []
            t0 = time.monotonic()
            async with client.session.get(client.creds.server + client.path(cms, ns), params=params,
                                          timeout=aiohttp.ClientTimeout(total=None)) as resp:
                while line := await resp.content.readline():
                    events.append(json.loads(line))
                    times.append(time.monotonic() - t0)
                times.append(time.monotonic() - t0)  # the stream's end
            return events, times, listed
        finally:
            await client.close()

    events, times, listed = asyncio.run(run())
    types = [e["type"] for e in events]
    assert types == ["ADDED"] * 4 + ["BOOKMARK", "BOOKMARK"], types
    assert [e["object"]["metadata"]["name"] for e in events[:4]] == ["bm0", "bm1", "bm2", "kube-root-ca.crt"]
    end = events[4]["object"]["metadata"]
    assert end["annotations"] == {"k8s.io/initial-events-end": "true"} and int(end["resourceVersion"]) >= listed
    assert 14 < times[5] < 16.5 and int(events[5]["object"]["metadata"]["resourceVersion"]) >= listed
    assert 16.5 < times[6] < 19


# ---- Events written in the background (skiff.controllers.base.BackgroundEvents) ----

EVENTS = resource("v1", "events")
PODS = resource("v1", "pods")


async def _reasons(client: Client, uid: str) -> list[str]:
    items = (await client.list(EVENTS, "default"))["items"]
    # Only this test's recorder: the control plane's scheduler reports these pods unschedulable.
    mine = [e for e in items if e["involvedObject"].get("uid") == uid and e["source"]["component"] == "test"]
    return [e["reason"] for e in sorted(mine, key=lambda e: e["metadata"]["name"])]


async def _pod(client: Client, name: str) -> dict:
    return await client.create(PODS, "default", {"metadata": {"name": name},
                                                 "spec": {"containers": [{"name": "c", "image": "nginx"}]}})


def _with_pod(cp, name: str, body: Callable[[Client, dict, str], Awaitable[None]]) -> None:
    """Run body(client, pod, uid) against a new pod `name`, with a client that is closed afterwards."""
    async def run() -> None:
        client = Client.for_state_dir(cp.state_dir)
        try:
            pod = await _pod(client, name)
            await body(client, pod, pod["metadata"]["uid"])
        finally:
            await client.close()
    asyncio.run(run())


def test_events_wait_while_busy_then_go_out_in_order(cp):
    async def body(client: Client, pod: dict, uid: str) -> None:
        busy = [True]
        events = BackgroundEvents(EventRecorder(client, "test"), busy=lambda: busy[0], max_delay=30)
        for reason in ("Pulled", "Created", "Started"):
            events.record(pod, "Normal", reason, f"{reason} it")
        await asyncio.sleep(0.3)
        assert await _reasons(client, uid) == []  # held back while busy
        busy[0] = False
        deadline = time.monotonic() + 5
        while await _reasons(client, uid) != ["Pulled", "Created", "Started"]:
            assert time.monotonic() < deadline, await _reasons(client, uid)
            await asyncio.sleep(0.02)
        await events.drain(1)
    _with_pod(cp, "busy-then-quiet", body)


def test_a_busy_component_delays_an_event_by_max_delay_at_most_and_drain_writes_the_rest(cp):
    async def body(client: Client, pod: dict, uid: str) -> None:
        events = BackgroundEvents(EventRecorder(client, "test"), busy=lambda: True, max_delay=0.3)
        t0 = time.monotonic()
        events.record(pod, "Normal", "Scheduled", "placed")
        while await _reasons(client, uid) != ["Scheduled"]:
            assert time.monotonic() - t0 < 3
            await asyncio.sleep(0.02)
        assert time.monotonic() - t0 >= 0.3

        slow = BackgroundEvents(EventRecorder(client, "test"), busy=lambda: True, max_delay=60)
        slow.record(pod, "Normal", "Killing", "stopping")
        await slow.drain(2)  # does not wait for quiet
        assert await _reasons(client, uid) == ["Scheduled", "Killing"]
    _with_pod(cp, "always-busy", body)


def test_an_event_written_late_lists_where_it_happened(cp):
    """The scheduler stamps Scheduled before its binding is written; the kubelet's first events,
    recorded meanwhile, must still list after it."""
    async def body(client: Client, pod: dict, uid: str) -> None:
        events = BackgroundEvents(EventRecorder(client, "test"))
        bound_at = time.time()
        await asyncio.sleep(0.05)
        await EventRecorder(client, "test").record(pod, "Normal", "Pulled", "pulled")
        events.record(pod, "Normal", "Scheduled", "placed", at=bound_at)
        await events.drain(2)
        assert await _reasons(client, uid) == ["Scheduled", "Pulled"]
    _with_pod(cp, "late-event", body)


def test_events_recorded_in_the_same_nanosecond_are_all_kept_in_order(cp):
    """Back-to-back events can share a stamp (a float time.time() resolves ~240 ns): the name is
    <object>.<hex ns>, and a clash must not drop the second one."""
    async def body(client: Client, pod: dict, uid: str) -> None:
        events = BackgroundEvents(EventRecorder(client, "test"))
        at = time.time()
        for reason in ("Pulled", "Created", "Started"):
            events.record(pod, "Normal", reason, f"{reason} it", at=at)
        await events.drain(3)
        assert await _reasons(client, uid) == ["Pulled", "Created", "Started"]
    _with_pod(cp, "same-stamp", body)


def test_every_namespace_has_a_default_service_account_and_the_root_ca(cp, kubectl, ns):
    wait_for(lambda: "serviceaccount/default" in kubectl("get", "sa", "-n", ns, "-o", "name"), 5)
    cm = json.loads(wait_for(lambda: kubectl.run("get", "cm", "kube-root-ca.crt", "-n", ns, "-o", "json",
                                                 check=False).stdout or None, 5))
    assert cm["data"]["ca.crt"] == (cp.state_dir / "pki" / "ca.crt").read_text()
    kubectl("delete", "sa", "default", "-n", ns)  # the controller puts both back
    kubectl("patch", "cm", "kube-root-ca.crt", "-n", ns, "--type=merge", "-p", '{"data":{"ca.crt":"tampered"}}')
    wait_for(lambda: "serviceaccount/default" in kubectl("get", "sa", "-n", ns, "-o", "name"), 5)
    wait_for(lambda: "BEGIN CERTIFICATE" in kubectl("get", "cm", "kube-root-ca.crt", "-n", ns,
                                                    "-o", "jsonpath={.data.ca\\.crt}"), 5)


def test_a_new_pod_gets_the_admission_defaults_and_a_missing_service_account_is_refused(kubectl, ns):
    kubectl("run", "plain", "-n", ns, "--image=registry.k8s.io/pause:3.9", "--restart=Never")
    spec = json.loads(kubectl("get", "pod", "plain", "-n", ns, "-o", "json"))["spec"]
    assert spec["serviceAccountName"] == spec["serviceAccount"] == "default"
    assert spec["priority"] == 0 and spec["preemptionPolicy"] == "PreemptLowerPriority"
    assert sorted((t["key"], t["effect"], t["tolerationSeconds"]) for t in spec["tolerations"]) == [
        ("node.kubernetes.io/not-ready", "NoExecute", 300), ("node.kubernetes.io/unreachable", "NoExecute", 300)]
    described = kubectl("describe", "pod", "plain", "-n", ns)
    assert re.search(r"^Priority:\s+0$", described, re.M) and re.search(r"^Service Account:\s+default$", described, re.M)
    r = kubectl.run("run", "lost", "-n", ns, "--image=registry.k8s.io/pause:3.9", "--restart=Never",
                    "--overrides", '{"spec":{"serviceAccountName":"nobody"}}', check=False)
    assert r.returncode == 1
    assert (f'Error from server (Forbidden): pods "lost" is forbidden: error looking up service account '
            f'{ns}/nobody: serviceaccount "nobody" not found') in r.stderr


def test_a_pod_gets_the_kube_api_access_volume_unless_it_or_its_service_account_opts_out(kubectl, ns):
    kubectl("run", "reader", "-n", ns, "--image=registry.k8s.io/pause:3.9", "--restart=Never")
    spec = json.loads(kubectl("get", "pod", "reader", "-n", ns, "-o", "json"))["spec"]
    (vol,) = spec["volumes"]
    assert re.fullmatch(r"kube-api-access-[bcdfghjklmnpqrstvwxz2456789]{5}", vol["name"]), vol["name"]
    assert vol["projected"] == {"defaultMode": 420, "sources": [
        {"serviceAccountToken": {"expirationSeconds": 3607, "path": "token"}},
        {"configMap": {"name": "kube-root-ca.crt", "items": [{"key": "ca.crt", "path": "ca.crt"}]}},
        {"downwardAPI": {"items": [{"path": "namespace",
                                    "fieldRef": {"apiVersion": "v1", "fieldPath": "metadata.namespace"}}]}}]}
    assert spec["containers"][0]["volumeMounts"] == [
        {"name": vol["name"], "readOnly": True, "mountPath": "/var/run/secrets/kubernetes.io/serviceaccount"}]
    assert re.search(r"^\s+/var/run/secrets/kubernetes.io/serviceaccount from kube-api-access-\w+ \(ro\)$",
                     kubectl("describe", "pod", "reader", "-n", ns), re.M)

    kubectl("run", "opted-out", "-n", ns, "--image=registry.k8s.io/pause:3.9", "--restart=Never",
            "--overrides", '{"spec":{"automountServiceAccountToken":false}}')
    spec = json.loads(kubectl("get", "pod", "opted-out", "-n", ns, "-o", "json"))["spec"]
    assert "volumes" not in spec and "volumeMounts" not in spec["containers"][0]

    kubectl("create", "serviceaccount", "quiet", "-n", ns)
    kubectl("patch", "serviceaccount", "quiet", "-n", ns, "-p", '{"automountServiceAccountToken":false}')
    kubectl("run", "quiet-pod", "-n", ns, "--image=registry.k8s.io/pause:3.9", "--restart=Never",
            "--overrides", '{"spec":{"serviceAccountName":"quiet"}}')
    spec = json.loads(kubectl("get", "pod", "quiet-pod", "-n", ns, "-o", "json"))["spec"]
    assert "volumes" not in spec
