"""Server-side Tables (skiff.api.tables): columns and cells as kube-apiserver 1.33 prints them.

Expected cells come from upstream's printers_test.go cases and from what a real cluster shows.
"""

from __future__ import annotations

import datetime as dt

import pytest

from skiff.api import resources
from skiff.api.schema import definitions
from skiff.api.tables import build_table, column_definitions, human_duration, row_cells

NOW = dt.datetime(2025, 6, 1, 12, 0, 0, tzinfo=dt.UTC)


def ago(**kw) -> str:
    return (NOW - dt.timedelta(**kw)).strftime("%Y-%m-%dT%H:%M:%SZ")


def info(group: str, kind: str) -> resources.ResourceInfo:
    return next(r for r in resources.RESOURCES if r.group == group and r.kind == kind)


POD, SVC, NODE = info("", "Pod"), info("", "Service"), info("", "Node")


@pytest.mark.parametrize(
    ("seconds", "text"),
    [
        (0, "0s"),
        (26, "26s"),
        (119.9, "119s"),
        (120, "2m"),
        (310, "5m10s"),
        (599, "9m59s"),
        (600, "10m"),
        (179 * 60 + 59, "179m"),
        (3 * 3600 + 600, "3h10m"),
        (5 * 3600, "5h"),
        (8 * 3600, "8h"),
        (47 * 3600, "47h"),
        (51 * 3600, "2d3h"),
        (3 * 86400, "3d"),
        (9 * 86400, "9d"),
        (729 * 86400, "729d"),
        (730 * 86400, "2y"),
        (740 * 86400, "2y10d"),
        (8 * 365 * 86400, "8y"),
        (-1.5, "0s"),
        (-2, "<invalid>"),
    ],
)
def test_human_duration(seconds, text):
    assert human_duration(seconds) == text


def test_every_served_resource_has_upstream_columns():
    for r in resources.RESOURCES:
        if r.kind in resources.REVIEW_KINDS:
            continue  # never listed: created and answered at once
        cols = column_definitions(r)
        assert [set(c) for c in cols] == [{"name", "type", "format", "description", "priority"}] * len(cols)
        assert cols[0]["name"] in ("Name", "Last Seen"), r.kind
        assert "Created At" not in [c["name"] for c in cols], f"{r.kind} fell back to the default table"


def test_column_names_types_priorities():
    def shape(group, kind):
        return [
            (c["name"], c["type"], c["format"], c["priority"]) for c in column_definitions(info(group, kind))
        ]

    assert shape("", "Pod") == [
        ("Name", "string", "name", 0),
        ("Ready", "string", "", 0),
        ("Status", "string", "", 0),
        ("Restarts", "string", "", 0),
        ("Age", "string", "", 0),
        ("IP", "string", "", 1),
        ("Node", "string", "", 1),
        ("Nominated Node", "string", "", 1),
        ("Readiness Gates", "string", "", 1),
    ]
    assert [c[0] for c in shape("", "Event")] == [
        "Last Seen",
        "Type",
        "Reason",
        "Object",
        "Subobject",
        "Source",
        "Message",
        "First Seen",
        "Count",
        "Name",
    ]
    assert [c[3] for c in shape("", "Event")] == [0, 0, 0, 0, 1, 1, 0, 1, 1, 1]
    assert shape("events.k8s.io", "Event") == shape("", "Event")
    assert [c[1] for c in shape("apps", "ReplicaSet")][:4] == ["string", "integer", "integer", "integer"]
    assert [c[0] for c in shape("networking.k8s.io", "Ingress")] == [
        "Name",
        "Class",
        "Hosts",
        "Address",
        "Ports",
        "Age",
    ]


def test_descriptions_are_the_api_field_docs():
    d = definitions()
    cols = {c["name"]: c["description"] for c in column_definitions(SVC)}
    assert (
        cols["Name"]
        == d["io.k8s.apimachinery.pkg.apis.meta.v1.ObjectMeta"]["properties"]["name"]["description"]
    )
    assert (
        cols["Age"]
        == d["io.k8s.apimachinery.pkg.apis.meta.v1.ObjectMeta"]["properties"]["creationTimestamp"][
            "description"
        ]
    )
    assert cols["Cluster-IP"] == d["io.k8s.api.core.v1.ServiceSpec"]["properties"]["clusterIP"]["description"]
    assert (
        column_definitions(POD)[1]["description"]
        == "The aggregate readiness state of this pod for accepting traffic."
    )


# --- pods: upstream's TestPrintPod cases ------------------------------------------------------------


def running(ready=True, restarts=0, finished=None):
    cs = {"ready": ready, "restartCount": restarts, "state": {"running": {}}}
    if finished is not None:
        cs["lastState"] = {"terminated": {"finishedAt": finished}}
    return cs


def pod(name, n=1, init=0, phase="Running", statuses=(), init_statuses=(), **status):
    return {
        "metadata": {"name": name},
        "spec": {
            "containers": [{"name": f"c{i}"} for i in range(n)],
            "initContainers": [{"name": f"i{i}"} for i in range(init)],
        },
        "status": {
            "phase": phase,
            "containerStatuses": list(statuses),
            "initContainerStatuses": list(init_statuses),
            **status,
        },
    }


PODS = [
    (
        pod("test1", 2, phase="podPhase", statuses=[running(restarts=3), {"restartCount": 3}]),
        ["test1", "1/2", "podPhase", "6"],
    ),
    (
        pod(
            "test2",
            2,
            phase="podPhase",
            statuses=[
                running(restarts=3),
                {"state": {"waiting": {"reason": "ContainerWaitingReason"}}, "restartCount": 3},
            ],
        ),
        ["test2", "1/2", "ContainerWaitingReason", "6"],
    ),
    (
        pod(
            "test3",
            2,
            phase="podPhase",
            statuses=[
                {"state": {"waiting": {"reason": "ContainerWaitingReason"}}, "restartCount": 3},
                {"state": {"terminated": {"reason": "ContainerTerminatedReason"}}, "restartCount": 3},
            ],
        ),
        ["test3", "0/2", "ContainerWaitingReason", "6"],
    ),
    (
        pod("test4", 2, phase="podPhase", statuses=[running(restarts=3), {"ready": True, "restartCount": 3}]),
        ["test4", "1/2", "podPhase", "6"],
    ),
    (
        pod(
            "test5",
            2,
            phase="podPhase",
            reason="podReason",
            statuses=[running(restarts=3), {"ready": True, "restartCount": 3}],
        ),
        ["test5", "1/2", "podReason", "6"],
    ),
    (
        pod(
            "test6",
            2,
            statuses=[
                {
                    "ready": True,
                    "restartCount": 3,
                    "state": {"terminated": {"reason": "Completed", "exitCode": 0}},
                },
                running(restarts=3),
            ],
        ),
        ["test6", "1/2", "NotReady", "6"],
    ),
    (
        pod(
            "test6b",
            2,
            conditions=[{"type": "Ready", "status": "True"}],
            statuses=[
                {
                    "ready": True,
                    "restartCount": 3,
                    "state": {"terminated": {"reason": "Completed", "exitCode": 0}},
                },
                running(restarts=3),
            ],
        ),
        ["test6b", "1/2", "Running", "6"],
    ),
    (
        pod(
            "test7",
            1,
            init=1,
            phase="podPhase",
            init_statuses=[running(ready=False, restarts=3, finished=ago(seconds=10))],
            statuses=[{"ready": False, "state": {"waiting": {}}}],
        ),
        ["test7", "0/1", "Init:0/1", "3 (10s ago)"],
    ),
    (
        pod(
            "test9",
            1,
            init=2,
            phase="podPhase",
            init_statuses=[
                {"state": {"terminated": {}}},
                running(ready=False, restarts=3, finished=ago(seconds=10)),
            ],
            statuses=[{"state": {"waiting": {}}}],
        ),
        ["test9", "0/1", "Init:1/2", "3 (10s ago)"],
    ),
    (
        pod(
            "test10",
            1,
            init=2,
            phase="podPhase",
            init_statuses=[
                {
                    "restartCount": 2,
                    "state": {"terminated": {}},
                    "lastState": {"terminated": {"finishedAt": ago(minutes=2)}},
                },
                running(ready=False, restarts=3, finished=ago(seconds=10)),
            ],
            statuses=[{"state": {"waiting": {}}}],
        ),
        ["test10", "0/1", "Init:1/2", "5 (10s ago)"],
    ),
    (
        pod(
            "test11",
            1,
            init=1,
            init_statuses=[
                {
                    "restartCount": 2,
                    "state": {"terminated": {}},
                    "lastState": {"terminated": {"finishedAt": ago(minutes=2)}},
                }
            ],
            statuses=[running(ready=False, restarts=4, finished=ago(seconds=20))],
        ),
        ["test11", "0/1", "Running", "4 (20s ago)"],
    ),
    (
        pod("test12", statuses=[running(restarts=3, finished=ago(days=5))]),
        ["test12", "1/1", "Running", "3 (5d ago)"],
    ),
    (
        pod(
            "test14",
            2,
            statuses=[running(restarts=6, finished=ago(days=5)), running(restarts=3, finished=ago(days=20))],
        ),
        ["test14", "2/2", "Running", "9 (5d ago)"],
    ),
    (
        pod(
            "test15",
            2,
            phase="podPhase",
            conditions=[{"type": "PodScheduled", "status": "False", "reason": "SchedulingGated"}],
        ),
        ["test15", "0/2", "SchedulingGated", "0"],
    ),
    (
        pod(
            "test16",
            phase="Succeeded",
            statuses=[{"state": {"terminated": {"reason": "Completed", "exitCode": 0}}}],
        ),
        ["test16", "0/1", "Completed", "0"],
    ),
    (
        pod(
            "test17", phase="Failed", statuses=[{"state": {"terminated": {"reason": "Error", "exitCode": 1}}}]
        ),
        ["test17", "0/1", "Error", "0"],
    ),
    # what Skiff's kubelet reports while starting, pulling a missing image and crash-looping
    (
        pod("creating", phase="Pending", statuses=[{"state": {"waiting": {"reason": "ContainerCreating"}}}]),
        ["creating", "0/1", "ContainerCreating", "0"],
    ),
    (
        pod("pull", phase="Pending", statuses=[{"state": {"waiting": {"reason": "ImagePullBackOff"}}}]),
        ["pull", "0/1", "ImagePullBackOff", "0"],
    ),
    (
        pod(
            "crash",
            statuses=[
                {
                    "restartCount": 5,
                    "state": {"waiting": {"reason": "CrashLoopBackOff"}},
                    "lastState": {"terminated": {"exitCode": 1, "finishedAt": ago(minutes=5)}},
                }
            ],
        ),
        ["crash", "0/1", "CrashLoopBackOff", "5 (5m ago)"],
    ),
    (
        pod("killed", phase="Failed", statuses=[{"state": {"terminated": {"exitCode": 0, "signal": 9}}}]),
        ["killed", "0/1", "Signal:9", "0"],
    ),
    (
        pod(
            "initfail", 1, init=1, phase="Pending", init_statuses=[{"state": {"terminated": {"exitCode": 2}}}]
        ),
        ["initfail", "0/1", "Init:ExitCode:2", "0"],
    ),
    (
        pod(
            "initpull",
            1,
            init=1,
            phase="Pending",
            init_statuses=[{"state": {"waiting": {"reason": "ErrImagePull"}}}],
        ),
        ["initpull", "0/1", "Init:ErrImagePull", "0"],
    ),
]


@pytest.mark.parametrize(("obj", "expected"), PODS, ids=[p[1][0] for p in PODS])
def test_pod_cells(obj, expected):
    assert row_cells(POD, obj, NOW) == [*expected, "<unknown>", "<none>", "<none>", "<none>", "<none>"]


def test_pod_terminating_unknown_and_wide_cells():
    p = pod("web", statuses=[running()], podIP="10.244.1.7", podIPs=[{"ip": "10.244.1.7"}])
    p["metadata"]["creationTimestamp"] = ago(minutes=3, seconds=5)
    p["spec"]["nodeName"] = "node-1"
    p["spec"]["readinessGates"] = [{"conditionType": "example.com/lb"}]
    p["status"]["conditions"] = [{"type": "example.com/lb", "status": "True"}]
    assert row_cells(POD, p, NOW) == [
        "web",
        "1/1",
        "Running",
        "0",
        "3m5s",
        "10.244.1.7",
        "node-1",
        "<none>",
        "1/1",
    ]
    p["metadata"]["deletionTimestamp"] = ago(seconds=1)
    assert row_cells(POD, p, NOW)[2] == "Terminating"
    p["status"]["reason"] = "NodeLost"
    assert row_cells(POD, p, NOW)[2] == "Unknown"
    done = pod("done", phase="Succeeded", statuses=[{"state": {"terminated": {"reason": "Completed"}}}])
    done["metadata"]["deletionTimestamp"] = ago(seconds=1)
    assert row_cells(POD, done, NOW)[2] == "Completed"


def test_restartable_init_container_counts_as_container():
    p = pod(
        "sidecar",
        1,
        init=1,
        conditions=[{"type": "Initialized", "status": "True"}],
        init_statuses=[
            {
                "name": "i0",
                "started": True,
                "ready": True,
                "restartCount": 1,
                "state": {"running": {}},
                "lastState": {"terminated": {"finishedAt": ago(minutes=1)}},
            }
        ],
        statuses=[running()],
    )
    p["spec"]["initContainers"][0]["restartPolicy"] = "Always"
    assert row_cells(POD, p, NOW)[:4] == ["sidecar", "2/2", "Running", "1 (60s ago)"]


# --- services --------------------------------------------------------------------------------------


def svc(type_, ports=(), cluster_ips=("10.96.0.20",), selector=None, **spec_extra):
    return {
        "metadata": {"name": "s", "creationTimestamp": ago(seconds=26)},
        "spec": {
            "type": type_,
            "clusterIPs": list(cluster_ips),
            "ports": list(ports),
            "selector": selector,
            **spec_extra,
        },
        "status": {"loadBalancer": {}},
    }


def test_service_cells():
    tcp80 = {"port": 80, "protocol": "TCP"}
    assert row_cells(SVC, svc("ClusterIP", [tcp80], selector={"app": "web", "tier": "a"}), NOW) == [
        "s",
        "ClusterIP",
        "10.96.0.20",
        "<none>",
        "80/TCP",
        "26s",
        "app=web,tier=a",
    ]
    np = svc(
        "NodePort", [{"port": 80, "nodePort": 30008, "protocol": "TCP"}, {"port": 53, "protocol": "UDP"}]
    )
    assert row_cells(SVC, np, NOW)[3:5] == ["<none>", "80:30008/TCP,53/UDP"]
    lb = svc("LoadBalancer", [tcp80])
    assert row_cells(SVC, lb, NOW)[3] == "<pending>"
    lb["status"]["loadBalancer"] = {
        "ingress": [{"ip": "172.18.255.201"}, {"ip": "172.18.255.200"}, {"hostname": "lb.example"}]
    }
    assert row_cells(SVC, lb, NOW)[3] == "172.18.255.200,172.18.255.201,lb.example"
    lb["spec"]["externalIPs"] = ["192.0.2.1"]
    assert row_cells(SVC, lb, NOW)[3] == "172.18.255.200,172.18.255.201,lb.example,192.0.2.1"
    assert (
        row_cells(SVC, svc("ClusterIP", [tcp80], externalIPs=["1.2.3.4", "5.6.7.8"]), NOW)[3]
        == "1.2.3.4,5.6.7.8"
    )
    ext = svc("ExternalName", cluster_ips=(), externalName="example.com")
    assert row_cells(SVC, ext, NOW)[2:5] == ["<none>", "example.com", "<none>"]
    assert row_cells(SVC, svc("ClusterIP", cluster_ips=("None",)), NOW)[2] == "None"


# --- workloads -------------------------------------------------------------------------------------


def test_deployment_and_replicaset_cells():
    template = {
        "spec": {
            "containers": [{"name": "nginx", "image": "nginx:1.25"}, {"name": "log", "image": "busybox"}]
        }
    }
    dep = {
        "metadata": {"name": "web", "creationTimestamp": ago(hours=3, minutes=10)},
        "spec": {
            "replicas": 3,
            "selector": {
                "matchLabels": {"app": "web"},
                "matchExpressions": [{"key": "env", "operator": "In", "values": ["prod", "dev"]}],
            },
            "template": template,
        },
        "status": {"readyReplicas": 2, "updatedReplicas": 3, "availableReplicas": 2},
    }
    assert row_cells(info("apps", "Deployment"), dep, NOW) == [
        "web",
        "2/3",
        3,
        2,
        "3h10m",
        "nginx,log",
        "nginx:1.25,busybox",
        "app=web,env in (dev,prod)",
    ]
    rs = {
        "metadata": {"name": "web-5d4f", "creationTimestamp": ago(days=2, hours=3)},
        "spec": {
            "replicas": 3,
            "selector": {"matchLabels": {"pod-template-hash": "5d4f", "app": "web"}},
            "template": template,
        },
        "status": {"replicas": 3, "readyReplicas": 1},
    }
    assert row_cells(info("apps", "ReplicaSet"), rs, NOW) == [
        "web-5d4f",
        3,
        3,
        1,
        "2d3h",
        "nginx,log",
        "nginx:1.25,busybox",
        "app=web,pod-template-hash=5d4f",
    ]
    rs["spec"]["selector"] = {}
    assert row_cells(info("apps", "ReplicaSet"), rs, NOW)[-1] == "<none>"


def test_daemon_set_cells():
    ds_info = info("apps", "DaemonSet")
    assert [(c["name"], c["type"]) for c in column_definitions(ds_info)][:7] == [
        ("Name", "string"), ("Desired", "integer"), ("Current", "integer"), ("Ready", "integer"),
        ("Up-to-date", "integer"), ("Available", "integer"), ("Node Selector", "string")]
    ds = {"metadata": {"name": "kube-proxy", "creationTimestamp": ago(days=3)},
          "spec": {"selector": {"matchLabels": {"k8s-app": "kube-proxy"}},
                   "template": {"spec": {"nodeSelector": {"os": "linux", "arch": "amd64"},
                                         "containers": [{"name": "kube-proxy", "image": "kube-proxy:v1.33.0"}]}}},
          "status": {"desiredNumberScheduled": 3, "currentNumberScheduled": 3, "numberReady": 2,
                     "updatedNumberScheduled": 3, "numberAvailable": 2}}
    assert row_cells(ds_info, ds, NOW) == ["kube-proxy", 3, 3, 2, 3, 2, "arch=amd64,os=linux", "3d", "kube-proxy",
                                           "kube-proxy:v1.33.0", "k8s-app=kube-proxy"]
    ds["spec"]["template"]["spec"].pop("nodeSelector")
    assert row_cells(ds_info, ds, NOW)[6] == "<none>"


def test_stateful_set_cells():
    sts_info = info("apps", "StatefulSet")
    assert [c["name"] for c in column_definitions(sts_info)] == ["Name", "Ready", "Age", "Containers", "Images"]
    sts = {"metadata": {"name": "web", "creationTimestamp": ago(minutes=2)},
           "spec": {"replicas": 3, "template": {"spec": {"containers": [{"name": "nginx", "image": "nginx-slim:0.21"}]}}},
           "status": {"readyReplicas": 2}}
    assert row_cells(sts_info, sts, NOW) == ["web", "2/3", "2m", "nginx", "nginx-slim:0.21"]


def test_job_cells():
    # printJob: completions, duration (to now while running), and the status its conditions say.
    job = info("batch", "Job")
    assert [c["name"] for c in column_definitions(job)] == [
        "Name", "Status", "Completions", "Duration", "Age", "Containers", "Images", "Selector"]
    template = {"spec": {"containers": [{"name": "pi", "image": "perl:5.34.0"}]}}
    j = {"metadata": {"name": "pi", "creationTimestamp": ago(minutes=5)},
         "spec": {"completions": 3, "parallelism": 1, "template": template,
                  "selector": {"matchLabels": {"batch.kubernetes.io/controller-uid": "u1"}}},
         "status": {"succeeded": 1, "startTime": ago(minutes=4, seconds=30)}}
    assert row_cells(job, j, NOW) == ["pi", "Running", "1/3", "4m30s", "5m", "pi", "perl:5.34.0",
                                      "batch.kubernetes.io/controller-uid=u1"]
    j["status"].update(succeeded=3, completionTime=ago(minutes=4),
                       conditions=[{"type": "Complete", "status": "True"}])
    assert row_cells(job, j, NOW)[1:4] == ["Complete", "3/3", "30s"]
    queue = {"metadata": {"name": "q"}, "spec": {"parallelism": 2}, "status": {}}
    assert row_cells(job, queue, NOW)[1:4] == ["Running", "0/1 of 2", ""]
    queue["spec"]["parallelism"] = 1
    queue["metadata"]["deletionTimestamp"] = ago(seconds=1)
    assert row_cells(job, queue, NOW)[1:3] == ["Terminating", "0/1"]
    queue["status"]["conditions"] = [{"type": "Failed", "status": "True"}]
    assert row_cells(job, queue, NOW)[1] == "Failed"


def test_node_cells():
    node = {
        "metadata": {
            "name": "skiff-control-plane",
            "creationTimestamp": ago(days=9),
            "labels": {"node-role.kubernetes.io/control-plane": "", "kubernetes.io/role": "ingress"},
        },
        "spec": {},
        "status": {
            "conditions": [
                {"type": "MemoryPressure", "status": "False"},
                {"type": "Ready", "status": "True"},
            ],
            "addresses": [
                {"type": "Hostname", "address": "n1"},
                {"type": "InternalIP", "address": "172.18.0.2"},
            ],
            "nodeInfo": {
                "kubeletVersion": "v1.33.0-skiff",
                "osImage": "Debian GNU/Linux 12 (bookworm)",
                "kernelVersion": "6.1.0",
                "containerRuntimeVersion": "",
            },
        },
    }
    assert row_cells(NODE, node, NOW) == [
        "skiff-control-plane",
        "Ready",
        "control-plane,ingress",
        "9d",
        "v1.33.0-skiff",
        "172.18.0.2",
        "<none>",
        "Debian GNU/Linux 12 (bookworm)",
        "6.1.0",
        "<unknown>",
    ]
    node["spec"]["unschedulable"] = True
    node["status"]["conditions"][1]["status"] = "Unknown"
    assert row_cells(NODE, node, NOW)[1] == "NotReady,SchedulingDisabled"
    node["status"]["conditions"] = []
    node["metadata"]["labels"] = {}
    assert row_cells(NODE, node, NOW)[1:3] == ["Unknown,SchedulingDisabled", "<none>"]


# --- endpoints and networking ------------------------------------------------------------------------


def test_endpoints_cells():
    ep = info("", "Endpoints")
    meta = {"name": "web", "creationTimestamp": ago(seconds=5)}
    assert row_cells(ep, {"metadata": meta}, NOW) == ["web", "<none>", "5s"]
    five = [{"ip": f"10.244.0.{i}"} for i in range(1, 6)]
    obj = {"metadata": meta, "subsets": [{"addresses": five, "ports": [{"port": 8080}]}]}
    assert row_cells(ep, obj, NOW)[1] == "10.244.0.1:8080,10.244.0.2:8080,10.244.0.3:8080 + 2 more..."
    headless = {
        "metadata": meta,
        "subsets": [{"addresses": five[:2]}, {"addresses": [{"ip": "fd00::1"}], "ports": [{"port": 80}]}],
    }
    assert row_cells(ep, headless, NOW)[1] == "10.244.0.1,10.244.0.2,[fd00::1]:80"


def test_endpointslice_cells():
    es = info("discovery.k8s.io", "EndpointSlice")
    obj = {
        "metadata": {"name": "web-abcde", "creationTimestamp": ago(minutes=1)},
        "addressType": "IPv4",
        "ports": [{"name": "http", "port": 80, "protocol": "TCP"}],
        "endpoints": [{"addresses": ["10.244.1.2"]}, {"addresses": ["10.244.2.3"]}],
    }
    assert row_cells(es, obj, NOW) == ["web-abcde", "IPv4", "80", "10.244.1.2,10.244.2.3", "60s"]
    obj["ports"] = [{"port": p} for p in (1, 2, 3, 4)] + [{"name": "x"}]
    obj["endpoints"] = []
    assert row_cells(es, obj, NOW)[2:4] == ["1,2,3 + 2 more...", "<unset>"]
    obj["ports"] = [{"name": "dns"}, {}]
    assert row_cells(es, obj, NOW)[2] == "dns,*"


def test_ingress_and_ingressclass_cells():
    ing = info("networking.k8s.io", "Ingress")
    obj = {
        "metadata": {"name": "ing1", "creationTimestamp": ago(seconds=3)},
        "spec": {"ingressClassName": "skiff", "rules": [{"host": "foo.com"}, {"host": "bar.com"}]},
        "status": {"loadBalancer": {"ingress": [{"ip": "172.18.0.5"}]}},
    }
    assert row_cells(ing, obj, NOW) == ["ing1", "skiff", "foo.com,bar.com", "172.18.0.5", "80", "3s"]
    obj["spec"] = {
        "tls": [{"hosts": ["a"]}],
        "rules": [{"host": h} for h in "abcde"] + [{}],
        "defaultBackend": {},
    }
    obj["status"] = {}
    assert row_cells(ing, obj, NOW)[1:5] == ["<none>", "a,b,c + 3 more...", "", "80, 443"]
    obj["spec"] = {"rules": [{}]}
    assert row_cells(ing, obj, NOW)[2] == "*"
    ic = info("networking.k8s.io", "IngressClass")
    cls = {
        "metadata": {"name": "skiff", "creationTimestamp": ago(seconds=9)},
        "spec": {
            "controller": "skiff.dev/ingress",
            "parameters": {"apiGroup": "k8s.example.com", "kind": "IngressParameters", "name": "external-lb"},
        },
    }
    assert row_cells(ic, cls, NOW) == [
        "skiff",
        "skiff.dev/ingress",
        "IngressParameters.k8s.example.com/external-lb",
        "9s",
    ]
    del cls["spec"]["parameters"]
    assert row_cells(ic, cls, NOW)[2] == "<none>"


# --- events and the small ones ------------------------------------------------------------------------


def test_core_event_cells():
    ev = {
        "metadata": {"name": "web.17f"},
        "involvedObject": {"kind": "Pod", "name": "web", "fieldPath": "spec.containers{nginx}"},
        "reason": "Pulled",
        "message": '  Container image "nginx" already present on machine\n',
        "type": "Normal",
        "source": {"component": "kubelet", "host": "node-1"},
        "firstTimestamp": ago(minutes=5),
        "lastTimestamp": ago(seconds=40),
        "count": 3,
    }
    assert row_cells(info("", "Event"), ev, NOW) == [
        "40s",
        "Normal",
        "Pulled",
        "pod/web",
        "spec.containers{nginx}",
        "kubelet, node-1",
        'Container image "nginx" already present on machine',
        "5m",
        3,
        "web.17f",
    ]
    new_style = {
        "metadata": {"name": "e"},
        "involvedObject": {"kind": "Node"},
        "type": "Warning",
        "reason": "R",
        "eventTime": "2025-06-01T11:59:30.123456Z",
        "reportingComponent": "skiff-scheduler",
    }
    assert row_cells(info("", "Event"), new_style, NOW) == [
        "29s",
        "Warning",
        "R",
        "node",
        "",
        "skiff-scheduler",
        "",
        "29s",
        1,
        "e",
    ]


def test_events_k8s_io_event_cells():
    ev = {
        "metadata": {"name": "e2"},
        "regarding": {"kind": "Deployment", "name": "web"},
        "reason": "ScalingReplicaSet",
        "note": "Scaled up replica set web-5d4f to 3",
        "type": "Normal",
        "eventTime": "2025-06-01T11:50:00.000000Z",
        "reportingController": "deployment-controller",
        "reportingInstance": "skiff",
        "series": {"count": 4, "lastObservedTime": "2025-06-01T11:59:00.000000Z"},
    }
    assert row_cells(info("events.k8s.io", "Event"), ev, NOW) == [
        "60s",
        "Normal",
        "ScalingReplicaSet",
        "deployment/web",
        "",
        "deployment-controller, skiff",
        "Scaled up replica set web-5d4f to 3",
        "10m",
        4,
        "e2",
    ]


def test_small_resources():
    meta = {"name": "x", "creationTimestamp": ago(hours=50)}
    assert row_cells(info("", "Namespace"), {"metadata": meta, "status": {"phase": "Active"}}, NOW) == [
        "x",
        "Active",
        "2d2h",
    ]
    assert row_cells(
        info("", "ConfigMap"), {"metadata": meta, "data": {"a": "1"}, "binaryData": {"b": ""}}, NOW
    ) == ["x", 2, "2d2h"]
    assert row_cells(info("", "ConfigMap"), {"metadata": meta}, NOW)[1] == 0
    assert row_cells(
        info("", "Secret"), {"metadata": meta, "type": "Opaque", "data": {"a": "Yg=="}}, NOW
    ) == ["x", "Opaque", 1, "2d2h"]
    assert row_cells(info("", "ServiceAccount"), {"metadata": meta}, NOW) == ["x", 0, "2d2h"]
    lease = {"metadata": meta, "spec": {"holderIdentity": "skiff-controller-manager_1"}}
    assert row_cells(info("coordination.k8s.io", "Lease"), lease, NOW) == [
        "x",
        "skiff-controller-manager_1",
        "2d2h",
    ]
    assert row_cells(info("coordination.k8s.io", "Lease"), {"metadata": meta, "spec": {}}, NOW)[1] == ""


# --- the Table --------------------------------------------------------------------------------------------


def test_build_table_rows_objects_and_conditions():
    p1 = pod("web", statuses=[running()])
    p1["metadata"].update(
        namespace="default",
        uid="u1",
        resourceVersion="7",
        labels={"app": "web"},
        creationTimestamp=ago(seconds=1),
    )
    p2 = pod("job", phase="Succeeded", statuses=[{"state": {"terminated": {"reason": "Completed"}}}])
    table = build_table(POD, [p1, p2], NOW, "107")
    assert table["kind"] == "Table" and table["apiVersion"] == "meta.k8s.io/v1"
    assert table["metadata"] == {"resourceVersion": "107"}
    assert [c["name"] for c in table["columnDefinitions"]][:5] == [
        "Name",
        "Ready",
        "Status",
        "Restarts",
        "Age",
    ]
    first, second = table["rows"]
    assert first["cells"][:5] == ["web", "1/1", "Running", "0", "1s"]
    assert first["object"] == {
        "kind": "PartialObjectMetadata",
        "apiVersion": "meta.k8s.io/v1",
        "metadata": p1["metadata"],
    }
    assert "conditions" not in first
    assert second["conditions"] == [
        {
            "type": "Completed",
            "status": "True",
            "reason": "Succeeded",
            "message": "The pod has completed successfully.",
        }
    ]
    assert build_table(POD, [p1], NOW, "1", include_object="Object")["rows"][0]["object"] is p1
    assert build_table(POD, [p1], NOW, "1", include_object="None")["rows"][0]["object"] is None
    assert build_table(SVC, [], NOW, "9", continue_token="abc")["metadata"] == {
        "resourceVersion": "9",
        "continue": "abc",
    }
