//go:build !windows

package bench

import (
	"fmt"
	"maps"
	"math"
	"slices"
	"strconv"
	"strings"
)

// DesignFloorStats are a scenario's design-floor samples (floor.go), in ms, and the bind's
// latency over them.
type DesignFloorStats struct {
	Total    Stats     `json:"totalMs"` // create call started -> the watch sees Ready
	Create   Stats     `json:"createMs"`
	PodPatch Stats     `json:"podPatchMs"`
	Status   Stats     `json:"statusMs"`
	Watch    Stats     `json:"watchMs"`
	Samples  []float64 `json:"samplesMs,omitempty"`
	// Conflicts: pod patches refused on the resourceVersion (the benchmark's cache behind).
	Conflicts int `json:"conflicts"`
	// Inline: interleaved with the binds in a shuffled order, each from a quiet system
	// (serial, paced): a lower bound. Else every 250 ms next to the binds, under their load.
	Inline bool `json:"inline"`
	// RatioP50 and RatioP99: bind latency ÷ design floor, at the same percentile; GapP50MS
	// and GapP99MS: bind latency − design floor, in ms.
	RatioP50 float64 `json:"ratioP50"`
	RatioP99 float64 `json:"ratioP99"`
	GapP50MS float64 `json:"gapP50Ms"`
	GapP99MS float64 `json:"gapP99Ms"`
	// ServerMeanMS: kube-apiserver's own mean time for each write of a bind and of the
	// floor over the window (apiserver_request_duration_seconds, sum ÷ count), by
	// "VERB resource (group)".
	ServerMeanMS map[string]float64 `json:"serverMeanMs,omitempty"`
}

// BindBreakdown splits the binds' latency, in ms, from the benchmark's clock (percentiles)
// and the manager's own metrics over the window (means).
type BindBreakdown struct {
	CreateCall           Stats `json:"createCallMs"`           // the session create call
	CreatedToPodLabelled Stats `json:"createdToPodLabelledMs"` // call returned -> the watch sees the pod labelled
	PodLabelledToReady   Stats `json:"podLabelledToReadyMs"`   // pod labelled seen -> session Ready seen
	// Manager means: time in the session workqueue before a worker took the item, and a
	// session reconcile's time (the bind's reconcile and every other in the window).
	QueueWaitMeanMS float64 `json:"queueWaitMeanMs"`
	ReconcileMeanMS float64 `json:"reconcileMeanMs"`
	Reconciles      float64 `json:"reconciles"`
	// SessionReconcileMSPerBind and PoolReconcileMSPerBind: each controller's reconcile
	// time over the window ÷ binds (wall time, API calls included): which side of the
	// manager a bind's cost grows on.
	SessionReconcileMSPerBind float64 `json:"sessionReconcileMsPerBind"`
	PoolReconcileMSPerBind    float64 `json:"poolReconcileMsPerBind"`
	// PoolReconcileP50MS and PoolReconcileP99MS: a pool reconcile's duration over the
	// window, from the manager's histogram (interpolated within its buckets).
	PoolReconcileP50MS float64 `json:"poolReconcileP50Ms"`
	PoolReconcileP99MS float64 `json:"poolReconcileP99Ms"`
	// PoolPodListsPerBind: times a pool reconcile listed its class's pods from the cache
	// (hyperpool_pool_pod_lists_total) ÷ binds; nil for a manager without that metric
	// (before the pool book, every pool reconcile listed).
	PoolPodListsPerBind *float64 `json:"poolPodListsPerBind,omitempty"`
}

// designResults fills res.DesignFloor from the samples and keeps the floor's own writes out
// of the bind's write counts: its pod patches are PATCH pods like a bind's, its session
// writes are of the floor group (requestCounts keeps those apart).
func (r *run) designResults(res *Result, after families) {
	d := r.design
	if d == nil {
		return
	}
	d.mu.Lock()
	defer d.mu.Unlock()
	if patches := float64(d.podPatches); patches > 0 {
		w := &res.Writes
		w.ByRequest["PATCH pods"] -= patches
		w.ByRequest["design floor: PATCH pods"] = patches
		w.Critical -= patches
		w.Operator -= patches
		w.OperatorNoEvents -= patches
	}
	var total, create, pod, status, watch []float64
	ds := &DesignFloorStats{Inline: r.inlineDesign}
	for _, s := range d.samples {
		total, create, pod, status, watch = append(total, s.Total), append(create, s.Create), append(pod, s.PodPatch),
			append(status, s.Status), append(watch, s.Watch)
		ds.Conflicts += s.Conflicts
	}
	ds.Total, ds.Create, ds.PodPatch, ds.Status, ds.Watch = percentiles(total), percentiles(create), percentiles(pod), percentiles(status), percentiles(watch)
	ds.Samples = total
	ds.ServerMeanMS = serverMeans(r.apiB, after)
	res.DesignFloor = ds
}

// serverMeans is kube-apiserver's mean time per request, over the window, for the writes a
// bind and the design floor make.
func serverMeans(before, after families) map[string]float64 {
	type acc struct{ sum, count float64 }
	sums := map[string]*acc{}
	add := func(f families, sign float64) {
		for _, suffix := range []string{"_sum", "_count"} {
			for _, s := range f["apiserver_request_duration_seconds"+suffix] {
				l := s.labels
				k := l["verb"] + " " + l["resource"]
				if l["subresource"] != "" {
					k += "/" + l["subresource"]
				}
				switch k {
				case "POST agentsessions", "PATCH agentsessions/status", "PATCH pods", "POST pods":
				default:
					continue
				}
				if l["group"] != "" {
					k += " (" + l["group"] + ")"
				}
				a := sums[k]
				if a == nil {
					a = &acc{}
					sums[k] = a
				}
				if suffix == "_sum" {
					a.sum += sign * s.value
				} else {
					a.count += sign * s.value
				}
			}
		}
	}
	add(after, 1)
	add(before, -1)
	out := map[string]float64{}
	for k, a := range sums {
		if a.count > 0 {
			out[k] = a.sum / a.count * 1000
		}
	}
	return out
}

// managerMeans fills the manager's side of b from its /metrics before and after the window.
func (r *run) managerMeans(b *BindBreakdown, binds int) {
	if r.h.Manager == nil || r.mgrB == nil {
		return
	}
	after, err := scrape(r.h.apiHTTP, r.h.Manager.MetricsURL)
	if err != nil {
		return
	}
	mean := func(name string, match func(map[string]string) bool) (float64, float64) {
		var sum, count float64
		for _, f := range []struct {
			fam  families
			sign float64
		}{{after, 1}, {r.mgrB, -1}} {
			for _, s := range f.fam[name+"_sum"] {
				if match(s.labels) {
					sum += f.sign * s.value
				}
			}
			for _, s := range f.fam[name+"_count"] {
				if match(s.labels) {
					count += f.sign * s.value
				}
			}
		}
		if count <= 0 {
			return 0, 0
		}
		return sum / count * 1000, count
	}
	session := func(l map[string]string) bool {
		return l["name"] == "agentsession" || l["controller"] == "agentsession"
	}
	b.QueueWaitMeanMS, _ = mean("workqueue_queue_duration_seconds", session)
	b.ReconcileMeanMS, b.Reconciles = mean("controller_runtime_reconcile_time_seconds", session)
	if binds > 0 {
		b.SessionReconcileMSPerBind = b.ReconcileMeanMS * b.Reconciles / float64(binds)
		pool := func(l map[string]string) bool { return l["controller"] == "agentsandbox" }
		pm, pn := mean("controller_runtime_reconcile_time_seconds", pool)
		b.PoolReconcileMSPerBind = pm * pn / float64(binds)
		b.PoolReconcileP50MS = histogramQuantile(r.mgrB, after, "controller_runtime_reconcile_time_seconds", pool, 0.5) * 1000
		b.PoolReconcileP99MS = histogramQuantile(r.mgrB, after, "controller_runtime_reconcile_time_seconds", pool, 0.99) * 1000
		if _, ok := after["hyperpool_pool_pod_lists_total"]; ok {
			lists := counterDelta(r.mgrB, after, "hyperpool_pool_pod_lists_total") / float64(binds)
			b.PoolPodListsPerBind = &lists
		}
	}
}

// counterDelta is how much a counter (summed over its series) rose between two scrapes.
func counterDelta(before, after families, name string) float64 {
	var d float64
	for _, s := range after[name] {
		d += s.value
	}
	for _, s := range before[name] {
		d -= s.value
	}
	return d
}

// histogramQuantile is the q-quantile of the observations a histogram took between two
// scrapes, interpolated linearly within the bucket it falls in, as PromQL's
// histogram_quantile does. 0 without observations.
func histogramQuantile(before, after families, name string, match func(map[string]string) bool, q float64) float64 {
	counts := map[float64]float64{}
	for _, f := range []struct {
		fam  families
		sign float64
	}{{after, 1}, {before, -1}} {
		for _, s := range f.fam[name+"_bucket"] {
			if !match(s.labels) {
				continue
			}
			le, err := strconv.ParseFloat(s.labels["le"], 64)
			if err != nil {
				continue
			}
			counts[le] += f.sign * s.value
		}
	}
	bounds := slices.Sorted(maps.Keys(counts))
	if len(bounds) == 0 || counts[bounds[len(bounds)-1]] <= 0 {
		return 0
	}
	rank := q * counts[bounds[len(bounds)-1]]
	lower, below := 0.0, 0.0
	for _, le := range bounds {
		if counts[le] >= rank {
			if math.IsInf(le, 1) {
				return lower // above the largest finite bucket: its bound
			}
			if counts[le] == below {
				return le
			}
			return lower + (le-lower)*(rank-below)/(counts[le]-below)
		}
		lower, below = le, counts[le]
	}
	return lower
}

// cpuResults fills res.CPU: each process's CPU per bind (and per inline design-floor
// sample), idle rate taken out.
func (r *run) cpuResults(res *Result, window cpuTimes, windowSec float64) {
	floor, floorSec, floors := cpuTimes{}, 0.0, 0
	if r.design != nil && r.inlineDesign {
		r.design.mu.Lock()
		for _, s := range r.design.samples {
			floor.add(s.CPU)
			floorSec += s.Duration / 1000
			floors++
		}
		r.design.mu.Unlock()
	}
	res.CPU = cpuAccount(window, r.idle, floor, windowSec, floorSec, res.Ready, floors)
}

// bindFloorMarkdown renders the design-floor, breakdown and CPU tables (nothing without them).
func (r *Report) bindFloorMarkdown() string {
	var b strings.Builder
	pair := func(s Stats) string { return f1(s.P50) + " / " + f1(s.P99) }
	head := false
	for _, x := range r.Results {
		d := x.DesignFloor
		if d == nil || d.Total.N == 0 {
			continue
		}
		if !head {
			b.WriteString("\nBind vs design floor (the bind's three writes issued by the benchmark itself, same objects' shape, same run), ms p50 / p99:\n\n")
			b.WriteString("| scenario | bind | design floor (n) | bind ÷ floor p50 | bind ÷ floor p99 | floor: create / pod patch / status patch / watch p50 | bind: create call / to pod labelled / to Ready p50 | mgr session queue wait / reconcile mean (reconciles); reconcile ms per bind by controller | config map floor (loaded) p50 |\n")
			b.WriteString("|---|---|---|---|---|---|---|---|---|\n")
			head = true
		}
		bd := "-"
		mg := "-"
		if x.Breakdown != nil {
			bd = f1(x.Breakdown.CreateCall.P50) + " / " + f1(x.Breakdown.CreatedToPodLabelled.P50) + " / " + f1(x.Breakdown.PodLabelledToReady.P50)
			mg = fmt.Sprintf("%s / %s (%.0f); per bind: session %s, pool %s", f1(x.Breakdown.QueueWaitMeanMS), f1(x.Breakdown.ReconcileMeanMS), x.Breakdown.Reconciles,
				f1(x.Breakdown.SessionReconcileMSPerBind), f1(x.Breakdown.PoolReconcileMSPerBind))
		}
		bind := pair(x.Latency)
		fmt.Fprintf(&b, "| %s | %s | %s (%d) | **%.2fx** | %.2fx | %s / %s / %s / %s | %s | %s | %s |\n", x.Scenario, bind, pair(d.Total), d.Total.N,
			d.RatioP50, d.RatioP99, f1(d.Create.P50), f1(d.PodPatch.P50), f1(d.Status.P50), f1(d.Watch.P50), bd, mg, f1(x.LoadedFloor.P50))
	}
	for _, x := range r.Results {
		if x.DesignFloor == nil || len(x.DesignFloor.ServerMeanMS) == 0 {
			continue
		}
		parts := []string{}
		for _, k := range sortedKeys(x.DesignFloor.ServerMeanMS) {
			parts = append(parts, fmt.Sprintf("%s %.1f", k, x.DesignFloor.ServerMeanMS[k]))
		}
		fmt.Fprintf(&b, "- kube-apiserver mean ms per request, %s: %s\n", x.Scenario, strings.Join(parts, ", "))
	}
	for _, x := range r.Results {
		if z := x.Sizes; z != nil && z.WarmPod > 0 {
			fmt.Fprintf(&b, "- object bytes (JSON, of which managed fields), %s: warm pod %d (%d), bound pod %d (%d), Ready session %d (%d)\n", x.Scenario,
				z.WarmPod, z.WarmPodManagedFields, z.BoundPod, z.BoundPodManagedFields, z.ReadySession, z.ReadySessionManagedFields)
		}
	}
	head = false
	for _, x := range r.Results {
		if len(x.CPU) == 0 || x.Ready == 0 {
			continue
		}
		if !head {
			b.WriteString("\nCPU ms per bind by process (idle rate taken out; inline design-floor samples counted apart):\n\n")
			b.WriteString("| scenario | binds | process | per bind ms | per design floor ms | window CPU s | idle CPU s/s |\n|---|---|---|---|---|---|---|\n")
			head = true
		}
		for _, c := range x.CPU {
			fmt.Fprintf(&b, "| %s | %d | %s | %.1f | %.1f | %.2f | %.3f |\n", x.Scenario, x.Ready, c.Process, c.PerBindMS, c.PerFloorMS, c.WindowSeconds, c.IdlePerSecond)
		}
	}
	return b.String()
}
