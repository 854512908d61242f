"""Jobs in a real cluster, driven by the real kubectl: `kubectl create job` (a protobuf body), waiting
for completion, `kubectl logs job/...`, parallel and Indexed Jobs, the backoff limit, deletion with
the Job's pods, ttlSecondsAfterFinished, and the API server's refusal of a Job whose pods would
restart forever.

Needs root (a cluster). `busybox` is the host's programs.
"""

from __future__ import annotations

import json
import os

import pytest

from tests.support import wait_for

pytestmark = pytest.mark.skipif(os.geteuid() != 0, reason="needs root for network namespaces")


def job(name: str, script: str, restart: str = "Never", **spec) -> dict:
    return {"apiVersion": "batch/v1", "kind": "Job", "metadata": {"name": name},
            "spec": {"template": {"spec": {"restartPolicy": restart, "terminationGracePeriodSeconds": 0,
                                           "containers": [{"name": "c", "image": "busybox",
                                                           "command": ["sh", "-c", script]}]}}, **spec}}


def apply(k, ns: str, doc: dict):
    return k.run("apply", "-n", ns, "-f", "-", input=json.dumps(doc), check=False)


def job_pods(k, ns: str, name: str) -> list[dict]:
    return json.loads(k("get", "pods", "-n", ns, "-l", f"batch.kubernetes.io/job-name={name}", "-o", "json"))["items"]


def test_kubectl_create_job_runs_once_to_completion(cluster, cluster_ns):
    k, ns = cluster.kubectl, cluster_ns
    k("create", "job", "hello", "-n", ns, "--image=busybox", "--", "sh", "-c", "echo hello from $HOSTNAME")
    k("wait", "-n", ns, "--for=condition=complete", "job/hello", "--timeout=30s")
    pods = job_pods(k, ns, "hello")
    assert len(pods) == 1 and pods[0]["status"]["phase"] == "Succeeded"
    assert k("logs", "-n", ns, "job/hello") == f"hello from {pods[0]['metadata']['name']}\n"
    row = k("get", "job", "-n", ns, "hello", "--no-headers").split()
    assert row[:3] == ["hello", "Complete", "1/1"], row
    status = json.loads(k("get", "job", "-n", ns, "hello", "-o", "json"))["status"]
    assert status["succeeded"] == 1 and "completionTime" in status
    assert [c["type"] for c in status["conditions"]] == ["SuccessCriteriaMet", "Complete"]
    events = k("get", "events", "-n", ns, "--field-selector", "involvedObject.kind=Job", "-o",
               "custom-columns=REASON:.reason", "--no-headers").split()
    assert events == ["SuccessfulCreate", "Completed"], events


def test_an_indexed_job_runs_each_index_once_in_parallel(cluster, cluster_ns):
    k, ns = cluster.kubectl, cluster_ns
    res = apply(k, ns, job("idx", "echo $JOB_COMPLETION_INDEX $(hostname)", completions=3, parallelism=3,
                           completionMode="Indexed"))
    assert res.returncode == 0, res.stderr
    k("wait", "-n", ns, "--for=condition=complete", "job/idx", "--timeout=30s")
    pods = job_pods(k, ns, "idx")
    assert sorted(p["metadata"]["annotations"]["batch.kubernetes.io/job-completion-index"] for p in pods) == \
        ["0", "1", "2"]
    lines = sorted(k("logs", "-n", ns, "-l", "batch.kubernetes.io/job-name=idx").splitlines())
    assert lines == ["0 idx-0", "1 idx-1", "2 idx-2"]
    assert json.loads(k("get", "job", "-n", ns, "idx", "-o", "json"))["status"]["completedIndexes"] == "0-2"


def test_a_failing_job_stops_at_its_backoff_limit_and_expires(cluster, cluster_ns):
    k, ns = cluster.kubectl, cluster_ns
    assert apply(k, ns, job("fails", "exit 3", backoffLimit=0)).returncode == 0
    k("wait", "-n", ns, "--for=condition=failed", "job/fails", "--timeout=30s")
    described = k("describe", "job", "-n", ns, "fails")
    assert "BackoffLimitExceeded" in described and "Job has reached the specified backoff limit" in described
    assert len(job_pods(k, ns, "fails")) == 1  # no second try
    # ttlSecondsAfterFinished, set on the finished Job: it goes a second after, and its pod with it.
    k("patch", "job", "-n", ns, "fails", "-p", '{"spec":{"ttlSecondsAfterFinished":1}}')
    wait_for(lambda: k.run("get", "job", "-n", ns, "fails", check=False).returncode != 0, 15, 0.2)
    wait_for(lambda: not job_pods(k, ns, "fails"), 15, 0.2)


def test_deleting_a_job_deletes_its_pods(cluster, cluster_ns):
    k, ns = cluster.kubectl, cluster_ns
    assert apply(k, ns, job("long", "sleep 3600", parallelism=2, completions=4)).returncode == 0
    wait_for(lambda: [p["status"].get("phase") for p in job_pods(k, ns, "long")] == ["Running", "Running"], 30, 0.2)
    assert k("get", "job", "-n", ns, "long", "--no-headers").split()[1:3] == ["Running", "0/4"]
    k("delete", "job", "-n", ns, "long")
    wait_for(lambda: not job_pods(k, ns, "long"), 30, 0.2)


def test_a_job_that_would_restart_forever_is_refused(cluster, cluster_ns):
    k, ns = cluster.kubectl, cluster_ns
    res = apply(k, ns, job("forever", "true", restart="Always"))
    assert res.returncode != 0
    assert ('The Job "forever" is invalid: spec.template.spec.restartPolicy: Unsupported value: "Always": '
            'supported values: "OnFailure", "Never"') in res.stderr, res.stderr
