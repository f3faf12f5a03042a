package nodeagent

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/go-logr/logr"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/types"
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
}

// Event reasons on the Node.
const (
	ReasonLeakedVM   = "LeakedUtilityVM"
	ReasonReapedVM   = "ReapedUtilityVM"
	ReasonReapFailed = "ReapUtilityVMFailed"
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
	// true after the runtime forgets it, which is exactly when VMs leak.
	attributions map[string]PodRef
	// missingSince is when the pod of a VM (by VM ID) was first seen missing.
	missingSince map[string]time.Time
	// announced holds the VMs (by ID) whose leak has been reported with an Event.
	announced map[string]bool
	// summary is the annotation value last read from or written to the Node.
	summary      string
	summaryKnown bool
}

// NeedLeaderElection is false: every node runs its own agent.
func (a *Agent) NeedLeaderElection() bool { return false }

// Start runs a round at once and then every Config.Interval until ctx ends.
func (a *Agent) Start(ctx context.Context) error {
	a.Log.Info("taking inventory of Hyper-V utility VMs", "node", a.Config.NodeName, "reap", a.Config.Reap,
		"gracePeriod", a.Config.GracePeriod, "interval", a.Config.Interval)
	ticker := time.NewTicker(a.Config.Interval)
	defer ticker.Stop()
	for {
		if _, err := a.RunOnce(ctx); err != nil && ctx.Err() == nil {
			a.Log.Error(err, "inventory round failed; retrying at the next interval")
		}
		select {
		case <-ctx.Done():
			return nil
		case <-ticker.C:
		}
	}
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
		a.attributions, a.missingSince, a.announced = map[string]PodRef{}, map[string]time.Time{}, map[string]bool{}
	}
	now := a.now()
	var errs []error

	vms, err := a.Host.ListUtilityVMs(ctx)
	if err != nil {
		a.Metrics.Errors.WithLabelValues("host").Inc()
		return Report{}, fmt.Errorf("listing utility VMs: %w", err)
	}

	pods := a.attribute(ctx, vms, &errs)

	uids, err := a.Pods.ListPodUIDs(ctx)
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
			}
		}
		if f.Verdict == VerdictOrphan {
			a.handleOrphan(ctx, &f, now)
		}
		report.Findings = append(report.Findings, f)
	}
	for id := range a.missingSince {
		if !current[id] {
			delete(a.missingSince, id)
		}
	}
	for id := range a.announced {
		if !current[id] {
			delete(a.announced, id)
		}
	}

	report.Summary = a.summarize(ctx, report.Findings, &errs)
	a.Metrics.VMs.Set(float64(report.Summary.VMs))
	a.Metrics.MemoryBytes.Set(float64(report.Summary.MemoryBytes))
	a.Metrics.ScratchBytes.Set(float64(report.Summary.ScratchBytes))
	a.Metrics.Unattributed.Set(float64(report.Summary.Unattributed))
	if podsKnown {
		a.Metrics.Orphans.Set(float64(report.Summary.Orphans))
		if err := a.publish(ctx, report.Summary); err != nil {
			a.Metrics.Errors.WithLabelValues("node").Inc()
			errs = append(errs, err)
		}
	}
	a.Log.V(1).Info("inventory", "node", a.Config.NodeName, "summary", report.Summary.String(), "podsKnown", podsKnown)
	return report, errors.Join(errs...)
}

// attribute returns the pod of each VM (nil: unattributable), learning from the runtime and
// keeping what it learned for as long as the VM exists.
func (a *Agent) attribute(ctx context.Context, vms []UtilityVM, errs *[]error) []*PodRef {
	var known map[string]PodRef
	if a.Resolver != nil {
		var err error
		if known, err = a.Resolver.ResolveSandboxes(ctx); err != nil {
			// Attributions learned before stay valid: a sandbox's pod never changes.
			a.Metrics.Errors.WithLabelValues("runtime").Inc()
			*errs = append(*errs, fmt.Errorf("listing pod sandboxes from the container runtime: %w", err))
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

func (a *Agent) judge(vm UtilityVM, pod *PodRef, uids map[types.UID]struct{}, now time.Time) Verdict {
	_, exists := uids[pod.UID]
	if exists {
		delete(a.missingSince, vm.ID)
	} else if _, seen := a.missingSince[vm.ID]; !seen {
		a.missingSince[vm.ID] = now
	}
	return Classify(vm, pod, exists, a.missingSince[vm.ID], now, a.Config.GracePeriod)
}

func (a *Agent) handleOrphan(ctx context.Context, f *Finding, now time.Time) {
	log := a.Log.WithValues("vm", f.VM.ID, "pod", f.Pod.String(), "age", now.Sub(f.VM.Created).Round(time.Second),
		"memoryBytes", f.VM.MemoryAssignedBytes)
	what := fmt.Sprintf("utility VM %s of pod %s (sandbox %s, %s of memory, started %s) outlived its pod by more than %s",
		f.VM.ID, f.Pod, f.Pod.SandboxID, formatBytes(f.VM.MemoryAssignedBytes), f.VM.Created.UTC().Format(time.RFC3339), a.Config.GracePeriod)
	if !a.Config.Reap {
		if !a.announced[f.VM.ID] {
			a.announced[f.VM.ID] = true
			log.Info("leaked utility VM (dry run: not reaped; run with --reap to terminate it)")
			a.Node.Event(corev1.EventTypeWarning, ReasonLeakedVM, "Report", what+"; dry run: not reaped (--reap=false)")
		}
		return
	}
	if err := a.Host.TerminateUtilityVM(ctx, f.VM.ID); err != nil {
		f.ReapError = err
		a.Metrics.ReapFailures.Inc()
		log.Error(err, "terminating leaked utility VM failed")
		if !a.announced[f.VM.ID] {
			a.announced[f.VM.ID] = true
			a.Node.Event(corev1.EventTypeWarning, ReasonReapFailed, "Reap", fmt.Sprintf("%s; terminating it failed: %v", what, err))
		}
		return
	}
	f.Reaped = true
	a.Metrics.Reaped.Inc()
	log.Info("reaped leaked utility VM")
	a.Node.Event(corev1.EventTypeNormal, ReasonReapedVM, "Reap", what+"; terminated")
}

func (a *Agent) summarize(ctx context.Context, findings []Finding, errs *[]error) Summary {
	var s Summary
	for _, f := range findings {
		if f.Reaped {
			continue
		}
		s.VMs++
		s.MemoryBytes += f.VM.MemoryAssignedBytes
		s.ScratchBytes += f.VM.ScratchDiskBytes
		switch f.Verdict {
		case VerdictOrphan:
			s.Orphans++
		case VerdictUnattributed:
			s.Unattributed++
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

// publish writes the summary annotation when it differs from what the Node has.
func (a *Agent) publish(ctx context.Context, s Summary) error {
	value := s.String()
	if !a.summaryKnown {
		cur, err := a.Node.SummaryAnnotation(ctx)
		if err != nil {
			return fmt.Errorf("reading node %s: %w", a.Config.NodeName, err)
		}
		a.summary, a.summaryKnown = cur, true
	}
	if value == a.summary {
		return nil
	}
	if err := a.Node.SetSummaryAnnotation(ctx, value); err != nil {
		a.summaryKnown = false // read it again next time
		return fmt.Errorf("annotating node %s: %w", a.Config.NodeName, err)
	}
	a.summary = value
	return nil
}
