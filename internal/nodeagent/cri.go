package nodeagent

import (
	"context"
	"fmt"
	"strings"
	"time"

	"google.golang.org/grpc"
	"k8s.io/apimachinery/pkg/types"
	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"
)

// DefaultCRIEndpoint is containerd's CRI endpoint on Windows, as the kubelet names it
// (--container-runtime-endpoint).
const DefaultCRIEndpoint = "npipe:////./pipe/containerd-containerd"

// PodSandboxLister is the one CRI call the agent makes; runtimeapi.RuntimeServiceClient has it.
type PodSandboxLister interface {
	ListPodSandbox(ctx context.Context, in *runtimeapi.ListPodSandboxRequest, opts ...grpc.CallOption) (*runtimeapi.ListPodSandboxResponse, error)
}

// CRIResolver attributes pod sandboxes through the container runtime's CRI, the way
// `crictl pods` does: ListPodSandbox returns each sandbox's ID with the pod's namespace, name
// and UID, as the kubelet passed them to RunPodSandbox. It is the only place that knows
// the sandbox ID of a pod: neither the Pod object (its status has container IDs, not the
// sandbox ID) nor HCS (the VM carries no pod metadata) has it.
type CRIResolver struct {
	Client PodSandboxLister
	// Timeout bounds one call; 0 means 30s.
	Timeout time.Duration
}

// ResolveSandboxes lists every pod sandbox the runtime knows, ready or not, with its state.
func (r CRIResolver) ResolveSandboxes(ctx context.Context) (map[string]PodRef, error) {
	timeout := r.Timeout
	if timeout <= 0 {
		timeout = 30 * time.Second
	}
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	resp, err := r.Client.ListPodSandbox(ctx, &runtimeapi.ListPodSandboxRequest{})
	if err != nil {
		return nil, err
	}
	out := make(map[string]PodRef, len(resp.GetItems()))
	for _, sb := range resp.GetItems() {
		md := sb.GetMetadata()
		if sb.GetId() == "" || md.GetUid() == "" {
			continue
		}
		out[sb.GetId()] = PodRef{Namespace: md.GetNamespace(), Name: md.GetName(), UID: types.UID(md.GetUid()),
			SandboxID: sb.GetId(), State: sandboxState(sb.GetState())}
	}
	return out, nil
}

// sandboxState maps a CRI sandbox state; only SANDBOX_READY is Ready.
func sandboxState(s runtimeapi.PodSandboxState) SandboxState {
	switch s {
	case runtimeapi.PodSandboxState_SANDBOX_READY:
		return SandboxReady
	case runtimeapi.PodSandboxState_SANDBOX_NOTREADY:
		return SandboxNotReady
	}
	return SandboxStateUnknown
}

// PipePath turns a CRI endpoint "npipe:////./pipe/NAME" (or "npipe://./pipe/NAME") into the
// Windows pipe path `\\.\pipe\NAME`.
func PipePath(endpoint string) (string, error) {
	rest, ok := strings.CutPrefix(endpoint, "npipe://")
	if !ok {
		return "", fmt.Errorf("CRI endpoint %q: only npipe:// endpoints are supported", endpoint)
	}
	rest = strings.TrimLeft(strings.ReplaceAll(rest, `\`, "/"), "/")
	host, pipe, ok := strings.Cut(rest, "/")
	name, ok2 := strings.CutPrefix(pipe, "pipe/")
	if !ok || !ok2 || host == "" || name == "" {
		return "", fmt.Errorf("CRI endpoint %q: want npipe:////./pipe/NAME", endpoint)
	}
	return `\\` + host + `\pipe\` + strings.ReplaceAll(name, "/", `\`), nil
}
