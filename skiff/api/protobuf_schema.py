"""Wire layout of the Kubernetes protobuf messages Skiff decodes (`kubectl create ...` sends protobuf).

Data, not code: derived from the proto2 `generated.proto` files of k8s.io/api and k8s.io/apimachinery
v0.33.0 (field numbers and types) and the Go struct tags in the same packages (JSON names, `omitempty`,
pointer fields, `json:",inline"` embedding). Covers every message reachable from the types Skiff
serves, plus Eviction, Scale and DeleteOptions.

Each message maps to comma-separated fields `"<number> <json name> <type> <flags>"`:
- type: a scalar (string, int32, int64, bool, bytes, double, float), another message's key, or
  `map:<key type>:<value type>`;
- flags (`-` for none): r = repeated, p = Go pointer (an explicit zero is kept), o = omitempty,
  i = inline (the sub-message's fields are merged into the parent, JSON name `-`).
Messages with a custom JSON form (Time, MicroTime, Duration, FieldsV1, IntOrString, Quantity,
RawExtension) are handled by the decoder and do not appear here.
"""

from __future__ import annotations

# Container and EphemeralContainerCommon have the same fields and numbers upstream.
_CONTAINER_FIELDS = (
    "1 name string -,2 image string o,3 command string ro,4 args string ro,5 workingDir string o,"
    "6 ports core.v1.ContainerPort ro,7 env core.v1.EnvVar ro,"
    "8 resources core.v1.ResourceRequirements o,9 volumeMounts core.v1.VolumeMount ro,"
    "10 livenessProbe core.v1.Probe po,11 readinessProbe core.v1.Probe po,"
    "12 lifecycle core.v1.Lifecycle po,13 terminationMessagePath string o,"
    "14 imagePullPolicy string o,15 securityContext core.v1.SecurityContext po,16 stdin bool o,"
    "17 stdinOnce bool o,18 tty bool o,19 envFrom core.v1.EnvFromSource ro,"
    "20 terminationMessagePolicy string o,21 volumeDevices core.v1.VolumeDevice ro,"
    "22 startupProbe core.v1.Probe po,23 resizePolicy core.v1.ContainerResizePolicy ro,"
    "24 restartPolicy string po"
)

MESSAGES: dict[str, str] = {
    "apps.v1.ControllerRevision": (
        "1 metadata meta.v1.ObjectMeta o,2 data runtime.RawExtension o,3 revision int64 -"
    ),
    "apps.v1.DaemonSet": (
        "1 metadata meta.v1.ObjectMeta o,2 spec apps.v1.DaemonSetSpec o,"
        "3 status apps.v1.DaemonSetStatus o"
    ),
    "apps.v1.DaemonSetCondition": (
        "1 type string -,2 status string -,3 lastTransitionTime meta.v1.Time o,4 reason string o,"
        "5 message string o"
    ),
    "apps.v1.DaemonSetSpec": (
        "1 selector meta.v1.LabelSelector p,2 template core.v1.PodTemplateSpec -,"
        "3 updateStrategy apps.v1.DaemonSetUpdateStrategy o,4 minReadySeconds int32 o,"
        "6 revisionHistoryLimit int32 po"
    ),
    "apps.v1.DaemonSetStatus": (
        "1 currentNumberScheduled int32 -,2 numberMisscheduled int32 -,3 desiredNumberScheduled int32 -,"
        "4 numberReady int32 -,5 observedGeneration int64 o,6 updatedNumberScheduled int32 o,"
        "7 numberAvailable int32 o,8 numberUnavailable int32 o,9 collisionCount int32 po,"
        "10 conditions apps.v1.DaemonSetCondition ro"
    ),
    "apps.v1.DaemonSetUpdateStrategy": "1 type string o,2 rollingUpdate apps.v1.RollingUpdateDaemonSet po",
    "apps.v1.Deployment": (
        "1 metadata meta.v1.ObjectMeta o,2 spec apps.v1.DeploymentSpec o,"
        "3 status apps.v1.DeploymentStatus o"
    ),
    "apps.v1.DeploymentCondition": (
        "1 type string -,2 status string -,4 reason string o,5 message string o,"
        "6 lastUpdateTime meta.v1.Time o,7 lastTransitionTime meta.v1.Time o"
    ),
    "apps.v1.DeploymentSpec": (
        "1 replicas int32 po,2 selector meta.v1.LabelSelector p,3 template core.v1.PodTemplateSpec -,"
        "4 strategy apps.v1.DeploymentStrategy o,5 minReadySeconds int32 o,"
        "6 revisionHistoryLimit int32 po,7 paused bool o,9 progressDeadlineSeconds int32 po"
    ),
    "apps.v1.DeploymentStatus": (
        "1 observedGeneration int64 o,2 replicas int32 o,3 updatedReplicas int32 o,"
        "4 availableReplicas int32 o,5 unavailableReplicas int32 o,"
        "6 conditions apps.v1.DeploymentCondition ro,7 readyReplicas int32 o,8 collisionCount int32 po,"
        "9 terminatingReplicas int32 po"
    ),
    "apps.v1.DeploymentStrategy": "1 type string o,2 rollingUpdate apps.v1.RollingUpdateDeployment po",
    "apps.v1.ReplicaSet": (
        "1 metadata meta.v1.ObjectMeta o,2 spec apps.v1.ReplicaSetSpec o,"
        "3 status apps.v1.ReplicaSetStatus o"
    ),
    "apps.v1.ReplicaSetCondition": (
        "1 type string -,2 status string -,3 lastTransitionTime meta.v1.Time o,4 reason string o,"
        "5 message string o"
    ),
    "apps.v1.ReplicaSetSpec": (
        "1 replicas int32 po,2 selector meta.v1.LabelSelector p,3 template core.v1.PodTemplateSpec o,"
        "4 minReadySeconds int32 o"
    ),
    "apps.v1.ReplicaSetStatus": (
        "1 replicas int32 -,2 fullyLabeledReplicas int32 o,3 observedGeneration int64 o,"
        "4 readyReplicas int32 o,5 availableReplicas int32 o,6 conditions apps.v1.ReplicaSetCondition ro,"
        "7 terminatingReplicas int32 po"
    ),
    "apps.v1.RollingUpdateDaemonSet": (
        "1 maxUnavailable intstr.IntOrString po,2 maxSurge intstr.IntOrString po"
    ),
    "apps.v1.RollingUpdateDeployment": (
        "1 maxUnavailable intstr.IntOrString po,2 maxSurge intstr.IntOrString po"
    ),
    "apps.v1.RollingUpdateStatefulSetStrategy": "1 partition int32 po,2 maxUnavailable intstr.IntOrString po",
    "apps.v1.StatefulSet": (
        "1 metadata meta.v1.ObjectMeta o,2 spec apps.v1.StatefulSetSpec o,"
        "3 status apps.v1.StatefulSetStatus o"
    ),
    "apps.v1.StatefulSetCondition": (
        "1 type string -,2 status string -,3 lastTransitionTime meta.v1.Time o,4 reason string o,"
        "5 message string o"
    ),
    "apps.v1.StatefulSetOrdinals": "1 start int32 -",
    "apps.v1.StatefulSetPersistentVolumeClaimRetentionPolicy": "1 whenDeleted string o,2 whenScaled string o",
    "apps.v1.StatefulSetSpec": (
        "1 replicas int32 po,2 selector meta.v1.LabelSelector p,3 template core.v1.PodTemplateSpec -,"
        "4 volumeClaimTemplates core.v1.PersistentVolumeClaim ro,5 serviceName string -,"
        "6 podManagementPolicy string o,7 updateStrategy apps.v1.StatefulSetUpdateStrategy o,"
        "8 revisionHistoryLimit int32 po,9 minReadySeconds int32 o,"
        "10 persistentVolumeClaimRetentionPolicy apps.v1.StatefulSetPersistentVolumeClaimRetentionPolicy po,"
        "11 ordinals apps.v1.StatefulSetOrdinals po"
    ),
    "apps.v1.StatefulSetStatus": (
        "1 observedGeneration int64 o,2 replicas int32 -,3 readyReplicas int32 o,4 currentReplicas int32 o,"
        "5 updatedReplicas int32 o,6 currentRevision string o,7 updateRevision string o,"
        "9 collisionCount int32 po,10 conditions apps.v1.StatefulSetCondition ro,"
        "11 availableReplicas int32 -"
    ),
    "apps.v1.StatefulSetUpdateStrategy": (
        "1 type string o,2 rollingUpdate apps.v1.RollingUpdateStatefulSetStrategy po"
    ),
    "autoscaling.v1.Scale": (
        "1 metadata meta.v1.ObjectMeta o,2 spec autoscaling.v1.ScaleSpec o,"
        "3 status autoscaling.v1.ScaleStatus o"
    ),
    "autoscaling.v1.ScaleSpec": "1 replicas int32 o",
    "autoscaling.v1.ScaleStatus": "1 replicas int32 -,2 selector string o",
    "batch.v1.Job": "1 metadata meta.v1.ObjectMeta o,2 spec batch.v1.JobSpec o,3 status batch.v1.JobStatus o",
    "batch.v1.JobCondition": (
        "1 type string -,2 status string -,3 lastProbeTime meta.v1.Time o,"
        "4 lastTransitionTime meta.v1.Time o,5 reason string o,6 message string o"
    ),
    "batch.v1.JobSpec": (
        "1 parallelism int32 po,2 completions int32 po,3 activeDeadlineSeconds int64 po,"
        "4 selector meta.v1.LabelSelector po,5 manualSelector bool po,6 template core.v1.PodTemplateSpec -,"
        "7 backoffLimit int32 po,8 ttlSecondsAfterFinished int32 po,9 completionMode string po,"
        "10 suspend bool po,11 podFailurePolicy batch.v1.PodFailurePolicy po,"
        "12 backoffLimitPerIndex int32 po,13 maxFailedIndexes int32 po,14 podReplacementPolicy string po,"
        "15 managedBy string po,16 successPolicy batch.v1.SuccessPolicy po"
    ),
    "batch.v1.JobStatus": (
        "1 conditions batch.v1.JobCondition ro,2 startTime meta.v1.Time po,3 completionTime meta.v1.Time po,"
        "4 active int32 o,5 succeeded int32 o,6 failed int32 o,7 completedIndexes string o,"
        "8 uncountedTerminatedPods batch.v1.UncountedTerminatedPods po,9 ready int32 po,"
        "10 failedIndexes string po,11 terminating int32 po"
    ),
    "batch.v1.JobTemplateSpec": "1 metadata meta.v1.ObjectMeta o,2 spec batch.v1.JobSpec o",
    "batch.v1.PodFailurePolicy": "1 rules batch.v1.PodFailurePolicyRule r",
    "batch.v1.PodFailurePolicyOnExitCodesRequirement": (
        "1 containerName string po,2 operator string -,3 values int32 r"
    ),
    "batch.v1.PodFailurePolicyOnPodConditionsPattern": "1 type string -,2 status string -",
    "batch.v1.PodFailurePolicyRule": (
        "1 action string -,2 onExitCodes batch.v1.PodFailurePolicyOnExitCodesRequirement po,"
        "3 onPodConditions batch.v1.PodFailurePolicyOnPodConditionsPattern ro"
    ),
    "batch.v1.SuccessPolicy": "1 rules batch.v1.SuccessPolicyRule r",
    "batch.v1.SuccessPolicyRule": "1 succeededIndexes string po,2 succeededCount int32 po",
    "batch.v1.UncountedTerminatedPods": "1 succeeded string ro,2 failed string ro",
    "coordination.v1.Lease": "1 metadata meta.v1.ObjectMeta o,2 spec coordination.v1.LeaseSpec o",
    "coordination.v1.LeaseSpec": (
        "1 holderIdentity string po,2 leaseDurationSeconds int32 po,3 acquireTime meta.v1.MicroTime po,"
        "4 renewTime meta.v1.MicroTime po,5 leaseTransitions int32 po,6 strategy string po,"
        "7 preferredHolder string po"
    ),
    "core.v1.AWSElasticBlockStoreVolumeSource": (
        "1 volumeID string -,2 fsType string o,3 partition int32 o,4 readOnly bool o"
    ),
    "core.v1.Affinity": (
        "1 nodeAffinity core.v1.NodeAffinity po,2 podAffinity core.v1.PodAffinity po,"
        "3 podAntiAffinity core.v1.PodAntiAffinity po"
    ),
    "core.v1.AppArmorProfile": "1 type string -,2 localhostProfile string po",
    "core.v1.AttachedVolume": "1 name string -,2 devicePath string -",
    "core.v1.AzureDiskVolumeSource": (
        "1 diskName string -,2 diskURI string -,3 cachingMode string po,4 fsType string po,"
        "5 readOnly bool po,6 kind string po"
    ),
    "core.v1.AzureFileVolumeSource": "1 secretName string -,2 shareName string -,3 readOnly bool o",
    "core.v1.Binding": "1 metadata meta.v1.ObjectMeta o,2 target core.v1.ObjectReference -",
    "core.v1.CSIVolumeSource": (
        "1 driver string -,2 readOnly bool po,3 fsType string po,4 volumeAttributes map:string:string o,"
        "5 nodePublishSecretRef core.v1.LocalObjectReference po"
    ),
    "core.v1.Capabilities": "1 add string ro,2 drop string ro",
    "core.v1.CephFSVolumeSource": (
        "1 monitors string r,2 path string o,3 user string o,4 secretFile string o,"
        "5 secretRef core.v1.LocalObjectReference po,6 readOnly bool o"
    ),
    "core.v1.CinderVolumeSource": (
        "1 volumeID string -,2 fsType string o,3 readOnly bool o,"
        "4 secretRef core.v1.LocalObjectReference po"
    ),
    "core.v1.ClientIPConfig": "1 timeoutSeconds int32 po",
    "core.v1.ClusterTrustBundleProjection": (
        "1 name string po,2 signerName string po,3 labelSelector meta.v1.LabelSelector po,"
        "4 path string -,5 optional bool po"
    ),
    "core.v1.ConfigMap": (
        "1 metadata meta.v1.ObjectMeta o,2 data map:string:string o,3 binaryData map:string:bytes o,"
        "4 immutable bool po"
    ),
    "core.v1.ConfigMapEnvSource": "1 - core.v1.LocalObjectReference i,2 optional bool po",
    "core.v1.ConfigMapKeySelector": "1 - core.v1.LocalObjectReference i,2 key string -,3 optional bool po",
    "core.v1.ConfigMapNodeConfigSource": (
        "1 namespace string -,2 name string -,3 uid string o,4 resourceVersion string o,"
        "5 kubeletConfigKey string -"
    ),
    "core.v1.ConfigMapProjection": (
        "1 - core.v1.LocalObjectReference i,2 items core.v1.KeyToPath ro,4 optional bool po"
    ),
    "core.v1.ConfigMapVolumeSource": (
        "1 - core.v1.LocalObjectReference i,2 items core.v1.KeyToPath ro,3 defaultMode int32 po,"
        "4 optional bool po"
    ),
    "core.v1.Container": _CONTAINER_FIELDS,
    "core.v1.ContainerImage": "1 names string r,2 sizeBytes int64 o",
    "core.v1.ContainerPort": (
        "1 name string o,2 hostPort int32 o,3 containerPort int32 -,4 protocol string o,"
        "5 hostIP string o"
    ),
    "core.v1.ContainerResizePolicy": "1 resourceName string -,2 restartPolicy string -",
    "core.v1.ContainerState": (
        "1 waiting core.v1.ContainerStateWaiting po,2 running core.v1.ContainerStateRunning po,"
        "3 terminated core.v1.ContainerStateTerminated po"
    ),
    "core.v1.ContainerStateRunning": "1 startedAt meta.v1.Time o",
    "core.v1.ContainerStateTerminated": (
        "1 exitCode int32 -,2 signal int32 o,3 reason string o,4 message string o,"
        "5 startedAt meta.v1.Time o,6 finishedAt meta.v1.Time o,7 containerID string o"
    ),
    "core.v1.ContainerStateWaiting": "1 reason string o,2 message string o",
    "core.v1.ContainerStatus": (
        "1 name string -,2 state core.v1.ContainerState o,3 lastState core.v1.ContainerState o,"
        "4 ready bool -,5 restartCount int32 -,6 image string -,7 imageID string -,"
        "8 containerID string o,9 started bool po,10 allocatedResources map:string:resource.Quantity o,"
        "11 resources core.v1.ResourceRequirements po,12 volumeMounts core.v1.VolumeMountStatus ro,"
        "13 user core.v1.ContainerUser po,14 allocatedResourcesStatus core.v1.ResourceStatus ro,"
        "15 stopSignal string po"
    ),
    "core.v1.ContainerUser": "1 linux core.v1.LinuxContainerUser po",
    "core.v1.DaemonEndpoint": "1 Port int32 -",
    "core.v1.DownwardAPIProjection": "1 items core.v1.DownwardAPIVolumeFile ro",
    "core.v1.DownwardAPIVolumeFile": (
        "1 path string -,2 fieldRef core.v1.ObjectFieldSelector po,"
        "3 resourceFieldRef core.v1.ResourceFieldSelector po,4 mode int32 po"
    ),
    "core.v1.DownwardAPIVolumeSource": "1 items core.v1.DownwardAPIVolumeFile ro,2 defaultMode int32 po",
    "core.v1.EmptyDirVolumeSource": "1 medium string o,2 sizeLimit resource.Quantity po",
    "core.v1.EndpointAddress": (
        "1 ip string -,2 targetRef core.v1.ObjectReference po,3 hostname string o,4 nodeName string po"
    ),
    "core.v1.EndpointPort": "1 name string o,2 port int32 -,3 protocol string o,4 appProtocol string po",
    "core.v1.EndpointSubset": (
        "1 addresses core.v1.EndpointAddress ro,2 notReadyAddresses core.v1.EndpointAddress ro,"
        "3 ports core.v1.EndpointPort ro"
    ),
    "core.v1.Endpoints": "1 metadata meta.v1.ObjectMeta o,2 subsets core.v1.EndpointSubset ro",
    "core.v1.EnvFromSource": (
        "1 prefix string o,2 configMapRef core.v1.ConfigMapEnvSource po,"
        "3 secretRef core.v1.SecretEnvSource po"
    ),
    "core.v1.EnvVar": "1 name string -,2 value string o,3 valueFrom core.v1.EnvVarSource po",
    "core.v1.EnvVarSource": (
        "1 fieldRef core.v1.ObjectFieldSelector po,2 resourceFieldRef core.v1.ResourceFieldSelector po,"
        "3 configMapKeyRef core.v1.ConfigMapKeySelector po,4 secretKeyRef core.v1.SecretKeySelector po"
    ),
    "core.v1.EphemeralContainer": "1 - core.v1.EphemeralContainerCommon i,2 targetContainerName string o",
    "core.v1.EphemeralContainerCommon": _CONTAINER_FIELDS,
    "core.v1.EphemeralVolumeSource": "1 volumeClaimTemplate core.v1.PersistentVolumeClaimTemplate po",
    "core.v1.Event": (
        "1 metadata meta.v1.ObjectMeta -,2 involvedObject core.v1.ObjectReference -,3 reason string o,"
        "4 message string o,5 source core.v1.EventSource o,6 firstTimestamp meta.v1.Time o,"
        "7 lastTimestamp meta.v1.Time o,8 count int32 o,9 type string o,10 eventTime meta.v1.MicroTime o,"
        "11 series core.v1.EventSeries po,12 action string o,13 related core.v1.ObjectReference po,"
        "14 reportingComponent string -,15 reportingInstance string -"
    ),
    "core.v1.EventSeries": "1 count int32 o,2 lastObservedTime meta.v1.MicroTime o",
    "core.v1.EventSource": "1 component string o,2 host string o",
    "core.v1.ExecAction": "1 command string ro",
    "core.v1.FCVolumeSource": (
        "1 targetWWNs string ro,2 lun int32 po,3 fsType string o,4 readOnly bool o,5 wwids string ro"
    ),
    "core.v1.FlexVolumeSource": (
        "1 driver string -,2 fsType string o,3 secretRef core.v1.LocalObjectReference po,"
        "4 readOnly bool o,5 options map:string:string o"
    ),
    "core.v1.FlockerVolumeSource": "1 datasetName string o,2 datasetUUID string o",
    "core.v1.GCEPersistentDiskVolumeSource": (
        "1 pdName string -,2 fsType string o,3 partition int32 o,4 readOnly bool o"
    ),
    "core.v1.GRPCAction": "1 port int32 -,2 service string p",
    "core.v1.GitRepoVolumeSource": "1 repository string -,2 revision string o,3 directory string o",
    "core.v1.GlusterfsVolumeSource": "1 endpoints string -,2 path string -,3 readOnly bool o",
    "core.v1.HTTPGetAction": (
        "1 path string o,2 port intstr.IntOrString -,3 host string o,4 scheme string o,"
        "5 httpHeaders core.v1.HTTPHeader ro"
    ),
    "core.v1.HTTPHeader": "1 name string -,2 value string -",
    "core.v1.HostAlias": "1 ip string -,2 hostnames string ro",
    "core.v1.HostIP": "1 ip string -",
    "core.v1.HostPathVolumeSource": "1 path string -,2 type string po",
    "core.v1.ISCSIVolumeSource": (
        "1 targetPortal string -,2 iqn string -,3 lun int32 -,4 iscsiInterface string o,"
        "5 fsType string o,6 readOnly bool o,7 portals string ro,8 chapAuthDiscovery bool o,"
        "10 secretRef core.v1.LocalObjectReference po,11 chapAuthSession bool o,"
        "12 initiatorName string po"
    ),
    "core.v1.ImageVolumeSource": "1 reference string o,2 pullPolicy string o",
    "core.v1.KeyToPath": "1 key string -,2 path string -,3 mode int32 po",
    "core.v1.Lifecycle": (
        "1 postStart core.v1.LifecycleHandler po,2 preStop core.v1.LifecycleHandler po,"
        "3 stopSignal string po"
    ),
    "core.v1.LifecycleHandler": (
        "1 exec core.v1.ExecAction po,2 httpGet core.v1.HTTPGetAction po,"
        "3 tcpSocket core.v1.TCPSocketAction po,4 sleep core.v1.SleepAction po"
    ),
    "core.v1.LinuxContainerUser": "1 uid int64 -,2 gid int64 -,3 supplementalGroups int64 ro",
    "core.v1.LoadBalancerIngress": (
        "1 ip string o,2 hostname string o,3 ipMode string po,4 ports core.v1.PortStatus ro"
    ),
    "core.v1.LoadBalancerStatus": "1 ingress core.v1.LoadBalancerIngress ro",
    "core.v1.LocalObjectReference": "1 name string o",
    "core.v1.ModifyVolumeStatus": "1 targetVolumeAttributesClassName string o,2 status string -",
    "core.v1.NFSVolumeSource": "1 server string -,2 path string -,3 readOnly bool o",
    "core.v1.Namespace": (
        "1 metadata meta.v1.ObjectMeta o,2 spec core.v1.NamespaceSpec o,"
        "3 status core.v1.NamespaceStatus o"
    ),
    "core.v1.NamespaceCondition": (
        "1 type string -,2 status string -,4 lastTransitionTime meta.v1.Time o,5 reason string o,"
        "6 message string o"
    ),
    "core.v1.NamespaceSpec": "1 finalizers string ro",
    "core.v1.NamespaceStatus": "1 phase string o,2 conditions core.v1.NamespaceCondition ro",
    "core.v1.Node": "1 metadata meta.v1.ObjectMeta o,2 spec core.v1.NodeSpec o,3 status core.v1.NodeStatus o",
    "core.v1.NodeAddress": "1 type string -,2 address string -",
    "core.v1.NodeAffinity": (
        "1 requiredDuringSchedulingIgnoredDuringExecution core.v1.NodeSelector po,"
        "2 preferredDuringSchedulingIgnoredDuringExecution core.v1.PreferredSchedulingTerm ro"
    ),
    "core.v1.NodeCondition": (
        "1 type string -,2 status string -,3 lastHeartbeatTime meta.v1.Time o,"
        "4 lastTransitionTime meta.v1.Time o,5 reason string o,6 message string o"
    ),
    "core.v1.NodeConfigSource": "2 configMap core.v1.ConfigMapNodeConfigSource po",
    "core.v1.NodeConfigStatus": (
        "1 assigned core.v1.NodeConfigSource po,2 active core.v1.NodeConfigSource po,"
        "3 lastKnownGood core.v1.NodeConfigSource po,4 error string o"
    ),
    "core.v1.NodeDaemonEndpoints": "1 kubeletEndpoint core.v1.DaemonEndpoint o",
    "core.v1.NodeFeatures": "1 supplementalGroupsPolicy bool po",
    "core.v1.NodeRuntimeHandler": "1 name string -,2 features core.v1.NodeRuntimeHandlerFeatures po",
    "core.v1.NodeRuntimeHandlerFeatures": "1 recursiveReadOnlyMounts bool po,2 userNamespaces bool po",
    "core.v1.NodeSelector": "1 nodeSelectorTerms core.v1.NodeSelectorTerm r",
    "core.v1.NodeSelectorRequirement": "1 key string -,2 operator string -,3 values string ro",
    "core.v1.NodeSelectorTerm": (
        "1 matchExpressions core.v1.NodeSelectorRequirement ro,"
        "2 matchFields core.v1.NodeSelectorRequirement ro"
    ),
    "core.v1.NodeSpec": (
        "1 podCIDR string o,2 externalID string o,3 providerID string o,4 unschedulable bool o,"
        "5 taints core.v1.Taint ro,6 configSource core.v1.NodeConfigSource po,7 podCIDRs string ro"
    ),
    "core.v1.NodeStatus": (
        "1 capacity map:string:resource.Quantity o,2 allocatable map:string:resource.Quantity o,"
        "3 phase string o,4 conditions core.v1.NodeCondition ro,5 addresses core.v1.NodeAddress ro,"
        "6 daemonEndpoints core.v1.NodeDaemonEndpoints o,7 nodeInfo core.v1.NodeSystemInfo o,"
        "8 images core.v1.ContainerImage ro,9 volumesInUse string ro,"
        "10 volumesAttached core.v1.AttachedVolume ro,11 config core.v1.NodeConfigStatus po,"
        "12 runtimeHandlers core.v1.NodeRuntimeHandler ro,13 features core.v1.NodeFeatures po"
    ),
    "core.v1.NodeSwapStatus": "1 capacity int64 po",
    "core.v1.NodeSystemInfo": (
        "1 machineID string -,2 systemUUID string -,3 bootID string -,4 kernelVersion string -,"
        "5 osImage string -,6 containerRuntimeVersion string -,7 kubeletVersion string -,"
        "8 kubeProxyVersion string -,9 operatingSystem string -,10 architecture string -,"
        "11 swap core.v1.NodeSwapStatus po"
    ),
    "core.v1.ObjectFieldSelector": "1 apiVersion string o,2 fieldPath string -",
    "core.v1.ObjectReference": (
        "1 kind string o,2 namespace string o,3 name string o,4 uid string o,5 apiVersion string o,"
        "6 resourceVersion string o,7 fieldPath string o"
    ),
    "core.v1.PersistentVolumeClaim": (
        "1 metadata meta.v1.ObjectMeta o,2 spec core.v1.PersistentVolumeClaimSpec o,"
        "3 status core.v1.PersistentVolumeClaimStatus o"
    ),
    "core.v1.PersistentVolumeClaimCondition": (
        "1 type string -,2 status string -,3 lastProbeTime meta.v1.Time o,"
        "4 lastTransitionTime meta.v1.Time o,5 reason string o,6 message string o"
    ),
    "core.v1.PersistentVolumeClaimSpec": (
        "1 accessModes string ro,2 resources core.v1.VolumeResourceRequirements o,3 volumeName string o,"
        "4 selector meta.v1.LabelSelector po,5 storageClassName string po,6 volumeMode string po,"
        "7 dataSource core.v1.TypedLocalObjectReference po,"
        "8 dataSourceRef core.v1.TypedObjectReference po,9 volumeAttributesClassName string po"
    ),
    "core.v1.PersistentVolumeClaimStatus": (
        "1 phase string o,2 accessModes string ro,3 capacity map:string:resource.Quantity o,"
        "4 conditions core.v1.PersistentVolumeClaimCondition ro,"
        "5 allocatedResources map:string:resource.Quantity o,"
        "7 allocatedResourceStatuses map:string:string o,8 currentVolumeAttributesClassName string po,"
        "9 modifyVolumeStatus core.v1.ModifyVolumeStatus po"
    ),
    "core.v1.PersistentVolumeClaimTemplate": (
        "1 metadata meta.v1.ObjectMeta o,2 spec core.v1.PersistentVolumeClaimSpec -"
    ),
    "core.v1.PersistentVolumeClaimVolumeSource": "1 claimName string -,2 readOnly bool o",
    "core.v1.PhotonPersistentDiskVolumeSource": "1 pdID string -,2 fsType string o",
    "core.v1.Pod": "1 metadata meta.v1.ObjectMeta o,2 spec core.v1.PodSpec o,3 status core.v1.PodStatus o",
    "core.v1.PodAffinity": (
        "1 requiredDuringSchedulingIgnoredDuringExecution core.v1.PodAffinityTerm ro,"
        "2 preferredDuringSchedulingIgnoredDuringExecution core.v1.WeightedPodAffinityTerm ro"
    ),
    "core.v1.PodAffinityTerm": (
        "1 labelSelector meta.v1.LabelSelector po,2 namespaces string ro,3 topologyKey string -,"
        "4 namespaceSelector meta.v1.LabelSelector po,5 matchLabelKeys string ro,"
        "6 mismatchLabelKeys string ro"
    ),
    "core.v1.PodAntiAffinity": (
        "1 requiredDuringSchedulingIgnoredDuringExecution core.v1.PodAffinityTerm ro,"
        "2 preferredDuringSchedulingIgnoredDuringExecution core.v1.WeightedPodAffinityTerm ro"
    ),
    "core.v1.PodCondition": (
        "1 type string -,2 status string -,3 lastProbeTime meta.v1.Time o,"
        "4 lastTransitionTime meta.v1.Time o,5 reason string o,6 message string o,"
        "7 observedGeneration int64 o"
    ),
    "core.v1.PodDNSConfig": (
        "1 nameservers string ro,2 searches string ro,3 options core.v1.PodDNSConfigOption ro"
    ),
    "core.v1.PodDNSConfigOption": "1 name string o,2 value string po",
    "core.v1.PodIP": "1 ip string -",
    "core.v1.PodOS": "1 name string -",
    "core.v1.PodReadinessGate": "1 conditionType string -",
    "core.v1.PodResourceClaim": (
        "1 name string -,3 resourceClaimName string po,4 resourceClaimTemplateName string po"
    ),
    "core.v1.PodResourceClaimStatus": "1 name string -,2 resourceClaimName string po",
    "core.v1.PodSchedulingGate": "1 name string -",
    "core.v1.PodSecurityContext": (
        "1 seLinuxOptions core.v1.SELinuxOptions po,2 runAsUser int64 po,3 runAsNonRoot bool po,"
        "4 supplementalGroups int64 ro,5 fsGroup int64 po,6 runAsGroup int64 po,"
        "7 sysctls core.v1.Sysctl ro,8 windowsOptions core.v1.WindowsSecurityContextOptions po,"
        "9 fsGroupChangePolicy string po,10 seccompProfile core.v1.SeccompProfile po,"
        "11 appArmorProfile core.v1.AppArmorProfile po,12 supplementalGroupsPolicy string po,"
        "13 seLinuxChangePolicy string po"
    ),
    "core.v1.PodSpec": (
        "1 volumes core.v1.Volume ro,2 containers core.v1.Container r,3 restartPolicy string o,"
        "4 terminationGracePeriodSeconds int64 po,5 activeDeadlineSeconds int64 po,6 dnsPolicy string o,"
        "7 nodeSelector map:string:string o,8 serviceAccountName string o,9 serviceAccount string o,"
        "10 nodeName string o,11 hostNetwork bool o,12 hostPID bool o,13 hostIPC bool o,"
        "14 securityContext core.v1.PodSecurityContext po,"
        "15 imagePullSecrets core.v1.LocalObjectReference ro,16 hostname string o,17 subdomain string o,"
        "18 affinity core.v1.Affinity po,19 schedulerName string o,"
        "20 initContainers core.v1.Container ro,21 automountServiceAccountToken bool po,"
        "22 tolerations core.v1.Toleration ro,23 hostAliases core.v1.HostAlias ro,"
        "24 priorityClassName string o,25 priority int32 po,26 dnsConfig core.v1.PodDNSConfig po,"
        "27 shareProcessNamespace bool po,28 readinessGates core.v1.PodReadinessGate ro,"
        "29 runtimeClassName string po,30 enableServiceLinks bool po,31 preemptionPolicy string po,"
        "32 overhead map:string:resource.Quantity o,"
        "33 topologySpreadConstraints core.v1.TopologySpreadConstraint ro,"
        "34 ephemeralContainers core.v1.EphemeralContainer ro,35 setHostnameAsFQDN bool po,"
        "36 os core.v1.PodOS po,37 hostUsers bool po,38 schedulingGates core.v1.PodSchedulingGate ro,"
        "39 resourceClaims core.v1.PodResourceClaim ro,40 resources core.v1.ResourceRequirements po"
    ),
    "core.v1.PodStatus": (
        "1 phase string o,2 conditions core.v1.PodCondition ro,3 message string o,4 reason string o,"
        "5 hostIP string o,6 podIP string o,7 startTime meta.v1.Time po,"
        "8 containerStatuses core.v1.ContainerStatus ro,9 qosClass string o,"
        "10 initContainerStatuses core.v1.ContainerStatus ro,11 nominatedNodeName string o,"
        "12 podIPs core.v1.PodIP ro,13 ephemeralContainerStatuses core.v1.ContainerStatus ro,"
        "14 resize string o,15 resourceClaimStatuses core.v1.PodResourceClaimStatus ro,"
        "16 hostIPs core.v1.HostIP ro,17 observedGeneration int64 o"
    ),
    "core.v1.PodTemplateSpec": "1 metadata meta.v1.ObjectMeta o,2 spec core.v1.PodSpec o",
    "core.v1.PortStatus": "1 port int32 -,2 protocol string -,3 error string po",
    "core.v1.PortworxVolumeSource": "1 volumeID string -,2 fsType string o,3 readOnly bool o",
    "core.v1.PreferredSchedulingTerm": "1 weight int32 -,2 preference core.v1.NodeSelectorTerm -",
    "core.v1.Probe": (
        "1 - core.v1.ProbeHandler i,2 initialDelaySeconds int32 o,3 timeoutSeconds int32 o,"
        "4 periodSeconds int32 o,5 successThreshold int32 o,6 failureThreshold int32 o,"
        "7 terminationGracePeriodSeconds int64 po"
    ),
    "core.v1.ProbeHandler": (
        "1 exec core.v1.ExecAction po,2 httpGet core.v1.HTTPGetAction po,"
        "3 tcpSocket core.v1.TCPSocketAction po,4 grpc core.v1.GRPCAction po"
    ),
    "core.v1.ProjectedVolumeSource": "1 sources core.v1.VolumeProjection r,2 defaultMode int32 po",
    "core.v1.QuobyteVolumeSource": (
        "1 registry string -,2 volume string -,3 readOnly bool o,4 user string o,5 group string o,"
        "6 tenant string o"
    ),
    "core.v1.RBDVolumeSource": (
        "1 monitors string r,2 image string -,3 fsType string o,4 pool string o,5 user string o,"
        "6 keyring string o,7 secretRef core.v1.LocalObjectReference po,8 readOnly bool o"
    ),
    "core.v1.ResourceClaim": "1 name string -,2 request string o",
    "core.v1.ResourceFieldSelector": (
        "1 containerName string o,2 resource string -,3 divisor resource.Quantity o"
    ),
    "core.v1.ResourceHealth": "1 resourceID string -,2 health string o",
    "core.v1.ResourceRequirements": (
        "1 limits map:string:resource.Quantity o,2 requests map:string:resource.Quantity o,"
        "3 claims core.v1.ResourceClaim ro"
    ),
    "core.v1.ResourceStatus": "1 name string -,2 resources core.v1.ResourceHealth ro",
    "core.v1.SELinuxOptions": "1 user string o,2 role string o,3 type string o,4 level string o",
    "core.v1.ScaleIOVolumeSource": (
        "1 gateway string -,2 system string -,3 secretRef core.v1.LocalObjectReference p,"
        "4 sslEnabled bool o,5 protectionDomain string o,6 storagePool string o,7 storageMode string o,"
        "8 volumeName string o,9 fsType string o,10 readOnly bool o"
    ),
    "core.v1.SeccompProfile": "1 type string -,2 localhostProfile string po",
    "core.v1.Secret": (
        "1 metadata meta.v1.ObjectMeta o,2 data map:string:bytes o,3 type string o,"
        "4 stringData map:string:string o,5 immutable bool po"
    ),
    "core.v1.SecretEnvSource": "1 - core.v1.LocalObjectReference i,2 optional bool po",
    "core.v1.SecretKeySelector": "1 - core.v1.LocalObjectReference i,2 key string -,3 optional bool po",
    "core.v1.SecretProjection": (
        "1 - core.v1.LocalObjectReference i,2 items core.v1.KeyToPath ro,4 optional bool po"
    ),
    "core.v1.SecretVolumeSource": (
        "1 secretName string o,2 items core.v1.KeyToPath ro,3 defaultMode int32 po,4 optional bool po"
    ),
    "core.v1.SecurityContext": (
        "1 capabilities core.v1.Capabilities po,2 privileged bool po,"
        "3 seLinuxOptions core.v1.SELinuxOptions po,4 runAsUser int64 po,5 runAsNonRoot bool po,"
        "6 readOnlyRootFilesystem bool po,7 allowPrivilegeEscalation bool po,8 runAsGroup int64 po,"
        "9 procMount string po,10 windowsOptions core.v1.WindowsSecurityContextOptions po,"
        "11 seccompProfile core.v1.SeccompProfile po,12 appArmorProfile core.v1.AppArmorProfile po"
    ),
    "core.v1.Service": (
        "1 metadata meta.v1.ObjectMeta o,2 spec core.v1.ServiceSpec o,3 status core.v1.ServiceStatus o"
    ),
    "core.v1.ServiceAccount": (
        "1 metadata meta.v1.ObjectMeta o,2 secrets core.v1.ObjectReference ro,"
        "3 imagePullSecrets core.v1.LocalObjectReference ro,4 automountServiceAccountToken bool po"
    ),
    "core.v1.ServiceAccountTokenProjection": (
        "1 audience string o,2 expirationSeconds int64 po,3 path string -"
    ),
    "core.v1.ServicePort": (
        "1 name string o,2 protocol string o,3 port int32 -,4 targetPort intstr.IntOrString o,"
        "5 nodePort int32 o,6 appProtocol string po"
    ),
    "core.v1.ServiceSpec": (
        "1 ports core.v1.ServicePort ro,2 selector map:string:string o,3 clusterIP string o,"
        "4 type string o,5 externalIPs string ro,7 sessionAffinity string o,8 loadBalancerIP string o,"
        "9 loadBalancerSourceRanges string ro,10 externalName string o,11 externalTrafficPolicy string o,"
        "12 healthCheckNodePort int32 o,13 publishNotReadyAddresses bool o,"
        "14 sessionAffinityConfig core.v1.SessionAffinityConfig po,17 ipFamilyPolicy string po,"
        "18 clusterIPs string ro,19 ipFamilies string ro,20 allocateLoadBalancerNodePorts bool po,"
        "21 loadBalancerClass string po,22 internalTrafficPolicy string po,"
        "23 trafficDistribution string po"
    ),
    "core.v1.ServiceStatus": "1 loadBalancer core.v1.LoadBalancerStatus o,2 conditions meta.v1.Condition ro",
    "core.v1.SessionAffinityConfig": "1 clientIP core.v1.ClientIPConfig po",
    "core.v1.SleepAction": "1 seconds int64 -",
    "core.v1.StorageOSVolumeSource": (
        "1 volumeName string o,2 volumeNamespace string o,3 fsType string o,4 readOnly bool o,"
        "5 secretRef core.v1.LocalObjectReference po"
    ),
    "core.v1.Sysctl": "1 name string -,2 value string -",
    "core.v1.TCPSocketAction": "1 port intstr.IntOrString -,2 host string o",
    "core.v1.Taint": "1 key string -,2 value string o,3 effect string -,4 timeAdded meta.v1.Time po",
    "core.v1.Toleration": (
        "1 key string o,2 operator string o,3 value string o,4 effect string o,"
        "5 tolerationSeconds int64 po"
    ),
    "core.v1.TopologySpreadConstraint": (
        "1 maxSkew int32 -,2 topologyKey string -,3 whenUnsatisfiable string -,"
        "4 labelSelector meta.v1.LabelSelector po,5 minDomains int32 po,6 nodeAffinityPolicy string po,"
        "7 nodeTaintsPolicy string po,8 matchLabelKeys string ro"
    ),
    "core.v1.TypedLocalObjectReference": "1 apiGroup string p,2 kind string -,3 name string -",
    "core.v1.TypedObjectReference": (
        "1 apiGroup string p,2 kind string -,3 name string -,4 namespace string po"
    ),
    "core.v1.Volume": "1 name string -,2 - core.v1.VolumeSource i",
    "core.v1.VolumeDevice": "1 name string -,2 devicePath string -",
    "core.v1.VolumeMount": (
        "1 name string -,2 readOnly bool o,3 mountPath string -,4 subPath string o,"
        "5 mountPropagation string po,6 subPathExpr string o,7 recursiveReadOnly string po"
    ),
    "core.v1.VolumeMountStatus": (
        "1 name string -,2 mountPath string -,3 readOnly bool o,4 recursiveReadOnly string po"
    ),
    "core.v1.VolumeProjection": (
        "1 secret core.v1.SecretProjection po,2 downwardAPI core.v1.DownwardAPIProjection po,"
        "3 configMap core.v1.ConfigMapProjection po,"
        "4 serviceAccountToken core.v1.ServiceAccountTokenProjection po,"
        "5 clusterTrustBundle core.v1.ClusterTrustBundleProjection po"
    ),
    "core.v1.VolumeResourceRequirements": (
        "1 limits map:string:resource.Quantity o,2 requests map:string:resource.Quantity o"
    ),
    "core.v1.VolumeSource": (
        "1 hostPath core.v1.HostPathVolumeSource po,2 emptyDir core.v1.EmptyDirVolumeSource po,"
        "3 gcePersistentDisk core.v1.GCEPersistentDiskVolumeSource po,"
        "4 awsElasticBlockStore core.v1.AWSElasticBlockStoreVolumeSource po,"
        "5 gitRepo core.v1.GitRepoVolumeSource po,6 secret core.v1.SecretVolumeSource po,"
        "7 nfs core.v1.NFSVolumeSource po,8 iscsi core.v1.ISCSIVolumeSource po,"
        "9 glusterfs core.v1.GlusterfsVolumeSource po,"
        "10 persistentVolumeClaim core.v1.PersistentVolumeClaimVolumeSource po,"
        "11 rbd core.v1.RBDVolumeSource po,12 flexVolume core.v1.FlexVolumeSource po,"
        "13 cinder core.v1.CinderVolumeSource po,14 cephfs core.v1.CephFSVolumeSource po,"
        "15 flocker core.v1.FlockerVolumeSource po,16 downwardAPI core.v1.DownwardAPIVolumeSource po,"
        "17 fc core.v1.FCVolumeSource po,18 azureFile core.v1.AzureFileVolumeSource po,"
        "19 configMap core.v1.ConfigMapVolumeSource po,"
        "20 vsphereVolume core.v1.VsphereVirtualDiskVolumeSource po,"
        "21 quobyte core.v1.QuobyteVolumeSource po,22 azureDisk core.v1.AzureDiskVolumeSource po,"
        "23 photonPersistentDisk core.v1.PhotonPersistentDiskVolumeSource po,"
        "24 portworxVolume core.v1.PortworxVolumeSource po,25 scaleIO core.v1.ScaleIOVolumeSource po,"
        "26 projected core.v1.ProjectedVolumeSource po,27 storageos core.v1.StorageOSVolumeSource po,"
        "28 csi core.v1.CSIVolumeSource po,29 ephemeral core.v1.EphemeralVolumeSource po,"
        "30 image core.v1.ImageVolumeSource po"
    ),
    "core.v1.VsphereVirtualDiskVolumeSource": (
        "1 volumePath string -,2 fsType string o,3 storagePolicyName string o,4 storagePolicyID string o"
    ),
    "core.v1.WeightedPodAffinityTerm": "1 weight int32 -,2 podAffinityTerm core.v1.PodAffinityTerm -",
    "core.v1.WindowsSecurityContextOptions": (
        "1 gmsaCredentialSpecName string po,2 gmsaCredentialSpec string po,3 runAsUserName string po,"
        "4 hostProcess bool po"
    ),
    "discovery.v1.Endpoint": (
        "1 addresses string r,2 conditions discovery.v1.EndpointConditions o,3 hostname string po,"
        "4 targetRef core.v1.ObjectReference po,5 deprecatedTopology map:string:string o,"
        "6 nodeName string po,7 zone string po,8 hints discovery.v1.EndpointHints po"
    ),
    "discovery.v1.EndpointConditions": "1 ready bool po,2 serving bool po,3 terminating bool po",
    "discovery.v1.EndpointHints": "1 forZones discovery.v1.ForZone ro,2 forNodes discovery.v1.ForNode ro",
    "discovery.v1.EndpointPort": (
        "1 name string po,2 protocol string po,3 port int32 po,4 appProtocol string po"
    ),
    "discovery.v1.EndpointSlice": (
        "1 metadata meta.v1.ObjectMeta o,2 endpoints discovery.v1.Endpoint r,"
        "3 ports discovery.v1.EndpointPort r,4 addressType string -"
    ),
    "discovery.v1.ForNode": "1 name string -",
    "discovery.v1.ForZone": "1 name string -",
    "events.v1.Event": (
        "1 metadata meta.v1.ObjectMeta -,2 eventTime meta.v1.MicroTime -,"
        "3 series events.v1.EventSeries po,4 reportingController string o,5 reportingInstance string o,"
        "6 action string o,7 reason string o,8 regarding core.v1.ObjectReference o,"
        "9 related core.v1.ObjectReference po,10 note string o,11 type string o,"
        "12 deprecatedSource core.v1.EventSource o,13 deprecatedFirstTimestamp meta.v1.Time o,"
        "14 deprecatedLastTimestamp meta.v1.Time o,15 deprecatedCount int32 o"
    ),
    "events.v1.EventSeries": "1 count int32 -,2 lastObservedTime meta.v1.MicroTime -",
    "meta.v1.Condition": (
        "1 type string -,2 status string -,3 observedGeneration int64 o,"
        "4 lastTransitionTime meta.v1.Time -,5 reason string -,6 message string -"
    ),
    "meta.v1.DeleteOptions": (
        "1 gracePeriodSeconds int64 po,2 preconditions meta.v1.Preconditions po,"
        "3 orphanDependents bool po,4 propagationPolicy string po,5 dryRun string ro,"
        "6 ignoreStoreReadErrorWithClusterBreakingPotential bool po"
    ),
    "meta.v1.LabelSelector": (
        "1 matchLabels map:string:string o,2 matchExpressions meta.v1.LabelSelectorRequirement ro"
    ),
    "meta.v1.LabelSelectorRequirement": "1 key string -,2 operator string -,3 values string ro",
    "meta.v1.ManagedFieldsEntry": (
        "1 manager string o,2 operation string o,3 apiVersion string o,4 time meta.v1.Time po,"
        "6 fieldsType string o,7 fieldsV1 meta.v1.FieldsV1 po,8 subresource string o"
    ),
    "meta.v1.ObjectMeta": (
        "1 name string o,2 generateName string o,3 namespace string o,4 selfLink string o,5 uid string o,"
        "6 resourceVersion string o,7 generation int64 o,8 creationTimestamp meta.v1.Time o,"
        "9 deletionTimestamp meta.v1.Time po,10 deletionGracePeriodSeconds int64 po,"
        "11 labels map:string:string o,12 annotations map:string:string o,"
        "13 ownerReferences meta.v1.OwnerReference ro,14 finalizers string ro,"
        "17 managedFields meta.v1.ManagedFieldsEntry ro"
    ),
    "meta.v1.OwnerReference": (
        "1 kind string -,3 name string -,4 uid string -,5 apiVersion string -,6 controller bool po,"
        "7 blockOwnerDeletion bool po"
    ),
    "meta.v1.Preconditions": "1 uid string po,2 resourceVersion string po",
    "networking.v1.HTTPIngressPath": (
        "1 path string o,2 backend networking.v1.IngressBackend -,3 pathType string p"
    ),
    "networking.v1.HTTPIngressRuleValue": "1 paths networking.v1.HTTPIngressPath r",
    "networking.v1.Ingress": (
        "1 metadata meta.v1.ObjectMeta o,2 spec networking.v1.IngressSpec o,"
        "3 status networking.v1.IngressStatus o"
    ),
    "networking.v1.IngressBackend": (
        "3 resource core.v1.TypedLocalObjectReference po,"
        "4 service networking.v1.IngressServiceBackend po"
    ),
    "networking.v1.IngressClass": "1 metadata meta.v1.ObjectMeta o,2 spec networking.v1.IngressClassSpec o",
    "networking.v1.IngressClassParametersReference": (
        "1 apiGroup string po,2 kind string -,3 name string -,4 scope string p,5 namespace string po"
    ),
    "networking.v1.IngressClassSpec": (
        "1 controller string o,2 parameters networking.v1.IngressClassParametersReference po"
    ),
    "networking.v1.IngressLoadBalancerIngress": (
        "1 ip string o,2 hostname string o,4 ports networking.v1.IngressPortStatus ro"
    ),
    "networking.v1.IngressLoadBalancerStatus": "1 ingress networking.v1.IngressLoadBalancerIngress ro",
    "networking.v1.IngressPortStatus": "1 port int32 -,2 protocol string -,3 error string po",
    "networking.v1.IngressRule": "1 host string o,2 - networking.v1.IngressRuleValue i",
    "networking.v1.IngressRuleValue": "1 http networking.v1.HTTPIngressRuleValue po",
    "networking.v1.IngressServiceBackend": "1 name string -,2 port networking.v1.ServiceBackendPort o",
    "networking.v1.IngressSpec": (
        "1 defaultBackend networking.v1.IngressBackend po,2 tls networking.v1.IngressTLS ro,"
        "3 rules networking.v1.IngressRule ro,4 ingressClassName string po"
    ),
    "networking.v1.IngressStatus": "1 loadBalancer networking.v1.IngressLoadBalancerStatus o",
    "networking.v1.IngressTLS": "1 hosts string ro,2 secretName string o",
    "networking.v1.IPBlock": "1 cidr string -,2 except string ro",
    "networking.v1.NetworkPolicy": "1 metadata meta.v1.ObjectMeta o,2 spec networking.v1.NetworkPolicySpec o",
    "networking.v1.NetworkPolicyEgressRule": (
        "1 ports networking.v1.NetworkPolicyPort ro,2 to networking.v1.NetworkPolicyPeer ro"
    ),
    "networking.v1.NetworkPolicyIngressRule": (
        "1 ports networking.v1.NetworkPolicyPort ro,2 from networking.v1.NetworkPolicyPeer ro"
    ),
    "networking.v1.NetworkPolicyPeer": (
        "1 podSelector meta.v1.LabelSelector po,2 namespaceSelector meta.v1.LabelSelector po,"
        "3 ipBlock networking.v1.IPBlock po"
    ),
    "networking.v1.NetworkPolicyPort": "1 protocol string po,2 port intstr.IntOrString po,3 endPort int32 po",
    "networking.v1.NetworkPolicySpec": (
        "1 podSelector meta.v1.LabelSelector -,2 ingress networking.v1.NetworkPolicyIngressRule ro,"
        "3 egress networking.v1.NetworkPolicyEgressRule ro,4 policyTypes string ro"
    ),
    "networking.v1.ServiceBackendPort": "1 name string o,2 number int32 o",
    "authorization.v1.SelfSubjectAccessReview": (
        "1 metadata meta.v1.ObjectMeta o,2 spec authorization.v1.SelfSubjectAccessReviewSpec -,"
        "3 status authorization.v1.SubjectAccessReviewStatus o"
    ),
    "authorization.v1.SelfSubjectAccessReviewSpec": (
        "1 resourceAttributes authorization.v1.ResourceAttributes po,"
        "2 nonResourceAttributes authorization.v1.NonResourceAttributes po"
    ),
    "authorization.v1.ResourceAttributes": (
        "1 namespace string o,2 verb string o,3 group string o,4 version string o,5 resource string o,"
        "6 subresource string o,7 name string o"
    ),
    "authorization.v1.NonResourceAttributes": "1 path string o,2 verb string o",
    "authorization.v1.SubjectAccessReviewStatus": (
        "1 allowed bool -,4 denied bool o,2 reason string o,3 evaluationError string o"
    ),
    "authentication.v1.TokenRequest": (
        "1 metadata meta.v1.ObjectMeta o,2 spec authentication.v1.TokenRequestSpec -,"
        "3 status authentication.v1.TokenRequestStatus o"
    ),
    "authentication.v1.TokenRequestSpec": (
        "1 audiences string r,4 expirationSeconds int64 p,3 boundObjectRef authentication.v1.BoundObjectReference p"
    ),
    "authentication.v1.BoundObjectReference": "1 kind string o,2 apiVersion string o,3 name string o,4 uid string o",
    "authentication.v1.TokenRequestStatus": "1 token string -,2 expirationTimestamp meta.v1.Time -",
    "authentication.v1.SelfSubjectReview": (
        "1 metadata meta.v1.ObjectMeta o,2 status authentication.v1.SelfSubjectReviewStatus o"
    ),
    "authentication.v1.SelfSubjectReviewStatus": "1 userInfo authentication.v1.UserInfo o",
    "authentication.v1.UserInfo": "1 username string o,2 uid string o,3 groups string ro",
    "authentication.v1.TokenReview": (
        "1 metadata meta.v1.ObjectMeta o,2 spec authentication.v1.TokenReviewSpec -,"
        "3 status authentication.v1.TokenReviewStatus o"
    ),
    "authentication.v1.TokenReviewSpec": "1 token string o,2 audiences string ro",
    "authentication.v1.TokenReviewStatus": (
        "1 authenticated bool o,2 user authentication.v1.UserInfo o,4 audiences string ro,3 error string o"
    ),
    "policy.v1.Eviction": "1 metadata meta.v1.ObjectMeta o,2 deleteOptions meta.v1.DeleteOptions po",
    "runtime.TypeMeta": "1 apiVersion string o,2 kind string o",
    "runtime.Unknown": "1 - runtime.TypeMeta i,2 - bytes -,3 contentEncoding string o,4 contentType string o",
}
