//go:build !windows

package bench

import (
	"context"
	"fmt"
	"strings"
	"time"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
)

// WriteCost is what one kind of write a bind makes (or causes) costs kube-apiserver and
// etcd, measured on its own: a batch of the same write issued one at a time by the
// benchmark on design-floor objects, after the scenario's window, with the idle rate taken
// out. CEL is kube-apiserver's own account of its CEL evaluations over the batch
// (apiserver_cel_evaluation_duration_seconds), a part of its CPU.
type WriteCost struct {
	Write        string  `json:"write"`
	N            int     `json:"n"`
	MeanMS       float64 `json:"meanMs"` // the call's latency, client side
	APIServerCPU float64 `json:"apiserverCpuMs"`
	EtcdCPU      float64 `json:"etcdCpuMs"`
	CELMS        float64 `json:"celMs"`
	CELEvals     float64 `json:"celEvaluations"`
}

// writeCostBatch is the batch size of each probe.
const writeCostBatch = 40

// probeWriteCosts measures, one kind at a time, the writes a warm bind is made of: the
// session create, the pod patch, the status patch, and the replacement pod's create.
func (r *run) probeWriteCosts(ctx context.Context, idle cpuTimes) ([]WriteCost, error) {
	if r.design == nil {
		return nil, nil
	}
	r.design.mu.Lock()
	defer r.design.mu.Unlock()
	sessions := make([]*unstructured.Unstructured, writeCostBatch)
	var pod *corev1.Pod
	probes := []struct {
		write string
		do    func(i int) error
	}{
		{"POST agentsessions (the client's create)", func(i int) error {
			s, err := r.floorCreate(ctx, fmt.Sprintf("w-%05d", i))
			sessions[i] = s
			return err
		}},
		{"PATCH pods (the bind's label and owner)", func(i int) error {
			p, _, err := r.floorPodPatch(ctx, sessions[i])
			pod = p
			return err
		}},
		{"PATCH agentsessions/status (the bind's status)", func(i int) error {
			return r.floorStatus(ctx, sessions[i], pod)
		}},
		{"POST pods (a replacement warm pod)", func(int) error {
			return r.h.Client.Create(ctx, floorPodFrom(r.design.model))
		}},
	}
	var out []WriteCost
	for _, p := range probes {
		celB, err := scrape(r.h.apiHTTP, r.h.apiMetricsURL())
		if err != nil {
			return nil, err
		}
		cpuB := r.procs.read()
		start := time.Now()
		for i := range writeCostBatch {
			if err := p.do(i); err != nil {
				return nil, fmt.Errorf("write cost, %s: %w", p.write, err)
			}
		}
		elapsed := time.Since(start)
		cpu := r.procs.read().sub(cpuB)
		celA, err := scrape(r.h.apiHTTP, r.h.apiMetricsURL())
		if err != nil {
			return nil, err
		}
		per := func(proc string) float64 {
			return max(0, cpu[proc]-idle[proc]*elapsed.Seconds()) * 1000 / writeCostBatch
		}
		sum := func(f families, name string) float64 {
			v := 0.0
			for _, s := range f[name] {
				v += s.value
			}
			return v
		}
		out = append(out, WriteCost{Write: p.write, N: writeCostBatch, MeanMS: ms(elapsed) / writeCostBatch,
			APIServerCPU: per("kube-apiserver"), EtcdCPU: per("etcd"),
			CELMS:    (sum(celA, "apiserver_cel_evaluation_duration_seconds_sum") - sum(celB, "apiserver_cel_evaluation_duration_seconds_sum")) * 1000 / writeCostBatch,
			CELEvals: (sum(celA, "apiserver_cel_evaluation_duration_seconds_count") - sum(celB, "apiserver_cel_evaluation_duration_seconds_count")) / writeCostBatch})
	}
	return out, nil
}

// writeCostMarkdown renders the probes' table (nothing without them).
func (r *Report) writeCostMarkdown() string {
	var b strings.Builder
	for _, x := range r.Results {
		if len(x.WriteCosts) == 0 {
			continue
		}
		fmt.Fprintf(&b, "\nWhat each write costs, %s (batches of %d, one at a time, after the window; idle rate taken out):\n\n", x.Scenario, writeCostBatch)
		b.WriteString("| write | mean call ms | kube-apiserver CPU ms | etcd CPU ms | CEL ms (evaluations) |\n|---|---|---|---|---|\n")
		for _, c := range x.WriteCosts {
			fmt.Fprintf(&b, "| %s | %.1f | %.1f | %.1f | %.2f (%.0f) |\n", c.Write, c.MeanMS, c.APIServerCPU, c.EtcdCPU, c.CELMS, c.CELEvals)
		}
	}
	return b.String()
}
