package nodeagent

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/go-logr/logr"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/apimachinery/pkg/util/wait"

	"github.com/hyperpool/hyperpool/internal/uvm"
)

// Config is what the agent is told on its command line.
type Config struct {
	// NodeName is this node's name (from the downward API).
	NodeName string
	// Reap terminates orphans; false (the default) only reports them.
	Reap bool
	// GracePeriod is how long a VM must be old, and its pod gone, before it counts as leaked.
	GracePeriod time.Duration
	// Interval is how often the agent takes inventory.
	Interval time.Duration
	// LeakTaintKey is the key of the PreferNoSchedule taint the agent keeps on the node
	// while leaked VMs hold at least LeakTaintThreshold bytes of memory (Summary.LeakedBytes).
	LeakTaintKey string
	// LeakTaintThreshold turns the taint on when positive; 0 (the default) never taints,
	// and leaves the node's taints alone.
	LeakTaintThreshold uint64
}

// Event reasons on the Node.
const (
	ReasonLeakedVM   = "LeakedUtilityVM"
	ReasonReapedVM   = "ReapedUtilityVM"
	ReasonReapFailed = "ReapUtilityVMFailed"
	// ReasonReadyWithoutPod: a VM whose pod has been missing from the API server for a grace
	// period, but whose sandbox the runtime lists as ready (VerdictSandboxReady). Not reaped.
	ReasonReadyWithoutPod = "UtilityVMReadyWithoutPod"
	// ReasonLeakTainted, ReasonLeakUntainted: the agent put its leak taint on the Node, or
	// took it off (Config.LeakTaintKey).
	ReasonLeakTainted   = "LeakedMemoryTainted"
	ReasonLeakUntainted = "LeakedMemoryUntainted"
)

// Finding is the agent's conclusion about one VM in one round.
type Finding struct {
	VM      UtilityVM
	Pod     *PodRef // nil: unattributed
	Verdict Verdict
	// Reaped: terminated in this round (only with Config.Reap and VerdictOrphan).
	Reaped bool
	// ReapError is why terminating it failed.
	ReapError error
	// Leaked: the VM's pod is gone (not on the API server, its sandbox not ready) and was
	// already gone in an earlier round, so the VM is not merely being torn down. Its memory
	// counts in Summary.LeakedBytes until it is reaped or its pod comes back.
	Leaked bool
	// Pod is the VM's pod on the API server (only for VerdictLive).
	PodMeta *PodMeta
}

// Report is the outcome of one round.
type Report struct {
	Findings []Finding
	// Summary is the footprint after reaping; valid when PodsKnown.
	Summary Summary
	// PodsKnown is false when the pods of the node could not be listed: then no VM is judged
	// an orphan, nothing is reaped and the Node annotation is left alone.
	PodsKnown bool
}

// Agent takes inventory of one node's utility VMs and reports and (optionally) reaps the
// leaked ones. Run one round with RunOnce or loop with Start (a controller-runtime Runnable).
// An Agent is not safe for concurrent rounds.
type Agent struct {
	Config   Config
	Host     Host
	Resolver SandboxResolver // nil: nothing can be attributed, so nothing is ever reaped
	Pods     PodLister
	Node     NodeReporter
	Metrics  *Metrics
	Log      logr.Logger
	Now      func() time.Time // nil: time.Now

	// attributions are the pods of the current VMs' sandboxes, by sandbox ID. A sandbox's
	// pod never changes, so an attribution learned while the runtime knew the sandbox stays
	// true after the runtime forgets it, which is exactly when VMs leak. Its State is what
	// the runtime's last successful list said (unknown once the sandbox is not listed), so a
	// runtime error never turns a ready sandbox into a reapable one.
	attributions map[string]PodRef
	// missingSince is when the pod of a VM (by VM ID) was first seen missing from the API
	// server while the runtime did not list its sandbox as ready: the orphan clock.
	missingSince map[string]time.Time
	// readySince is when the pod of a VM was first seen missing from the API server while
	// the runtime listed its sandbox as ready (VerdictSandboxReady), for reporting.
	readySince map[string]time.Time
	// announced holds the VMs (by ID) reported with an Event, and that Event's reason.
	announced map[string]string
	// sizeAnnounced holds the VMs (by ID) whose size mismatch was logged.
	sizeAnnounced map[string]bool
	// published holds, by annotation key, the value last read from or written to the Node;
	// a key is absent when the Node must be read again.
	published map[string]string
	// tainted is whether the Node has the leak taint, as last read or written; nil: unknown.
	tainted *bool
}

// NeedLeaderElection is false: every node runs its own agent.
func (a *Agent) NeedLeaderElection() bool { return false }

// Start runs a round at once and then, until ctx ends, another Config.Interval after each.
func (a *Agent) Start(ctx context.Context) error {
	a.Log.Info("taking inventory of Hyper-V utility VMs", "node", a.Config.NodeName, "reap", a.Config.Reap,
		"gracePeriod", a.Config.GracePeriod, "interval", a.Config.Interval)
	wait.UntilWithContext(ctx, func(ctx context.Context) {
		if _, err := a.RunOnce(ctx); err != nil && ctx.Err() == nil {
			a.Log.Error(err, "inventory round failed; retrying at the next interval")
		}
	}, a.Config.Interval)
	return nil
}

func (a *Agent) now() time.Time {
	if a.Now != nil {
		return a.Now()
	}
	return time.Now()
}

// RunOnce takes inventory, attributes, judges, reaps (with Config.Reap) and reports.
func (a *Agent) RunOnce(ctx context.Context) (Report, error) {
	if a.attributions == nil {
		a.attributions, a.missingSince, a.readySince, a.announced = map[string]PodRef{}, map[string]time.Time{}, map[string]time.Time{}, map[string]string{}
		a.sizeAnnounced, a.published = map[string]bool{}, map[string]string{}
	}
	now := a.now()
	var errs []error

	vms, err := a.Host.ListUtilityVMs(ctx)
	if err != nil {
		a.Metrics.Errors.WithLabelValues("host").Inc()
		return Report{}, fmt.Errorf("listing utility VMs: %w", err)
	}

	pods := a.attribute(ctx, vms, &errs)

	uids, err := a.Pods.ListPods(ctx)
	podsKnown := err == nil
	if err != nil {
		a.Metrics.Errors.WithLabelValues("pods").Inc()
		errs = append(errs, fmt.Errorf("listing the pods of node %s: %w", a.Config.NodeName, err))
	}

	report := Report{PodsKnown: podsKnown, Findings: make([]Finding, 0, len(vms))}
	current := make(map[string]bool, len(vms))
	for i, vm := range vms {
		current[vm.ID] = true
		f := Finding{VM: vm, Pod: pods[i], Verdict: VerdictUnattributed}
		if f.Pod != nil {
			f.Verdict = VerdictPending // undecided while the pods are unknown
			if podsKnown {
				f.Verdict = a.judge(vm, f.Pod, uids, now)
				f.Leaked = a.leaked(vm, f.Verdict, now)
				if meta, ok := uids[f.Pod.UID]; ok {
					f.PodMeta = &meta
				}
			}
		}
		switch f.Verdict {
		case VerdictOrphan:
			a.handleOrphan(ctx, &f, now)
		case VerdictSandboxReady:
			a.handleReadyWithoutPod(f, now)
		}
		report.Findings = append(report.Findings, f)
	}
	for id := range a.missingSince {
		if !current[id] {
			delete(a.missingSince, id)
		}
	}
	for id := range a.readySince {
		if !current[id] {
			delete(a.readySince, id)
		}
	}
	for id := range a.announced {
		if !current[id] {
			delete(a.announced, id)
		}
	}
	for id := range a.sizeAnnounced {
		if !current[id] {
			delete(a.sizeAnnounced, id)
		}
	}

	report.Summary = a.summarize(ctx, report.Findings, &errs)
	a.Metrics.VMs.Set(float64(report.Summary.VMs))
	a.Metrics.MemoryBytes.Set(float64(report.Summary.MemoryBytes))
	a.Metrics.ScratchBytes.Set(float64(report.Summary.ScratchBytes))
	a.Metrics.Unattributed.Set(float64(report.Summary.Unattributed))
	if podsKnown {
		a.Metrics.Orphans.Set(float64(report.Summary.Orphans))
		a.Metrics.LeakedBytes.Set(float64(report.Summary.LeakedBytes))
		a.Metrics.SizeMismatches.Set(float64(report.Summary.SizeMismatches))
		a.logSizeMismatches(report.Findings)
		for _, err := range []error{
			a.publish(ctx, SummaryAnnotation, report.Summary.String()),
			a.publish(ctx, uvm.SizesAnnotation, uvm.FormatSizeReports(sizeReports(report.Findings))),
			a.keepLeakTaint(ctx, report.Summary.LeakedBytes),
		} {
			if err != nil {
				a.Metrics.Errors.WithLabelValues("node").Inc()
				errs = append(errs, err)
			}
		}
	}
	a.Log.V(1).Info("inventory", "node", a.Config.NodeName, "summary", report.Summary.String(), "podsKnown", podsKnown)
	return report, errors.Join(errs...)
}

// attribute returns the pod of each VM (nil: unattributable), learning from the runtime and
// keeping what it learned for as long as the VM exists.
func (a *Agent) attribute(ctx context.Context, vms []UtilityVM, errs *[]error) []*PodRef {
	var known map[string]PodRef
	listed := false
	if a.Resolver != nil {
		var err error
		if known, err = a.Resolver.ResolveSandboxes(ctx); err != nil {
			// Attributions learned before stay valid: a sandbox's pod never changes. So do
			// their states: a sandbox last seen ready is still taken as ready.
			a.Metrics.Errors.WithLabelValues("runtime").Inc()
			*errs = append(*errs, fmt.Errorf("listing pod sandboxes from the container runtime: %w", err))
		} else {
			listed = true
		}
	}
	pods := make([]*PodRef, len(vms))
	current := make(map[string]bool, len(vms))
	for i, vm := range vms {
		sandboxID, ok := vm.SandboxID()
		if !ok {
			continue
		}
		current[sandboxID] = true
		if ref, ok := known[sandboxID]; ok && ref.UID != "" {
			ref.SandboxID = sandboxID
			a.attributions[sandboxID] = ref
		} else if prev, ok := a.attributions[sandboxID]; ok && listed {
			// The runtime no longer lists the sandbox (or lists it without its pod): keep the
			// pod, take the state it reports now (unknown when not listed).
			prev.State = known[sandboxID].State
			a.attributions[sandboxID] = prev
		}
		if ref, ok := a.attributions[sandboxID]; ok {
			pods[i] = &ref
		}
	}
	for id := range a.attributions {
		if !current[id] {
			delete(a.attributions, id)
		}
	}
	return pods
}

func (a *Agent) judge(vm UtilityVM, pod *PodRef, uids map[types.UID]PodMeta, now time.Time) Verdict {
	_, exists := uids[pod.UID]
	ready := pod.State == SandboxReady
	// The orphan clock starts only once the runtime no longer runs the sandbox either, so a
	// VM whose sandbox has just stopped gets the whole grace period to be torn down.
	runClock(a.missingSince, vm.ID, !exists && !ready, now)
	runClock(a.readySince, vm.ID, !exists && ready, now)
	return Classify(vm, pod, exists, a.missingSince[vm.ID], now, a.Config.GracePeriod)
}

// runClock starts m[id] at now when running and not started yet, and clears it when not running.
func runClock(m map[string]time.Time, id string, running bool, now time.Time) {
	if !running {
		delete(m, id)
	} else if _, started := m[id]; !started {
		m[id] = now
	}
}

func (a *Agent) handleOrphan(ctx context.Context, f *Finding, now time.Time) {
	log := a.Log.WithValues("vm", f.VM.ID, "pod", f.Pod.String(), "age", now.Sub(f.VM.Created).Round(time.Second),
		"memoryBytes", f.VM.MemoryAssignedBytes)
	what := fmt.Sprintf("utility VM %s of pod %s (sandbox %s, %s of memory, started %s) outlived its pod by more than %s",
		f.VM.ID, f.Pod, f.Pod.SandboxID, formatBytes(f.VM.MemoryAssignedBytes), f.VM.Created.UTC().Format(time.RFC3339), a.Config.GracePeriod)
	if !a.Config.Reap {
		if a.announced[f.VM.ID] != ReasonLeakedVM {
			a.announced[f.VM.ID] = ReasonLeakedVM
			log.Info("leaked utility VM (dry run: not reaped; run with --reap to terminate it)")
			a.Node.Event(corev1.EventTypeWarning, ReasonLeakedVM, "Report", what+"; dry run: not reaped (--reap=false)")
		}
		return
	}
	if err := a.Host.TerminateUtilityVM(ctx, f.VM.ID); err != nil {
		f.ReapError = err
		a.Metrics.ReapFailures.Inc()
		log.Error(err, "terminating leaked utility VM failed")
		if a.announced[f.VM.ID] != ReasonReapFailed {
			a.announced[f.VM.ID] = ReasonReapFailed
			a.Node.Event(corev1.EventTypeWarning, ReasonReapFailed, "Reap", fmt.Sprintf("%s; terminating it failed: %v", what, err))
		}
		return
	}
	f.Reaped = true
	a.Metrics.Reaped.Inc()
	log.Info("reaped leaked utility VM")
	a.Node.Event(corev1.EventTypeNormal, ReasonReapedVM, "Reap", what+"; terminated")
}

// handleReadyWithoutPod reports, once per VM, a VM whose pod has been missing from the API
// server for a grace period while the runtime lists its sandbox as ready. It is never reaped:
// the kubelet still runs that sandbox. A shorter absence (a force-deleted pod the kubelet is
// about to stop) is only logged at V(1).
func (a *Agent) handleReadyWithoutPod(f Finding, now time.Time) {
	log := a.Log.WithValues("vm", f.VM.ID, "pod", f.Pod.String(), "sandbox", f.Pod.SandboxID)
	since, ok := a.readySince[f.VM.ID]
	if !ok || now.Sub(since) < a.Config.GracePeriod {
		log.V(1).Info("the pod of a utility VM is not on the API server, but the runtime lists its sandbox as ready: not reaped")
		return
	}
	if a.announced[f.VM.ID] == ReasonReadyWithoutPod {
		return
	}
	a.announced[f.VM.ID] = ReasonReadyWithoutPod
	log.Info("the pod of a utility VM is missing from the API server, but the runtime lists its sandbox as ready: never reaped")
	a.Node.Event(corev1.EventTypeWarning, ReasonReadyWithoutPod, "Report", fmt.Sprintf(
		"utility VM %s of pod %s (sandbox %s, %s of memory): the pod has not been on the API server for %s, but the container runtime lists its sandbox as ready; not reaped (a force-deleted pod the kubelet still runs, or a static pod without its mirror pod)",
		f.VM.ID, f.Pod, f.Pod.SandboxID, formatBytes(f.VM.MemoryAssignedBytes), now.Sub(since).Round(time.Second)))
}

func (a *Agent) summarize(ctx context.Context, findings []Finding, errs *[]error) Summary {
	var s Summary
	for _, f := range findings {
		if f.Reaped {
			continue
		}
		s.VMs++
		s.MemoryBytes += f.VM.HostBytes()
		s.ScratchBytes += f.VM.ScratchDiskBytes
		switch f.Verdict {
		case VerdictOrphan:
			s.Orphans++
		case VerdictUnattributed:
			s.Unattributed++
		}
		if f.Leaked {
			s.LeakedBytes += f.VM.HostBytes()
		}
		if _, _, mismatch := f.size(); mismatch {
			s.SizeMismatches++
		}
	}
	if sr, ok := a.Host.(ScratchReporter); ok {
		b, err := sr.ScratchDiskBytes(ctx)
		if err != nil {
			a.Metrics.Errors.WithLabelValues("host").Inc()
			*errs = append(*errs, fmt.Errorf("measuring scratch disks: %w", err))
		} else {
			s.ScratchBytes = b
		}
	}
	return s
}

// publish writes one annotation of the Node when it differs from what the Node has.
func (a *Agent) publish(ctx context.Context, key, value string) error {
	return publishAnnotation(ctx, a.Node, a.published, a.Config.NodeName, key, value)
}

// publishAnnotation writes one annotation of the Node when it differs from what the Node
// has. published holds, by key, the value last read from or written to the Node; a key
// absent from it is read from the Node first, and a failed write drops it to read it again.
func publishAnnotation(ctx context.Context, node NodeReporter, published map[string]string, nodeName, key, value string) error {
	cur, known := published[key]
	if !known {
		var err error
		if cur, err = node.Annotation(ctx, key); err != nil {
			return fmt.Errorf("reading node %s: %w", nodeName, err)
		}
		published[key] = cur
	}
	if value == cur {
		return nil
	}
	if err := node.SetAnnotation(ctx, key, value); err != nil {
		delete(published, key) // read it again next time
		return fmt.Errorf("annotating node %s (%s): %w", nodeName, key, err)
	}
	published[key] = value
	return nil
}
