"""The Job controller's pure core (skiff.controllers.job.plan and pod_for): what it creates,
deletes and reports for a Job and its pods at a given time, as kube-controller-manager's job and
ttl-after-finished controllers do."""

from __future__ import annotations

import copy

from skiff.api.defaults import apply_defaults
from skiff.controllers.job import INDEX_ENV, INDEX_KEY, format_indexes, parse_indexes, plan, pod_for

T0 = 1_800_000_000.0


def ts(t: float) -> str:
    import time

    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(t))


def job(**spec) -> dict:
    j = {"apiVersion": "batch/v1", "kind": "Job",
         "metadata": {"name": "work", "namespace": "default", "uid": "u-1"},
         "spec": {"template": {"metadata": {"labels": {"job-name": "work"}},
                               "spec": {"restartPolicy": "Never",
                                        "containers": [{"name": "c", "image": "busybox"}]}}, **spec}}
    apply_defaults(j)
    return j


_n = 0


def pod(phase: str = "Running", index: int | None = None, restarts: int = 0, finished: float = T0,
        deleting: bool = False, ready: bool = False) -> dict:
    global _n
    _n += 1
    p = {"metadata": {"name": f"work-{_n}", "uid": f"p-{_n}", "creationTimestamp": ts(T0)},
         "status": {"phase": phase, "containerStatuses": [{"restartCount": restarts, "state": (
             {"terminated": {"finishedAt": ts(finished)}} if phase in ("Succeeded", "Failed") else {"running": {}})}]}}
    if index is not None:
        p["metadata"]["annotations"] = {INDEX_KEY: str(index)}
    if deleting:
        p["metadata"]["deletionTimestamp"] = ts(T0)
    if ready:
        p["status"]["conditions"] = [{"type": "Ready", "status": "True"}]
    return p


_counted: dict[int, list[str]] = {}  # id(job) -> the previous plan's counted pods


def step(j: dict, pods: list[dict], now: float = T0):
    """One sync, the Job carrying the status it produced and the pods it counted (as the controller
    remembers them)."""
    out = plan(j, pods, now, _counted.get(id(j), ()))
    j["status"] = copy.deepcopy(out.status)
    _counted[id(j)] = out.counted
    return out


def conditions(j: dict) -> list[tuple[str, str, str]]:
    return [(c["type"], c["status"], c["reason"]) for c in j["status"].get("conditions") or []]


def test_defaults_one_pod_to_one_completion():
    j = job()
    assert (j["spec"]["completions"], j["spec"]["parallelism"], j["spec"]["backoffLimit"]) == (1, 1, 6)
    assert j["spec"]["completionMode"] == "NonIndexed" and j["spec"]["suspend"] is False
    assert "completions" not in job(parallelism=3)["spec"]  # a work queue


def test_runs_completions_with_at_most_parallelism_pods_and_completes():
    j = job(completions=3, parallelism=2)
    first = step(j, [])
    assert first.create == [None, None] and j["status"]["startTime"] == ts(T0)
    a, b = pod(), pod(ready=True)
    assert step(j, [a, b]).create == []
    assert (j["status"]["active"], j["status"]["ready"]) == (2, 1)
    a_done = pod("Succeeded")
    assert step(j, [a_done, b]).create == [None]  # one left to do, one running
    assert j["status"]["succeeded"] == 1
    out = step(j, [a_done, pod("Succeeded"), pod("Succeeded")], now=T0 + 5)
    assert out.create == [] and out.events == [("Normal", "Completed", "Job completed")]
    assert conditions(j) == [("SuccessCriteriaMet", "True", "CompletionsReached"),
                             ("Complete", "True", "CompletionsReached")]
    assert j["status"]["completionTime"] == ts(T0 + 5) and j["status"]["succeeded"] == 3
    # Counted pods may go away: the count stays, and nothing runs again.
    again = step(j, [], now=T0 + 6)
    assert again.create == [] and j["status"]["succeeded"] == 3 and again.events == []


def test_a_work_queue_ends_when_one_pod_succeeded_and_none_runs():
    j = job(parallelism=2)
    assert step(j, []).create == [None, None]
    done, running = pod("Succeeded"), pod()
    out = step(j, [done, running])
    assert out.create == [] and not conditions(j)  # no new pod once one has succeeded
    step(j, [done, pod("Succeeded")])
    assert ("Complete", "True", "CompletionsReached") in conditions(j)


def test_indexed_jobs_run_each_index_once():
    j = job(completions=4, parallelism=2, completionMode="Indexed")
    assert step(j, []).create == [0, 1]
    out = step(j, [pod("Succeeded", index=0), pod(index=1)])
    assert out.create == [2] and j["status"]["completedIndexes"] == "0"
    step(j, [pod("Succeeded", index=0), pod("Succeeded", index=1), pod("Succeeded", index=2), pod(index=3)])
    assert j["status"]["completedIndexes"] == "0-2" and j["status"]["succeeded"] == 3
    assert format_indexes({0, 1, 2, 5, 7, 8}) == "0-2,5,7-8" and parse_indexes("0-2,5,7-8") == {0, 1, 2, 5, 7, 8}


def test_indexed_pods_carry_their_index():
    j = job(completions=2, completionMode="Indexed")
    p = pod_for(j, 1)
    assert p["metadata"]["generateName"] == "work-1-"
    assert p["metadata"]["annotations"][INDEX_KEY] == "1" and p["metadata"]["labels"][INDEX_KEY] == "1"
    assert p["spec"]["hostname"] == "work-1"
    env = p["spec"]["containers"][0]["env"]
    assert env == [{"name": INDEX_ENV, "valueFrom": {"fieldRef": {
        "apiVersion": "v1", "fieldPath": f"metadata.annotations['{INDEX_KEY}']"}}}]
    assert p["metadata"]["ownerReferences"][0] == {"apiVersion": "batch/v1", "kind": "Job", "name": "work",
                                                   "uid": "u-1", "controller": True, "blockOwnerDeletion": True}
    plain = pod_for(job(), None)
    assert plain["metadata"]["generateName"] == "work-" and "hostname" not in plain["spec"]


def test_a_failed_pod_is_replaced_after_the_back_off_until_the_limit():
    j = job(backoffLimit=2)
    step(j, [])
    f1 = pod("Failed", finished=T0)
    out = step(j, [f1], now=T0 + 1)
    assert out.create == [] and out.requeue_after == 9  # 10 s after the failure
    assert step(j, [f1], now=T0 + 10).create == [None]
    f2 = pod("Failed", finished=T0 + 11)
    out = step(j, [f1, f2], now=T0 + 12)
    assert out.create == [] and out.requeue_after == 19  # then 20 s
    assert j["status"]["failed"] == 2 and not conditions(j)
    running = pod()
    out = step(j, [f1, f2, pod("Failed", finished=T0 + 40), running], now=T0 + 41)
    assert out.delete == [running["metadata"]["name"]] and out.events == [
        ("Warning", "BackoffLimitExceeded", "Job has reached the specified backoff limit")]
    assert conditions(j) == [("FailureTarget", "True", "BackoffLimitExceeded"),
                             ("Failed", "True", "BackoffLimitExceeded")]
    assert "completionTime" not in j["status"]


def test_a_failed_job_stops_its_running_pods():
    j = job(backoffLimit=0, parallelism=2, completions=2)
    step(j, [])
    running = pod()
    out = step(j, [pod("Failed"), running])
    assert ("Failed", "True", "BackoffLimitExceeded") in conditions(j) and out.delete == [running["metadata"]["name"]]


def test_restarts_count_against_the_limit_under_on_failure():
    j = job(backoffLimit=2)
    j["spec"]["template"]["spec"]["restartPolicy"] = "OnFailure"
    step(j, [])
    step(j, [pod(restarts=2)])
    assert not conditions(j)
    flapping = pod(restarts=3)
    out = step(j, [flapping])
    assert ("Failed", "True", "BackoffLimitExceeded") in conditions(j) and out.delete == [flapping["metadata"]["name"]]


def test_active_deadline():
    j = job(activeDeadlineSeconds=30)
    assert step(j, []).requeue_after == 30
    running = pod()
    out = step(j, [running], now=T0 + 30)
    assert ("Failed", "True", "DeadlineExceeded") in conditions(j) and out.delete == [running["metadata"]["name"]]
    assert out.events == [("Warning", "DeadlineExceeded", "Job was active longer than specified deadline")]


def test_suspend_and_resume():
    j = job(suspend=True)
    out = step(j, [])
    assert out.create == [] and conditions(j) == [("Suspended", "True", "JobSuspended")]
    assert "startTime" not in j["status"]
    j["spec"]["suspend"] = False
    assert step(j, [], now=T0 + 1).create == [None]
    assert conditions(j) == [("Suspended", "False", "JobResumed")] and j["status"]["startTime"] == ts(T0 + 1)
    running = pod()
    j["spec"]["suspend"] = True
    assert step(j, [running], now=T0 + 2).delete == [running["metadata"]["name"]]


def test_ttl_after_finished_deletes_the_job():
    j = job(ttlSecondsAfterFinished=5)
    step(j, [])
    step(j, [pod("Succeeded")], now=T0 + 1)
    assert step(j, [], now=T0 + 3).requeue_after == 3
    assert step(j, [], now=T0 + 6).delete_job
