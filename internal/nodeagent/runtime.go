package nodeagent

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"slices"
	"time"

	"github.com/go-logr/logr"
	corev1 "k8s.io/api/core/v1"
	nodev1 "k8s.io/api/node/v1"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/apimachinery/pkg/util/wait"

	"github.com/hyperpool/hyperpool/internal/runtimereport"
)

// DefaultRuntimeCheckInterval is how often the runtime check runs unless
// --runtime-check-interval says otherwise: containerd's configuration changes only with a
// node image or a person, and each check runs a process.
const DefaultRuntimeCheckInterval = 5 * time.Minute

// Event reasons of the runtime check on the Node.
const (
	// ReasonRuntimeHandlerNotReady: a registered Hyper-V handler drops hcsshim's sizing
	// annotations (runtimereport.AnnotationsDropped). Only that problem gets an Event: a
	// missing handler or a process-isolated one is normal for a RuntimeClass meant for other
	// nodes or for process isolation, which the agent cannot tell apart; the manager's
	// RuntimeReady condition judges those against the classes that need Hyper-V.
	ReasonRuntimeHandlerNotReady = "RuntimeHandlerNotReady"
	// ReasonRuntimeHandlerReady: a handler reported with RuntimeHandlerNotReady is ready.
	ReasonRuntimeHandlerReady = "RuntimeHandlerReady"
	// ReasonRuntimeConfigUnreadable: `containerd config dump` failed.
	ReasonRuntimeConfigUnreadable = "RuntimeConfigUnreadable"
)

// RuntimeConfigReader returns containerd's effective configuration (TOML, as `containerd
// config dump` prints it). ContainerdConfig runs containerd; tests use a fake.
type RuntimeConfigReader interface {
	ReadRuntimeConfig(ctx context.Context) ([]byte, error)
}

// RuntimeClassLister returns the cluster's RuntimeClasses. APIRuntimeClassLister reads them
// from the API server.
type RuntimeClassLister interface {
	ListRuntimeClasses(ctx context.Context) ([]nodev1.RuntimeClass, error)
}

// RuntimeCheck is the node agent's container runtime preflight: for each runtime handler
// that a RuntimeClass can schedule on this node, is it registered in containerd's effective
// configuration, Hyper-V isolated, and passing hcsshim's sizing annotations
// (runtimereport.Check)? It publishes the report as the Node annotation
// runtimereport.Annotation and labels the Node runtimereport.LabelKey(handler) =
// runtimereport.LabelValue for each ready handler, which a class with
// spec.placement.requireVerifiedRuntime selects on.
//
// It runs apart from the VM inventory (its own Runnable, its own state), so a node whose
// HCS fails still gets its runtime checked, and the inventory's rounds are unchanged. A
// RuntimeCheck is not safe for concurrent checks.
type RuntimeCheck struct {
	NodeName string
	// Interval is how often Start checks; 0 is DefaultRuntimeCheckInterval.
	Interval time.Duration
	Config   RuntimeConfigReader
	Classes  RuntimeClassLister
	Node     NodeReporter
	Metrics  *Metrics
	Log      logr.Logger

	// published is the annotation last read from or written to the Node (publishAnnotation).
	published map[string]string
	// announced holds the handlers reported with a RuntimeHandlerNotReady Event, and the problem.
	announced map[string]runtimereport.Problem
	// problems holds each checked handler's problem as last logged, to log a change once.
	problems map[string]runtimereport.Problem
	// configUnreadable: the last read of containerd's configuration failed and was reported.
	configUnreadable bool
	// gauged holds the handlers with metric series, to delete those no longer checked.
	gauged map[string]bool
}

// NeedLeaderElection is false: every node checks its own runtime.
func (c *RuntimeCheck) NeedLeaderElection() bool { return false }

// Start checks at once and then, until ctx ends, again Interval after each check.
func (c *RuntimeCheck) Start(ctx context.Context) error {
	interval := c.Interval
	if interval <= 0 {
		interval = DefaultRuntimeCheckInterval
	}
	c.Log.Info("checking the container runtime's handlers", "node", c.NodeName, "interval", interval)
	wait.UntilWithContext(ctx, func(ctx context.Context) {
		if _, err := c.CheckOnce(ctx); err != nil && ctx.Err() == nil {
			c.Log.Error(err, "runtime check failed; retrying at the next interval")
		}
	}, interval)
	return nil
}

// CheckOnce checks the handlers of the RuntimeClasses that match the Node's labels and
// publishes the report. If the Node or the RuntimeClasses cannot be read, it changes
// nothing (it does not know which handlers to vouch for); if containerd's configuration
// cannot be read, it publishes a report with Error and removes every handler label.
func (c *RuntimeCheck) CheckOnce(ctx context.Context) (runtimereport.Report, error) {
	if c.published == nil {
		c.published, c.announced, c.problems, c.gauged = map[string]string{}, map[string]runtimereport.Problem{}, map[string]runtimereport.Problem{}, map[string]bool{}
	}
	nodeLabels, err := c.Node.Labels(ctx)
	if err != nil {
		c.Metrics.Errors.WithLabelValues("node").Inc()
		return runtimereport.Report{}, fmt.Errorf("reading node %s: %w", c.NodeName, err)
	}
	classes, err := c.Classes.ListRuntimeClasses(ctx)
	if err != nil {
		c.Metrics.Errors.WithLabelValues("runtime-classes").Inc()
		return runtimereport.Report{}, fmt.Errorf("listing RuntimeClasses: %w", err)
	}
	handlers := HandlersForNode(classes, nodeLabels)

	var errs []error
	var report runtimereport.Report
	config, err := c.Config.ReadRuntimeConfig(ctx)
	if err != nil {
		c.Metrics.Errors.WithLabelValues("runtime-config").Inc()
		report = runtimereport.Report{Error: "reading containerd's configuration: " + err.Error()}
		errs = append(errs, fmt.Errorf("reading containerd's configuration: %w", err))
	} else {
		report = runtimereport.Check(config, handlers)
	}
	c.gauge(report, handlers)
	c.announce(report)

	// Labels first: a handler that turned bad loses its label (and the scheduler the node)
	// even if the annotation write fails.
	want := map[string]string{}
	for _, h := range report.Handlers {
		if h.Ready() {
			want[runtimereport.LabelKey(h.Handler)] = runtimereport.LabelValue
		}
	}
	if len(labelChanges(nodeLabels, runtimereport.LabelPrefix, want)) > 0 {
		if _, err := c.Node.SetLabels(ctx, runtimereport.LabelPrefix, want); err != nil {
			c.Metrics.Errors.WithLabelValues("node").Inc()
			errs = append(errs, fmt.Errorf("labelling node %s (%s*): %w", c.NodeName, runtimereport.LabelPrefix, err))
		} else {
			c.Log.Info("runtime handler labels changed", "node", c.NodeName, "verified", slices.Sorted(maps.Keys(want)))
		}
	}
	if err := publishAnnotation(ctx, c.Node, c.published, c.NodeName, runtimereport.Annotation, runtimereport.Format(report)); err != nil {
		c.Metrics.Errors.WithLabelValues("node").Inc()
		errs = append(errs, err)
	}
	return report, errors.Join(errs...)
}

// HandlersForNode returns the handlers, sorted and once each, of the RuntimeClasses whose
// scheduling.nodeSelector matches the node's labels: those the scheduler may place a pod of
// on the node. A class without scheduling or nodeSelector matches every node.
func HandlersForNode(classes []nodev1.RuntimeClass, nodeLabels map[string]string) []string {
	var handlers []string
	for _, rc := range classes {
		if rc.Handler == "" {
			continue
		}
		if s := rc.Scheduling; s != nil && !labels.SelectorFromSet(s.NodeSelector).Matches(labels.Set(nodeLabels)) {
			continue
		}
		handlers = append(handlers, rc.Handler)
	}
	slices.Sort(handlers)
	return slices.Compact(handlers)
}

// allProblems are the handler problems, one metric series each.
var allProblems = []runtimereport.Problem{runtimereport.HandlerMissing, runtimereport.NotHyperV, runtimereport.AnnotationsDropped}

// gauge sets the handler metrics: ready and problem series for each checked handler; while
// the configuration cannot be read, ready 0 and no problem series (the problem is unknown).
// A handler no longer checked loses its series.
func (c *RuntimeCheck) gauge(report runtimereport.Report, handlers []string) {
	checked := map[string]bool{}
	for _, h := range handlers {
		checked[h] = true
		hr, ok := report.Handler(h)
		if !ok { // the configuration could not be read
			c.Metrics.RuntimeHandlerReady.WithLabelValues(h).Set(0)
			c.Metrics.RuntimeHandlerProblem.DeletePartialMatch(map[string]string{"handler": h})
			continue
		}
		c.Metrics.RuntimeHandlerReady.WithLabelValues(h).Set(boolGauge(hr.Ready()))
		for _, p := range allProblems {
			c.Metrics.RuntimeHandlerProblem.WithLabelValues(h, string(p)).Set(boolGauge(hr.Problem() == p))
		}
	}
	for h := range c.gauged {
		if !checked[h] {
			c.Metrics.RuntimeHandlerReady.DeleteLabelValues(h)
			c.Metrics.RuntimeHandlerProblem.DeletePartialMatch(map[string]string{"handler": h})
		}
	}
	c.gauged = checked
}

func boolGauge(b bool) float64 {
	if b {
		return 1
	}
	return 0
}

// announce logs each handler's problem when it changes, and records Events: a Warning when
// the configuration becomes unreadable, and (see ReasonRuntimeHandlerNotReady) a Warning
// once per handler and problem for a handler that drops the sizing annotations, a Normal
// Event when such a handler is ready again.
func (c *RuntimeCheck) announce(report runtimereport.Report) {
	if report.Error != "" {
		if !c.configUnreadable {
			c.configUnreadable = true
			c.Log.Info("cannot read containerd's configuration: no runtime handler is verified on this node", "node", c.NodeName, "error", report.Error)
			c.Node.Event(corev1.EventTypeWarning, ReasonRuntimeConfigUnreadable, "CheckRuntime",
				report.Error+"; no runtime handler is verified on this node until it can be read (labels "+runtimereport.LabelPrefix+"* removed)")
		}
		return // what is known of each handler stays as it was
	}
	c.configUnreadable = false
	checked := map[string]bool{}
	for _, h := range report.Handlers {
		checked[h.Handler] = true
		p := h.Problem()
		if prev, seen := c.problems[h.Handler]; !seen || prev != p {
			c.problems[h.Handler] = p
			if p == runtimereport.NoProblem {
				c.Log.Info("runtime handler ready for Hyper-V sandboxes", "handler", h.Handler)
			} else {
				c.Log.Info("runtime handler not ready for Hyper-V sandboxes", "handler", h.Handler, "problem", p, "detail", h.Detail)
			}
		}
		switch prev, told := c.announced[h.Handler]; {
		case p == runtimereport.AnnotationsDropped && prev != p:
			c.announced[h.Handler] = p
			c.Node.Event(corev1.EventTypeWarning, ReasonRuntimeHandlerNotReady, "CheckRuntime", fmt.Sprintf(
				"runtime handler %s runs Hyper-V sandboxes but drops hcsshim's sizing annotations, so every utility VM gets hcsshim's default size whatever the class asks for (%s): %s",
				h.Handler, h.Detail, p.Fix(h.Handler)))
		case p == runtimereport.NoProblem && told:
			delete(c.announced, h.Handler)
			c.Node.Event(corev1.EventTypeNormal, ReasonRuntimeHandlerReady, "CheckRuntime", fmt.Sprintf(
				"runtime handler %s runs Hyper-V sandboxes and passes hcsshim's sizing annotations: labelled %s=%s",
				h.Handler, runtimereport.LabelKey(h.Handler), runtimereport.LabelValue))
		case p != runtimereport.AnnotationsDropped && p != runtimereport.NoProblem:
			delete(c.announced, h.Handler) // worse now; the log says so, and a later AnnotationsDropped is news
		}
	}
	for h := range c.problems {
		if !checked[h] {
			delete(c.problems, h)
			delete(c.announced, h)
		}
	}
}
