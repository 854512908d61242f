from skiff.node.podstatus import (
    RUNNING,
    TERMINATED,
    WAITING,
    ContainerRecord,
    PodView,
    pod_phase,
    pod_status,
    status_patch,
)

NOW = 1_700_000_000.0


def pod(policy="Always", inits=0):
    spec = {"restartPolicy": policy, "containers": [{"name": "app", "image": "nginx"}]}
    if inits:
        spec["initContainers"] = [{"name": f"init{i}", "image": "busybox"} for i in range(inits)]
    return {"metadata": {"name": "p", "namespace": "default"}, "spec": spec,
            "status": {"phase": "Pending", "qosClass": "BestEffort",
                       "conditions": [{"type": "PodScheduled", "status": "True",
                                       "lastTransitionTime": "2023-01-01T00:00:00Z"}]}}


def rec(name="app", state=WAITING, **kw):
    r = ContainerRecord(name=name, image="docker.io/library/nginx:latest", state=state, **kw)
    return r


def conds(status):
    return {c["type"]: c for c in status["conditions"]}


def test_creating_pod_is_pending_with_container_creating():
    st = pod_status(pod(), PodView(host_ip="172.18.0.2"), [], [rec(reason="ContainerCreating")], NOW)
    assert st["phase"] == "Pending"
    assert st["containerStatuses"][0]["state"] == {"waiting": {"reason": "ContainerCreating"}}
    c = conds(st)
    assert c["PodReadyToStartContainers"]["status"] == "False"
    assert c["Ready"]["reason"] == "ContainersNotReady"
    assert c["Ready"]["message"] == "containers with unready status: [app]"
    assert c["PodScheduled"]["lastTransitionTime"] == "2023-01-01T00:00:00Z"  # the scheduler's, kept
    assert st["qosClass"] == "BestEffort" and st["hostIPs"] == [{"ip": "172.18.0.2"}]
    assert [x["type"] for x in st["conditions"]] == ["PodReadyToStartContainers", "Initialized", "Ready",
                                                     "ContainersReady", "PodScheduled"]


def test_running_ready_pod():
    r = rec(state=RUNNING, started_at=NOW - 5, ready=True, started=True, container_id="abc")
    view = PodView(host_ip="172.18.0.2", pod_ip="10.244.0.5", sandbox_ready=True, start_time=NOW - 6)
    st = pod_status(pod(), view, [], [r], NOW)
    assert st["phase"] == "Running"
    assert all(c["status"] == "True" for c in st["conditions"])
    cs = st["containerStatuses"][0]
    assert cs["containerID"] == "skiff://abc" and cs["ready"] and cs["started"]
    assert cs["state"] == {"running": {"startedAt": "2023-11-14T22:13:15Z"}}
    assert st["podIP"] == "10.244.0.5" and st["podIPs"] == [{"ip": "10.244.0.5"}]
    assert st["startTime"] == "2023-11-14T22:13:14Z"


def test_phase_rules_by_restart_policy():
    done_ok = rec(state=TERMINATED, exit_code=0)
    done_bad = rec(state=TERMINATED, exit_code=1)
    assert pod_phase({"restartPolicy": "Never"}, [], [done_ok]) == "Succeeded"
    assert pod_phase({"restartPolicy": "Never"}, [], [done_bad]) == "Failed"
    assert pod_phase({"restartPolicy": "OnFailure"}, [], [done_bad]) == "Running"
    assert pod_phase({"restartPolicy": "Always"}, [], [done_ok]) == "Running"
    crashloop = rec(state=WAITING, reason="CrashLoopBackOff", last_terminated={"exitCode": 1})
    assert pod_phase({"restartPolicy": "Always"}, [], [crashloop]) == "Running"
    assert pod_phase({"restartPolicy": "Always"}, [], [rec(), rec(state=RUNNING)]) == "Pending"


def test_init_containers_gate_initialized_and_phase():
    spec = pod(inits=2)["spec"]
    i0 = rec("init0", state=TERMINATED, exit_code=0)
    i1 = rec("init1", state=RUNNING)
    st = pod_status(pod(inits=2), PodView(host_ip="h", sandbox_ready=True), [i0, i1],
                    [rec(reason="PodInitializing")], NOW)
    assert st["phase"] == "Pending"
    assert conds(st)["Initialized"]["message"] == "containers with incomplete status: [init1]"
    assert [s["name"] for s in st["initContainerStatuses"]] == ["init0", "init1"]
    assert st["containerStatuses"][0]["state"]["waiting"]["reason"] == "PodInitializing"
    failed = rec("init1", state=TERMINATED, exit_code=2)
    assert pod_phase({**spec, "restartPolicy": "Never"}, [i0, failed], [rec()]) == "Failed"
    assert pod_phase({**spec, "restartPolicy": "Always"}, [i0, failed], [rec()]) == "Pending"


def test_completed_pod_conditions_and_last_state():
    r = rec(state=TERMINATED)
    r.terminate(0, NOW - 2, NOW)
    st = pod_status(pod("Never"), PodView(host_ip="h"), [], [r], NOW)
    c = conds(st)
    assert st["phase"] == "Succeeded"
    assert c["Ready"]["status"] == "False" and c["Ready"]["reason"] == "PodCompleted"
    assert c["Initialized"]["reason"] == "PodCompleted"
    term = st["containerStatuses"][0]["state"]["terminated"]
    assert term["reason"] == "Completed" and term["exitCode"] == 0
    r2 = rec(state=RUNNING, restart_count=1, last_terminated={"exitCode": 137, "reason": "Error"})
    assert pod_status(pod(), PodView(host_ip="h"), [], [r2], NOW)["containerStatuses"][0]["lastState"] == {
        "terminated": {"exitCode": 137, "reason": "Error"}}


def test_transition_time_kept_when_status_unchanged_and_patch():
    r = rec(state=RUNNING, ready=True, started=True, started_at=NOW)
    view = PodView(host_ip="h", sandbox_ready=True)
    first = pod_status(pod(), view, [], [r], NOW)
    p = pod()
    p["status"] = first
    second = pod_status(p, view, [], [r], NOW + 100)
    assert conds(second)["Ready"]["lastTransitionTime"] == conds(first)["Ready"]["lastTransitionTime"]
    assert status_patch(first, second) == {}
    r.ready = False
    third = pod_status(p, view, [], [r], NOW + 100)
    assert conds(third)["Ready"]["lastTransitionTime"] == "2023-11-14T22:15:00Z"
    assert set(status_patch(first, third)) == {"conditions", "containerStatuses"}
    assert status_patch({"podIP": "1.2.3.4", "phase": "Running"}, {"phase": "Running"}) == {"podIP": None}
