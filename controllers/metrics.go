package controllers

import (
	"context"
	"errors"

	"github.com/prometheus/client_golang/prometheus"
	"k8s.io/apimachinery/pkg/types"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/metrics"

	agentsv1alpha1 "github.com/hyperpool/hyperpool/api/v1alpha1"
)

// The project's metrics, on the controller-runtime registry that the manager serves.
var (
	// readyWarmPods counts a pool's Ready warm pods; the metric keeps its released name.
	readyWarmPods = prometheus.NewGaugeVec(prometheus.GaugeOpts{
		Name: "hyperpool_warm_sandboxes",
		Help: "Warm sandboxes Ready to bind, by pool.",
	}, []string{"namespace", "sandbox"})

	sessionsByPhase = prometheus.NewGaugeVec(prometheus.GaugeOpts{
		Name: "hyperpool_sessions",
		Help: "Sessions known to the manager, by phase.",
	}, []string{"namespace", "sandbox", "phase"})

	bindDuration = prometheus.NewHistogramVec(prometheus.HistogramOpts{
		Name: "hyperpool_bind_duration_seconds",
		Help: "Time from a session's creation to its sandbox being Ready, by start type.",
		// Warm binds take milliseconds, cold ones the VM boot: seconds to minutes.
		Buckets: []float64{0.005, 0.01, 0.015, 0.025, 0.04, 0.06, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 20, 40, 80, 160, 320},
	}, []string{"namespace", "sandbox", "start_type"})

	sessionExpirations = prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "hyperpool_session_expirations_total",
		Help: "Sessions ended by their lifetime limits, by reason (MaxLifetime, IdleTimeout).",
	}, []string{"namespace", "sandbox", "reason"})

	podCreations = prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "hyperpool_pod_creations_total",
		Help: "Sandbox pods created, by start type (Warm: for the pool; Cold: for a session).",
	}, []string{"namespace", "sandbox", "start_type"})

	vmMemoryBytes = prometheus.NewGaugeVec(prometheus.GaugeOpts{
		Name: "hyperpool_vm_memory_bytes",
		Help: "Hyper-V utility VM memory of the live sandboxes (warm and bound), by namespace and pool.",
	}, []string{"namespace", "sandbox"})
)

// Quota metrics.
var (
	vmSizeNotApplied = prometheus.NewGaugeVec(prometheus.GaugeOpts{
		Name: "hyperpool_vm_size_not_applied_vms",
		Help: "Utility VMs of a pool that the node agents measured at another memory size than their pods ask for (condition VMSizeApplied), by namespace and pool.",
	}, []string{"namespace", "sandbox"})

	quotaUsed = prometheus.NewGaugeVec(prometheus.GaugeOpts{
		Name: "hyperpool_quota_used",
		Help: "Usage counted against an AgentQuota, by namespace and resource (sessions, warmSandboxes, memory in bytes, cpu).",
	}, []string{"namespace", "resource"})

	quotaHard = prometheus.NewGaugeVec(prometheus.GaugeOpts{
		Name: "hyperpool_quota_hard",
		Help: "An AgentQuota's limits, by namespace and resource (unset limits are not reported).",
	}, []string{"namespace", "resource"})

	queuedSessions = prometheus.NewGaugeVec(prometheus.GaugeOpts{
		Name: "hyperpool_queued_sessions",
		Help: "Sessions waiting for their namespace's AgentQuota.",
	}, []string{"namespace"})

	queueWait = prometheus.NewHistogramVec(prometheus.HistogramOpts{
		Name:    "hyperpool_queue_wait_seconds",
		Help:    "How long admitted sessions waited in their quota's queue.",
		Buckets: prometheus.ExponentialBuckets(0.1, 2, 16), // 100 ms to about an hour
	}, []string{"namespace"})

	// The pool book (internal/poolbook): how often a pool still lists its pods, and what the
	// audit found.
	poolListCalls = prometheus.NewCounter(prometheus.CounterOpts{
		Name: "hyperpool_pool_pod_lists_total",
		Help: "Times a pool reconcile listed its class's pods from the cache: only to pick pods to delete (strays, stuck or ended pods, a Recreate roll-out, a scale-down); counts come from the pool book.",
	})
	bookAudits = prometheus.NewCounter(prometheus.CounterOpts{
		Name: "hyperpool_pool_book_audits_total",
		Help: "Times the pool book was compared with a list of every sandbox pod from the cache.",
	})
	bookDrift = prometheus.NewCounter(prometheus.CounterOpts{
		Name: "hyperpool_pool_book_drift_total",
		Help: "Differences the pool book audit found between the book and the cache (each a bug: a missed or misread pod event); the book is rebuilt from the cache when any is found.",
	})
)

func init() {
	metrics.Registry.MustRegister(quotaUsed, quotaHard, queuedSessions, queueWait, poolListCalls, bookAudits, bookDrift)
	// sessionsByPhase is served by sessionCollector.
	metrics.Registry.MustRegister(readyWarmPods, bindDuration, sessionExpirations, podCreations, vmMemoryBytes, vmSizeNotApplied)
}

// sessionCollector reports hyperpool_sessions from the manager's cache at scrape time, so
// no reconcile has to keep a gauge in step with every phase change.
type sessionCollector struct {
	reader client.Reader
}

func (c sessionCollector) Describe(ch chan<- *prometheus.Desc) { sessionsByPhase.Describe(ch) }

func (c sessionCollector) Collect(ch chan<- prometheus.Metric) {
	list := &agentsv1alpha1.AgentSessionList{}
	if err := c.reader.List(context.Background(), list, client.UnsafeDisableDeepCopy); err != nil {
		return
	}
	sessionsByPhase.Reset()
	for i := range list.Items {
		s := &list.Items[i]
		phase := s.Status.Phase
		if phase == "" {
			phase = agentsv1alpha1.SessionPending
		}
		sessionsByPhase.WithLabelValues(s.Namespace, s.Spec.SandboxName, string(phase)).Inc()
	}
	sessionsByPhase.Collect(ch)
}

// registerSessionCollector adds the collector once per process.
func registerSessionCollector(reader client.Reader) error {
	err := metrics.Registry.Register(sessionCollector{reader: reader})
	if errors.As(err, &prometheus.AlreadyRegisteredError{}) {
		return nil
	}
	return err
}

// forgetSandboxSeries deletes the series of a deleted class, so a namespace that churns
// through classes cannot grow the manager's memory and the scrape without limit.
func forgetSandboxSeries(key types.NamespacedName) {
	labels := prometheus.Labels{"namespace": key.Namespace, "sandbox": key.Name}
	readyWarmPods.DeletePartialMatch(labels)
	vmMemoryBytes.DeletePartialMatch(labels)
	vmSizeNotApplied.DeletePartialMatch(labels)
	bindDuration.DeletePartialMatch(labels)
	sessionExpirations.DeletePartialMatch(labels)
	podCreations.DeletePartialMatch(labels)
	tamperedPods.DeletePartialMatch(labels)
}
