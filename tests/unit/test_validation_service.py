"""Service validation and strategy (plus the workload and networking validators), exact messages."""

import copy

import pytest

from skiff.api.defaults import apply_defaults
from skiff.api.errors import invalid_object
from skiff.api.validation.networking import (
    validate_configmap,
    validate_endpointslice,
    validate_ingress,
    validate_ingressclass,
    validate_network_policy,
)
from skiff.api.validation.service import (
    drop_type_dependent_fields,
    prepare_for_update,
    service_name_errors,
    validate_service,
)
from skiff.api.validation.workloads import validate_deployment, validate_pod, validate_replicaset


def svc(**spec):
    s = {"apiVersion": "v1", "kind": "Service", "metadata": {"name": "web", "namespace": "default"},
         "spec": {"ports": [{"port": 80}], "selector": {"app": "web"}, **spec}}
    apply_defaults(s)
    return s


def msgs(errs):
    return [str(e) for e in errs]


def test_defaulted_services_are_valid():
    for s in (svc(), svc(type="NodePort"), svc(type="LoadBalancer"), svc(clusterIP="None"),
              svc(sessionAffinity="ClientIP"), svc(type="ExternalName", externalName="example.com.", ports=[])):
        assert validate_service(s) == []


def test_ports_required():
    assert msgs(validate_service(svc(ports=[]))) == ["spec.ports: Required value"]
    assert validate_service(svc(ports=[], clusterIP="None")) == []


def test_port_names():
    s = svc(ports=[{"port": 80}, {"port": 81, "name": "Web"}, {"port": 82, "name": "web2"}, {"port": 83, "name": "web2"}])
    assert msgs(validate_service(s)) == [
        "spec.ports[0].name: Required value",
        'spec.ports[1].name: Invalid value: "Web": a lowercase RFC 1123 label must consist of lower case '
        "alphanumeric characters or '-', and must start and end with an alphanumeric character (e.g. 'my-name',  "
        "or '123-abc', regex used for validation is '[a-z0-9]([-a-z0-9]*[a-z0-9])?')",
        'spec.ports[3].name: Duplicate value: "web2"',
    ]


def test_port_number_protocol_target_port():
    s = svc(ports=[{"port": 0, "protocol": "HTTP", "targetPort": "a-very-long-port-name"}])
    assert msgs(validate_service(s)) == [
        "spec.ports[0].port: Invalid value: 0: must be between 1 and 65535, inclusive",
        'spec.ports[0].protocol: Unsupported value: "HTTP": supported values: "SCTP", "TCP", "UDP"',
        'spec.ports[0].targetPort: Invalid value: "a-very-long-port-name": must be no more than 15 characters',
    ]
    s = svc(ports=[{"port": 80, "targetPort": 70000}, {"name": "b", "port": 81, "targetPort": "8080"}])
    s["spec"]["ports"][0]["name"] = "a"
    assert msgs(validate_service(s)) == [
        "spec.ports[0].targetPort: Invalid value: 70000: must be between 1 and 65535, inclusive",
        'spec.ports[1].targetPort: Invalid value: "8080": must contain at least one letter (a-z)',
    ]


def test_node_port_forbidden_for_cluster_ip():
    s = svc(ports=[{"port": 80, "nodePort": 30080}])
    assert msgs(validate_service(s)) == ["spec.ports[0].nodePort: Forbidden: may not be used when `type` is 'ClusterIP'"]


def test_duplicate_port_and_node_port():
    s = svc(type="NodePort", ports=[{"name": "a", "port": 80, "nodePort": 30080},
                                    {"name": "b", "port": 80, "nodePort": 30080}])
    assert msgs(validate_service(s)) == [
        "spec.ports[1].nodePort: Duplicate value: 30080",
        'spec.ports[1]: Duplicate value: core.ServicePort{Name:"", Protocol:"TCP", AppProtocol:(*string)(nil), '
        'Port:80, TargetPort:intstr.IntOrString{Type:0, IntVal:0, StrVal:""}, NodePort:0}',
    ]
    # The same port number over TCP and UDP is fine (DNS does it).
    ok = svc(ports=[{"name": "dns", "port": 53, "protocol": "UDP"}, {"name": "dns-tcp", "port": 53}])
    assert validate_service(ok) == []


def test_session_affinity_timeout():
    s = svc(sessionAffinity="ClientIP", sessionAffinityConfig={"clientIP": {"timeoutSeconds": 0}})
    assert msgs(validate_service(s)) == [
        "spec.sessionAffinityConfig.clientIP.timeoutSeconds: Invalid value: 0: must be greater than 0 and less than 86400"]
    s = svc(sessionAffinity="Sticky")
    assert msgs(validate_service(s)) == [
        'spec.sessionAffinity: Unsupported value: "Sticky": supported values: "ClientIP", "None"']


def test_headless_node_port_and_type():
    s = svc(type="NodePort", clusterIP="None")
    assert "spec.clusterIPs[0]: Invalid value: \"None\": may not be set to 'None' for NodePort services" in msgs(
        validate_service(s))
    s = svc()
    s["spec"]["type"] = "Foo"
    assert 'spec.type: Unsupported value: "Foo": supported values: "ClusterIP", "ExternalName", "LoadBalancer", ' \
           '"NodePort"' in msgs(validate_service(s))


def test_cluster_ips_consistency():
    s = svc(clusterIP="10.96.0.10", clusterIPs=["10.96.0.11"])
    assert msgs(validate_service(s)) == [
        'spec.clusterIPs: Invalid value: []string{"10.96.0.11"}: first value must match `clusterIP`']
    s = svc(clusterIP="10.96.0.10", clusterIPs=["10.96.0.10", "10.96.0.12"], ipFamilyPolicy="PreferDualStack")
    assert msgs(validate_service(s)) == ['spec.clusterIPs: Invalid value: []string{"10.96.0.10", "10.96.0.12"}: '
                                         'may specify no more than one IP for each IP family']
    s = svc(clusterIP="not-an-ip")
    assert msgs(validate_service(s)) == ['spec.clusterIPs[0]: Invalid value: "not-an-ip": must be a valid IP address, '
                                         '(e.g. 10.9.8.7 or 2001:db8::ffff)']


def test_external_ips_special_ranges():
    s = svc(externalIPs=["127.0.0.1", "0.0.0.0", "169.254.1.1", "224.0.0.5", "bogus"])
    assert msgs(validate_service(s)) == [
        'spec.externalIPs[0]: Invalid value: "127.0.0.1": may not be in the loopback range (127.0.0.0/8, ::1/128)',
        'spec.externalIPs[1]: Invalid value: "0.0.0.0": may not be unspecified (0.0.0.0)',
        'spec.externalIPs[2]: Invalid value: "169.254.1.1": may not be in the link-local range (169.254.0.0/16, fe80::/10)',
        'spec.externalIPs[3]: Invalid value: "224.0.0.5": may not be in the link-local multicast range '
        '(224.0.0.0/24, ff02::/10)',
        'spec.externalIPs[4]: Invalid value: "bogus": must be a valid IP address, (e.g. 10.9.8.7 or 2001:db8::ffff)',
    ]


def test_external_name_rules():
    s = svc(type="ExternalName", ports=[])
    assert msgs(validate_service(s)) == ["spec.externalName: Required value"]
    s = svc(type="ExternalName", externalName="Bad_Name", clusterIP="10.96.0.9", ports=[])
    out = msgs(validate_service(s))
    assert out[0] == "spec.clusterIPs: Forbidden: may not be set for ExternalName services"
    assert out[1].startswith('spec.externalName: Invalid value: "Bad_Name": a lowercase RFC 1123 subdomain')


def test_traffic_policies_and_lb_fields():
    s = svc(externalTrafficPolicy="Local")
    assert msgs(validate_service(s)) == [
        'spec.externalTrafficPolicy: Invalid value: "Local": may only be set for externally-accessible services']
    s = svc(loadBalancerSourceRanges=["10.0.0.0/8", "nope"], allocateLoadBalancerNodePorts=False)
    assert msgs(validate_service(s)) == [
        "spec.LoadBalancerSourceRanges: Forbidden: may only be used when `type` is 'LoadBalancer'",
        'spec.LoadBalancerSourceRanges[1]: Invalid value: "nope": must be a valid CIDR value, '
        "(e.g. 10.9.8.0/24 or 2001:db8::/64)",
        "spec.allocateLoadBalancerNodePorts: Forbidden: may only be used when `type` is 'LoadBalancer'",
    ]
    s = svc(internalTrafficPolicy="Nearby")
    assert msgs(validate_service(s)) == [
        'spec.internalTrafficPolicy: Unsupported value: "Nearby": supported values: "Cluster", "Local"']
    s = svc(type="LoadBalancer", externalTrafficPolicy="Local")
    assert msgs(validate_service(s)) == ["spec.healthCheckNodePort: Required value"]


def test_whole_status_message():
    s = svc(ports=[{"port": 80, "nodePort": 30080}])
    err = invalid_object("Service", "", "web", validate_service(s))
    assert err.code == 422
    assert err.message == ('Service "web" is invalid: spec.ports[0].nodePort: Forbidden: may not be used when '
                           "`type` is 'ClusterIP'")


def test_service_name_is_dns1035():
    assert service_name_errors("web") == []
    assert service_name_errors("1web")[0].startswith("a DNS-1035 label must consist of lower case alphanumeric")


# ---- updates and the strategy --------------------------------------------------------------


def allocated(**spec):
    s = svc(**spec)
    s["spec"].update(clusterIP="10.96.0.20", clusterIPs=["10.96.0.20"], ipFamilies=["IPv4"],
                     ipFamilyPolicy="SingleStack")
    return s


def test_cluster_ip_may_not_change():
    old = allocated()
    new = copy.deepcopy(old)
    new["spec"]["clusterIP"] = "10.96.0.21"
    new["spec"]["clusterIPs"] = ["10.96.0.21"]
    assert msgs(validate_service(new, old)) == [
        'spec.clusterIPs[0]: Invalid value: []string{"10.96.0.21"}: may not change once set']
    # A client that changes only the singular field gets the same answer.
    new = copy.deepcopy(old)
    new["spec"]["clusterIP"] = "10.96.0.21"
    assert msgs(validate_service(new, old)) == [
        'spec.clusterIPs[0]: Invalid value: []string{"10.96.0.21"}: may not change once set']


def test_update_without_allocated_values_is_valid():
    # What `kubectl apply` sends the second time: no clusterIP, no nodePort.
    old = allocated(type="NodePort")
    old["spec"]["ports"][0]["nodePort"] = 30080
    new = svc(type="NodePort", ports=[{"port": 80, "targetPort": 8080}])
    assert validate_service(new, old) == []


def test_drop_type_dependent_fields_node_port_to_cluster_ip():
    old = allocated(type="NodePort")
    old["spec"]["ports"][0]["nodePort"] = 30080
    new = copy.deepcopy(old)
    new["spec"]["type"] = "ClusterIP"
    drop_type_dependent_fields(new, old)
    assert "nodePort" not in new["spec"]["ports"][0]
    assert "externalTrafficPolicy" not in new["spec"]
    assert new["spec"]["clusterIP"] == "10.96.0.20"
    assert validate_service(new, old) == []


def test_drop_keeps_a_node_port_the_user_changed():
    old = allocated(type="NodePort")
    old["spec"]["ports"][0]["nodePort"] = 30080
    new = copy.deepcopy(old)
    new["spec"]["type"] = "ClusterIP"
    new["spec"]["ports"][0]["nodePort"] = 30081
    drop_type_dependent_fields(new, old)
    assert new["spec"]["ports"][0]["nodePort"] == 30081
    assert "spec.ports[0].nodePort: Forbidden: may not be used when `type` is 'ClusterIP'" in msgs(
        validate_service(new, old))


def test_drop_to_external_name_and_lb_fields():
    old = allocated(type="LoadBalancer")
    old["status"] = {"loadBalancer": {"ingress": [{"ip": "172.18.255.200", "ipMode": "VIP"}]}}
    new = copy.deepcopy(old)
    new["spec"].update(type="ExternalName", externalName="example.com")
    new["spec"].pop("internalTrafficPolicy")
    prepare_for_update(new, old)
    for field in ("clusterIP", "clusterIPs", "ipFamilies", "ipFamilyPolicy", "allocateLoadBalancerNodePorts",
                  "externalTrafficPolicy"):
        assert field not in new["spec"], field
    assert new["status"] == {"loadBalancer": {}}
    assert validate_service(new, old) == []


def test_prepare_for_update_keeps_status():
    old = allocated(type="LoadBalancer")
    old["status"] = {"loadBalancer": {"ingress": [{"ip": "172.18.255.200"}]}}
    new = copy.deepcopy(old)
    new["status"] = {"loadBalancer": {"ingress": [{"ip": "1.2.3.4"}]}}
    prepare_for_update(new, old)
    assert new["status"] == old["status"]


def test_health_check_node_port_is_immutable():
    old = allocated(type="LoadBalancer", externalTrafficPolicy="Local", healthCheckNodePort=30500)
    new = copy.deepcopy(old)
    new["spec"]["healthCheckNodePort"] = 30501
    assert msgs(validate_service(new, old)) == ["spec.healthCheckNodePort: Forbidden: field is immutable"]


# ---- workloads -----------------------------------------------------------------------------


def deployment(selector=None, labels=None, **spec):
    d = {"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": "web"},
         "spec": {"selector": {"matchLabels": {"app": "web"}} if selector is None else selector,
                  "template": {"metadata": {"labels": {"app": "web"} if labels is None else labels},
                               "spec": {"containers": [{"name": "nginx", "image": "nginx:1.25"}]}}, **spec}}
    apply_defaults(d)
    return d


def test_deployment_valid_and_selector_mismatch():
    assert validate_deployment(deployment()) == []
    d = deployment(labels={"app": "x"})
    assert msgs(validate_deployment(d)) == [
        'spec.template.metadata.labels: Invalid value: map[string]string{"app":"x"}: '
        "`selector` does not match template `labels`"]


def test_deployment_selector_required_replicas_and_immutable():
    d = deployment()
    del d["spec"]["selector"]
    assert msgs(validate_deployment(d)) == ["spec.selector: Required value"]
    assert msgs(validate_deployment(deployment(replicas=-1))) == [
        "spec.replicas: Invalid value: -1: must be greater than or equal to 0"]
    old = deployment()
    new = deployment(selector={"matchLabels": {"app": "web", "tier": "fe"}}, labels={"app": "web", "tier": "fe"})
    assert msgs(validate_deployment(new, old)) == [
        'spec.selector: Invalid value: v1.LabelSelector{MatchLabels:map[string]string{"app":"web", "tier":"fe"}, '
        "MatchExpressions:[]v1.LabelSelectorRequirement(nil)}: field is immutable"]


def test_deployment_strategy_and_template_restart_policy():
    d = deployment(strategy={"type": "RollingUpdate", "rollingUpdate": {"maxUnavailable": 0, "maxSurge": 0}})
    assert msgs(validate_deployment(d)) == [
        "spec.strategy.rollingUpdate.maxUnavailable: Invalid value: 0: may not be 0 when `maxSurge` is 0"]
    d = deployment()
    d["spec"]["template"]["spec"]["restartPolicy"] = "Never"
    assert msgs(validate_deployment(d)) == [
        'spec.template.spec.restartPolicy: Unsupported value: "Never": supported values: "Always"']


def test_replicaset_empty_selector():
    rs = {"apiVersion": "apps/v1", "kind": "ReplicaSet", "metadata": {"name": "r"},
          "spec": {"selector": {}, "template": {"spec": {"containers": [{"name": "c", "image": "x"}]}}}}
    apply_defaults(rs)
    assert msgs(validate_replicaset(rs)) == [
        "spec.selector: Invalid value: v1.LabelSelector{MatchLabels:map[string]string(nil), "
        "MatchExpressions:[]v1.LabelSelectorRequirement(nil)}: empty selector is invalid for deployment"]


def pod(containers):
    p = {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "p"}, "spec": {"containers": containers}}
    apply_defaults(p)
    return p


def test_pod_container_checks():
    assert msgs(validate_pod(pod([]))) == ["spec.containers: Required value"]
    p = pod([{"name": "a", "image": ""}, {"name": "a", "image": "x", "ports": [{"containerPort": 0}]}])
    assert msgs(validate_pod(p)) == [
        "spec.containers[0].image: Required value",
        'spec.containers[1].name: Duplicate value: "a"',
        "spec.containers[1].ports[0].containerPort: Required value",
    ]
    p = pod([{"name": "a", "image": " x", "ports": [{"containerPort": 70000}], "env": [{"name": "A=B", "value": "1"}]}])
    assert msgs(validate_pod(p)) == [
        'spec.containers[0].image: Invalid value: " x": must not have leading or trailing whitespace',
        "spec.containers[0].ports[0].containerPort: Invalid value: 70000: must be between 1 and 65535, inclusive",
        "spec.containers[0].env[0].name: Invalid value: \"A=B\": a valid environment variable name must consist "
        "only of printable ASCII characters other than '='",
    ]


def test_a_pod_shares_its_process_namespace_or_the_nodes_not_both():
    p = pod([{"name": "a", "image": "x"}])
    p["spec"].update(hostPID=True, shareProcessNamespace=True)
    assert msgs(validate_pod(p)) == [
        "spec.securityContext.shareProcessNamespace: Invalid value: true: "
        "ShareProcessNamespace and HostPID cannot both be enabled"]
    p["spec"]["shareProcessNamespace"] = False
    assert validate_pod(p) == []


def test_job_checks():
    from skiff.api.resources import lookup
    from skiff.api.validation.workloads import generate_job_selector, validate_job
    from skiff.apiserver.strategy import validate

    def job(**spec) -> dict:
        j = {"apiVersion": "batch/v1", "kind": "Job", "metadata": {"name": "j", "namespace": "default", "uid": "u1"},
             "spec": {"template": {"spec": {"restartPolicy": "Never", "containers": [{"name": "c", "image": "x"}]}},
                      **spec}}
        generate_job_selector(j)
        apply_defaults(j)
        return j

    ok = job()
    assert ok["spec"]["selector"] == {"matchLabels": {"batch.kubernetes.io/controller-uid": "u1"}}
    assert ok["spec"]["template"]["metadata"]["labels"] == {
        "batch.kubernetes.io/controller-uid": "u1", "batch.kubernetes.io/job-name": "j",
        "controller-uid": "u1", "job-name": "j"}
    assert validate(lookup("batch", "v1", "jobs"), ok, None) == []
    forever = job()
    forever["spec"]["template"]["spec"]["restartPolicy"] = "Always"
    assert msgs(validate_job(forever)) == [
        'spec.template.spec.restartPolicy: Unsupported value: "Always": supported values: "OnFailure", "Never"']
    assert msgs(validate_job(job(completionMode="Indexed", completions=None, parallelism=2))) == [
        "spec.completions: Required value: when completion mode is Indexed"]
    assert msgs(validate_job(job(selector={"matchLabels": {"a": "b"}}))) == [
        'spec.selector: Invalid value: v1.LabelSelector{MatchLabels:map[string]string{"a":"b", '
        '"batch.kubernetes.io/controller-uid":"u1"}, MatchExpressions:[]v1.LabelSelectorRequirement(nil)}: '
        "selector not auto-generated",
        'spec.template.metadata.labels: Invalid value: map[string]string{"batch.kubernetes.io/controller-uid":"u1", '
        '"batch.kubernetes.io/job-name":"j", "controller-uid":"u1", "job-name":"j"}: '
        "`selector` does not match template `labels`"]
    assert msgs(validate_job(job(backoffLimit=-1))) == ["spec.backoffLimit: Invalid value: -1: must be greater "
                                                       "than or equal to 0"]
    changed = job()
    changed["spec"]["template"]["spec"]["containers"][0]["image"] = "y"
    changed["spec"]["completions"] = 2
    assert msgs(validate_job(changed, ok)) == [
        "spec.completions: Invalid value: 2: field is immutable",
        "spec.template: Invalid value: core.PodTemplateSpec{...}: field is immutable"]
    scaled = job()
    scaled["spec"]["parallelism"] = 5
    assert validate_job(scaled, ok) == []  # parallelism may change


def test_daemonset_checks():
    from skiff.api.validation.workloads import validate_daemonset

    def ds(**spec) -> dict:
        d = {"apiVersion": "apps/v1", "kind": "DaemonSet", "metadata": {"name": "d", "namespace": "default"},
             "spec": {"selector": {"matchLabels": {"a": "b"}},
                      "template": {"metadata": {"labels": {"a": "b"}}, "spec": {"containers": [{"name": "c", "image": "x"}]}},
                      **spec}}
        apply_defaults(d)
        return d

    ok = ds()
    assert ok["spec"]["updateStrategy"] == {"type": "RollingUpdate", "rollingUpdate": {"maxUnavailable": 1, "maxSurge": 0}}
    assert validate_daemonset(ok) == []
    assert msgs(validate_daemonset(ds(selector={}))) == [
        "spec.selector: Invalid value: v1.LabelSelector{MatchLabels:map[string]string(nil), "
        "MatchExpressions:[]v1.LabelSelectorRequirement(nil)}: empty selector is invalid for daemonset"]
    assert msgs(validate_daemonset(ds(updateStrategy={"type": "Sometimes"}))) == [
        'spec.updateStrategy.type: Unsupported value: "Sometimes": supported values: "OnDelete", "RollingUpdate"']
    assert msgs(validate_daemonset(ds(updateStrategy={"type": "RollingUpdate",
                                                      "rollingUpdate": {"maxUnavailable": 0, "maxSurge": 0}}))) == [
        "spec.updateStrategy.rollingUpdate.maxUnavailable: Invalid value: 0: may not be 0 when `maxSurge` is 0"]
    never = ds()
    never["spec"]["template"]["spec"]["restartPolicy"] = "Never"
    assert msgs(validate_daemonset(never)) == [
        'spec.template.spec.restartPolicy: Unsupported value: "Never": supported values: "Always"']
    moved = ds(selector={"matchLabels": {"a": "b", "x": "y"}})
    moved["spec"]["template"]["metadata"]["labels"]["x"] = "y"
    assert msgs(validate_daemonset(moved, ok)) == [
        'spec.selector: Invalid value: v1.LabelSelector{MatchLabels:map[string]string{"a":"b", "x":"y"}, '
        "MatchExpressions:[]v1.LabelSelectorRequirement(nil)}: field is immutable"]


def test_statefulset_checks():
    from skiff.api.validation.workloads import validate_statefulset

    def sts(**spec) -> dict:
        d = {"apiVersion": "apps/v1", "kind": "StatefulSet", "metadata": {"name": "web", "namespace": "default"},
             "spec": {"serviceName": "nginx", "selector": {"matchLabels": {"a": "b"}},
                      "template": {"metadata": {"labels": {"a": "b"}}, "spec": {"containers": [{"name": "c", "image": "x"}]}},
                      **spec}}
        apply_defaults(d)
        return d

    ok = sts()
    assert (ok["spec"]["replicas"], ok["spec"]["podManagementPolicy"]) == (1, "OrderedReady")
    assert ok["spec"]["updateStrategy"] == {"type": "RollingUpdate", "rollingUpdate": {"partition": 0}}
    assert validate_statefulset(ok) == []
    assert msgs(validate_statefulset(sts(podManagementPolicy="Random"))) == [
        'spec.podManagementPolicy: Unsupported value: "Random": supported values: "OrderedReady", "Parallel"']
    assert msgs(validate_statefulset(sts(updateStrategy={"type": "OnDelete", "rollingUpdate": {"partition": 1}}))) == [
        "spec.updateStrategy.rollingUpdate: Invalid value: {\"partition\":1}: only allowed for updateStrategy "
        "'RollingUpdate'"]
    scaled = sts(replicas=5)
    scaled["spec"]["template"]["spec"]["containers"][0]["image"] = "y"
    assert validate_statefulset(scaled, ok) == []  # replicas and the template may change
    renamed = sts(serviceName="other")
    assert msgs(validate_statefulset(renamed, ok)) == [
        "spec: Forbidden: updates to statefulset spec for fields other than 'replicas', 'ordinals', 'template', "
        "'updateStrategy', 'persistentVolumeClaimRetentionPolicy' and 'minReadySeconds' are forbidden"]


def test_a_template_needs_an_image_too_but_may_pad_it():
    def deploy(image: str) -> dict:
        d = {"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": "d", "namespace": "default"},
             "spec": {"selector": {"matchLabels": {"a": "b"}},
                      "template": {"metadata": {"labels": {"a": "b"}}, "spec": {"containers": [{"name": "c", "image": image}]}}}}
        apply_defaults(d)
        return d

    assert msgs(validate_deployment(deploy(""))) == ["spec.template.spec.containers[0].image: Required value"]
    assert msgs(validate_deployment(deploy(" "))) == []


def test_pod_update_only_image():
    old = pod([{"name": "a", "image": "nginx:1.25", "ports": [{"containerPort": 80}]}])
    new = copy.deepcopy(old)
    new["spec"]["containers"][0]["image"] = "nginx:1.26"
    assert validate_pod(new, old) == []
    new["spec"]["containers"][0]["ports"][0]["containerPort"] = 8080
    errs = validate_pod(new, old)
    assert len(errs) == 1 and errs[0].field == "spec" and errs[0].type == "Forbidden"
    assert str(errs[0]).startswith("spec: Forbidden: pod updates may not change fields other than "
                                   "`spec.containers[*].image`,`spec.initContainers[*].image`,")
    assert "+ containers[0].ports[0].containerPort: 8080" in str(errs[0])


# ---- networking ----------------------------------------------------------------------------


def ingress(paths, **spec):
    return {"apiVersion": "networking.k8s.io/v1", "kind": "Ingress", "metadata": {"name": "i"},
            "spec": {"rules": [{"host": "foo.com", "http": {"paths": paths}}], **spec}}


def backend(port=None):
    return {"service": {"name": "web", "port": port if port is not None else {"number": 80}}}


def test_ingress_valid():
    assert validate_ingress(ingress([{"path": "/", "pathType": "Prefix", "backend": backend()},
                                     {"path": "/x", "pathType": "Exact", "backend": backend({"name": "http"})}])) == []


@pytest.mark.parametrize("path,expected", [
    ({"path": "/", "backend": backend()},
     "spec.rules[0].http.paths[0].pathType: Required value: pathType must be specified"),
    ({"path": "/", "pathType": "Regex", "backend": backend()},
     'spec.rules[0].http.paths[0].pathType: Unsupported value: "Regex": supported values: "Exact", '
     '"ImplementationSpecific", "Prefix"'),
    ({"path": "api", "pathType": "Prefix", "backend": backend()},
     'spec.rules[0].http.paths[0].path: Invalid value: "api": must be an absolute path'),
    ({"path": "/", "pathType": "Prefix", "backend": backend({})},
     "spec.rules[0].http.paths[0].backend: Required value: port name or number is required"),
    ({"path": "/", "pathType": "Prefix", "backend": {}},
     'spec.rules[0].http.paths[0].backend: Invalid value: "": resource or service backend is required'),
])
def test_ingress_path_errors(path, expected):
    assert msgs(validate_ingress(ingress([path]))) == [expected]


def test_ingress_needs_rules_or_default_backend_and_no_ip_hosts():
    assert msgs(validate_ingress({"spec": {}})) == [
        "spec: Invalid value: []networking.IngressRule(nil): either `defaultBackend` or `rules` must be specified"]
    ing = ingress([{"path": "/", "pathType": "Prefix", "backend": backend()}])
    ing["spec"]["rules"][0]["host"] = "10.0.0.1"
    assert msgs(validate_ingress(ing)) == [
        'spec.rules[0].host: Invalid value: "10.0.0.1": must be a DNS name, not an IP address']


def test_endpointslice_and_configmap():
    es = {"addressType": "IPv4", "endpoints": [{"addresses": ["10.244.0.5"]}, {"addresses": []}],
          "ports": [{"name": "http", "port": 80, "protocol": "TCP"}]}
    assert msgs(validate_endpointslice(es)) == ["endpoints[1].addresses: Required value: must contain at least 1 address"]
    es = {"addressType": "IPv4", "endpoints": [{"addresses": ["127.0.0.1"]}, {"addresses": ["0.0.0.0"]},
                                               {"addresses": ["169.254.1.1"], "nodeName": "Bad Node"},
                                               {"addresses": ["10.0.0.300"]}],
          "ports": [{"name": "HTTP", "port": 80, "protocol": "tcp"}]}
    assert msgs(validate_endpointslice(es)) == [
        'endpoints[0].addresses[0]: Invalid value: "127.0.0.1": may not be in the loopback range (127.0.0.0/8, ::1/128)',
        'endpoints[1].addresses[0]: Invalid value: "0.0.0.0": may not be unspecified (0.0.0.0)',
        'endpoints[2].addresses[0]: Invalid value: "169.254.1.1": may not be in the link-local range '
        '(169.254.0.0/16, fe80::/10)',
        'endpoints[2].nodeName: Invalid value: "Bad Node": a lowercase RFC 1123 subdomain must consist of lower case '
        "alphanumeric characters, '-' or '.', and must start and end with an alphanumeric character (e.g. "
        "'example.com', regex used for validation is '[a-z0-9]([-a-z0-9]*[a-z0-9])?(\\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*')",
        'endpoints[3].addresses[0]: Invalid value: "10.0.0.300": must be a valid IPv4 address',
        'ports[0].name: Invalid value: "HTTP": a lowercase RFC 1123 label must consist of lower case alphanumeric '
        "characters or '-', and must start and end with an alphanumeric character (e.g. 'my-name',  or '123-abc', "
        "regex used for validation is '[a-z0-9]([-a-z0-9]*[a-z0-9])?')",
        'ports[0].protocol: Unsupported value: "tcp": supported values: "SCTP", "TCP", "UDP"',
    ]
    cm = {"data": {"ok.key": "v", "bad key": "v"}}
    assert msgs(validate_configmap(cm)) == [
        "data[bad key]: Invalid value: \"bad key\": a valid config key must consist of alphanumeric characters, "
        "'-', '_' or '.' (e.g. 'key.name',  or 'KEY_NAME',  or 'key-name', regex used for validation is "
        "'[-._a-zA-Z0-9]+')"]


def test_container_resources():
    p = pod([{"name": "a", "image": "x", "resources": {"limits": {"memory": "64Mi", "gpu": 1},
                                                       "requests": {"memory": "128Mi", "cpu": "-1"}}}])
    assert sorted(msgs(validate_pod(p))) == sorted([
        'spec.containers[0].resources.limits[gpu]: Invalid value: "gpu": must be a standard resource for containers',
        # requests default to the limits, as in kube, so the name is reported twice
        'spec.containers[0].resources.requests[gpu]: Invalid value: "gpu": must be a standard resource for containers',
        'spec.containers[0].resources.requests[cpu]: Invalid value: "-1": must be greater than or equal to 0',
        'spec.containers[0].resources.requests: Invalid value: "128Mi": must be less than or equal to memory limit of 64Mi',
    ])
    fine = pod([{"name": "a", "image": "x", "resources": {"limits": {"cpu": "1", "example.com/dongle": 2},
                                                          "requests": {"cpu": "500m", "example.com/dongle": 2}}}])
    assert validate_pod(fine) == []


def test_ingressclass_controller():
    def ic(controller: str) -> dict:
        return {"metadata": {"name": "c"}, "spec": {"controller": controller}}

    assert validate_ingressclass(ic("skiff.dev/ingress-controller")) == []
    assert msgs(validate_ingressclass(ic("nginx"))) == [
        'spec.controller: Invalid value: "nginx": must be a domain-prefixed path (such as "acme.io/foo")']
    assert msgs(validate_ingressclass(ic(""))) == ["spec.controller: Required value"]
    assert msgs(validate_ingressclass(ic("k8s.io/other"), ic("k8s.io/ingress-nginx"))) == [
        'spec.controller: Invalid value: "k8s.io/other": field is immutable']


# ---- NetworkPolicy ---------------------------------------------------------------------------


def netpol(**spec) -> dict:
    np = {"apiVersion": "networking.k8s.io/v1", "kind": "NetworkPolicy",
          "metadata": {"name": "p", "namespace": "default"}, "spec": {"podSelector": {}, **spec}}
    apply_defaults(np)
    return np


def test_network_policy_valid_and_defaulted():
    np = netpol(egress=[{"to": [{"ipBlock": {"cidr": "10.0.0.0/8", "except": ["10.1.0.0/16"]}}],
                         "ports": [{"port": 53}, {"port": 8000, "endPort": 9000}, {"port": "http"}]}])
    assert validate_network_policy(np) == []
    assert np["spec"]["policyTypes"] == ["Ingress", "Egress"]
    assert np["spec"]["egress"][0]["ports"][0]["protocol"] == "TCP"


def test_network_policy_errors_in_kubernetes_words():
    np = netpol(ingress=[{"from": [{}, {"ipBlock": {"cidr": "10.0.0.0/8"}, "namespaceSelector": {}},
                                   {"ipBlock": {"cidr": "10.0.0/8", "except": ["10.1.0.0/16"]}},
                                   {"ipBlock": {"cidr": "10.0.0.0/16", "except": ["10.0.0.0/8", "10.1.0.0/24"]}}],
                          "ports": [{"protocol": "ICMP"}, {"port": 0}, {"port": 90, "endPort": 80},
                                    {"port": "web", "endPort": 90}, {"endPort": 90}, {"port": "no_such"}]}],
                policyTypes=["Ingress", "Sideways"])
    assert msgs(validate_network_policy(np)) == [
        'spec.ingress[0].ports[0].protocol: Unsupported value: "ICMP": supported values: "TCP", "UDP", "SCTP"',
        "spec.ingress[0].ports[1].port: Invalid value: 0: must be between 1 and 65535, inclusive",
        "spec.ingress[0].ports[2].endPort: Invalid value: 80: must be greater than or equal to `port`",
        "spec.ingress[0].ports[3].endPort: Invalid value: 90: may not be specified when `port` is non-numeric",
        "spec.ingress[0].ports[4].endPort: Invalid value: 90: may not be specified when `port` is not specified",
        'spec.ingress[0].ports[5].port: Invalid value: "no_such": must contain only alpha-numeric characters '
        "(a-z, 0-9), and hyphens (-)",
        "spec.ingress[0].from[0]: Required value: must specify a peer",
        "spec.ingress[0].from[1]: Forbidden: may not specify both ipBlock and another peer",
        'spec.ingress[0].from[2].ipBlock.cidr: Invalid value: "10.0.0/8": must be a valid CIDR value, '
        "(e.g. 10.9.8.0/24 or 2001:db8::/64)",
        'spec.ingress[0].from[3].ipBlock.except[0]: Invalid value: "10.0.0.0/8": must be a strict subset of `cidr`',
        'spec.ingress[0].from[3].ipBlock.except[1]: Invalid value: "10.1.0.0/24": must be a strict subset of `cidr`',
        'spec.policyTypes[1]: Unsupported value: "Sideways": supported values: "Ingress", "Egress"',
    ]
