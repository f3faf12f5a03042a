// Package runtimereport is what a node agent found out about the container runtime's
// handlers on its node: for each handler that a RuntimeClass schedules there, whether
// containerd registered it, whether it runs pods in a Hyper-V utility VM, and whether it
// passes hcsshim's VM sizing annotations to the shim.
//
// The node agent writes a Report into its Node's Annotation and labels the Node with
// LabelKey(handler) = LabelValue for each handler that is ready for Hyper-V sandboxes. The
// manager reads both (the AgentSandbox condition RuntimeReady, and the node affinity of a
// class with spec.placement.requireVerifiedRuntime); `kubectl agents doctor` shows them.
package runtimereport

import (
	"encoding/json"
	"fmt"
	"slices"
	"strings"
)

// Annotation is the Node annotation holding the agent's Report as JSON (Format).
const Annotation = "agents.hyperpool.io/runtime-handlers"

// LabelPrefix is the prefix of the Node labels the agent keeps, one per handler ready for
// Hyper-V sandboxes. Labels, not the annotation, because node affinity selects on labels.
const LabelPrefix = "runtime.agents.hyperpool.io/"

// LabelValue is the value of a handler's label while the handler is ready.
const LabelValue = "verified"

// LabelKey is the Node label that says handler is ready for Hyper-V sandboxes on the node.
// A RuntimeClass handler is a DNS label (at most 63 characters), so the key is valid.
func LabelKey(handler string) string { return LabelPrefix + handler }

// Problem is what keeps a handler from running hyperpool's Hyper-V sandboxes as asked; it
// is also the reason of the AgentSandbox condition RuntimeReady when it is False.
type Problem string

const (
	// NoProblem means the handler is registered, Hyper-V isolated and passes the sizing annotations.
	NoProblem Problem = ""
	// HandlerMissing means containerd's effective configuration has no such runtime handler, so
	// the kubelet cannot start the class's pods on the node.
	HandlerMissing Problem = "HandlerMissing"
	// NotHyperV means the handler is not runhcs with SandboxIsolation = 1 (HYPERVISOR): its pods
	// would share the host's kernel (process isolation).
	NotHyperV Problem = "NotHyperV"
	// AnnotationsDropped means the handler's pod_annotations do not let through hcsshim's
	// io.microsoft.virtualmachine.* annotations, so every VM gets hcsshim's default size
	// (1024 MB, 2 vCPUs) whatever the class asks for.
	AnnotationsDropped Problem = "AnnotationsDropped"
)

// Fix is what to change in containerd's configuration for a problem, in one sentence.
func (p Problem) Fix(handler string) string {
	table := fmt.Sprintf("[plugins.'io.containerd.cri.v1.runtime'.containerd.runtimes.%s]", handler)
	switch p {
	case HandlerMissing:
		return "add the runtime handler " + handler + " to containerd's configuration as " + table +
			" (version-3 plugin names on containerd 2; docs/install.md#containerd), restart containerd and check with `containerd config dump`"
	case NotHyperV:
		return "set runtime_type = 'io.containerd.runhcs.v1' and, under " + strings.TrimSuffix(table, "]") +
			".options], SandboxIsolation = 1; restart containerd"
	case AnnotationsDropped:
		return "add pod_annotations = ['io.microsoft.virtualmachine.*'] to " + table + "; restart containerd"
	}
	return ""
}

// severity orders problems, the worst first: a missing handler starts nothing, a process
// handler starts pods without a VM, dropped annotations start VMs of the wrong size.
func (p Problem) severity() int {
	switch p {
	case HandlerMissing:
		return 3
	case NotHyperV:
		return 2
	case AnnotationsDropped:
		return 1
	}
	return 0
}

// Worse reports whether p is worse than q.
func (p Problem) Worse(q Problem) bool { return p.severity() > q.severity() }

// HandlerReport is what the agent found out about one runtime handler.
type HandlerReport struct {
	// Handler is the containerd runtime handler name (a RuntimeClass's handler).
	Handler string `json:"handler"`
	// Registered: containerd's effective configuration has the handler under the CRI
	// runtime plugin of its config version.
	Registered bool `json:"registered"`
	// HyperV: runtime_type io.containerd.runhcs.v1 with options.SandboxIsolation = 1.
	HyperV bool `json:"hyperV"`
	// PodAnnotations: pod_annotations let through every hcsshim annotation hyperpool sets.
	PodAnnotations bool `json:"podAnnotations"`
	// Detail says why, when something is wrong (for example the section where a handler was
	// found that containerd ignores). At most MaxDetail bytes.
	Detail string `json:"detail,omitempty"`
}

// Problem is the worst thing wrong with the handler for Hyper-V sandboxes.
func (h HandlerReport) Problem() Problem {
	switch {
	case !h.Registered:
		return HandlerMissing
	case !h.HyperV:
		return NotHyperV
	case !h.PodAnnotations:
		return AnnotationsDropped
	}
	return NoProblem
}

// Ready reports whether the handler runs hyperpool's Hyper-V sandboxes at the size asked.
func (h HandlerReport) Ready() bool { return h.Problem() == NoProblem }

// Report is one node's runtime report.
type Report struct {
	// ConfigVersion is the version of containerd's effective configuration (2 for
	// containerd 1.x, 3 for containerd 2.x); 0 when it could not be read.
	ConfigVersion int64 `json:"configVersion,omitempty"`
	// Error says why the configuration could not be read; then Handlers is empty.
	Error string `json:"error,omitempty"`
	// Handlers are the handlers checked, sorted by name, at most MaxHandlers.
	Handlers []HandlerReport `json:"handlers,omitempty"`
}

// Handler returns the report on one handler, and false when the node did not check it.
func (r Report) Handler(name string) (HandlerReport, bool) {
	i := slices.IndexFunc(r.Handlers, func(h HandlerReport) bool { return h.Handler == name })
	if i < 0 {
		return HandlerReport{}, false
	}
	return r.Handlers[i], true
}

// Limits on what goes into a Node annotation: a Node object must stay small (every kubelet
// heartbeat rewrites it), and a cluster has a handful of handlers per node.
const (
	MaxHandlers = 32
	MaxDetail   = 256
)

// Format returns the annotation value: the handlers sorted by name and capped, details
// capped, as compact JSON.
func Format(r Report) string {
	b, err := json.Marshal(r.capped())
	if err != nil { // plain structs always marshal
		panic(err)
	}
	return string(b)
}

// Parse reads an annotation value written by Format. Unknown fields are ignored, so an
// older manager reads a newer agent's report; ok is false when there is no annotation.
// Whoever may write the Node wrote the value, so it is held to Format's caps as well: the
// manager quotes a detail in a condition message, which the API server limits.
func Parse(value string) (r Report, ok bool, err error) {
	if value == "" {
		return Report{}, false, nil
	}
	if err := json.Unmarshal([]byte(value), &r); err != nil {
		return Report{}, false, fmt.Errorf("%s: %w", Annotation, err)
	}
	return r.capped(), true, nil
}

// capped returns the report as the annotation carries it: the handlers sorted by name, at
// most MaxHandlers of them, the error and details at most MaxDetail bytes.
func (r Report) capped() Report {
	r.Error = truncate(r.Error)
	r.Handlers = slices.Clone(r.Handlers)
	slices.SortFunc(r.Handlers, func(a, b HandlerReport) int { return strings.Compare(a.Handler, b.Handler) })
	r.Handlers = r.Handlers[:min(len(r.Handlers), MaxHandlers)]
	for i := range r.Handlers {
		r.Handlers[i].Detail = truncate(r.Handlers[i].Detail)
	}
	return r
}

func truncate(s string) string {
	if len(s) <= MaxDetail {
		return s
	}
	cut := MaxDetail - len("...")
	for cut > 0 && !isRuneStart(s[cut]) {
		cut--
	}
	return s[:cut] + "..."
}

func isRuneStart(b byte) bool { return b&0xC0 != 0x80 }
