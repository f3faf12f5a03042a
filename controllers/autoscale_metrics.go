package controllers

import (
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/utils/clock"
	"sigs.k8s.io/controller-runtime/pkg/metrics"

	agentsv1alpha1 "github.com/hyperpool/hyperpool/api/v1alpha1"
)

// The autoscaler's metrics, and the two a platform team judges any pool by: how many
// sessions got a warm sandbox, and how much VM memory sat idle waiting for them.
var (
	sessionBinds = prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "hyperpool_session_binds_total",
		Help: "Sessions bound to a sandbox, by start type (Warm: from the pool; Cold: started for the session). The warm-hit ratio is Warm over all.",
	}, []string{"namespace", "sandbox", "start_type"})

	autoscaleRecommended = prometheus.NewGaugeVec(prometheus.GaugeOpts{
		Name: "hyperpool_autoscale_recommended_replicas",
		Help: "The autoscaler's recommended warm pool size (status.autoscaling.recommendedReplicas), by pool; compare with hyperpool_warm_sandboxes.",
	}, []string{"namespace", "sandbox"})

	autoscaleBindRate = prometheus.NewGaugeVec(prometheus.GaugeOpts{
		Name: "hyperpool_autoscale_bind_rate",
		Help: "The autoscaler's bind rate estimate λ, binds per second, by pool.",
	}, []string{"namespace", "sandbox"})

	autoscaleRefillSeconds = prometheus.NewGaugeVec(prometheus.GaugeOpts{
		Name: "hyperpool_autoscale_refill_seconds",
		Help: "The autoscaler's refill time T (p90 of warm pod creation to Ready), by pool.",
	}, []string{"namespace", "sandbox"})

	idleVMMemory = &idleMemoryCollector{clock: clock.RealClock{}, pools: map[types.NamespacedName]*idleMemory{},
		desc: prometheus.NewDesc("hyperpool_idle_vm_memory_byte_seconds_total",
			"Idle VM memory over time: the warm (unbound) sandboxes' utility VM memory integrated over seconds, by pool. rate() of it is the idle memory in bytes.",
			[]string{"namespace", "sandbox"}, nil)}
)

func init() {
	metrics.Registry.MustRegister(sessionBinds, autoscaleRecommended, autoscaleBindRate, autoscaleRefillSeconds, idleVMMemory)
}

// recordBind counts a bind that the status write just recorded (warm-hit ratio) and feeds
// the pool's bind rate. before is the status the reconcile started from.
func (r *AgentSessionReconciler) recordBind(before *agentsv1alpha1.AgentSessionStatus, s *agentsv1alpha1.AgentSession) {
	if before.PodName != "" || s.Status.PodName == "" {
		return
	}
	sessionBinds.WithLabelValues(s.Namespace, s.Spec.SandboxName, string(s.Status.StartType)).Inc()
	r.demand.bound(types.NamespacedName{Namespace: s.Namespace, Name: s.Spec.SandboxName})
}

// idleMemoryCollector integrates each pool's warm VM memory over time, at scrape time, so
// the counter is current even for a pool that no event has woken for an hour. It uses the
// real clock: it measures the process's time, whatever clock the controllers run on.
type idleMemoryCollector struct {
	clock clock.PassiveClock
	desc  *prometheus.Desc

	mu    sync.Mutex
	pools map[types.NamespacedName]*idleMemory
}

type idleMemory struct {
	byteSeconds float64 // up to since
	bytes       float64 // idle since then
	since       time.Time
}

// set records that the pool's warm sandboxes now hold bytes of VM memory.
func (c *idleMemoryCollector) set(key types.NamespacedName, bytes float64) {
	c.mu.Lock()
	defer c.mu.Unlock()
	now := c.clock.Now()
	m, ok := c.pools[key]
	if !ok {
		c.pools[key] = &idleMemory{bytes: bytes, since: now}
		return
	}
	m.byteSeconds += m.bytes * now.Sub(m.since).Seconds()
	m.bytes, m.since = bytes, now
}

func (c *idleMemoryCollector) forget(key types.NamespacedName) {
	c.mu.Lock()
	defer c.mu.Unlock()
	delete(c.pools, key)
}

func (c *idleMemoryCollector) Describe(ch chan<- *prometheus.Desc) { ch <- c.desc }

func (c *idleMemoryCollector) Collect(ch chan<- prometheus.Metric) {
	c.mu.Lock()
	defer c.mu.Unlock()
	now := c.clock.Now()
	for key, m := range c.pools {
		ch <- prometheus.MustNewConstMetric(c.desc, prometheus.CounterValue,
			m.byteSeconds+m.bytes*now.Sub(m.since).Seconds(), key.Namespace, key.Name)
	}
}

// forgetAutoscaleSeries drops a pool's autoscaler series (autoscaling removed, or the
// class deleted).
func forgetAutoscaleSeries(key types.NamespacedName) {
	labels := prometheus.Labels{"namespace": key.Namespace, "sandbox": key.Name}
	autoscaleRecommended.DeletePartialMatch(labels)
	autoscaleBindRate.DeletePartialMatch(labels)
	autoscaleRefillSeconds.DeletePartialMatch(labels)
}

// forgetPoolMeasures drops everything this file keeps of a deleted class.
func (r *AgentSandboxReconciler) forgetPoolMeasures(key types.NamespacedName) {
	r.demand.forget(key)
	forgetAutoscaleSeries(key)
	idleVMMemory.forget(key)
	sessionBinds.DeletePartialMatch(prometheus.Labels{"namespace": key.Namespace, "sandbox": key.Name})
}
