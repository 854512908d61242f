"""Nodes, pods and the pod network in a real cluster (issue: workloads run for real).

Needs root: `skiff up` creates network namespaces, links and nftables tables; the fixture removes
them with `skiff down` whatever happens.
"""

from __future__ import annotations

import ipaddress
import json
import os
import re
import signal
import subprocess
import sys
import time

import pytest

from tests.support import SEED, Cluster, curl, free_port, is_ready, wait_for

pytestmark = pytest.mark.skipif(os.geteuid() != 0, reason="needs root for network namespaces")


@pytest.fixture(scope="module")
def cluster():
    c = Cluster(nodes=3).up()
    try:
        yield c
    finally:
        c.down()


def pods_json(k, *args) -> list[dict]:
    return json.loads(k("get", "pods", "-o", "json", *args))["items"]




def test_up_reports_progress_and_is_idempotent(cluster):
    assert "Control plane ready" in cluster.up_output and "3 nodes Ready" in cluster.up_output
    again = cluster.skiff("up", "--name", cluster.name)
    assert "already running" in again.stdout and "ignoring" not in again.stdout
    # A running cluster keeps its shape; a flag that would change it is named, not silently dropped.
    again = cluster.skiff("up", "--name", cluster.name, "--nodes", "5")
    assert "ignoring --nodes 5 (skiff down --name" in again.stdout and "already running" in again.stdout
    assert cluster.name in cluster.skiff("list").stdout
    kc = cluster.skiff("kubeconfig", "--name", cluster.name).stdout
    assert "certificate-authority-data" in kc and "token" in kc


def test_nodes_registered_with_addresses(cluster):
    k = cluster.kubectl
    nodes = json.loads(k("get", "nodes", "-o", "json"))["items"]
    assert len(nodes) == 3
    net = ipaddress.ip_network(cluster.settings["node-cidr"])
    for n in nodes:
        addrs = {a["type"]: a["address"] for a in n["status"]["addresses"]}
        assert ipaddress.ip_address(addrs["InternalIP"]) in net
        assert addrs["Hostname"] == n["metadata"]["name"]
        assert is_ready(n) or any(c["type"] == "Ready" and c["status"] == "True" for c in n["status"]["conditions"])
    out = k("get", "nodes")
    assert out.splitlines()[0].split() == ["NAME", "STATUS", "ROLES", "AGE", "VERSION"]
    # `kubectl describe node` tells the node's story as on a real cluster: the kubelet's start, then
    # the node controller registering it.
    name = cluster.cfg.node_name(1)

    def events() -> list[tuple[str, str]]:
        section = k("describe", "node", name).split("\nEvents:", 1)[1]
        return [(m.group(1), m.group(2)) for m in re.finditer(r"^\s+Normal\s+(\w+)\s+\S+\s+(\S+)", section, re.M)]

    seen = wait_for(lambda: (lambda e: e if ("NodeReady", "kubelet") in e and ("RegisteredNode", "node-controller") in e
                                        else None)(events()), 10)
    assert ("Starting", "kubelet") in seen and ("NodeHasSufficientMemory", "kubelet") in seen, seen


def test_an_idle_node_s_status_is_not_rewritten_for_its_heartbeat(cluster):
    # Liveness travels in the node's Lease; the Node object changes only when the node does, so
    # `kubectl get nodes -w` stays quiet on an idle cluster (the agent's status loop runs every 10 s).
    k = cluster.kubectl
    name = cluster.cfg.node_name(2)
    before = k("get", "node", name, "-o", "jsonpath={.metadata.resourceVersion}")
    lease = k("get", "lease", name, "-n", "kube-node-lease", "-o", "jsonpath={.spec.renewTime}")
    time.sleep(11)
    assert k("get", "node", name, "-o", "jsonpath={.metadata.resourceVersion}") == before
    assert k("get", "lease", name, "-n", "kube-node-lease", "-o", "jsonpath={.spec.renewTime}") != lease


def test_nodeport_pods_ready_fast_and_spread(cluster):
    k = cluster.kubectl
    t0 = time.monotonic()
    k("apply", "-f", str(SEED / "nodeport.yaml"))
    pods = wait_for(lambda: (lambda ps: ps if len(ps) == 3 and all(map(is_ready, ps)) else None)(
        pods_json(k, "-l", "app=my-app")), timeout=10)
    elapsed = time.monotonic() - t0
    assert elapsed < 3.0, f"3 pods took {elapsed:.2f}s to be Ready"
    assert len({p["spec"]["nodeName"] for p in pods}) >= 2
    nodes = {n["metadata"]["name"]: n for n in json.loads(k("get", "nodes", "-o", "json"))["items"]}
    for p in pods:
        cidr = ipaddress.ip_network(nodes[p["spec"]["nodeName"]]["spec"]["podCIDR"])
        assert ipaddress.ip_address(p["status"]["podIP"]) in cidr
    wide = k("get", "pods", "-o", "wide", "-l", "app=my-app")
    assert all(p["status"]["podIP"] in wide and p["spec"]["nodeName"] in wide for p in pods)


def _my_app(cluster) -> list[dict]:
    k = cluster.kubectl
    k("apply", "-f", str(SEED / "nodeport.yaml"))
    return wait_for(lambda: (lambda ps: ps if len(ps) >= 3 and all(map(is_ready, ps)) else None)(
        pods_json(k, "-l", "app=my-app")), timeout=10)


def test_host_reaches_pods_and_pods_reach_across_nodes(cluster):
    pods = _my_app(cluster)
    for p in pods:
        r = curl(f"http://{p['status']['podIP']}:8080/")
        assert f"Hostname: {p['metadata']['name']}" in r.stdout
    a = pods[0]
    b = next(p for p in pods if p["spec"]["nodeName"] != a["spec"]["nodeName"])
    out = cluster.kubectl("exec", a["metadata"]["name"], "--", "curl", "-s", f"http://{b['status']['podIP']}:8080/")
    assert f"Hostname: {b['metadata']['name']}" in out


def test_logs_exec_exit_code_and_port_forward(cluster):
    k = cluster.kubectl
    pod = _my_app(cluster)[0]["metadata"]["name"]
    curl(f"http://{pods_json(k, '-l', 'app=my-app')[0]['status']['podIP']}:8080/")
    assert "Server listening on port 8080" in k("logs", pod)
    assert len(k("logs", pod, "--tail=1").strip().splitlines()) == 1
    proc = k.run("exec", pod, "--", "sh", "-c", "echo out; echo err >&2; exit 3", check=False)
    assert proc.returncode == 3 and proc.stdout.strip() == "out" and "err" in proc.stderr
    assert k("exec", "-i", pod, "--", "cat", input="piped\n").strip() == "piped"
    port = free_port()
    pf = k.popen("port-forward", f"pod/{pod}", f"{port}:8080")
    try:
        r = wait_for(lambda: (lambda r: r if r.returncode == 0 else None)(curl(f"http://127.0.0.1:{port}/")), 10)
        assert f"Hostname: {pod}" in r.stdout
    finally:
        pf.terminate()
        pf.wait(5)
    # A container that never started: the kubelet's reason, as kubectl shows it on a real cluster.
    k("run", "never-pulled", "--image=registry.invalid/nothing:1", "--restart=Never")
    try:
        wait_for(lambda: "ImagePull" in k("get", "pod", "never-pulled"), 10)
        r = k.run("exec", "never-pulled", "--", "true", check=False)
        assert r.returncode == 1
        assert r.stderr.strip().endswith('error: unable to upgrade connection: container not found ("never-pulled")'), \
            r.stderr
        r = k.run("logs", "never-pulled", check=False)
        assert re.search(r'container "never-pulled" in pod "never-pulled" is waiting to start: '
                         r"(image can't be pulled|trying and failing to pull image)", r.stderr), r.stderr
    finally:
        k("delete", "pod", "never-pulled", "--now")
    # `logs -f` follows one run of the container: it ends when that run exits, even as the next one starts.
    k("run", "short-lived", "--image=busybox", "--", "sh", "-c", "echo started; sleep 1; exit 1")
    try:
        wait_for(lambda: "started" in k.run("logs", "short-lived", check=False).stdout, 10)
        t0 = time.monotonic()
        r = k.run("logs", "-f", "short-lived", timeout=15)
        assert r.stdout.startswith("started") and time.monotonic() - t0 < 5
    finally:
        k("delete", "pod", "short-lived", "--now")


def test_a_chatty_container_s_log_is_rotated_as_the_kubelet_rotates_it(cluster):
    k = cluster.kubectl
    # About 15 MiB of log records (91-byte lines), then quiet: past the kubelet's 10 MiB once.
    k("run", "chatty", "--image=busybox", "--restart=Never", "--", "sh", "-c",
      "yes \"$(printf '%090d' 0)\" | head -n 120000; echo done; sleep 3600")
    try:
        wait_for(lambda: k.run("logs", "chatty", "--tail=1", check=False).stdout.strip() == "done", 60, 0.5)
        logs = sorted(cluster.home.glob("**/pods/default_chatty_*/chatty/0.log*"))
        assert [p.name for p in logs][0] == "0.log" and len(logs) == 2, logs
        assert re.fullmatch(r"0\.log\.\d{8}-\d{6}", logs[1].name), logs
        assert all(p.stat().st_size <= 10 * 1024 * 1024 for p in logs)
        # `kubectl logs` shows the current file, as on Kubernetes: the newest lines, whole.
        shown = k("logs", "chatty").splitlines()
        assert shown[-1] == "done" and 30000 < len(shown) < 120000
        assert set(shown[:-1]) == {"0" * 90}
    finally:
        k("delete", "pod", "chatty", "--now")


def test_scale_rollout_undo_and_replacement(cluster):
    k = cluster.kubectl
    _my_app(cluster)
    k("scale", "deployment/my-app", "--replicas=5")
    wait_for(lambda: len([p for p in pods_json(k, "-l", "app=my-app") if is_ready(p)]) == 5, 10)
    k("set", "image", "deployment/my-app", "hello=gcr.io/google-samples/hello-app:2.0")
    assert "successfully rolled out" in k("rollout", "status", "deployment/my-app", "--timeout=30s")
    pod = next(p for p in pods_json(k, "-l", "app=my-app") if is_ready(p))
    assert "Version: 2.0.0" in curl(f"http://{pod['status']['podIP']}:8080/").stdout
    k("rollout", "undo", "deployment/my-app")
    assert "successfully rolled out" in k("rollout", "status", "deployment/my-app", "--timeout=30s")
    dep = json.loads(k("get", "deploy", "my-app", "-o", "json"))
    assert dep["spec"]["template"]["spec"]["containers"][0]["image"].endswith(":1.0")
    assert "condition met" in k("wait", "--for=condition=Available", "deployment/my-app", "--timeout=20s")
    victim_pod = next(p for p in pods_json(k, "-l", "app=my-app")
                      if is_ready(p) and not p["metadata"].get("deletionTimestamp"))
    victim, md = victim_pod["metadata"]["name"], victim_pod["metadata"]
    logs = cluster.home / cluster.name / "nodes" / victim_pod["spec"]["nodeName"] / "pods" / \
        f"{md['namespace']}_{victim}_{md['uid']}"
    assert logs.is_dir()
    k("delete", "pod", victim)
    wait_for(lambda: (lambda ps: len(ps) == 5 and victim not in {p["metadata"]["name"] for p in ps}
                      and all(map(is_ready, ps)))([p for p in pods_json(k, "-l", "app=my-app")
                                                   if not p["metadata"].get("deletionTimestamp")]), 15)
    wait_for(lambda: not logs.exists(), 5)  # a deleted pod's logs go with it
    k("scale", "deployment/my-app", "--replicas=3")


def _pod_netns(cluster, pod: dict) -> str:
    from skiff.net import names

    node_ns = names.node_netns_name(pod["spec"]["nodeName"])
    return names.pod_netns_name(node_ns, pod["metadata"]["namespace"], pod["metadata"]["name"],
                                pod["metadata"]["uid"])


def test_kill_9_restarts_container(cluster):
    k = cluster.kubectl
    pod = _my_app(cluster)[0]
    netns = _pod_netns(cluster, pod)
    pids = subprocess.run(["ip", "netns", "pids", netns], capture_output=True, text=True).stdout.split()
    target = None
    for pid in pids:
        try:
            cmd = open(f"/proc/{pid}/cmdline", "rb").read().replace(b"\0", b" ").decode()
        except FileNotFoundError:
            continue
        if "skiff.images" in cmd and "hello-app" in cmd:
            target = int(pid)
    assert target, f"container process not found among {pids}"
    os.kill(target, signal.SIGKILL)
    name = pod["metadata"]["name"]
    wait_for(lambda: (lambda p: p["status"]["containerStatuses"][0]["restartCount"] == 1 and is_ready(p))(
        json.loads(k("get", "pod", name, "-o", "json"))), 10)
    row = k("get", "pod", name).splitlines()[1].split()
    assert row[3] == "1", row


def test_a_crashing_container_shows_error_then_crash_loop_back_off(cluster):
    k = cluster.kubectl
    k("run", "crashy", "--image=busybox", "--restart=Always", "--", "sh", "-c", "echo boom; exit 3")
    watch = k.popen("get", "pod", "crashy", "-w", "--no-headers")
    try:
        def statuses() -> list[str]:
            return [line.split()[2] for line in lines if len(line.split()) > 2]
        lines: list[str] = []
        deadline = time.monotonic() + 8
        while time.monotonic() < deadline and "CrashLoopBackOff" not in statuses():
            line = watch.stdout.readline()
            if line:
                lines.append(line)
        seen = statuses()
        # The second exit shows as Error, then the 10 s back-off (the first restart is immediate).
        assert "Error" in seen and "CrashLoopBackOff" in seen, lines
        assert seen.index("Error") < seen.index("CrashLoopBackOff"), lines
        state = json.loads(k("get", "pod", "crashy", "-o", "json"))["status"]["containerStatuses"][0]
        assert state["state"]["waiting"]["message"].startswith("back-off 10s restarting failed container=crashy pod=")
        assert state["lastState"]["terminated"]["exitCode"] == 3 and "boom" in k("logs", "crashy", "--previous")
    finally:
        watch.terminate()
        watch.wait(5)
        k("delete", "pod", "crashy", "--now")


def test_init_containers_show_as_init_then_pod_initializing(cluster):
    k = cluster.kubectl
    k("apply", "-f", "-", input="""
apiVersion: v1
kind: Pod
metadata: {name: with-init}
spec:
  initContainers: [{name: setup, image: busybox, command: [sh, -c, "sleep 3"]}]
  containers: [{name: app, image: registry.k8s.io/pause:3.9}]
""")
    try:
        wait_for(lambda: k("get", "pod", "with-init", "--no-headers").split()[2] == "Init:0/1", 10)
        r = k.run("logs", "with-init", "-c", "app", check=False)
        assert 'container "app" in pod "with-init" is waiting to start: PodInitializing' in r.stderr, r.stderr
        wait_for(lambda: k("get", "pod", "with-init", "--no-headers").split()[1:3] == ["1/1", "Running"], 10)
    finally:
        k("delete", "pod", "with-init", "--now")


def netexec_with_exec_probe(name: str, command: list[str], **probe) -> dict:
    """An agnhost netexec pod whose readiness is an exec probe of `command`, every second."""
    return {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": name},
            "spec": {"containers": [{"name": "app", "image": "registry.k8s.io/e2e-test-images/agnhost:2.53",
                                     "args": ["netexec", "--http-port=8080"],
                                     "readinessProbe": {"exec": {"command": command}, "periodSeconds": 1,
                                                        **probe}}]}}


def test_failing_readiness_probe_turns_pod_not_ready(cluster, tmp_path):
    k = cluster.kubectl
    flag = tmp_path / "ready"
    flag.write_text("ok")
    k("apply", "-f", "-", input=json.dumps(netexec_with_exec_probe("probed", ["cat", str(flag)], failureThreshold=1)))
    try:
        wait_for(lambda: is_ready(json.loads(k("get", "pod", "probed", "-o", "json"))), 10)
        flag.unlink()
        wait_for(lambda: not is_ready(json.loads(k("get", "pod", "probed", "-o", "json"))), 10)
        assert k("get", "pod", "probed").splitlines()[1].split()[1] == "0/1"
        events = k("get", "events", "--field-selector", "involvedObject.name=probed")
        assert "Unhealthy" in events
    finally:
        k("delete", "pod", "probed", "--grace-period=0", "--force", check=False)


def test_exec_runs_the_image_s_own_program(cluster):
    # Upstream e2e tests `kubectl exec ... -- /agnhost connect ...`; here /agnhost is a built-in.
    # The readiness probe takes the same way (an exec probe of the image's program).
    k = cluster.kubectl
    probe = ["/agnhost", "connect", "127.0.0.1:8080", "--timeout=1s"]
    k("apply", "-f", "-", input=json.dumps(netexec_with_exec_probe("own-program", probe)))
    try:
        pod = wait_for(lambda: (lambda p: p if is_ready(p) else None)(
            json.loads(k("get", "pod", "own-program", "-o", "json"))), 15)
        ip = pod["status"]["podIP"]
        r = k.run("exec", "own-program", "--", "/agnhost", "connect", f"{ip}:8080", "--timeout=1s", check=False)
        assert r.returncode == 0, r.stderr
        r = k.run("exec", "own-program", "--", "/agnhost", "connect", f"{ip}:8081", "--timeout=1s", check=False)
        assert r.returncode == 1 and "REFUSED" in r.stderr, r.stderr
        # A program neither on the PATH nor the image's fails as it always did.
        r = k.run("exec", "own-program", "--", "/no-such-program", check=False)
        assert r.returncode != 0
        assert ('error executing command in container: failed to exec in container: OCI runtime exec failed: '
                'exec failed: unable to start container process: exec: "/no-such-program": '
                "stat /no-such-program: no such file or directory: unknown") in r.stderr, r.stderr
    finally:
        k("delete", "pod", "own-program", "--grace-period=0", "--force", check=False)


def test_unknown_image_fails_like_kubernetes(cluster):
    k = cluster.kubectl
    k("run", "nosuch", "--image=example.invalid/nosuch:1")
    try:
        wait_for(lambda: re.search(r"ErrImagePull|ImagePullBackOff", k("get", "pod", "nosuch")), 10)
        ev = k("get", "events", "--field-selector", "involvedObject.name=nosuch")
        assert "Failed" in ev and "hello-app" in ev  # the event lists the images that exist
    finally:
        k("delete", "pod", "nosuch", "--grace-period=0", "--force", check=False)


def test_drain_evicts_and_pods_move(cluster):
    k = cluster.kubectl
    _my_app(cluster)
    node = cluster.cfg.node_name(1)
    try:
        out = k("drain", node, "--ignore-daemonsets", "--timeout=60s")
        assert f"node/{node} drained" in out
        assert "SchedulingDisabled" in k("get", "node", node)
        pods = wait_for(lambda: (lambda ps: ps if len(ps) == 3 and all(map(is_ready, ps)) else None)(
            [p for p in pods_json(k, "-l", "app=my-app") if not p["metadata"].get("deletionTimestamp")]), 20)
        assert all(p["spec"]["nodeName"] != node for p in pods)
    finally:
        k("uncordon", node)


def test_stopped_agent_turns_node_not_ready_and_its_pods_are_evicted_after_their_toleration(cluster):
    k = cluster.kubectl
    node = cluster.cfg.node_name(2)
    k("apply", "-f", "-", input=f"""
apiVersion: v1
kind: Pod
metadata: {{name: short-tolerance}}
spec:
  nodeName: {node}
  tolerations: [{{key: node.kubernetes.io/unreachable, operator: Exists, effect: NoExecute, tolerationSeconds: 1}}]
  containers: [{{name: c, image: registry.k8s.io/pause:3.9}}]
""")
    wait_for(lambda: is_ready(json.loads(k("get", "pod", "short-tolerance", "-o", "json"))), 10)
    pid = cluster.agent_pid(node)
    os.killpg(pid, signal.SIGSTOP)
    try:
        cluster.wait_node(node, "NotReady")
        # As the node controller and the taint eviction controller tell it on a real cluster.
        def reasons() -> list[str]:
            return k("get", "events", "--field-selector", "involvedObject.name=short-tolerance",
                     "-o", "jsonpath={.items[*].reason}").split()
        wait_for(lambda: {"NodeNotReady", "TaintManagerEviction"} <= set(reasons()), 10)
        pod = json.loads(k("get", "pod", "short-tolerance", "-o", "json"))
        assert pod["metadata"].get("deletionTimestamp")
        conds = {c["type"]: c for c in pod["status"]["conditions"]}
        assert conds["Ready"]["status"] == "False" and conds["ContainersReady"]["status"] == "True"
        assert (conds["DisruptionTarget"]["reason"], conds["DisruptionTarget"]["message"]) == (
            "DeletionByTaintManager", "Taint manager: deleting due to NoExecute taint")
    finally:
        os.killpg(pid, signal.SIGCONT)
    cluster.wait_node(node, "Ready")
    wait_for(lambda: k.run("get", "pod", "short-tolerance", check=False).returncode == 1, 15)


def test_up_restarts_a_dead_node_agent(cluster):
    node = cluster.cfg.node_name(1)
    os.killpg(cluster.agent_pid(node), signal.SIGKILL)
    cluster.wait_node(node, "NotReady")
    out = cluster.skiff("up", "--name", cluster.name).stdout
    assert f"Restarted the node agent of {node}" in out
    cluster.wait_node(node, "Ready")
    _my_app(cluster)  # its pods run again


def test_down_leaves_nothing():
    c = Cluster(nodes=2).up()
    name = c.name
    c.down()
    assert name not in subprocess.run(["ip", "netns", "list"], capture_output=True, text=True).stdout
    from skiff.net.names import link_prefix

    assert link_prefix(name) not in subprocess.run(["ip", "-o", "link"], capture_output=True, text=True).stdout
    procs = subprocess.run(["pgrep", "-af", name], capture_output=True, text=True).stdout
    assert name not in procs.replace("pgrep", ""), procs


def _daemons(state, kind: str) -> list[int]:
    """Live `skiff <kind>` processes of the cluster whose state directory is `state`."""
    out = subprocess.run(["pgrep", "-f", f"skiff {kind} --state-dir {state}( |$)"], capture_output=True, text=True)
    return [int(p) for p in out.stdout.split()]


def test_a_killed_control_plane_leaves_no_controller_manager_and_down_removes_strays():
    c = Cluster(nodes=1).up()
    try:
        state = c.home / c.name
        [cm] = _daemons(state, "controller-manager")
        os.kill(int((state / "controlplane.pid").read_text()), signal.SIGKILL)  # the API server only
        # Its controller manager must not live on: `skiff up` would start a second one on the same
        # port, and two would act on every object twice.
        wait_for(lambda: not _daemons(state, "controller-manager"), 5)
        out = c.skiff("up", "--name", c.name).stdout
        assert "not running: cleaning up and restarting" in out
        [new_cm] = _daemons(state, "controller-manager")
        assert new_cm != cm
        # Anything else still running for this cluster (here a stand-in for an orphan) goes with `down`.
        stray = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)", "--state-dir", str(state)],
                                 start_new_session=True)
        c.skiff("down", "--name", c.name)
        assert stray.wait(5) == -signal.SIGTERM
        assert not _daemons(state, "(controlplane|controller-manager|node-agent)")
    finally:
        c.down()


def test_clashing_ranges_are_refused_and_leave_nothing(cluster):
    other = "clash" + cluster.name[-4:]
    args = ["up", "--name", other]
    for k, v in cluster.settings.items():
        args += [f"--{k}", v]
    proc = cluster.skiff(*args, check=False)
    assert proc.returncode == 1
    assert "overlaps the existing route" in proc.stderr and "--pod-cidr" in proc.stderr
    assert not (cluster.home / other).exists()
    assert other not in subprocess.run(["ip", "netns", "list"], capture_output=True, text=True).stdout
    assert "Traceback" not in proc.stderr


def test_restart_after_crash_keeps_state_and_down_cleans_up():
    c = Cluster(nodes=2).up()
    try:
        k = c.kubectl
        k("create", "configmap", "survivor", "--from-literal=a=b")
        k("apply", "-f", str(SEED / "nodeport.yaml"))
        wait_for(lambda: len([p for p in json.loads(k("get", "pods", "-o", "json"))["items"] if is_ready(p)]) == 3)
        state = c.home / c.name

        def volume_mounts() -> list[str]:  # the node agents' volume tmpfs, one per node
            with open("/proc/self/mountinfo") as f:
                return [line.split()[4] for line in f if line.split()[4].startswith(str(c.home))]
        assert len(volume_mounts()) == 2, volume_mounts()
        for pidfile in state.glob("*.pid"):
            try:
                os.killpg(int(pidfile.read_text()), signal.SIGKILL)  # a crash: nothing gets to clean up
            except ProcessLookupError:
                pass
        out = c.skiff("up", "--name", c.name).stdout
        assert "not running: cleaning up and restarting" in out and "nodes Ready" in out
        assert "survivor" in k("get", "configmap", "survivor", "-o", "name")
        wait_for(lambda: len([p for p in json.loads(k("get", "pods", "-o", "json"))["items"] if is_ready(p)]) == 3, 15)
        assert "Hello, world!" in wait_for(lambda: (lambda r: r.stdout if r.returncode == 0 else None)(
            curl(f"http://{c.cfg.node_ip(1)}:30008/")), 10)
        assert len(volume_mounts()) == 2, volume_mounts()  # the crashed agents' tmpfs replaced, not stacked
        os.killpg(c.agent_pid(c.cfg.node_name(0)), signal.SIGKILL)  # `skiff down` must detach what it left
    finally:
        name, home = c.name, str(c.home)
        c.down()
    assert name not in subprocess.run(["ip", "netns", "list"], capture_output=True, text=True).stdout
    with open("/proc/self/mountinfo") as f:
        assert not [line for line in f if home in line]
