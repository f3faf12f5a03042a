//go:build !windows

package testbed

import (
	"fmt"
	"strings"
	"time"
)

// PodReadyDelayAnnotation on a pod overrides Options.PodReadyDelay for that pod: how long
// after it is scheduled kwok marks it Running and Ready, in milliseconds ("1500"). A Go
// duration ("1.5s") works too: kwok's own pod/general stages read the same annotation, but
// only in that form.
const PodReadyDelayAnnotation = "pod-ready.stage.kwok.x-k8s.io/delay"

// Addresses kwok falls back to for nodes created without a pod CIDR or an InternalIP (nodes
// from CreateWindowsNodes have both). kwok's own default pod CIDR, 10.0.0.0/24, would
// overlap envtest's service range.
const (
	kwokFallbackPodCIDR = "10.243.0.0/16"
	kwokFallbackNodeIP  = "10.242.0.1"
)

// kwokArgs are kwok's flags:
//   - it manages only nodes labelled type=kwok, so a test can still create a node that
//     nothing manages;
//   - it keeps a Lease per node, renewed every 10 s, as a kubelet does, so the node
//     lifecycle controller never marks a node NotReady however long the tests run;
//   - it serves no kubelet API (no --server-address or --node-port): nothing needs logs or
//     exec of simulated pods, and a port could collide between parallel test beds.
func kwokArgs(kubeconfig, stagesPath string) []string {
	return []string{
		"--kubeconfig=" + kubeconfig,
		"--config=" + stagesPath,
		"--manage-nodes-with-label-selector=" + KwokNodeLabel + "=" + KwokNodeLabelValue,
		"--node-lease-duration-seconds=40",
		"--cidr=" + kwokFallbackPodCIDR,
		"--node-ip=" + kwokFallbackNodeIP,
	}
}

// kwokStages renders the stages kwok plays, one YAML document each. They follow kwok's
// node/fast, node/heartbeat and pod/general stages, written with the Stage API of kwok
// v0.8.0 (jq selectors and steps instead of the deprecated key/operator and next):
//
//   - node-initialize: a new node becomes Ready, keeping what its creator set (addresses,
//     capacity, nodeInfo) and filling in what is missing;
//   - node-heartbeat: every 20 to 25 s a Ready node's conditions get a new heartbeat time;
//   - pod-create: at once after scheduling, the pod reports ContainerCreating (Pending,
//     with a host IP but no pod IP), as while its utility VM boots;
//   - pod-ready: podReadyDelay later, or after the pod's PodReadyDelayAnnotation (plain
//     milliseconds, or a Go duration such as "1.5s" as kwok's own stages accept), the pod
//     is Running and Ready with one IP from its node's pod CIDR. It selects a scheduled
//     Pending pod, not one without a pod IP: under load kwok can replay pod-create from a
//     stale event after pod-ready, which left a pod Pending with an IP that no stage
//     selected again (one of 1,000 in a benchmark pool);
//   - pod-delete: a pod with a deletionTimestamp is deleted for good, as a kubelet does
//     once its containers stopped. Finalizers are left alone, as a kubelet leaves them.
func kwokStages(podReadyDelay time.Duration) string {
	return strings.Join([]string{
		nodeInitializeStage,
		nodeHeartbeatStage,
		podCreateStage,
		fmt.Sprintf(podReadyStage, podReadyDelay.Milliseconds(), PodReadyDelayAnnotation),
		podDeleteStage,
	}, "---\n")
}

const nodeInitializeStage = `apiVersion: kwok.x-k8s.io/v1alpha1
kind: Stage
metadata:
  name: node-initialize
spec:
  resourceRef:
    apiGroup: v1
    kind: Node
  selector:
    matchExpressions:
    - jq:
        key: '.status.conditions.[] | select( .type == "Ready" ) | .status'
        operator: NotIn
        values: ['True']
  steps:
  - patch:
      subresource: status
      root: status
      template: |
        {{ $now := Now }}
        conditions:
        {{ range NodeConditions }}
        - lastHeartbeatTime: {{ $now | Quote }}
          lastTransitionTime: {{ $now | Quote }}
          message: {{ .message | Quote }}
          reason: {{ .reason | Quote }}
          status: {{ .status | Quote }}
          type: {{ .type | Quote }}
        {{ end }}
        {{ if not .status.addresses }}
        addresses:
        - address: {{ NodeIP | Quote }}
          type: InternalIP
        - address: {{ NodeName | Quote }}
          type: Hostname
        {{ end }}
        {{ if not .status.capacity }}
        capacity:
          cpu: 1k
          memory: 1Ti
          pods: 1M
        {{ end }}
        {{ if not .status.allocatable }}
        allocatable:
          cpu: 1k
          memory: 1Ti
          pods: 1M
        {{ end }}
        {{ $nodeInfo := .status.nodeInfo }}
        {{ $kwokVersion := printf "kwok-%s" Version }}
        nodeInfo:
          architecture: {{ or $nodeInfo.architecture "amd64" | Quote }}
          containerRuntimeVersion: {{ or $nodeInfo.containerRuntimeVersion $kwokVersion | Quote }}
          kernelVersion: {{ or $nodeInfo.kernelVersion $kwokVersion | Quote }}
          kubeletVersion: {{ or $nodeInfo.kubeletVersion $kwokVersion | Quote }}
          operatingSystem: {{ or $nodeInfo.operatingSystem "linux" | Quote }}
        phase: Running
`

const nodeHeartbeatStage = `apiVersion: kwok.x-k8s.io/v1alpha1
kind: Stage
metadata:
  name: node-heartbeat
spec:
  resourceRef:
    apiGroup: v1
    kind: Node
  selector:
    matchExpressions:
    - jq:
        key: '.status.phase'
        operator: In
        values: ['Running']
    - jq:
        key: '.status.conditions.[] | select( .type == "Ready" ) | .status'
        operator: In
        values: ['True']
  delay:
    durationMilliseconds: 20000
    jitterDurationMilliseconds: 25000
  steps:
  - patch:
      subresource: status
      root: status
      template: |
        {{ $now := Now }}
        conditions:
        {{ range NodeConditions }}
        - lastHeartbeatTime: {{ $now | Quote }}
          message: {{ .message | Quote }}
          reason: {{ .reason | Quote }}
          status: {{ .status | Quote }}
          type: {{ .type | Quote }}
        {{ end }}
  immediateNextStage: true
`

const podCreateStage = `apiVersion: kwok.x-k8s.io/v1alpha1
kind: Stage
metadata:
  name: pod-create
spec:
  resourceRef:
    apiGroup: v1
    kind: Pod
  selector:
    matchExpressions:
    - jq:
        key: '.metadata.deletionTimestamp'
        operator: DoesNotExist
    - jq:
        key: '.status.hostIP'
        operator: DoesNotExist
  steps:
  - patch:
      subresource: status
      root: status
      template: |
        {{ $now := Now }}
        {{ $hostIP := NodeIPWith .spec.nodeName }}
        {{ $containers := "" }}
        {{ range .spec.containers }}{{ $containers = printf "%s %s" $containers .name | trim }}{{ end }}
        {{ $initContainers := "" }}
        {{ range .spec.initContainers }}{{ $initContainers = printf "%s %s" $initContainers .name | trim }}{{ end }}
        {{ $unready := printf "containers with unready status: [%s]" $containers }}
        conditions:
        - lastTransitionTime: {{ $now | Quote }}
          status: "False"
          type: PodReadyToStartContainers
        {{ if .spec.initContainers }}
        - lastTransitionTime: {{ $now | Quote }}
          message: {{ printf "containers with incomplete status: [%s]" $initContainers | Quote }}
          reason: ContainersNotInitialized
          status: "False"
          type: Initialized
        {{ else }}
        - lastTransitionTime: {{ $now | Quote }}
          status: "True"
          type: Initialized
        {{ end }}
        - lastTransitionTime: {{ $now | Quote }}
          message: {{ $unready | Quote }}
          reason: ContainersNotReady
          status: "False"
          type: Ready
        - lastTransitionTime: {{ $now | Quote }}
          message: {{ $unready | Quote }}
          reason: ContainersNotReady
          status: "False"
          type: ContainersReady
        {{ if .spec.initContainers }}
        initContainerStatuses:
        {{ range .spec.initContainers }}
        - image: {{ .image | Quote }}
          name: {{ .name | Quote }}
          ready: false
          restartCount: 0
          started: false
          state:
            waiting:
              reason: PodInitializing
        {{ end }}
        {{ end }}
        containerStatuses:
        {{ range .spec.containers }}
        - image: {{ .image | Quote }}
          name: {{ .name | Quote }}
          ready: false
          restartCount: 0
          started: false
          state:
            waiting:
              reason: {{ if $.spec.initContainers }}PodInitializing{{ else }}ContainerCreating{{ end }}
        {{ end }}
        hostIP: {{ $hostIP | Quote }}
        hostIPs:
        - ip: {{ $hostIP | Quote }}
        phase: Pending
        startTime: {{ $now | Quote }}
`

// podReadyStage takes the default delay in milliseconds and the annotation's name. Its
// patch replaces podIPs rather than merging into it, so that a retried patch cannot leave
// two IPs behind (the API server rejects two of one family).
const podReadyStage = `apiVersion: kwok.x-k8s.io/v1alpha1
kind: Stage
metadata:
  name: pod-ready
spec:
  resourceRef:
    apiGroup: v1
    kind: Pod
  selector:
    matchExpressions:
    - jq:
        key: '.metadata.deletionTimestamp'
        operator: DoesNotExist
    - jq:
        key: '.status.hostIP'
        operator: Exists
    - jq:
        key: '.status.phase'
        operator: In
        values: ['Pending']
  delay:
    durationMilliseconds: %[1]d
    durationFrom:
      jq:
        expression: '.metadata.annotations["%[2]s"] | strings | if test("^[0-9]+$") then . + "ms" else . end'
  steps:
  - patch:
      subresource: status
      root: status
      template: |
        {{ $now := Now }}
        {{ $podIP := PodIPWith .spec.nodeName ( or .spec.hostNetwork false ) ( or .metadata.uid "" ) ( or .metadata.name "" ) ( or .metadata.namespace "" ) }}
        conditions:
        - lastTransitionTime: {{ $now | Quote }}
          status: "True"
          type: PodReadyToStartContainers
        - lastTransitionTime: {{ $now | Quote }}
          message: ""
          reason: ""
          status: "True"
          type: Initialized
        - lastTransitionTime: {{ $now | Quote }}
          message: ""
          reason: ""
          status: "True"
          type: Ready
        - lastTransitionTime: {{ $now | Quote }}
          message: ""
          reason: ""
          status: "True"
          type: ContainersReady
        {{ range .spec.readinessGates }}
        - lastTransitionTime: {{ $now | Quote }}
          status: "True"
          type: {{ .conditionType | Quote }}
        {{ end }}
        {{ if .spec.initContainers }}
        initContainerStatuses:
        {{ range .spec.initContainers }}
        - image: {{ .image | Quote }}
          name: {{ .name | Quote }}
          ready: true
          restartCount: 0
          {{ if eq .restartPolicy "Always" }}
          started: true
          state:
            running:
              startedAt: {{ $now | Quote }}
          {{ else }}
          started: false
          state:
            terminated:
              exitCode: 0
              finishedAt: {{ $now | Quote }}
              reason: Completed
              startedAt: {{ $now | Quote }}
          {{ end }}
        {{ end }}
        {{ end }}
        containerStatuses:
        {{ range .spec.containers }}
        - image: {{ .image | Quote }}
          name: {{ .name | Quote }}
          ready: true
          restartCount: 0
          started: true
          state:
            running:
              startedAt: {{ $now | Quote }}
        {{ end }}
        podIP: {{ $podIP | Quote }}
        podIPs:
        - ip: {{ $podIP | Quote }}
        - $patch: replace
        phase: Running
`

const podDeleteStage = `apiVersion: kwok.x-k8s.io/v1alpha1
kind: Stage
metadata:
  name: pod-delete
spec:
  resourceRef:
    apiGroup: v1
    kind: Pod
  selector:
    matchExpressions:
    - jq:
        key: '.metadata.deletionTimestamp'
        operator: Exists
  steps:
  - delete: true
`
