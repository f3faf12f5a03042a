// Command node-agent runs on every Windows node (a HostProcess DaemonSet of the Helm chart,
// value nodeAgent.enabled). It takes inventory of the node's Hyper-V utility VMs through the
// Host Compute Service, exports it as Prometheus metrics and as the Node annotation
// agents.hyperpool.io/uvm-summary, and reports (or, with --reap, terminates) utility VMs
// that outlived their pod. It also checks that containerd's runtime handlers run Hyper-V
// sandboxes (agents.hyperpool.io/runtime-handlers, labels runtime.agents.hyperpool.io/*).
// See docs/node-agent.md.
//
// Built for another OS it only says that it runs on Windows nodes and exits with code 2.
package main

import (
	"errors"
	"flag"
	"fmt"
	"strings"
	"time"

	"k8s.io/apimachinery/pkg/api/resource"
	"k8s.io/apimachinery/pkg/util/validation"
	"sigs.k8s.io/controller-runtime/pkg/log/zap"

	"github.com/hyperpool/hyperpool/internal/nodeagent"
)

// options are the command line.
type options struct {
	agent       nodeagent.Config
	metricsAddr string
	criEndpoint string
	// leakTaintThreshold is --leak-taint-threshold as given; validate sets agent.LeakTaintThreshold.
	leakTaintThreshold string
	// The runtime check (docs/node-agent.md, "Does containerd run Hyper-V sandboxes?").
	runtimeCheckInterval time.Duration
	containerdPath       string
	containerdConfig     string
	zap                  zap.Options
	// version: print the stamped version and exit, before any flag is validated.
	version bool
}

// bindFlags registers the flags on fs. ctrl.GetConfig's --kubeconfig is registered on the
// process's flag.CommandLine by controller-runtime itself.
func bindFlags(fs *flag.FlagSet) *options {
	o := &options{}
	fs.StringVar(&o.agent.NodeName, "node-name", "", "Name of this node (required; the chart passes spec.nodeName from the downward API).")
	fs.BoolVar(&o.agent.Reap, "reap", false, "Terminate leaked utility VMs. Without it (the default) they are only reported: log, Event on the Node, metric.")
	fs.DurationVar(&o.agent.GracePeriod, "grace-period", 10*time.Minute, "How long a utility VM must be old, and its pod gone, before it counts as leaked.")
	fs.DurationVar(&o.agent.Interval, "interval", 30*time.Second, "How often to take inventory.")
	fs.StringVar(&o.metricsAddr, "metrics-bind-address", ":9090", "Address the Prometheus metrics endpoint binds to; \"0\" turns it off.")
	fs.StringVar(&o.agent.LeakTaintKey, "leak-taint-key", nodeagent.DefaultLeakTaintKey, "Key of the PreferNoSchedule taint kept on the node while leaked utility VMs hold at least --leak-taint-threshold of memory.")
	fs.StringVar(&o.leakTaintThreshold, "leak-taint-threshold", "0", "Leaked utility VM memory (a quantity, e.g. 4Gi) from which the node is tainted; 0 (the default) never taints.")
	fs.StringVar(&o.criEndpoint, "cri-endpoint", nodeagent.DefaultCRIEndpoint, "CRI endpoint of the container runtime, used to tie pod sandboxes to pods.")
	fs.DurationVar(&o.runtimeCheckInterval, "runtime-check-interval", nodeagent.DefaultRuntimeCheckInterval, "How often to check containerd's runtime handlers (registered, Hyper-V, passing hcsshim's sizing annotations) and label the node for the ready ones.")
	fs.StringVar(&o.containerdPath, "containerd-path", nodeagent.DefaultContainerdPath, "containerd's executable, run as `containerd config dump` to read its effective configuration.")
	fs.StringVar(&o.containerdConfig, "containerd-config", "", "containerd's configuration file, passed to it as --config; empty: containerd's default.")
	fs.BoolVar(&o.version, "version", false, "Print the version and the source revision, then exit.")
	o.zap.BindFlags(fs)
	return o
}

// validate checks the options after parsing.
func (o *options) validate() error {
	var errs []error
	if o.agent.NodeName == "" {
		errs = append(errs, errors.New("--node-name is required (set it from the downward API: spec.nodeName)"))
	}
	if o.agent.GracePeriod < time.Minute {
		errs = append(errs, fmt.Errorf("--grace-period %s is too short: a utility VM may take that long to stop after its pod; use at least 1m", o.agent.GracePeriod))
	}
	if o.agent.Interval <= 0 {
		errs = append(errs, fmt.Errorf("--interval must be positive, not %s", o.agent.Interval))
	}
	if o.runtimeCheckInterval < time.Second {
		errs = append(errs, fmt.Errorf("--runtime-check-interval must be at least 1s, not %s", o.runtimeCheckInterval))
	}
	if strings.TrimSpace(o.containerdPath) == "" {
		errs = append(errs, errors.New("--containerd-path is required: the runtime check runs `containerd config dump`"))
	}
	if _, err := nodeagent.PipePath(o.criEndpoint); err != nil {
		errs = append(errs, err)
	}
	if q, err := resource.ParseQuantity(o.leakTaintThreshold); err != nil || q.Sign() < 0 {
		errs = append(errs, fmt.Errorf("--leak-taint-threshold %q is not a memory size; use a quantity such as 4Gi, or 0 for no taint", o.leakTaintThreshold))
	} else {
		o.agent.LeakTaintThreshold = uint64(q.Value()) //nolint:gosec // checked >= 0
	}
	if bad := validation.IsQualifiedName(o.agent.LeakTaintKey); o.agent.LeakTaintThreshold > 0 && len(bad) > 0 {
		errs = append(errs, fmt.Errorf("--leak-taint-key %q is not a taint key: %s", o.agent.LeakTaintKey, strings.Join(bad, "; ")))
	}
	return errors.Join(errs...)
}
