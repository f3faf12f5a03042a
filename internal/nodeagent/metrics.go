package nodeagent

import "github.com/prometheus/client_golang/prometheus"

// Metrics are the agent's Prometheus metrics. Each agent reports its own node only, so the
// series carry no node label: Prometheus' pod/node target labels tell the nodes apart.
type Metrics struct {
	VMs          prometheus.Gauge
	MemoryBytes  prometheus.Gauge
	ScratchBytes prometheus.Gauge
	Orphans      prometheus.Gauge
	Unattributed prometheus.Gauge
	// LeakedBytes, SizeMismatches and LeakTainted are Summary.LeakedBytes, Summary.SizeMismatches
	// and whether the leak taint is on the node (1) or not (0).
	LeakedBytes    prometheus.Gauge
	SizeMismatches prometheus.Gauge
	LeakTainted    prometheus.Gauge
	Reaped         prometheus.Counter
	ReapFailures   prometheus.Counter
	Errors         *prometheus.CounterVec
	// RuntimeHandlerReady is 1 for a runtime handler the runtime check found ready for
	// Hyper-V sandboxes (the one its Node label says), else 0; by handler.
	RuntimeHandlerReady *prometheus.GaugeVec
	// RuntimeHandlerProblem is 1 for a checked handler's problem (runtimereport.Problem) and
	// 0 for the other problems: every checked handler has one series per problem, so an
	// alert on == 1 never sees a gap. No series while the configuration cannot be read.
	RuntimeHandlerProblem *prometheus.GaugeVec
}

// NewMetrics creates the metrics and registers them with reg (controller-runtime's
// metrics.Registry in the binary, a fresh registry in tests).
func NewMetrics(reg prometheus.Registerer) *Metrics {
	m := &Metrics{
		VMs: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "hyperpool_node_vms", Help: "Hyper-V utility VMs of the pod runtime on this node.",
		}),
		MemoryBytes: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "hyperpool_node_vm_memory_bytes", Help: "Host memory the utility VMs on this node hold: the working sets of their vmmem processes (their assigned memory where unknown).",
		}),
		ScratchBytes: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "hyperpool_node_vm_scratch_bytes", Help: "Size on disk of the utility VMs' scratch disks on this node.",
		}),
		Orphans: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "hyperpool_node_orphan_vms", Help: "Utility VMs whose pod is gone for longer than the grace period (leaked), still on this node.",
		}),
		Unattributed: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "hyperpool_node_unattributed_vms", Help: "Utility VMs the agent cannot tie to a pod; never reaped.",
		}),
		LeakedBytes: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "hyperpool_node_leaked_vm_memory_bytes", Help: "Host memory (vmmem working set) of the utility VMs on this node whose pod is gone (leaked, reaped or not yet): memory the scheduler does not count.",
		}),
		SizeMismatches: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "hyperpool_node_vm_size_mismatches", Help: "Utility VMs of live pods on this node whose memory is not the size their pod's annotation asked for (the runtime handler does not pass pod annotations).",
		}),
		LeakTainted: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "hyperpool_node_leak_tainted", Help: "1 while the node agent's leak taint (PreferNoSchedule) is on this node, else 0.",
		}),
		Reaped: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "hyperpool_node_orphans_reaped_total", Help: "Leaked utility VMs terminated by the agent (--reap).",
		}),
		ReapFailures: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "hyperpool_node_orphan_reap_failures_total", Help: "Attempts to terminate a leaked utility VM that failed.",
		}),
		Errors: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "hyperpool_node_agent_errors_total", Help: "Rounds that hit an error, by step (host, runtime, pods, node; the runtime check's runtime-config, runtime-classes).",
		}, []string{"step"}),
		RuntimeHandlerReady: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: "hyperpool_node_runtime_handler_ready", Help: "1 while containerd on this node runs the handler's pods in Hyper-V utility VMs and passes hcsshim's sizing annotations (the node is labelled runtime.agents.hyperpool.io/<handler>=verified), else 0.",
		}, []string{"handler"}),
		RuntimeHandlerProblem: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: "hyperpool_node_runtime_handler_problem", Help: "1 for what keeps the handler from running Hyper-V sandboxes on this node (HandlerMissing, NotHyperV, AnnotationsDropped), 0 for the other problems.",
		}, []string{"handler", "problem"}),
	}
	reg.MustRegister(m.VMs, m.MemoryBytes, m.ScratchBytes, m.Orphans, m.Unattributed, m.LeakedBytes, m.SizeMismatches, m.LeakTainted, m.Reaped, m.ReapFailures, m.Errors,
		m.RuntimeHandlerReady, m.RuntimeHandlerProblem)
	return m
}
