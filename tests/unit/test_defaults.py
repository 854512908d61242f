import copy

import pytest

from skiff.api.defaults import apply_defaults, image_tag, pod_qos_class


def pod(**spec):
    return {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "p"},
            "spec": {"containers": [{"name": "c", "image": "nginx:1.25"}], **spec}}


def test_pod_from_kubectl_run_gets_every_default():
    obj = {"kind": "Pod", "apiVersion": "v1",
           "metadata": {"name": "nginx", "creationTimestamp": None, "labels": {"app": "nginx"}},
           "spec": {"containers": [{"name": "nginx", "image": "nginx:1.25", "resources": {}}],
                    "restartPolicy": "Always", "dnsPolicy": "ClusterFirst"}, "status": {}}
    apply_defaults(obj)
    assert obj["spec"] == {
        "containers": [{"name": "nginx", "image": "nginx:1.25", "resources": {},
                        "imagePullPolicy": "IfNotPresent", "terminationMessagePath": "/dev/termination-log",
                        "terminationMessagePolicy": "File"}],
        "restartPolicy": "Always", "dnsPolicy": "ClusterFirst", "securityContext": {},
        "terminationGracePeriodSeconds": 30, "schedulerName": "default-scheduler", "enableServiceLinks": True,
    }
    assert obj["status"] == {"phase": "Pending", "qosClass": "BestEffort"}


@pytest.mark.parametrize("image,policy", [
    ("nginx", "Always"), ("nginx:latest", "Always"), ("nginx:1.25", "IfNotPresent"),
    ("localhost:5000/app", "Always"), ("localhost:5000/app:v1", "IfNotPresent"),
    ("busybox@sha256:" + "a" * 64, "IfNotPresent"), ("busybox:latest@sha256:" + "a" * 64, "Always"),
])
def test_image_pull_policy_follows_the_tag(image, policy):
    obj = pod()
    obj["spec"]["containers"][0]["image"] = image
    apply_defaults(obj)
    assert obj["spec"]["containers"][0]["imagePullPolicy"] == policy


def test_image_tag_parsing():
    assert image_tag("registry.k8s.io/e2e-test-images/agnhost:2.45") == "2.45"
    assert image_tag("gcr.io/google-samples/hello-app") == "latest"


def test_user_values_are_kept():
    obj = pod(restartPolicy="Never", terminationGracePeriodSeconds=0, dnsPolicy="Default")
    obj["spec"]["containers"][0]["imagePullPolicy"] = "Never"
    apply_defaults(obj)
    assert obj["spec"]["restartPolicy"] == "Never"
    assert obj["spec"]["terminationGracePeriodSeconds"] == 0
    assert obj["spec"]["dnsPolicy"] == "Default"
    assert obj["spec"]["containers"][0]["imagePullPolicy"] == "Never"


def test_ports_probes_env():
    obj = pod()
    c = obj["spec"]["containers"][0]
    c["ports"] = [{"containerPort": 80}, {"containerPort": 53, "protocol": "UDP"}]
    c["readinessProbe"] = {"httpGet": {"port": 80}}
    c["livenessProbe"] = {"tcpSocket": {"port": 80}, "periodSeconds": 3}
    c["env"] = [{"name": "NODE", "valueFrom": {"fieldRef": {"fieldPath": "spec.nodeName"}}}]
    apply_defaults(obj)
    assert c["ports"] == [{"containerPort": 80, "protocol": "TCP"}, {"containerPort": 53, "protocol": "UDP"}]
    assert c["readinessProbe"] == {"httpGet": {"port": 80, "path": "/", "scheme": "HTTP"}, "timeoutSeconds": 1,
                                   "periodSeconds": 10, "successThreshold": 1, "failureThreshold": 3}
    assert c["livenessProbe"]["periodSeconds"] == 3
    assert c["env"][0]["valueFrom"]["fieldRef"] == {"fieldPath": "spec.nodeName", "apiVersion": "v1"}


def test_requests_default_to_limits_and_qos():
    obj = pod()
    obj["spec"]["containers"][0]["resources"] = {"limits": {"cpu": "100m", "memory": "64Mi"}}
    apply_defaults(obj)
    assert obj["spec"]["containers"][0]["resources"]["requests"] == {"cpu": "100m", "memory": "64Mi"}
    assert obj["status"]["qosClass"] == "Guaranteed"
    assert pod_qos_class({"containers": [{"resources": {"requests": {"cpu": "1"}}}]}) == "Burstable"


def test_deployment_defaults_and_template_is_not_a_pod():
    d = {"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": "web"},
         "spec": {"selector": {"matchLabels": {"app": "web"}},
                  "template": {"metadata": {"labels": {"app": "web"}},
                               "spec": {"containers": [{"name": "nginx", "image": "nginx:1.25",
                                                        "ports": [{"containerPort": 80}]}]}}}}
    apply_defaults(d)
    spec = d["spec"]
    assert spec["replicas"] == 1
    assert spec["strategy"] == {"type": "RollingUpdate", "rollingUpdate": {"maxUnavailable": "25%", "maxSurge": "25%"}}
    assert spec["revisionHistoryLimit"] == 10
    assert spec["progressDeadlineSeconds"] == 600
    tspec = spec["template"]["spec"]
    assert tspec["restartPolicy"] == "Always" and tspec["schedulerName"] == "default-scheduler"
    assert tspec["containers"][0]["ports"][0]["protocol"] == "TCP"
    # enableServiceLinks and status belong to Pods only (SetDefaults_Pod), not to templates.
    assert "enableServiceLinks" not in tspec
    assert "status" not in d


def test_recreate_strategy_gets_no_rolling_update_and_replicas_zero_is_kept():
    d = {"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": "web"},
         "spec": {"replicas": 0, "strategy": {"type": "Recreate"}, "template": {"spec": {"containers": []}}}}
    apply_defaults(d)
    assert d["spec"]["strategy"] == {"type": "Recreate"}
    assert d["spec"]["replicas"] == 0


def test_replicaset_replicas():
    rs = {"apiVersion": "apps/v1", "kind": "ReplicaSet", "metadata": {"name": "r"}, "spec": {}}
    apply_defaults(rs)
    assert rs["spec"]["replicas"] == 1


def svc(**spec):
    return {"apiVersion": "v1", "kind": "Service", "metadata": {"name": "web"}, "spec": spec}


def test_service_from_kubectl_expose():
    s = svc(ports=[{"port": 8080, "protocol": "TCP", "targetPort": 80}], selector={"app": "web"})
    apply_defaults(s)
    assert s["spec"] == {"ports": [{"port": 8080, "protocol": "TCP", "targetPort": 80}], "selector": {"app": "web"},
                         "sessionAffinity": "None", "type": "ClusterIP", "internalTrafficPolicy": "Cluster"}
    assert s["status"] == {"loadBalancer": {}}


def test_service_port_defaults():
    s = svc(ports=[{"port": 80}, {"port": 53, "protocol": "UDP", "targetPort": "dns"}, {"port": 81, "targetPort": 0}])
    apply_defaults(s)
    assert s["spec"]["ports"] == [{"port": 80, "protocol": "TCP", "targetPort": 80},
                                  {"port": 53, "protocol": "UDP", "targetPort": "dns"},
                                  {"port": 81, "targetPort": 81, "protocol": "TCP"}]


def test_service_types():
    np = svc(type="NodePort", ports=[{"port": 80}])
    apply_defaults(np)
    assert np["spec"]["externalTrafficPolicy"] == "Cluster"
    assert "allocateLoadBalancerNodePorts" not in np["spec"]
    lb = svc(type="LoadBalancer", ports=[{"port": 80}])
    apply_defaults(lb)
    assert lb["spec"]["allocateLoadBalancerNodePorts"] is True
    assert lb["spec"]["externalTrafficPolicy"] == "Cluster"
    en = svc(type="ExternalName", externalName="example.com")
    apply_defaults(en)
    assert "internalTrafficPolicy" not in en["spec"] and "externalTrafficPolicy" not in en["spec"]
    ext = svc(ports=[{"port": 80}], externalIPs=["192.0.2.1"])
    apply_defaults(ext)
    assert ext["spec"]["externalTrafficPolicy"] == "Cluster"


def test_session_affinity():
    s = svc(sessionAffinity="ClientIP")
    apply_defaults(s)
    assert s["spec"]["sessionAffinityConfig"] == {"clientIP": {"timeoutSeconds": 10800}}
    s = svc(sessionAffinity="ClientIP", sessionAffinityConfig={"clientIP": {"timeoutSeconds": 60}})
    apply_defaults(s)
    assert s["spec"]["sessionAffinityConfig"] == {"clientIP": {"timeoutSeconds": 60}}
    s = svc(sessionAffinityConfig={"clientIP": {"timeoutSeconds": 60}})
    apply_defaults(s)
    assert "sessionAffinityConfig" not in s["spec"]


def test_namespace_secret_endpointslice_networkpolicy():
    ns = {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "foo"}}
    apply_defaults(ns)
    assert ns["metadata"]["labels"] == {"kubernetes.io/metadata.name": "foo"}
    assert "finalizers" not in ns.get("spec", {})  # added by the create strategy, not by defaulting
    assert ns["status"] == {"phase": "Active"}
    secret = {"apiVersion": "v1", "kind": "Secret", "metadata": {"name": "s"}}
    apply_defaults(secret)
    assert secret["type"] == "Opaque"
    es = {"apiVersion": "discovery.k8s.io/v1", "kind": "EndpointSlice", "ports": [{"port": 80}]}
    apply_defaults(es)
    assert es["ports"] == [{"port": 80, "name": "", "protocol": "TCP"}]
    np = {"apiVersion": "networking.k8s.io/v1", "kind": "NetworkPolicy",
          "spec": {"ingress": [{"ports": [{"port": 80}]}], "egress": [{}]}}
    apply_defaults(np)
    assert np["spec"]["policyTypes"] == ["Ingress", "Egress"]
    assert np["spec"]["ingress"][0]["ports"][0]["protocol"] == "TCP"


@pytest.mark.parametrize("obj", [
    pod(), svc(type="LoadBalancer", ports=[{"port": 80}], sessionAffinity="ClientIP"),
    {"apiVersion": "apps/v1", "kind": "Deployment", "spec": {"template": {"spec": {"containers": [{"image": "x"}]}}}},
])
def test_defaulting_is_idempotent(obj):
    apply_defaults(obj)
    once = copy.deepcopy(obj)
    apply_defaults(obj)
    assert obj == once


def test_unknown_kinds_are_untouched():
    obj = {"apiVersion": "example.com/v1", "kind": "Widget", "spec": {}}
    apply_defaults(obj)
    assert obj == {"apiVersion": "example.com/v1", "kind": "Widget", "spec": {}}
