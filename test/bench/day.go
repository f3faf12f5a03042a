//go:build !windows

package bench

// The day scenario (issue 16): a day of demand replayed in compressed time against three
// pools in their own namespaces at once, fed the same sessions at the same moments: one
// fixed for the peak, one fixed for the average, one with spec.autoscaling. Each is
// judged by its warm-hit ratio, its time to Ready and the VM memory its warm sandboxes
// held idle.

import (
	"context"
	"encoding/json"
	"fmt"
	"math"
	"math/rand/v2"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"time"

	"k8s.io/apimachinery/pkg/api/resource"
	"sigs.k8s.io/controller-runtime/pkg/client"

	agentsv1alpha1 "github.com/hyperpool/hyperpool/api/v1alpha1"
	"github.com/hyperpool/hyperpool/internal/autoscale"
	"github.com/hyperpool/hyperpool/test/builders"
	"github.com/hyperpool/hyperpool/test/testbed"
)

// simulatedDay is the length of the replayed day.
const simulatedDay = 24 * time.Hour

// DayOptions shape the day. Durations other than Duration are simulated time.
type DayOptions struct {
	// Duration is the real time the day is replayed in (10 minutes: 144 times faster).
	Duration time.Duration
	// Seed makes the trace: the same seed, the same sessions at the same moments.
	Seed uint64
	// Boot is a utility VM's boot, scaled with the day for kwok's pod-ready delay.
	Boot time.Duration
	// Lifetime is the sessions' mean lifetime (exponential, clamped to [2m, 2h]).
	Lifetime time.Duration
	// WarmHitTarget is the autoscaled pool's target, and the target the fixed pools are
	// sized for.
	WarmHitTarget float64
	// ScaleDownDelay is the autoscaled pool's spec.autoscaling.scaleDownDelay.
	ScaleDownDelay time.Duration
	// Overhead is what a refill takes beyond the boot in the test bed, in real time: the
	// pod's creation, scheduling, kwok's start and the watches, under the day's load. The
	// fixed pools are sized with the boot plus this, scaled: the refill time the
	// autoscaler measures (600 ms: the p90 it measured at night in the first 10-minute
	// run was 0.86 to 0.91 s for a 0.31 s boot).
	Overhead time.Duration
}

// DefaultDayOptions is the day: 24 h in 10 min, Hyper-V VMs booting in 45 s.
func DefaultDayOptions() DayOptions {
	return DayOptions{Duration: 10 * time.Minute, Seed: 16, Boot: 45 * time.Second, Lifetime: 20 * time.Minute,
		WarmHitTarget: 0.99, ScaleDownDelay: 5 * time.Minute, Overhead: 600 * time.Millisecond}
}

// speedup is how many times faster than real the day is replayed.
func (o DayOptions) speedup() float64 { return simulatedDay.Seconds() / o.Duration.Seconds() }

// real converts a simulated duration to the replay's.
func (o DayOptions) real(d time.Duration) time.Duration {
	return time.Duration(float64(d) / o.speedup())
}

// DayManagerArgs are the manager flags that put the autoscaler on the replay's clock: its
// bind-rate window and default refill time shrink with the day.
func DayManagerArgs(o DayOptions) []string {
	return []string{"--autoscale-rate-window=" + o.real(time.Minute).String(),
		"--autoscale-default-refill-time=" + o.real(o.Boot).String()}
}

// DayTrace is a day of sessions: when each arrives and how long it lives (simulated).
type DayTrace struct {
	Arrivals  []time.Duration `json:"arrivals"`
	Lifetimes []time.Duration `json:"lifetimes"`
}

// dayBurst is a spell of extra demand over the diurnal curve.
type dayBurst struct {
	at, length time.Duration
	perHour    float64
}

// dayBursts: a mid-morning incident, a post-lunch release, a late-afternoon batch. Their
// start moves by up to ±20 minutes with the seed.
var dayBursts = []dayBurst{
	{10*time.Hour + 30*time.Minute, 20 * time.Minute, 120},
	{14 * time.Hour, 15 * time.Minute, 150},
	{16*time.Hour + 10*time.Minute, 10 * time.Minute, 100},
}

// diurnalRate is the demand curve in sessions per hour at time of day t: a quiet night, a
// morning ramp, business hours with a lunch dip, an evening tail.
func diurnalRate(t time.Duration) float64 {
	h := t.Hours()
	switch {
	case h < 7:
		return 3
	case h < 9:
		return 3 + (h-7)/2*37 // ramp to 40
	case h < 12:
		return 40
	case h < 13:
		return 25
	case h < 17:
		return 45
	case h < 19:
		return 45 - (h-17)/2*37 // down to 8
	case h < 22:
		return 8
	default:
		return 3
	}
}

// DayRate is the trace's demand at t (sessions per simulated hour), bursts included.
func DayRate(t time.Duration, bursts []dayBurst) float64 {
	r := diurnalRate(t)
	for _, b := range bursts {
		if t >= b.at && t < b.at+b.length {
			r += b.perHour
		}
	}
	return r
}

// NewDayTrace draws the day's sessions: a non-homogeneous Poisson process with rate
// DayRate, by thinning, from the seed alone.
func NewDayTrace(o DayOptions) (*DayTrace, []dayBurst) {
	rng := rand.New(rand.NewPCG(o.Seed, 0x16))
	bursts := slices.Clone(dayBursts)
	for i := range bursts {
		bursts[i].at += time.Duration((rng.Float64()*40 - 20) * float64(time.Minute))
	}
	maxRate := 0.0
	for t := time.Duration(0); t < simulatedDay; t += time.Minute {
		maxRate = max(maxRate, DayRate(t, bursts))
	}
	tr := &DayTrace{}
	for t := time.Duration(0); ; {
		t += time.Duration(rng.ExpFloat64() / maxRate * float64(time.Hour))
		if t >= simulatedDay {
			break
		}
		if rng.Float64()*maxRate < DayRate(t, bursts) {
			life := time.Duration(rng.ExpFloat64() * float64(o.Lifetime))
			tr.Arrivals = append(tr.Arrivals, t)
			tr.Lifetimes = append(tr.Lifetimes, min(max(life, 2*time.Minute), 2*time.Hour))
		}
	}
	return tr, bursts
}

// dayPolicy is one of the three pools.
type dayPolicy struct {
	Name     string `json:"name"`
	Replicas int32  `json:"replicas,omitempty"` // fixed pools
	ns       string
}

// DayPolicyResult is what one pool did over the day.
type DayPolicyResult struct {
	Policy    string `json:"policy"`
	Namespace string `json:"namespace"`
	// Replicas is a fixed pool's size (0 for autoscaling).
	Replicas int32 `json:"replicas"`
	Sessions int   `json:"sessions"`
	Warm     int   `json:"warm"`
	Cold     int   `json:"cold"`
	// WarmHitRatio is Warm over the sessions that got a sandbox.
	WarmHitRatio float64 `json:"warmHitRatio"`
	// ReadyMS: session created to seen Ready, in real milliseconds of the replay.
	ReadyMS Stats `json:"readyMs"`
	// IdleGBHours: the warm (unbound) sandboxes' VM memory integrated over the simulated day.
	IdleGBHours float64 `json:"idleGbHours"`
	PeakWarm    int     `json:"peakWarm"`
	// Warmth and ColdPerHour: the warm pods over the day (one sample per simulated
	// minute) and the cold starts per simulated hour, for the plot.
	Warmth      []int `json:"warmth"`
	ColdPerHour []int `json:"coldPerHour"`
}

// DayReport is the day scenario's own report: the trace, the three pools, the verdict.
type DayReport struct {
	Options     DayOptions        `json:"options"`
	Sessions    int               `json:"sessions"`
	VMMemoryGiB float64           `json:"vmMemoryGiB"`
	ArrivalsPH  []int             `json:"arrivalsPerHour"`
	Policies    []DayPolicyResult `json:"policies"`
	// SizingRefill is the refill time the fixed pools were sized with.
	SizingRefill time.Duration `json:"sizingRefill"`
	// Autoscaler is the autoscaled pool's status.autoscaling, once per simulated 10 minutes.
	Autoscaler []AutoscalerSample `json:"autoscaler"`
	Notes      []string           `json:"notes,omitempty"`
}

// AutoscalerSample is the autoscaled pool's model inputs and decision at a moment.
type AutoscalerSample struct {
	At          time.Duration `json:"at"` // simulated
	BindRate    float64       `json:"bindRate"`
	RefillMS    float64       `json:"refillMs"` // real
	Queued      int32         `json:"queued"`
	Need        int32         `json:"need"`
	Recommended int32         `json:"recommended"`
	Limit       string        `json:"limit"`
}

// Day runs the day scenario and returns the autoscaled pool as the scenario's Result (the
// others are in its notes and in the DayReport).
func (h *Harness) Day(ctx context.Context, o DayOptions) (*Result, *DayReport, error) {
	trace, bursts := NewDayTrace(o)
	rep := &DayReport{Options: o, Sessions: len(trace.Arrivals), ArrivalsPH: make([]int, 24)}
	for _, a := range trace.Arrivals {
		rep.ArrivalsPH[int(a.Hours())]++
	}
	// The fixed pools are sized with the model the autoscaler uses, for the busiest and
	// for the average hour of the trace, and the refill the autoscaler sees: the boot plus
	// the test bed's overhead, scaled.
	rep.SizingRefill = o.Boot + time.Duration(float64(o.Overhead)*o.speedup())
	peak := 0.0
	for t := time.Duration(0); t < simulatedDay; t += time.Minute {
		peak = max(peak, DayRate(t, bursts))
	}
	mean := float64(len(trace.Arrivals)) / simulatedDay.Hours()
	size := func(perHour float64) int32 {
		return int32(autoscale.WarmNeeded(perHour/3600*rep.SizingRefill.Seconds(), o.WarmHitTarget))
	}
	policies := []*dayPolicy{{Name: "fixed-peak", Replicas: size(peak)}, {Name: "fixed-average", Replicas: size(mean)}, {Name: "autoscaling"}}
	h.logf("day: %d sessions over 24 h in %s (%.0fx); fixed-peak %d (%.0f/h), fixed-average %d (%.1f/h)",
		len(trace.Arrivals), o.Duration, o.speedup(), policies[0].Replicas, peak, policies[1].Replicas, mean)

	for _, p := range policies {
		ns, err := h.newNamespace(ctx, "day-"+p.Name)
		if err != nil {
			return nil, nil, err
		}
		p.ns = ns
		sb := builders.AgentSandbox(ns, poolName).NoMemoryLimit().TemplateAnnotation(testbed.PodReadyDelayAnnotation, fmt.Sprint(o.real(o.Boot).Milliseconds()))
		if p.Replicas > 0 {
			sb.Replicas(p.Replicas)
		} else {
			sb.Autoscaling(1, 4*policies[0].Replicas, o.real(o.ScaleDownDelay))
			sb.Spec.Autoscaling.WarmHitTarget = fmt.Sprint(o.WarmHitTarget)
		}
		if err := h.Client.Create(ctx, sb.Obj()); err != nil {
			return nil, nil, err
		}
	}
	for _, p := range policies[:2] {
		if err := h.waitPoolFull(ctx, p.ns, poolName, int(p.Replicas), time.Minute); err != nil {
			return nil, nil, err
		}
	}
	if err := h.dayVMMemory(ctx, policies[0].ns, rep); err != nil {
		return nil, nil, err
	}

	h.logf("day: replaying")
	began := time.Now()
	sampler := h.sampleWarm(policies, o, began)
	stopAutoscaler := h.sampleAutoscaler(policies[2].ns, o, began, rep)
	starts := h.replayDay(ctx, trace, policies, o, began)
	samples := sampler()
	stopAutoscaler()
	// The day is over: the last sessions get their sandboxes.
	names := make([]string, 0, len(starts))
	for k := range starts {
		names = append(names, k)
	}
	wctx, cancel := context.WithTimeout(ctx, 2*time.Minute)
	_ = h.track.WaitUntil(wctx, func() bool {
		for _, k := range names {
			s := h.track.sessions[k]
			if s == nil || (s.readyAt.IsZero() && s.finishedAt.IsZero()) {
				return false
			}
		}
		return true
	})
	cancel()

	for i, p := range policies {
		rep.Policies = append(rep.Policies, h.dayPolicyResult(p, samples, i, starts, trace, rep.VMMemoryGiB))
	}
	peakIdle := rep.Policies[0].IdleGBHours
	auto := rep.Policies[2]
	rep.Notes = append(rep.Notes, fmt.Sprintf("autoscaling: %.2f%% warm (target %.0f%%), idle %.1f GB-h = %.0f%% of fixed-peak's %.1f (target <= 40%%)",
		100*auto.WarmHitRatio, 100*o.WarmHitTarget, auto.IdleGBHours, 100*auto.IdleGBHours/math.Max(peakIdle, 1e-9), peakIdle))

	res := &Result{Scenario: "day", Namespace: policies[2].ns, Sessions: auto.Sessions, Warm: auto.Warm, Cold: auto.Cold,
		Bound: auto.Warm + auto.Cold, Ready: auto.Warm + auto.Cold, Latency: auto.ReadyMS,
		Params: fmt.Sprintf("24 h in %s, %d sessions, boot %s", o.Duration, len(trace.Arrivals), o.Boot), DurationSeconds: time.Since(began).Seconds()}
	for _, x := range rep.Policies {
		res.Notes = append(res.Notes, fmt.Sprintf("%s (%s): %.2f%% warm (%d/%d), Ready p50 %.0f ms p99 %.0f ms, idle %.1f GB-h, peak warm %d",
			x.Policy, sizeOf(x), 100*x.WarmHitRatio, x.Warm, x.Warm+x.Cold, x.ReadyMS.P50, x.ReadyMS.P99, x.IdleGBHours, x.PeakWarm))
	}
	res.Notes = append(res.Notes, rep.Notes...)
	for _, p := range policies[:2] {
		if err := h.DeleteNamespace(ctx, p.ns, 2*time.Minute); err != nil {
			h.logf("namespace %s not gone yet: %v", p.ns, err)
		}
	}
	return res, rep, nil
}

func sizeOf(x DayPolicyResult) string {
	if x.Replicas > 0 {
		return fmt.Sprintf("%d warm", x.Replicas)
	}
	return "spec.autoscaling"
}

// dayVMMemory reads the VM memory of one sandbox from the class's status.
func (h *Harness) dayVMMemory(ctx context.Context, ns string, rep *DayReport) error {
	sb := &agentsv1alpha1.AgentSandbox{}
	if err := h.Client.Get(ctx, client.ObjectKey{Namespace: ns, Name: poolName}, sb); err != nil {
		return err
	}
	mem := resource.MustParse("1Gi")
	if sb.Status.Footprint != nil {
		mem = sb.Status.Footprint.PerSandbox.Memory
	}
	rep.VMMemoryGiB = float64(mem.Value()) / (1 << 30)
	return nil
}

// replayDay creates each session of the trace at its moment, in every policy's namespace,
// and returns when each create call started (by ns/name). The sleeps pace the trace; they
// synchronise nothing.
func (h *Harness) replayDay(ctx context.Context, trace *DayTrace, policies []*dayPolicy, o DayOptions, began time.Time) map[string]time.Time {
	var mu sync.Mutex
	starts := map[string]time.Time{}
	var wg sync.WaitGroup
	for i, at := range trace.Arrivals {
		if d := time.Until(began.Add(o.real(at))); d > 0 {
			select {
			case <-ctx.Done():
				return starts
			case <-time.After(d):
			}
		}
		for _, p := range policies {
			name := fmt.Sprintf("s-%05d", i)
			s := builders.AgentSession(p.ns, name, poolName).MaxLifetime(o.real(trace.Lifetimes[i])).TTLAfterFinished(30 * time.Second).Obj()
			wg.Go(func() {
				start := time.Now()
				if err := h.Client.Create(ctx, s); err != nil {
					h.logf("day: creating %s/%s: %v", p.ns, name, err)
					return
				}
				mu.Lock()
				starts[key(p.ns, name)] = start
				mu.Unlock()
			})
		}
	}
	if d := time.Until(began.Add(o.Duration)); d > 0 {
		select {
		case <-ctx.Done():
		case <-time.After(d):
		}
	}
	wg.Wait()
	return starts
}

// warmSample is the idle (unbound, live) pods of each policy at one moment of the day.
type warmSample struct {
	at   time.Duration // simulated
	warm []int
}

// sampleWarm samples each pool's idle pods, Ready or booting (a booting VM holds its
// memory too), every simulated minute until the returned function is called; that
// function returns the samples.
func (h *Harness) sampleWarm(policies []*dayPolicy, o DayOptions, began time.Time) func() []warmSample {
	ctx, cancel := context.WithCancel(context.Background())
	var samples []warmSample
	done := make(chan struct{})
	go func() {
		defer close(done)
		t := time.NewTicker(o.real(time.Minute))
		defer t.Stop()
		for {
			s := warmSample{at: time.Duration(float64(time.Since(began)) * o.speedup()), warm: make([]int, len(policies))}
			h.track.Lock()
			for _, p := range h.track.pods {
				if p.live && len(p.sessions) == 0 && p.sandbox == poolName && p.generateName == poolName+"-" {
					for i, pol := range policies {
						if p.ns == pol.ns {
							s.warm[i]++
						}
					}
				}
			}
			h.track.Unlock()
			samples = append(samples, s)
			select {
			case <-ctx.Done():
				return
			case <-t.C:
			}
		}
	}()
	return func() []warmSample { cancel(); <-done; return samples }
}

// dayPolicyResult computes one policy's figures from the watch and the samples.
func (h *Harness) dayPolicyResult(p *dayPolicy, samples []warmSample, i int, starts map[string]time.Time, trace *DayTrace, vmGiB float64) DayPolicyResult {
	x := DayPolicyResult{Policy: p.Name, Namespace: p.ns, Replicas: p.Replicas, ColdPerHour: make([]int, 24)}
	var ready []float64
	h.track.Lock()
	for j, at := range trace.Arrivals {
		k := key(p.ns, fmt.Sprintf("s-%05d", j))
		start, ok := starts[k]
		if !ok {
			continue
		}
		x.Sessions++
		s := h.track.sessions[k]
		if s == nil {
			continue
		}
		switch s.startType {
		case string(agentsv1alpha1.StartWarm):
			x.Warm++
		case string(agentsv1alpha1.StartCold):
			x.Cold++
			x.ColdPerHour[int(at.Hours())]++
		}
		if !s.readyAt.IsZero() {
			ready = append(ready, ms(s.readyAt.Sub(start)))
		}
	}
	h.track.Unlock()
	if x.Warm+x.Cold > 0 {
		x.WarmHitRatio = float64(x.Warm) / float64(x.Warm+x.Cold)
	}
	x.ReadyMS = percentiles(ready)
	// Idle memory: each sample holds until the next (a simulated minute).
	for j, s := range samples {
		x.PeakWarm = max(x.PeakWarm, s.warm[i])
		x.Warmth = append(x.Warmth, s.warm[i])
		if j+1 < len(samples) {
			x.IdleGBHours += float64(s.warm[i]) * vmGiB * (samples[j+1].at - s.at).Hours()
		}
	}
	return x
}

// Markdown renders the day's comparison.
func (r *DayReport) Markdown() string {
	var b strings.Builder
	fmt.Fprintf(&b, "Day: %d sessions over a simulated 24 h replayed in %s (%.0fx), VM boot %s (%s real), mean session %s, VM %.1f GiB; fixed pools sized for %.0f%% warm with a refill of %s.\n\n",
		r.Sessions, r.Options.Duration, r.Options.speedup(), r.Options.Boot, r.Options.real(r.Options.Boot), r.Options.Lifetime, r.VMMemoryGiB, 100*r.Options.WarmHitTarget, r.SizingRefill)
	b.WriteString("| policy | pool | sessions | warm-hit ratio | Ready p50 / p99 (real ms) | idle VM GB-hours | vs fixed-peak | peak warm |\n|---|---|---|---|---|---|---|---|\n")
	peak := r.Policies[0].IdleGBHours
	for _, x := range r.Policies {
		fmt.Fprintf(&b, "| %s | %s | %d | %.2f%% (%d/%d) | %.0f / %.0f | %.1f | %.0f%% | %d |\n", x.Policy, sizeOf(x), x.Sessions,
			100*x.WarmHitRatio, x.Warm, x.Warm+x.Cold, x.ReadyMS.P50, x.ReadyMS.P99, x.IdleGBHours, 100*x.IdleGBHours/math.Max(peak, 1e-9), x.PeakWarm)
	}
	for _, n := range r.Notes {
		fmt.Fprintf(&b, "\n- %s", n)
	}
	b.WriteString("\n")
	return b.String()
}

// Write stores day.json, day.md and day.png in dir.
func (r *DayReport) Write(dir string) error {
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return err
	}
	j, err := json.MarshalIndent(r, "", "  ")
	if err != nil {
		return err
	}
	if err := os.WriteFile(filepath.Join(dir, "day.json"), j, 0o644); err != nil {
		return err
	}
	if err := os.WriteFile(filepath.Join(dir, "day.md"), []byte(r.Markdown()), 0o644); err != nil {
		return err
	}
	f, err := os.Create(filepath.Join(dir, "day.png"))
	if err != nil {
		return err
	}
	defer f.Close()
	return r.WritePlot(f)
}

// sampleAutoscaler records the autoscaled pool's status.autoscaling every simulated 10
// minutes until the returned function is called.
func (h *Harness) sampleAutoscaler(ns string, o DayOptions, began time.Time, rep *DayReport) func() {
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() {
		defer close(done)
		t := time.NewTicker(o.real(10 * time.Minute))
		defer t.Stop()
		for {
			sb := &agentsv1alpha1.AgentSandbox{}
			if err := h.Client.Get(ctx, client.ObjectKey{Namespace: ns, Name: poolName}, sb); err == nil && sb.Status.Autoscaling != nil {
				a := sb.Status.Autoscaling
				rep.Autoscaler = append(rep.Autoscaler, AutoscalerSample{At: time.Duration(float64(time.Since(began)) * o.speedup()),
					BindRate: a.BindRate.AsApproximateFloat64(), RefillMS: ms(a.RefillTime.Duration), Queued: a.QueuedSessions,
					Need: a.NeedReplicas, Recommended: a.RecommendedReplicas, Limit: string(a.Limit)})
			}
			select {
			case <-ctx.Done():
				return
			case <-t.C:
			}
		}
	}()
	return func() { cancel(); <-done }
}
