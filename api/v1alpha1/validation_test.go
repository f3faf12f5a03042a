//go:build !windows

package v1alpha1_test

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"reflect"
	"slices"
	"strings"
	"testing"
	"time"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	utiljson "k8s.io/apimachinery/pkg/util/json"
	"k8s.io/apimachinery/pkg/util/wait"
	utilyaml "k8s.io/apimachinery/pkg/util/yaml"
	"k8s.io/utils/ptr"
	"sigs.k8s.io/controller-runtime/pkg/client"

	hyperpoolv1alpha1 "github.com/hyperpool/hyperpool/api/v1alpha1"
	"github.com/hyperpool/hyperpool/test/testbed"
)

// These tests check the API as the real kube-apiserver serves it from the generated CRDs:
// OpenAPI validation, CEL rules, defaults, printer columns, categories, the scale
// subresource and kubectl explain. Manifests are sent as unstructured objects, so values
// the Go types could not even hold (a Quantity of "lots", a duration of "abc") reach the
// server and are judged there.

var env *testbed.Env

func TestMain(m *testing.M) {
	// Only the API server is needed: no pod is ever created, so neither the scheduler nor
	// the controller-manager is started.
	testbed.Main(m, testbed.Options{DisableScheduler: true, DisableControllerManager: true},
		func(e *testbed.Env) error { env = e; return nil })
}

// waitTimeout bounds every wait for the API server (OpenAPI publishing, kubectl).
const waitTimeout = 30 * time.Second

// Minimal valid objects. Each invalid row is one of them with a JSON merge patch
// (RFC 7386: maps merge, a null removes the key, anything else replaces) applied, so a row
// shows just what makes it invalid. TestBaseManifestsAreValid proves the bases are accepted.
const (
	baseSandbox = `
apiVersion: agents.hyperpool.io/v1alpha1
kind: AgentSandbox
metadata:
  name: pool
spec:
  windows:
    imageBuild: 20348
  template:
    spec:
      containers:
      - name: sandbox
        image: mcr.microsoft.com/windows/nanoserver:ltsc2022
`
	baseSession = `
apiVersion: agents.hyperpool.io/v1alpha1
kind: AgentSession
metadata:
  name: session
spec:
  sandboxName: pool
`
	baseQuota = `
apiVersion: agents.hyperpool.io/v1alpha1
kind: AgentQuota
metadata:
  name: quota
spec:
  hard:
    sessions: 10
`
)

type invalidCase struct {
	name  string
	base  string // baseSandbox, baseSession or baseQuota
	patch string // YAML merge patch on base
	// wantErr are substrings the API server's error must all contain: the field path and,
	// where the marker gives one, the part of the message that tells the fix.
	wantErr []string
}

func invalidCases() []invalidCase {
	// A container with a securityContext, as a merge-patch replacement of the container list.
	container := func(securityContext string) string {
		return `
spec:
  template:
    spec:
      containers:
      - name: sandbox
        image: mcr.microsoft.com/windows/nanoserver:ltsc2022
        securityContext: ` + securityContext
	}
	initContainer := func(securityContext string) string {
		return `
spec:
  template:
    spec:
      initContainers:
      - name: setup
        image: mcr.microsoft.com/windows/nanoserver:ltsc2022
        securityContext: ` + securityContext
	}
	const supportedIsolation = `supported values: "HyperV", "Process"`
	// A volume, as a merge-patch replacement of the volume list.
	volume := func(v string) string { return `spec: {template: {spec: {volumes: [` + v + `]}}}` }
	// A container with the given extra fields (a YAML flow mapping's inside).
	containerWith := func(list, fields string) string {
		return `spec: {template: {spec: {` + list + `: [{name: c, image: mcr.microsoft.com/windows/nanoserver:ltsc2022, ` + fields + `}]}}}`
	}
	// 2^40: beyond int32 and far beyond any port.
	const tooBig = "1099511627776"
	name64 := strings.Repeat("n", 64)
	// A Go duration of 33 characters, one over maxLength (valid, and short in time).
	duration33 := strings.Repeat("0", 31) + "1s"
	// The overflow of issue 13: it matches the pattern but not Go's time.Duration.
	const overflow = "3000000h"
	const templateCredentials = "a warm sandbox holds no credentials, they come with the session"
	return []invalidCase{
		// Names are stored in label values: at most 63 characters.
		{"sandbox/name 64 characters", baseSandbox, `metadata: {name: ` + name64 + `}`,
			[]string{"metadata.name must be at most 63 characters", "agents.hyperpool.io/sandbox label"}},
		{"session/name 64 characters", baseSession, `metadata: {name: ` + name64 + `}`,
			[]string{"metadata.name must be at most 63 characters", "agents.hyperpool.io/session label"}},
		{"session/sandboxName 64 characters", baseSession, `spec: {sandboxName: ` + name64 + `}`,
			[]string{"spec.sandboxName", "Too long", "63"}},

		// Integers beyond their Go type: the API server checks the format, for our fields and
		// for the pod template's.
		{"sandbox/replicas beyond int32", baseSandbox, `spec: {replicas: 9999999999}`,
			[]string{"spec.replicas", "format int32"}},
		{"sandbox/replenish minReady beyond int32", baseSandbox, `spec: {replenish: {minReady: 9999999999}}`,
			[]string{"spec.replenish.minReady", "format int32"}},
		{"sandbox/template containerPort beyond int32", baseSandbox, containerWith("containers", `ports: [{containerPort: `+tooBig+`}]`),
			[]string{"spec.template.spec.containers[0].ports[0].containerPort", "format int32"}},
		{"sandbox/template terminationGracePeriodSeconds beyond int64", baseSandbox,
			`spec: {template: {spec: {terminationGracePeriodSeconds: 99999999999999999999}}}`,
			[]string{"spec.template.spec.terminationGracePeriodSeconds", "int64"}},
		{"quota/sessions beyond int32", baseQuota, `spec: {hard: {sessions: 9999999999}}`,
			[]string{"spec.hard.sessions", "format int32"}},

		// Reserved template keys.
		{"sandbox/template label agents.hyperpool.io/session", baseSandbox,
			`spec: {template: {metadata: {labels: {agents.hyperpool.io/session: s}}}}`,
			[]string{"spec.template", "spec.template.metadata.labels must not use keys under agents.hyperpool.io/", "the manager's own bookkeeping", "remove them"}},
		{"sandbox/template label agents.hyperpool.io/sandbox", baseSandbox,
			`spec: {template: {metadata: {labels: {app: x, agents.hyperpool.io/sandbox: other}}}}`,
			[]string{"spec.template", "spec.template.metadata.labels must not use keys under agents.hyperpool.io/"}},
		{"sandbox/template annotation agents.hyperpool.io/", baseSandbox,
			`spec: {template: {metadata: {annotations: {agents.hyperpool.io/last-activity: "2030-01-01T00:00:00Z"}}}}`,
			[]string{"spec.template", "spec.template.metadata.annotations must not use keys under agents.hyperpool.io/", "remove them"}},

		// Pod template hardening: credentials come with the session, never in a warm pod.
		{"sandbox/template automountServiceAccountToken", baseSandbox, `spec: {template: {spec: {automountServiceAccountToken: true}}}`,
			[]string{"spec.template", "spec.template.spec.automountServiceAccountToken: true is not allowed", templateCredentials, "remove it"}},
		{"sandbox/template secret volume", baseSandbox, volume(`{name: creds, secret: {secretName: creds}}`),
			[]string{"spec.template", "spec.template.spec.volumes[].secret is not allowed", templateCredentials, "remove the volume"}},
		{"sandbox/template projected service account token", baseSandbox,
			volume(`{name: token, projected: {sources: [{serviceAccountToken: {path: token, audience: api}}]}}`),
			[]string{"spec.template", "spec.template.spec.volumes[].projected is not allowed", "service account token", "use configMap, downwardAPI or emptyDir volumes"}},
		{"sandbox/template projected secret", baseSandbox,
			volume(`{name: mixed, projected: {sources: [{configMap: {name: cm}}, {secret: {name: creds}}]}}`),
			[]string{"spec.template", "spec.template.spec.volumes[].projected is not allowed"}},
		{"sandbox/template priorityClassName system-node-critical", baseSandbox, `spec: {template: {spec: {priorityClassName: system-node-critical}}}`,
			[]string{"spec.template", "spec.template.spec.priorityClassName must not be a system- priority class", "use a priority class of your own"}},
		{"sandbox/template priorityClassName system-cluster-critical", baseSandbox, `spec: {template: {spec: {priorityClassName: system-cluster-critical}}}`,
			[]string{"spec.template", "spec.template.spec.priorityClassName must not be a system- priority class"}},
		{"sandbox/template ephemeralContainers", baseSandbox,
			`spec: {template: {spec: {ephemeralContainers: [{name: debug, image: mcr.microsoft.com/windows/nanoserver:ltsc2022}]}}}`,
			[]string{"spec.template", "spec.template.spec.ephemeralContainers is not allowed", "remove it"}},

		// Deadlines: a sandbox's VM runs for its grace period after its session ends.
		{"sandbox/template terminationGracePeriodSeconds a year", baseSandbox, `spec: {template: {spec: {terminationGracePeriodSeconds: 31536000}}}`,
			[]string{"spec.template", "spec.template.spec.terminationGracePeriodSeconds must be between 0 and 300", "shorten it"}},
		{"sandbox/template terminationGracePeriodSeconds 301", baseSandbox, `spec: {template: {spec: {terminationGracePeriodSeconds: 301}}}`,
			[]string{"spec.template", "spec.template.spec.terminationGracePeriodSeconds must be between 0 and 300"}},
		{"sandbox/template terminationGracePeriodSeconds negative", baseSandbox, `spec: {template: {spec: {terminationGracePeriodSeconds: -1}}}`,
			[]string{"spec.template", "spec.template.spec.terminationGracePeriodSeconds must be between 0 and 300"}},

		// Volumes that mount with a Secret, or that every pod of the pool would share.
		{"sandbox/template csi volume", baseSandbox,
			volume(`{name: kv, csi: {driver: secrets-store.csi.k8s.io, volumeAttributes: {secretProviderClass: vault}}}`),
			[]string{"spec.template", "spec.template.spec.volumes[].csi is not allowed", templateCredentials, "volumeClaimTemplate"}},
		{"sandbox/template azureFile volume", baseSandbox, volume(`{name: share, azureFile: {secretName: storage-key, shareName: data}}`),
			[]string{"spec.template", "spec.template.spec.volumes[].azureFile is not allowed", "secretName", templateCredentials}},
		{"sandbox/template gitRepo volume", baseSandbox, volume(`{name: src, gitRepo: {repository: "https://example.com/x.git"}}`),
			[]string{"spec.template", "spec.template.spec.volumes[].gitRepo is not allowed", "CVE-2024-10220"}},
		{"sandbox/template persistentVolumeClaim volume", baseSandbox, volume(`{name: data, persistentVolumeClaim: {claimName: shared}}`),
			[]string{"spec.template", "spec.template.spec.volumes[].persistentVolumeClaim is not allowed", "the same claim", "volumes[].ephemeral.volumeClaimTemplate"}},
		{"sandbox/template cephfs secretRef", baseSandbox, volume(`{name: v, cephfs: {monitors: [m:6789], secretRef: {name: ceph}}}`),
			[]string{"spec.template", "spec.template.spec.volumes[].<kind>.secretRef", templateCredentials}},
		{"sandbox/template cinder secretRef", baseSandbox, volume(`{name: v, cinder: {volumeID: x, secretRef: {name: os}}}`),
			[]string{"spec.template", "spec.template.spec.volumes[].<kind>.secretRef"}},
		{"sandbox/template flexVolume secretRef", baseSandbox, volume(`{name: v, flexVolume: {driver: example.com/smb, secretRef: {name: smb}}}`),
			[]string{"spec.template", "spec.template.spec.volumes[].<kind>.secretRef"}},
		{"sandbox/template iscsi secretRef", baseSandbox, volume(`{name: v, iscsi: {targetPortal: "10.0.0.1:3260", iqn: "iqn.2001-04.com.example:t", lun: 0, secretRef: {name: chap}}}`),
			[]string{"spec.template", "spec.template.spec.volumes[].<kind>.secretRef"}},
		{"sandbox/template rbd secretRef", baseSandbox, volume(`{name: v, rbd: {monitors: [m:6789], image: i, secretRef: {name: ceph}}}`),
			[]string{"spec.template", "spec.template.spec.volumes[].<kind>.secretRef"}},
		{"sandbox/template scaleIO", baseSandbox, volume(`{name: v, scaleIO: {gateway: g, system: s, secretRef: {name: sio}}}`),
			[]string{"spec.template", "spec.template.spec.volumes[].<kind>.secretRef"}},
		{"sandbox/template storageos secretRef", baseSandbox, volume(`{name: v, storageos: {volumeName: x, secretRef: {name: sos}}}`),
			[]string{"spec.template", "spec.template.spec.volumes[].<kind>.secretRef"}},
		// gMSA: a warm pod would hold a domain identity before any session takes it.
		{"sandbox/template pod gmsaCredentialSpecName", baseSandbox,
			`spec: {template: {spec: {securityContext: {windowsOptions: {gmsaCredentialSpecName: webapp}}}}}`,
			[]string{"spec.template", "spec.template.spec.securityContext.windowsOptions.gmsaCredentialSpec and gmsaCredentialSpecName are not allowed", "Active Directory identity", "remove them"}},
		{"sandbox/template pod gmsaCredentialSpec", baseSandbox,
			`spec: {template: {spec: {securityContext: {windowsOptions: {gmsaCredentialSpec: "{}"}}}}}`,
			[]string{"spec.template", "spec.template.spec.securityContext.windowsOptions.gmsaCredentialSpec and gmsaCredentialSpecName are not allowed"}},
		{"sandbox/template container gmsaCredentialSpecName", baseSandbox, container(`{windowsOptions: {gmsaCredentialSpecName: webapp}}`),
			[]string{"spec.template", "spec.template.spec.containers[] and initContainers[] securityContext.windowsOptions.gmsaCredentialSpec", "Active Directory identity"}},
		{"sandbox/template initContainer gmsaCredentialSpec", baseSandbox, initContainer(`{windowsOptions: {gmsaCredentialSpec: "{}"}}`),
			[]string{"spec.template", "spec.template.spec.containers[] and initContainers[] securityContext.windowsOptions.gmsaCredentialSpec"}},

		// AgentSandbox: pool size.
		{"sandbox/replicas negative", baseSandbox, `spec: {replicas: -1}`,
			[]string{"spec.replicas", "greater than or equal to 0"}},
		{"sandbox/replicas over maximum", baseSandbox, `spec: {replicas: 10001}`,
			[]string{"spec.replicas", "less than or equal to 10000"}},
		{"sandbox/replicas not a number", baseSandbox, `spec: {replicas: three}`,
			[]string{"spec.replicas", "must be of type integer"}},

		// AgentSandbox: the pod template.
		{"sandbox/template missing", baseSandbox, `spec: {template: null}`,
			[]string{"spec.template", "Required value"}},
		{"sandbox/template containers empty", baseSandbox, `spec: {template: {spec: {containers: []}}}`,
			[]string{"spec.template", "spec.template.spec.containers must list at least one container"}},
		{"sandbox/template hostNetwork", baseSandbox, `spec: {template: {spec: {hostNetwork: true}}}`,
			[]string{"spec.template", "spec.template.spec.hostNetwork is not allowed", "remove it"}},
		{"sandbox/template pod hostProcess", baseSandbox,
			`spec: {template: {spec: {securityContext: {windowsOptions: {hostProcess: true}}}}}`,
			[]string{"spec.template", "spec.template.spec.securityContext.windowsOptions.hostProcess is not allowed", "remove it"}},
		{"sandbox/template container hostProcess", baseSandbox, container(`{windowsOptions: {hostProcess: true}}`),
			[]string{"spec.template", "spec.template.spec.containers[].securityContext.windowsOptions.hostProcess is not allowed", "remove it"}},
		{"sandbox/template container privileged", baseSandbox, container(`{privileged: true}`),
			[]string{"spec.template", "spec.template.spec.containers[].securityContext.privileged is not allowed", "remove it"}},
		{"sandbox/template initContainer privileged", baseSandbox, initContainer(`{privileged: true}`),
			[]string{"spec.template", "spec.template.spec.initContainers[].securityContext may not be privileged or hostProcess", "remove it"}},
		{"sandbox/template initContainer hostProcess", baseSandbox, initContainer(`{windowsOptions: {hostProcess: true}}`),
			[]string{"spec.template", "spec.template.spec.initContainers[].securityContext may not be privileged or hostProcess", "remove it"}},
		{"sandbox/template runtimeClassName", baseSandbox, `spec: {template: {spec: {runtimeClassName: hyperv}}}`,
			[]string{"spec.template", "spec.template.spec.runtimeClassName is set by hyperpool", "use spec.runtimeClassName instead"}},
		{"sandbox/template nodeName", baseSandbox, `spec: {template: {spec: {nodeName: win-0}}}`,
			[]string{"spec.template", "spec.template.spec.nodeName is not allowed", "remove it"}},
		{"sandbox/template hostPID", baseSandbox, `spec: {template: {spec: {hostPID: true}}}`,
			[]string{"spec.template", "spec.template.spec.hostPID and hostIPC are not allowed", "remove them"}},
		{"sandbox/template hostIPC", baseSandbox, `spec: {template: {spec: {hostIPC: true}}}`,
			[]string{"spec.template", "spec.template.spec.hostPID and hostIPC are not allowed"}},
		{"sandbox/template hostPath volume", baseSandbox, `spec: {template: {spec: {volumes: [{name: host, hostPath: {path: 'C:\'}}]}}}`,
			[]string{"spec.template", "spec.template.spec.volumes[].hostPath is not allowed", "use an emptyDir"}},
		{"sandbox/template linux os", baseSandbox, `spec: {template: {spec: {os: {name: linux}}}}`,
			[]string{"spec.template", "spec.template.spec.os.name must be windows"}},

		// AgentSandbox: enums.
		{"sandbox/isolation unknown", baseSandbox, `spec: {isolation: Container}`,
			[]string{"spec.isolation", `Unsupported value: "Container"`, supportedIsolation}},
		{"sandbox/isolation lowercase", baseSandbox, `spec: {isolation: hyperv}`,
			[]string{"spec.isolation", `Unsupported value: "hyperv"`, supportedIsolation}},
		{"sandbox/egress unknown", baseSandbox, `spec: {egress: Intranet}`,
			[]string{"spec.egress", `Unsupported value: "Intranet"`, `supported values: "None", "Internet", "Unrestricted"`}},
		{"sandbox/ingress unknown", baseSandbox, `spec: {ingress: AllNamespaces}`,
			[]string{"spec.ingress", `Unsupported value: "AllNamespaces"`, `supported values: "None", "SameNamespace"`}},
		{"sandbox/ingress lowercase", baseSandbox, `spec: {ingress: samenamespace}`,
			[]string{"spec.ingress", `Unsupported value: "samenamespace"`, `supported values: "None", "SameNamespace"`}},
		{"sandbox/ingress empty", baseSandbox, `spec: {ingress: ""}`,
			[]string{"spec.ingress", `Unsupported value: ""`}},
		{"sandbox/updateStrategy type unknown", baseSandbox, `spec: {updateStrategy: {type: RollingUpdate}}`,
			[]string{"spec.updateStrategy.type", `Unsupported value: "RollingUpdate"`, `supported values: "Recreate", "OnReplenish"`}},
		{"sandbox/updateStrategy maxConcurrent 0", baseSandbox, `spec: {updateStrategy: {maxConcurrent: 0}}`,
			[]string{"spec.updateStrategy.maxConcurrent", "greater than or equal to 1"}},
		{"sandbox/replenish quietPeriod over 5m", baseSandbox, `spec: {replenish: {quietPeriod: 10m}}`,
			[]string{"spec.replenish.quietPeriod", "between 0s and 5m"}},
		{"sandbox/replenish minReady negative", baseSandbox, `spec: {replenish: {minReady: -1}}`,
			[]string{"spec.replenish.minReady", "greater than or equal to 0"}},
		{"sandbox/replenish minReady over maximum", baseSandbox, `spec: {replenish: {minReady: 10001}}`,
			[]string{"spec.replenish.minReady", "less than or equal to 10000"}},
		{"sandbox/updateStrategy maxConcurrent over maximum", baseSandbox, `spec: {updateStrategy: {maxConcurrent: 10001}}`,
			[]string{"spec.updateStrategy.maxConcurrent", "less than or equal to 10000"}},
		{"sandbox/replenish quietPeriod too long a string", baseSandbox, `spec: {replenish: {quietPeriod: "` + duration33 + `"}}`,
			[]string{"spec.replenish.quietPeriod", "Too long", "32"}},
		{"sandbox/replenish quietPeriod overflow", baseSandbox, `spec: {replenish: {quietPeriod: ` + overflow + `}}`,
			[]string{"spec.replenish.quietPeriod", "spec.replenish.quietPeriod must be between 0s and 5m"}},
		{"sandbox/replenish quietPeriod not a duration", baseSandbox, `spec: {replenish: {quietPeriod: soon}}`,
			[]string{"spec.replenish.quietPeriod", "should match"}},

		// AgentSandbox: the utility VM.
		{"sandbox/vm with Process isolation", baseSandbox, `spec: {isolation: Process, vm: {memoryMB: 2048}}`,
			[]string{"spec", "spec.vm sizes the Hyper-V utility VM and has no effect with spec.isolation: Process",
				"remove spec.vm or set spec.isolation: HyperV"}},
		{"sandbox/requireVerifiedRuntime with Process isolation", baseSandbox, `spec: {isolation: Process, placement: {requireVerifiedRuntime: true}}`,
			[]string{"spec", "spec.placement.requireVerifiedRuntime checks the Hyper-V runtime handler", "remove it or set spec.isolation: HyperV"}},
		{"sandbox/vm memoryMB odd", baseSandbox, `spec: {vm: {memoryMB: 2049}}`,
			[]string{"spec.vm.memoryMB", "spec.vm.memoryMB must be a multiple of 2 MB", "e.g. 2048"}},
		{"sandbox/vm memoryMB below minimum", baseSandbox, `spec: {vm: {memoryMB: 128}}`,
			[]string{"spec.vm.memoryMB", "greater than or equal to 256"}},
		{"sandbox/vm memoryMB above maximum", baseSandbox, `spec: {vm: {memoryMB: 1048578}}`,
			[]string{"spec.vm.memoryMB", "less than or equal to 1048576"}},
		{"sandbox/vm processorCount 0", baseSandbox, `spec: {vm: {processorCount: 0}}`,
			[]string{"spec.vm.processorCount", "greater than or equal to 1"}},
		{"sandbox/vm processorCount 129", baseSandbox, `spec: {vm: {processorCount: 129}}`,
			[]string{"spec.vm.processorCount", "less than or equal to 128"}},
		{"sandbox/vm processorLimit 100001", baseSandbox, `spec: {vm: {processorLimit: 100001}}`,
			[]string{"spec.vm.processorLimit", "less than or equal to 100000"}},
		{"sandbox/vm processorLimit 0", baseSandbox, `spec: {vm: {processorLimit: 0}}`,
			[]string{"spec.vm.processorLimit", "greater than or equal to 1"}},
		{"sandbox/vm processorWeight 10001", baseSandbox, `spec: {vm: {processorWeight: 10001}}`,
			[]string{"spec.vm.processorWeight", "less than or equal to 10000"}},
		{"sandbox/vm processorWeight negative", baseSandbox, `spec: {vm: {processorWeight: -1}}`,
			[]string{"spec.vm.processorWeight", "greater than or equal to 0"}},
		{"sandbox/vm storageQoS iopsMaximum 0", baseSandbox, `spec: {vm: {storageQoS: {iopsMaximum: 0}}}`,
			[]string{"spec.vm.storageQoS.iopsMaximum", "greater than or equal to 1"}},
		{"sandbox/vm storageQoS bandwidthMaximum 0", baseSandbox, `spec: {vm: {storageQoS: {bandwidthMaximum: 0}}}`,
			[]string{"spec.vm.storageQoS.bandwidthMaximum", "greater than or equal to 1"}},
		{"sandbox/vm storageQoS bandwidthMaximum over int32", baseSandbox, `spec: {vm: {storageQoS: {bandwidthMaximum: 2147483648}}}`,
			[]string{"spec.vm.storageQoS.bandwidthMaximum", "less than or equal to 2147483647"}},
		{"sandbox/vm storageQoS iopsMaximum over int32", baseSandbox, `spec: {vm: {storageQoS: {iopsMaximum: 2147483648}}}`,
			[]string{"spec.vm.storageQoS.iopsMaximum", "less than or equal to 2147483647"}},

		// AgentSandbox: Windows build and RuntimeClass.
		{"sandbox/windows missing", baseSandbox, `spec: {windows: null}`,
			[]string{"spec.windows", "Required value"}},
		{"sandbox/windows imageBuild missing", baseSandbox, `spec: {windows: {imageBuild: null}}`,
			[]string{"spec.windows.imageBuild", "Required value"}},
		{"sandbox/windows imageBuild too low", baseSandbox, `spec: {windows: {imageBuild: 14393}}`,
			[]string{"spec.windows.imageBuild", "must be a Windows build number from 17763 (Server 2019) up", "e.g. 17763, 20348 or 26100"}},
		{"sandbox/windows imageBuild too high", baseSandbox, `spec: {windows: {imageBuild: 100000}}`,
			[]string{"spec.windows.imageBuild", "must be a Windows build number from 17763 (Server 2019) up"}},
		{"sandbox/windows imageBuild over 16 bits", baseSandbox, `spec: {windows: {imageBuild: 65536}}`,
			[]string{"spec.windows.imageBuild", "up to 65535"}},
		{"sandbox/runtimeClassName invalid characters", baseSandbox, `spec: {runtimeClassName: Hyper_V}`,
			[]string{"spec.runtimeClassName", "spec.runtimeClassName must be a RuntimeClass name", "e.g. hyperv"}},
		{"sandbox/runtimeClassName too long", baseSandbox, `spec: {runtimeClassName: ` + strings.Repeat("a", 254) + `}`,
			[]string{"spec.runtimeClassName", "Too long"}},

		// AgentSandbox: lifetime caps.
		{"sandbox/lifetime idleTimeout over maxLifetime", baseSandbox, `spec: {lifetime: {maxLifetime: 1h, idleTimeout: 2h}}`,
			[]string{"spec.lifetime", "spec.lifetime.idleTimeout must not be longer than spec.lifetime.maxLifetime",
				"shorten idleTimeout or lengthen maxLifetime"}},
		{"sandbox/lifetime maxLifetime not a duration", baseSandbox, `spec: {lifetime: {maxLifetime: abc}}`,
			[]string{"spec.lifetime.maxLifetime", "should match"}},
		{"sandbox/lifetime maxLifetime 0s", baseSandbox, `spec: {lifetime: {maxLifetime: 0s}}`,
			[]string{"spec.lifetime.maxLifetime", "spec.lifetime.maxLifetime must be between 1s and 168h (7 days)", "e.g. 1h"}},
		{"sandbox/lifetime maxLifetime over 168h", baseSandbox, `spec: {lifetime: {maxLifetime: 169h}}`,
			[]string{"spec.lifetime.maxLifetime", "spec.lifetime.maxLifetime must be between 1s and 168h (7 days)"}},
		{"sandbox/lifetime maxLifetime negative", baseSandbox, `spec: {lifetime: {maxLifetime: -1h}}`,
			[]string{"spec.lifetime.maxLifetime", "should match"}},
		{"sandbox/lifetime idleTimeout 0s", baseSandbox, `spec: {lifetime: {idleTimeout: 0s}}`,
			[]string{"spec.lifetime.idleTimeout", "spec.lifetime.idleTimeout must be longer than 0s", "e.g. 15m"}},
		{"sandbox/lifetime ttlAfterFinished not a duration", baseSandbox, `spec: {lifetime: {ttlAfterFinished: 10 minutes}}`,
			[]string{"spec.lifetime.ttlAfterFinished", "should match"}},
		{"sandbox/lifetime idleTimeout over 168h", baseSandbox, `spec: {lifetime: {maxLifetime: 168h, idleTimeout: 169h}}`,
			[]string{"spec.lifetime.idleTimeout", "spec.lifetime.idleTimeout must be longer than 0s and at most 168h (7 days)", "e.g. 15m"}},
		{"sandbox/lifetime ttlAfterFinished over 720h", baseSandbox, `spec: {lifetime: {ttlAfterFinished: 721h}}`,
			[]string{"spec.lifetime.ttlAfterFinished", "spec.lifetime.ttlAfterFinished must be at most 720h (30 days)", "e.g. 10m"}},
		{"sandbox/lifetime ttlAfterFinished overflow", baseSandbox, `spec: {lifetime: {ttlAfterFinished: ` + overflow + `}}`,
			[]string{"spec.lifetime.ttlAfterFinished", "spec.lifetime.ttlAfterFinished must be at most 720h (30 days)"}},
		{"sandbox/lifetime maxLifetime overflow", baseSandbox, `spec: {lifetime: {maxLifetime: ` + overflow + `}}`,
			[]string{"spec.lifetime.maxLifetime", "spec.lifetime.maxLifetime must be between 1s and 168h (7 days)"}},
		{"sandbox/lifetime idleTimeout overflow", baseSandbox, `spec: {lifetime: {idleTimeout: ` + overflow + `}}`,
			[]string{"spec.lifetime.idleTimeout", "spec.lifetime.idleTimeout must be longer than 0s and at most 168h (7 days)"}},
		{"sandbox/lifetime maxLifetime too long a string", baseSandbox, `spec: {lifetime: {maxLifetime: "` + duration33 + `"}}`,
			[]string{"spec.lifetime.maxLifetime", "Too long", "32"}},
		{"sandbox/lifetime idleTimeout too long a string", baseSandbox, `spec: {lifetime: {idleTimeout: "` + duration33 + `"}}`,
			[]string{"spec.lifetime.idleTimeout", "Too long", "32"}},
		{"sandbox/lifetime ttlAfterFinished too long a string", baseSandbox, `spec: {lifetime: {ttlAfterFinished: "` + duration33 + `"}}`,
			[]string{"spec.lifetime.ttlAfterFinished", "Too long", "32"}},

		// AgentSession.
		{"session/sandboxName missing", baseSession, `spec: {sandboxName: null, user: alice}`,
			[]string{"spec.sandboxName", "Required value"}},
		{"session/sandboxName empty", baseSession, `spec: {sandboxName: ""}`,
			[]string{"spec.sandboxName", "at least 1 chars long"}},
		{"session/sandboxName invalid", baseSession, `spec: {sandboxName: My_Pool}`,
			[]string{"spec.sandboxName", "spec.sandboxName must be the name of an AgentSandbox in this namespace"}},
		{"session/startPolicy unknown", baseSession, `spec: {startPolicy: Always}`,
			[]string{"spec.startPolicy", `Unsupported value: "Always"`, `supported values: "PreferWarm", "RequireWarm"`}},
		{"session/idleTimeout over maxLifetime", baseSession, `spec: {maxLifetime: 30m, idleTimeout: 1h}`,
			[]string{"spec", "spec.idleTimeout must not be longer than spec.maxLifetime", "shorten idleTimeout or lengthen maxLifetime"}},
		{"session/maxLifetime negative", baseSession, `spec: {maxLifetime: -5m}`,
			[]string{"spec.maxLifetime", "should match"}},
		{"session/maxLifetime 0s", baseSession, `spec: {maxLifetime: 0s}`,
			[]string{"spec.maxLifetime", "spec.maxLifetime must be longer than 0s", "e.g. 30m"}},
		{"session/idleTimeout 0s", baseSession, `spec: {idleTimeout: 0s}`,
			[]string{"spec.idleTimeout", "spec.idleTimeout must be longer than 0s", "e.g. 5m"}},
		{"session/ttlAfterFinished not a duration", baseSession, `spec: {ttlAfterFinished: soon}`,
			[]string{"spec.ttlAfterFinished", "should match"}},
		{"session/maxLifetime over 168h", baseSession, `spec: {maxLifetime: 169h}`,
			[]string{"spec.maxLifetime", "spec.maxLifetime must be longer than 0s and at most 168h (7 days)", "e.g. 30m"}},
		{"session/idleTimeout over 168h", baseSession, `spec: {idleTimeout: 169h}`,
			[]string{"spec.idleTimeout", "spec.idleTimeout must be longer than 0s and at most 168h (7 days)", "e.g. 5m"}},
		{"session/ttlAfterFinished over 720h", baseSession, `spec: {ttlAfterFinished: 721h}`,
			[]string{"spec.ttlAfterFinished", "spec.ttlAfterFinished must be at most 720h (30 days)", "e.g. 10m"}},
		{"session/ttlAfterFinished overflow", baseSession, `spec: {ttlAfterFinished: ` + overflow + `}`,
			[]string{"spec.ttlAfterFinished", "spec.ttlAfterFinished must be at most 720h (30 days)"}},
		{"session/maxLifetime overflow", baseSession, `spec: {maxLifetime: ` + overflow + `}`,
			[]string{"spec.maxLifetime", "spec.maxLifetime must be longer than 0s and at most 168h (7 days)"}},
		{"session/idleTimeout overflow", baseSession, `spec: {idleTimeout: ` + overflow + `}`,
			[]string{"spec.idleTimeout", "spec.idleTimeout must be longer than 0s and at most 168h (7 days)"}},
		{"session/maxLifetime too long a string", baseSession, `spec: {maxLifetime: "` + duration33 + `"}`,
			[]string{"spec.maxLifetime", "Too long", "32"}},
		{"session/idleTimeout too long a string", baseSession, `spec: {idleTimeout: "` + duration33 + `"}`,
			[]string{"spec.idleTimeout", "Too long", "32"}},
		{"session/ttlAfterFinished too long a string", baseSession, `spec: {ttlAfterFinished: "` + duration33 + `"}`,
			[]string{"spec.ttlAfterFinished", "Too long", "32"}},
		{"session/user too long", baseSession, `spec: {user: ` + strings.Repeat("u", 257) + `}`,
			[]string{"spec.user", "Too long", "256"}},

		// AgentSession: credentials name Secrets and where their files go, inside the
		// sandbox's session directory.
		{"session/credentials targetDir escapes with ..", baseSession, `spec: {credentials: [{secretName: git, targetDir: "git/../../Windows"}]}`,
			[]string{"spec.credentials[0].targetDir", "must not contain a '..' segment", "stay inside the session directory"}},
		{"session/credentials targetDir is ..", baseSession, `spec: {credentials: [{secretName: git, targetDir: ".."}]}`,
			[]string{"spec.credentials[0].targetDir", "must not contain a '..' segment"}},
		{"session/credentials targetDir absolute", baseSession, `spec: {credentials: [{secretName: git, targetDir: /etc}]}`,
			[]string{"spec.credentials[0].targetDir", "must be a relative path inside the session directory", "e.g. git or cloud/aws"}},
		{"session/credentials targetDir drive letter", baseSession, `spec: {credentials: [{secretName: git, targetDir: "C:/Windows"}]}`,
			[]string{"spec.credentials[0].targetDir", "must be a relative path inside the session directory"}},
		{"session/credentials targetDir backslash", baseSession, `spec: {credentials: [{secretName: git, targetDir: 'a\..\..\b'}]}`,
			[]string{"spec.credentials[0].targetDir", "must be a relative path inside the session directory"}},
		{"session/credentials targetDir too long", baseSession, `spec: {credentials: [{secretName: git, targetDir: ` + strings.Repeat("d", 129) + `}]}`,
			[]string{"spec.credentials[0].targetDir", "Too long", "128"}},
		{"session/credentials secretName invalid", baseSession, `spec: {credentials: [{secretName: Git_Token}]}`,
			[]string{"spec.credentials[0].secretName", "must be the name of a Secret in this namespace", "e.g. git-token"}},
		{"session/credentials secretName too long", baseSession, `spec: {credentials: [{secretName: ` + strings.Repeat("s", 254) + `}]}`,
			[]string{"spec.credentials[0].secretName", "Too long", "253"}},
		{"session/credentials secretName missing", baseSession, `spec: {credentials: [{targetDir: git}]}`,
			[]string{"spec.credentials[0].secretName", "Required value"}},
		{"session/credentials secretName twice", baseSession, `spec: {credentials: [{secretName: git}, {secretName: git, targetDir: other}]}`,
			[]string{"spec.credentials[1]", "Duplicate value"}},
		{"session/credentials more than 16", baseSession, `spec: {credentials: [` + credentialList(17) + `]}`,
			[]string{"spec.credentials", "must have at most 16 items"}},
		{"session/credentials empty", baseSession, `spec: {credentials: []}`,
			[]string{"spec.credentials", "should have at least 1 items"}},
		{"session/credentials key ..data", baseSession, `spec: {credentials: [{secretName: git, keys: [token, ..data]}]}`,
			[]string{"spec.credentials[0].keys", "must not be '.' or start with '..'"}},
		{"session/credentials key with a slash", baseSession, `spec: {credentials: [{secretName: git, keys: ["../token"]}]}`,
			[]string{"spec.credentials[0].keys[0]", "should match"}},
		{"session/credentials more than 64 keys", baseSession, `spec: {credentials: [{secretName: git, keys: [` + keyList(65) + `]}]}`,
			[]string{"spec.credentials[0].keys", "must have at most 64 items"}},

		// AgentQuota.
		{"quota/hard missing", baseQuota, `spec: {hard: null}`,
			[]string{"spec.hard", "Required value"}},
		{"quota/sessions negative", baseQuota, `spec: {hard: {sessions: -1}}`,
			[]string{"spec.hard.sessions", "greater than or equal to 0"}},
		{"quota/warmSandboxes negative", baseQuota, `spec: {hard: {warmSandboxes: -1}}`,
			[]string{"spec.hard.warmSandboxes", "greater than or equal to 0"}},
		{"quota/memory negative", baseQuota, `spec: {hard: {memory: -1Gi}}`,
			[]string{"spec.hard.memory", "memory must not be negative", "e.g. 64Gi"}},
		{"quota/memory negative integer", baseQuota, `spec: {hard: {memory: -1}}`,
			[]string{"spec.hard.memory", "memory must not be negative"}},
		{"quota/memory not a quantity", baseQuota, `spec: {hard: {memory: lots}}`,
			[]string{"spec.hard.memory", "should match"}},
		{"quota/cpu negative", baseQuota, `spec: {hard: {cpu: "-2"}}`,
			[]string{"spec.hard.cpu", "cpu must not be negative", "e.g. 32"}},
		{"quota/sessions over maximum", baseQuota, `spec: {hard: {sessions: 1000001}}`,
			[]string{"spec.hard.sessions", "less than or equal to 1000000"}},
		{"quota/warmSandboxes over maximum", baseQuota, `spec: {hard: {warmSandboxes: 1000001}}`,
			[]string{"spec.hard.warmSandboxes", "less than or equal to 1000000"}},
		{"quota/memory huge negative exponent", baseQuota, `spec: {hard: {memory: "1e-2147483647"}}`,
			[]string{"spec.hard.memory", "memory must not have an exponent of more than 3 digits", "e.g. 64Gi"}},
		{"quota/cpu huge exponent", baseQuota, `spec: {hard: {cpu: "1E4294967297"}}`,
			[]string{"spec.hard.cpu", "cpu must not have an exponent of more than 3 digits", "e.g. 32"}},
	}
}

// credentialList is n credentials as a YAML flow sequence's inside: s0, s1, ...
func credentialList(n int) string {
	items := make([]string, n)
	for i := range items {
		items[i] = fmt.Sprintf("{secretName: s%d}", i)
	}
	return strings.Join(items, ", ")
}

// keyList is n distinct key names as a YAML flow sequence's inside.
func keyList(n int) string {
	items := make([]string, n)
	for i := range items {
		items[i] = fmt.Sprintf("k%d", i)
	}
	return strings.Join(items, ", ")
}

func TestInvalidManifestsAreRejected(t *testing.T) {
	t.Parallel()
	cases := invalidCases()
	names := make(map[string]bool, len(cases))
	for _, tc := range cases {
		if names[tc.name] {
			t.Fatalf("duplicate row name %q", tc.name)
		}
		names[tc.name] = true
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			obj := patched(t, tc.base, tc.patch)
			obj.SetNamespace(env.CreateNamespace(t))
			err := env.Client.Create(t.Context(), obj)
			if err == nil {
				t.Fatalf("the API server accepted the invalid %s; want an error containing %q\nobject: %s",
					obj.GetKind(), tc.wantErr, mustJSON(t, obj.Object))
			}
			t.Logf("rejected: %v", err)
			if !apierrors.IsInvalid(err) {
				t.Errorf("error is %v (reason %s), want 422 Invalid", err, apierrors.ReasonForError(err))
			}
			for _, want := range tc.wantErr {
				if !strings.Contains(err.Error(), want) {
					t.Errorf("error does not contain %q:\n%v", want, err)
				}
			}
		})
	}
}

// TestBaseManifestsAreValid proves each invalid row fails for its patch alone, and that
// values just inside the bounds the rows cross are accepted.
func TestBaseManifestsAreValid(t *testing.T) {
	t.Parallel()
	cases := []struct{ name, base, patch string }{
		{"sandbox", baseSandbox, ``},
		{"session", baseSession, ``},
		{"quota", baseQuota, ``},
		{"sandbox at the limits", baseSandbox, `
spec:
  replicas: 10000
  isolation: HyperV
  runtimeClassName: ` + strings.Repeat("a", 253) + `
  windows: {imageBuild: 17763}
  vm: {memoryMB: 256, processorCount: 128, processorLimit: 100000, processorWeight: 0,
       allowOvercommit: false, storageQoS: {iopsMaximum: 1, bandwidthMaximum: 1}}
  lifetime: {maxLifetime: 168h, idleTimeout: 168h, ttlAfterFinished: 0s}
  egress: Unrestricted
  ingress: SameNamespace
  updateStrategy: {type: OnReplenish, maxConcurrent: 1}
  replenish: {quietPeriod: 0s, minReady: 0}
  template:
    metadata:
      labels: {app: agent, example.com/agents.hyperpool.io: x, hyperpool.io/tier: warm}
      annotations: {example.com/note: "agents.hyperpool.io/ in a value is fine"}
    spec:
      automountServiceAccountToken: false
      priorityClassName: sandbox-high
      terminationGracePeriodSeconds: 300
      volumes:
      - {name: scratch, emptyDir: {}}
      - {name: config, configMap: {name: agent-config}}
      - {name: info, downwardAPI: {items: [{path: labels, fieldRef: {fieldPath: metadata.labels}}]}}
      - {name: work, ephemeral: {volumeClaimTemplate: {spec: {accessModes: [ReadWriteOnce], resources: {requests: {storage: 1Gi}}}}}}
      - {name: ceph, cephfs: {monitors: ["m:6789"]}}
      - {name: flex, flexVolume: {driver: example.com/local}}
      hostNetwork: false
      securityContext: {windowsOptions: {hostProcess: false, runAsUserName: ContainerUser}}
      initContainers:
      - name: setup
        image: mcr.microsoft.com/windows/nanoserver:ltsc2022
        securityContext: {privileged: false, windowsOptions: {hostProcess: false}}
      containers:
      - name: sandbox
        image: mcr.microsoft.com/windows/nanoserver:ltsc2022
        securityContext: {privileged: false, windowsOptions: {hostProcess: false}}
        ports: [{containerPort: 65535}]
        env: [{name: MODE, valueFrom: {configMapKeyRef: {name: agent-config, key: mode}}}]
        envFrom: [{configMapRef: {name: agent-config}}]
        livenessProbe: {httpGet: {port: 65535}}
        readinessProbe: {tcpSocket: {port: http}}
`},
		{"sandbox at the upper limits", baseSandbox, `
metadata: {name: ` + strings.Repeat("n", 63) + `}
spec:
  windows: {imageBuild: 65535}
  vm: {storageQoS: {iopsMaximum: 2147483647, bandwidthMaximum: 2147483647}}
  lifetime: {maxLifetime: 168h, idleTimeout: "` + strings.Repeat("0", 28) + `168h", ttlAfterFinished: 720h}
  updateStrategy: {maxConcurrent: 10000}
  replenish: {quietPeriod: 5m, minReady: 10000}
`},
		{"sandbox grace 0 and ingress None", baseSandbox, `spec: {ingress: None, template: {spec: {terminationGracePeriodSeconds: 0}}}`},
		{"sandbox with Process isolation and no vm", baseSandbox, `spec: {replicas: 0, isolation: Process, windows: {imageBuild: 26100}}`},
		{"sandbox lifetime fractional durations", baseSandbox, `spec: {lifetime: {maxLifetime: 1h30m, idleTimeout: 1.5s}}`},
		// idleTimeout has no default, so a short maxLifetime alone is valid (the idle timeout
		// then defaults to it at run time).
		{"sandbox maxLifetime alone, shorter than the idle default", baseSandbox, `spec: {lifetime: {maxLifetime: 10m}}`},
		{"session at the limits", baseSession, `
spec:
  sandboxName: ` + strings.Repeat("a", 63) + `
  maxLifetime: 5m
  idleTimeout: 5m
  ttlAfterFinished: 0s
  user: ` + strings.Repeat("u", 256) + `
  startPolicy: RequireWarm
`},
		{"session with credentials at the limits", baseSession, `
spec:
  credentials:
  - secretName: ` + strings.Repeat("s", 253) + `
    keys: [` + keyList(63) + `, ` + strings.Repeat("k", 253) + `]
    targetDir: ` + strings.Repeat("d", 128) + `
  - {secretName: git-token.v2, keys: [.hidden, a.b, A-_.z], targetDir: ./cloud/aws.d/x..y}
  - {secretName: ` + "s" + `}
`},
		{"session with 16 credentials", baseSession, `spec: {credentials: [` + credentialList(16) + `]}`},
		{"session at the upper limits", baseSession, `
metadata: {name: ` + strings.Repeat("n", 63) + `}
spec:
  maxLifetime: 168h
  idleTimeout: 168h
  ttlAfterFinished: "` + strings.Repeat("0", 28) + `720h"
`},
		{"quota zero", baseQuota, `spec: {hard: {sessions: 0, warmSandboxes: 0, memory: "0", cpu: 0}}`},
		{"quota at the upper limits", baseQuota, `spec: {hard: {sessions: 1000000, warmSandboxes: 1000000, memory: 1e999, cpu: 2E-999}}`},
		{"quota quantities", baseQuota, `spec: {hard: {memory: 1.5Ti, cpu: 500m}}`},
		{"quota empty", baseQuota, `spec: {hard: {sessions: null}}`},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			obj := patched(t, tc.base, tc.patch)
			obj.SetNamespace(env.CreateNamespace(t))
			if err := env.Client.Create(t.Context(), obj); err != nil {
				t.Fatalf("create valid %s: %v\nobject: %s", obj.GetKind(), err, mustJSON(t, obj.Object))
			}
		})
	}
}

func TestSessionSandboxNameIsImmutable(t *testing.T) {
	t.Parallel()
	ns := env.CreateNamespace(t)
	session := &hyperpoolv1alpha1.AgentSession{}
	session.Namespace, session.Name = ns, "session"
	session.Spec.SandboxName = "pool-a"
	if err := env.Client.Create(t.Context(), session); err != nil {
		t.Fatalf("create session: %v", err)
	}

	// Other fields stay mutable: the rule must not reject every update.
	session.Spec.User = "bob"
	if err := env.Client.Update(t.Context(), session); err != nil {
		t.Fatalf("update spec.user: %v", err)
	}

	session.Spec.SandboxName = "pool-b"
	err := env.Client.Update(t.Context(), session)
	if err == nil {
		t.Fatal("the API server accepted a change of spec.sandboxName; want it rejected as immutable")
	}
	if !apierrors.IsInvalid(err) {
		t.Errorf("error is %v (reason %s), want 422 Invalid", err, apierrors.ReasonForError(err))
	}
	for _, want := range []string{"spec.sandboxName", "spec.sandboxName is immutable", "delete this session and create a new one"} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("error does not contain %q:\n%v", want, err)
		}
	}

	// A merge patch is judged the same way.
	patch := client.RawPatch(client.Merge.Type(), []byte(`{"spec":{"sandboxName":"pool-c"}}`))
	if err := env.Client.Patch(t.Context(), session.DeepCopy(), patch); err == nil || !strings.Contains(err.Error(), "immutable") {
		t.Errorf("patch of spec.sandboxName: got %v, want an error containing %q", err, "immutable")
	}

	got := &hyperpoolv1alpha1.AgentSession{}
	if err := env.Client.Get(t.Context(), client.ObjectKeyFromObject(session), got); err != nil {
		t.Fatalf("get session: %v", err)
	}
	if got.Spec.SandboxName != "pool-a" || got.Spec.User != "bob" {
		t.Errorf("stored spec.sandboxName=%q spec.user=%q, want pool-a and bob", got.Spec.SandboxName, got.Spec.User)
	}
}

// TestSessionCredentialsAreImmutable: the session's audit trail shows what it got, so
// spec.credentials can be neither changed, added nor removed after creation.
func TestSessionCredentialsAreImmutable(t *testing.T) {
	t.Parallel()
	ns := env.CreateNamespace(t)
	ctx := t.Context()
	with := &hyperpoolv1alpha1.AgentSession{}
	with.Namespace, with.Name = ns, "with"
	with.Spec.SandboxName = "pool"
	with.Spec.Credentials = []hyperpoolv1alpha1.SessionCredential{{SecretName: "git", Keys: []string{"token"}, TargetDir: "git"}}
	without := &hyperpoolv1alpha1.AgentSession{}
	without.Namespace, without.Name = ns, "without"
	without.Spec.SandboxName = "pool"
	for _, s := range []*hyperpoolv1alpha1.AgentSession{with, without} {
		if err := env.Client.Create(ctx, s); err != nil {
			t.Fatalf("create session %s: %v", s.Name, err)
		}
	}
	// Other fields stay mutable.
	with.Spec.User = "bob"
	if err := env.Client.Update(ctx, with); err != nil {
		t.Fatalf("update spec.user of a session with credentials: %v", err)
	}

	for _, tc := range []struct{ name, session, patch string }{
		{"another Secret", "with", `{"spec":{"credentials":[{"secretName":"cloud"}]}}`},
		{"another key", "with", `{"spec":{"credentials":[{"secretName":"git","keys":["token","ssh"],"targetDir":"git"}]}}`},
		{"another targetDir", "with", `{"spec":{"credentials":[{"secretName":"git","keys":["token"],"targetDir":"elsewhere"}]}}`},
		{"one more Secret", "with", `{"spec":{"credentials":[{"secretName":"git","keys":["token"],"targetDir":"git"},{"secretName":"cloud"}]}}`},
		{"removed", "with", `{"spec":{"credentials":null}}`},
		{"added after creation", "without", `{"spec":{"credentials":[{"secretName":"git"}]}}`},
	} {
		s := &hyperpoolv1alpha1.AgentSession{}
		s.Namespace, s.Name = ns, tc.session
		err := env.Client.Patch(ctx, s, client.RawPatch(client.Merge.Type(), []byte(tc.patch)))
		if err == nil {
			t.Errorf("%s: the API server accepted a change of spec.credentials; want it rejected as immutable", tc.name)
			continue
		}
		if !apierrors.IsInvalid(err) {
			t.Errorf("%s: error is %v (reason %s), want 422 Invalid", tc.name, err, apierrors.ReasonForError(err))
		}
		for _, want := range []string{"spec.credentials", "spec.credentials is immutable", "delete this session and create a new one"} {
			if !strings.Contains(err.Error(), want) {
				t.Errorf("%s: error does not contain %q:\n%v", tc.name, want, err)
			}
		}
	}

	got := &hyperpoolv1alpha1.AgentSession{}
	if err := env.Client.Get(ctx, client.ObjectKeyFromObject(with), got); err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(got.Spec.Credentials, with.Spec.Credentials) {
		t.Errorf("stored spec.credentials %+v, want %+v", got.Spec.Credentials, with.Spec.Credentials)
	}
}

// defaultedField is a field the CRD defaults, with its default as the API server stores it.
type defaultedField struct {
	path []string
	want any
}

var defaultsByKind = map[string][]defaultedField{
	"AgentSandbox": {
		{[]string{"spec", "replicas"}, int64(1)},
		{[]string{"spec", "isolation"}, "HyperV"},
		{[]string{"spec", "egress"}, "Internet"},
		{[]string{"spec", "ingress"}, "None"},
		{[]string{"spec", "lifetime", "maxLifetime"}, "1h"},
		{[]string{"spec", "lifetime", "ttlAfterFinished"}, "10m"},
		{[]string{"spec", "updateStrategy", "type"}, "Recreate"},
		{[]string{"spec", "updateStrategy", "maxConcurrent"}, int64(5)},
	},
	"AgentSession": {
		{[]string{"spec", "startPolicy"}, "PreferWarm"},
	},
	"AgentQuota": {},
}

// TestSamplesAreAccepted creates every document of every file in config/samples in a
// fresh namespace, and checks each defaulted field: left out of the sample, it must hold
// the default; set in the sample, it must keep the sample's value.
func TestSamplesAreAccepted(t *testing.T) {
	t.Parallel()
	dir := filepath.Join(env.RepoRoot, "config", "samples")
	files, err := filepath.Glob(filepath.Join(dir, "*.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	files = slices.DeleteFunc(files, func(f string) bool { return filepath.Base(f) == "kustomization.yaml" })
	if len(files) == 0 {
		t.Fatalf("no samples in %s", dir)
	}
	kinds := make(map[string]int)
	for _, file := range files {
		data, err := os.ReadFile(file)
		if err != nil {
			t.Fatal(err)
		}
		docs := decodeDocuments(t, data)
		if len(docs) == 0 {
			t.Errorf("%s holds no object", file)
		}
		for _, doc := range docs {
			kinds[doc.GetKind()]++
		}
		t.Run(filepath.Base(file), func(t *testing.T) {
			t.Parallel()
			ns := env.CreateNamespace(t)
			for _, doc := range docs {
				if doc.GetNamespace() != "" {
					t.Errorf("%s %s sets metadata.namespace %q; samples should not", doc.GetKind(), doc.GetName(), doc.GetNamespace())
				}
				sample := doc.DeepCopy()
				doc.SetNamespace(ns)
				if err := env.Client.Create(t.Context(), doc); err != nil {
					t.Errorf("create %s %s: %v", doc.GetKind(), doc.GetName(), err)
					continue
				}
				checkDefaults(t, sample, doc)
			}
		})
	}
	for _, kind := range []string{"AgentSandbox", "AgentSession", "AgentQuota"} {
		if kinds[kind] == 0 {
			t.Errorf("config/samples holds no %s", kind)
		}
	}
}

// checkDefaults compares the object the API server returned with the sample it was made from.
func checkDefaults(t *testing.T, sample, created *unstructured.Unstructured) {
	t.Helper()
	fields, ok := defaultsByKind[sample.GetKind()]
	if !ok {
		t.Errorf("sample of unexpected kind %s", sample.GetKind())
		return
	}
	for _, f := range fields {
		field := sample.GetKind() + " " + sample.GetName() + " ." + strings.Join(f.path, ".")
		got, found, err := unstructured.NestedFieldNoCopy(created.Object, f.path...)
		if err != nil || !found {
			t.Errorf("%s: missing after create (err %v), want it defaulted", field, err)
			continue
		}
		want, inSample, _ := unstructured.NestedFieldNoCopy(sample.Object, f.path...)
		if !inSample {
			want = f.want
		}
		if !reflect.DeepEqual(got, want) {
			t.Errorf("%s = %#v after create, want %#v (set in sample: %v)", field, got, want, inSample)
		} else if !inSample {
			t.Logf("%s defaulted to %v", field, got)
		}
	}
}

// TestDefaults checks every default on minimal objects, through the typed API.
func TestDefaults(t *testing.T) {
	t.Parallel()
	ns := env.CreateNamespace(t)

	sandbox := &hyperpoolv1alpha1.AgentSandbox{}
	if err := utiljson.Unmarshal(mustYAMLToJSON(t, baseSandbox), sandbox); err != nil {
		t.Fatal(err)
	}
	sandbox.Namespace = ns
	if err := env.Client.Create(t.Context(), sandbox); err != nil {
		t.Fatalf("create sandbox: %v", err)
	}
	s := sandbox.Spec
	if got := ptr.Deref(s.Replicas, -1); got != 1 {
		t.Errorf("spec.replicas = %d, want 1", got)
	}
	if s.Isolation != hyperpoolv1alpha1.IsolationHyperV {
		t.Errorf("spec.isolation = %q, want HyperV", s.Isolation)
	}
	if s.Egress != hyperpoolv1alpha1.EgressInternet {
		t.Errorf("spec.egress = %q, want Internet", s.Egress)
	}
	if s.Ingress != hyperpoolv1alpha1.IngressNone {
		t.Errorf("spec.ingress = %q, want None", s.Ingress)
	}
	for _, d := range []struct {
		name string
		got  *time.Duration
		want time.Duration
	}{
		{"spec.lifetime.maxLifetime", durationOf(s.Lifetime.MaxLifetime), time.Hour},
		{"spec.lifetime.ttlAfterFinished", durationOf(s.Lifetime.TTLAfterFinished), 10 * time.Minute},
	} {
		if d.got == nil || *d.got != d.want {
			t.Errorf("%s = %v, want %s", d.name, d.got, d.want)
		}
	}
	if s.UpdateStrategy.Type != hyperpoolv1alpha1.RecreateUpdateStrategy {
		t.Errorf("spec.updateStrategy.type = %q, want Recreate", s.UpdateStrategy.Type)
	}
	if got := ptr.Deref(s.UpdateStrategy.MaxConcurrent, -1); got != 5 {
		t.Errorf("spec.updateStrategy.maxConcurrent = %d, want 5", got)
	}
	if s.VM != nil || s.RuntimeClassName != nil {
		t.Errorf("spec.vm = %v, spec.runtimeClassName = %v; want both unset (no defaults)", s.VM, s.RuntimeClassName)
	}

	session := &hyperpoolv1alpha1.AgentSession{}
	session.Namespace, session.Name = ns, "session"
	session.Spec.SandboxName = sandbox.Name
	if err := env.Client.Create(t.Context(), session); err != nil {
		t.Fatalf("create session: %v", err)
	}
	if session.Spec.StartPolicy != hyperpoolv1alpha1.PreferWarm {
		t.Errorf("session spec.startPolicy = %q, want PreferWarm", session.Spec.StartPolicy)
	}
	// The class's lifetimes apply at run time; the session itself gets none.
	if session.Spec.MaxLifetime != nil || session.Spec.IdleTimeout != nil || session.Spec.TTLAfterFinished != nil {
		t.Errorf("session lifetimes %v/%v/%v, want unset", session.Spec.MaxLifetime, session.Spec.IdleTimeout, session.Spec.TTLAfterFinished)
	}
}

// TestKubectl checks what users see: the agents category, the session printer columns,
// kubectl explain and kubectl scale.
func TestKubectl(t *testing.T) {
	t.Parallel()
	ns := env.CreateNamespace(t)
	for _, base := range []string{baseSandbox, baseSession, baseQuota} {
		obj := decodeDocuments(t, []byte(base))[0]
		obj.SetNamespace(ns)
		if err := env.Client.Create(t.Context(), obj); err != nil {
			t.Fatalf("create %s: %v", obj.GetKind(), err)
		}
	}

	t.Run("get agents lists all three kinds", func(t *testing.T) {
		t.Parallel()
		out := kubectl(t, "get", "agents", "-n", ns, "-o", "name")
		got := strings.Fields(out)
		slices.Sort(got)
		want := []string{
			"agentquota.agents.hyperpool.io/quota",
			"agentsandbox.agents.hyperpool.io/pool",
			"agentsession.agents.hyperpool.io/session",
		}
		if !slices.Equal(got, want) {
			t.Errorf("kubectl get agents -o name printed %q, want %q", got, want)
		}
	})

	t.Run("get ases shows printer columns", func(t *testing.T) {
		t.Parallel()
		out := kubectl(t, "get", "ases", "-n", ns)
		lines := strings.Split(strings.TrimSpace(out), "\n")
		want := []string{"NAME", "PHASE", "SANDBOX", "POD", "NODE", "START", "EXPIRES", "AGE"}
		if got := strings.Fields(lines[0]); !slices.Equal(got, want) {
			t.Errorf("kubectl get ases header %q, want %q\n%s", got, want, out)
		}
		if len(lines) != 2 || !strings.HasPrefix(lines[1], "session ") || !strings.Contains(lines[1], " pool ") {
			t.Errorf("kubectl get ases: want one row for session of sandbox pool, got:\n%s", out)
		}

		wide := kubectl(t, "get", "ases", "-n", ns, "-o", "wide")
		wantWide := []string{"NAME", "PHASE", "SANDBOX", "POD", "NODE", "START", "EXPIRES", "REASON", "USER", "AGE"}
		if got := strings.Fields(strings.SplitN(wide, "\n", 2)[0]); !slices.Equal(got, wantWide) {
			t.Errorf("kubectl get ases -o wide header %q, want %q", got, wantWide)
		}
	})

	t.Run("explain spec.vm", func(t *testing.T) {
		t.Parallel()
		want := []string{
			"memoryMB", "memoryMB is the VM's memory in MB (a multiple of 2)",
			"processorCount", "processorCount is the number of virtual processors",
		}
		var out string
		// The CRD's OpenAPI v3 document is published shortly after the CRD is established.
		err := wait.PollUntilContextTimeout(t.Context(), 200*time.Millisecond, waitTimeout, true,
			func(context.Context) (bool, error) {
				var err error
				out, err = runKubectl(t, "explain", "agentsandbox.spec.vm")
				if err != nil {
					out = err.Error()
					return false, nil
				}
				return containsAll(normalizeSpace(out), want), nil
			})
		if err != nil {
			t.Fatalf("kubectl explain agentsandbox.spec.vm never documented %q: %v\nlast output:\n%s", want, err, out)
		}
	})

	t.Run("scale subresource", func(t *testing.T) {
		t.Parallel()
		kubectl(t, "scale", "asb", "pool", "-n", ns, "--replicas=4")
		got := &hyperpoolv1alpha1.AgentSandbox{}
		if err := env.Client.Get(t.Context(), client.ObjectKey{Namespace: ns, Name: "pool"}, got); err != nil {
			t.Fatalf("get sandbox: %v", err)
		}
		if r := ptr.Deref(got.Spec.Replicas, -1); r != 4 {
			t.Errorf("spec.replicas = %d after kubectl scale --replicas=4, want 4", r)
		}
		// The scale subresource enforces the same bounds as spec.replicas.
		if out, err := runKubectl(t, "scale", "asb", "pool", "-n", ns, "--replicas=10001"); err == nil ||
			!strings.Contains(out+err.Error(), "less than or equal to 10000") {
			t.Errorf("kubectl scale --replicas=10001: err %v, output %q; want it rejected with the maximum", err, out)
		}
	})
}

// kubectl runs bin/k8s/kubectl against the test bed and returns its stdout; it fails the
// test if kubectl fails.
func kubectl(t *testing.T, args ...string) string {
	t.Helper()
	out, err := runKubectl(t, args...)
	if err != nil {
		t.Fatalf("kubectl %s: %v", strings.Join(args, " "), err)
	}
	return out
}

// runKubectl runs kubectl with its own discovery cache; on failure the error holds stderr.
func runKubectl(t *testing.T, args ...string) (string, error) {
	t.Helper()
	bin := filepath.Join(env.RepoRoot, "bin", "k8s", "kubectl")
	if _, err := os.Stat(bin); err != nil {
		if alt := env.BinaryPath("kubectl"); alt != bin {
			if _, altErr := os.Stat(alt); altErr == nil {
				bin = alt
			}
		}
	}
	if _, err := os.Stat(bin); err != nil {
		t.Fatalf("kubectl not found (%v); run hack/tools.sh", err)
	}
	ctx, cancel := context.WithTimeout(t.Context(), waitTimeout)
	defer cancel()
	full := append([]string{"--kubeconfig=" + env.KubeconfigPath, "--cache-dir=" + t.TempDir()}, args...)
	cmd := exec.CommandContext(ctx, bin, full...)
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	if err := cmd.Run(); err != nil {
		return stdout.String(), fmt.Errorf("%w: %s", err, strings.TrimSpace(stderr.String()))
	}
	return stdout.String(), nil
}

// patched returns base with the YAML merge patch applied, as an unstructured object.
func patched(t *testing.T, base, patch string) *unstructured.Unstructured {
	t.Helper()
	obj := decodeDocuments(t, []byte(base))[0]
	if strings.TrimSpace(patch) == "" {
		return obj
	}
	var p map[string]any
	if err := utiljson.Unmarshal(mustYAMLToJSON(t, patch), &p); err != nil {
		t.Fatalf("decode patch %q: %v", patch, err)
	}
	mergePatch(obj.Object, p)
	return obj
}

// mergePatch applies an RFC 7386 JSON merge patch to dst in place.
func mergePatch(dst, patch map[string]any) {
	for k, v := range patch {
		switch v := v.(type) {
		case nil:
			delete(dst, k)
		case map[string]any:
			sub, ok := dst[k].(map[string]any)
			if !ok {
				sub = map[string]any{}
				dst[k] = sub
			}
			mergePatch(sub, v)
		default:
			dst[k] = v
		}
	}
}

// decodeDocuments splits a multi-document YAML stream into objects, skipping empty documents.
func decodeDocuments(t *testing.T, data []byte) []*unstructured.Unstructured {
	t.Helper()
	var objs []*unstructured.Unstructured
	reader := utilyaml.NewYAMLReader(bufio.NewReader(bytes.NewReader(data)))
	for {
		doc, err := reader.Read()
		if errors.Is(err, io.EOF) {
			return objs
		}
		if err != nil {
			t.Fatalf("split YAML documents: %v", err)
		}
		js := mustYAMLToJSON(t, string(doc))
		if len(bytes.TrimSpace(js)) == 0 || string(bytes.TrimSpace(js)) == "null" {
			continue
		}
		obj := &unstructured.Unstructured{}
		if err := obj.UnmarshalJSON(js); err != nil {
			t.Fatalf("decode YAML document:\n%s\n%v", doc, err)
		}
		objs = append(objs, obj)
	}
}

func mustYAMLToJSON(t *testing.T, y string) []byte {
	t.Helper()
	js, err := utilyaml.ToJSON([]byte(y))
	if err != nil {
		t.Fatalf("convert YAML to JSON: %v\n%s", err, y)
	}
	return js
}

func mustJSON(t *testing.T, v any) string {
	t.Helper()
	js, err := utiljson.Marshal(v)
	if err != nil {
		t.Fatal(err)
	}
	return string(js)
}

// durationOf returns the duration d holds, or nil.
func durationOf(d *hyperpoolv1alpha1.Duration) *time.Duration {
	if d == nil {
		return nil
	}
	return &d.Duration
}

// normalizeSpace collapses every run of white space into one space, so that text kubectl
// wrapped can be matched.
func normalizeSpace(s string) string { return strings.Join(strings.Fields(s), " ") }

func containsAll(s string, subs []string) bool {
	for _, sub := range subs {
		if !strings.Contains(s, sub) {
			return false
		}
	}
	return true
}

// TestTemplateValuesTheGoTypesCannotHold: the API server checks the format of an integer of
// the pod template (a containerPort of 2^40 is refused, see the invalid rows), but not of an
// int-or-string: a probe or lifecycle port of 2^40 is stored, and does not fit the int32 of
// intstr.IntOrString. The CRD cannot refuse it: a CEL rule for each of those twenty ports
// (containers and initContainers, probes and lifecycle handlers) would exceed the CRD's
// cost budget. So the typed decode tolerates it: the manager's list of the kind still works,
// and the class reports TemplateProblem.
func TestTemplateValuesTheGoTypesCannotHold(t *testing.T) {
	t.Parallel()
	const tooBig = "1099511627776"
	for _, tc := range []struct{ name, patch, field string }{
		{"liveness httpGet", `spec: {template: {spec: {containers: [{name: c, image: i, livenessProbe: {httpGet: {port: ` + tooBig + `}}}]}}}`, "httpGet.port"},
		{"readiness tcpSocket", `spec: {template: {spec: {containers: [{name: c, image: i, readinessProbe: {tcpSocket: {port: ` + tooBig + `}}}]}}}`, "tcpSocket.port"},
		{"initContainer preStop", `spec: {template: {spec: {initContainers: [{name: s, image: i, restartPolicy: Always, lifecycle: {preStop: {httpGet: {port: -` + tooBig + `}}}}]}}}`, "httpGet.port"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			ns := env.CreateNamespace(t)
			good := patched(t, baseSandbox, `metadata: {name: good}`)
			bad := patched(t, baseSandbox, tc.patch+"\nmetadata: {name: bad}")
			for _, obj := range []*unstructured.Unstructured{good, bad} {
				obj.SetNamespace(ns)
				if err := env.Client.Create(t.Context(), obj); err != nil {
					t.Fatalf("create %s: %v (if the API server now refuses an int-or-string beyond int32, the tolerant decode is no longer needed for it)", obj.GetName(), err)
				}
			}
			var list hyperpoolv1alpha1.AgentSandboxList
			if err := env.Client.List(t.Context(), &list, client.InNamespace(ns)); err != nil {
				t.Fatalf("typed list with one unreadable template: %v", err)
			}
			problems := map[string]string{}
			for _, sb := range list.Items {
				problems[sb.Name] = sb.Spec.TemplateProblem()
			}
			if problems["good"] != "" {
				t.Errorf("good: TemplateProblem() = %q", problems["good"])
			}
			if p := problems["bad"]; !strings.Contains(p, "spec.template cannot be read") || !strings.Contains(p, tc.field) {
				t.Errorf("bad: TemplateProblem() = %q, want it to name %s", p, tc.field)
			}

			// A typed update of the class (here its replicas) keeps the stored template as it was.
			sb := &hyperpoolv1alpha1.AgentSandbox{}
			if err := env.Client.Get(t.Context(), client.ObjectKey{Namespace: ns, Name: "bad"}, sb); err != nil {
				t.Fatal(err)
			}
			sb.Spec.Replicas = ptr.To[int32](2)
			if err := env.Client.Update(t.Context(), sb); err != nil {
				t.Fatalf("typed update of the class: %v", err)
			}
			stored := bad.DeepCopy()
			if err := env.Client.Get(t.Context(), client.ObjectKey{Namespace: ns, Name: "bad"}, stored); err != nil {
				t.Fatal(err)
			}
			template, _, _ := unstructured.NestedMap(stored.Object, "spec", "template")
			if replicas, _, _ := unstructured.NestedInt64(stored.Object, "spec", "replicas"); replicas != 2 || !strings.Contains(mustJSON(t, template), tooBig) {
				t.Errorf("after the update: replicas %d, template %s; want 2 and the template unchanged", replicas, mustJSON(t, template))
			}
		})
	}
}
