//go:build !windows

package bench

import (
	"context"
	"fmt"
	"math/rand/v2"
	"sync"
	"sync/atomic"
	"time"

	corev1 "k8s.io/api/core/v1"
	eventsv1 "k8s.io/api/events/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"

	agentsv1alpha1 "github.com/hyperpool/hyperpool/api/v1alpha1"
	"github.com/hyperpool/hyperpool/controllers"
	"github.com/hyperpool/hyperpool/test/builders"
	"github.com/hyperpool/hyperpool/test/testbed"
)

// poolName is the AgentSandbox every scenario creates in its own namespace.
const poolName = "pool"

// run is one scenario in its namespace: the sessions it created and when.
type run struct {
	h      *Harness
	ns     string
	pool   int
	boot   time.Duration
	mu     sync.Mutex
	starts map[string]time.Time
	lives  map[string]time.Duration
	order  []string
	errs   atomic.Int64
	floor  []float64
	// loadedFloor is the same round trip measured while the scenario runs (see begin).
	loadedFloor     []float64
	stopLoadedFloor func()
	apiB            families
	smp             *sampler
	began           time.Time
	// created: when each session's create call returned.
	created map[string]time.Time
	// design is the scenario's design floor (warm scenarios); inlineDesign: its samples are
	// interleaved with the binds, each from a quiet system (serial, paced: interleave),
	// else taken every loadedFloorInterval next to them.
	design       *designFloor
	inlineDesign bool
	// probeWrites: after the window, measure what each of the bind's writes costs on its
	// own (writecost.go).
	probeWrites bool
	// procs, idle and cpuStart: the processes' CPU, their idle rate before the window, and
	// their CPU when it opened.
	procs    *processes
	sizes    ObjectSizes
	idle     cpuTimes
	cpuStart cpuTimes
	mgrB     families
}

// setup creates the namespace, measures the floor, creates the pool and waits until it is full.
func (h *Harness) setup(ctx context.Context, scenario string, pool, floorN int, boot time.Duration) (*run, error) {
	ns, err := h.newNamespace(ctx, scenario)
	if err != nil {
		return nil, err
	}
	r := &run{h: h, ns: ns, pool: pool, boot: boot, starts: map[string]time.Time{}, lives: map[string]time.Duration{}, created: map[string]time.Time{}}
	if r.floor, err = h.Floor(ctx, ns, floorN); err != nil {
		return nil, err
	}
	// The template has no memory limit: each VM takes hcsshim's default size.
	sb := builders.AgentSandbox(ns, poolName).Replicas(int32(pool)).NoMemoryLimit()
	if boot > 0 { // a simulated utility VM boot: kwok's per-pod ready delay
		sb.TemplateAnnotation(testbed.PodReadyDelayAnnotation, fmt.Sprint(boot.Milliseconds()))
	}
	if h.ReplenishQuietPeriod > 0 {
		sb.Spec.Replenish = agentsv1alpha1.ReplenishSpec{QuietPeriod: builders.Duration(h.ReplenishQuietPeriod), MinReady: h.ReplenishMinReady}
	}
	if err := h.Client.Create(ctx, sb.Obj()); err != nil {
		return nil, err
	}
	if pool > 0 {
		h.logf("%s: waiting for a pool of %d", scenario, pool)
		if err := h.waitPoolFull(ctx, ns, poolName, pool, 60*time.Second+time.Duration(pool)*200*time.Millisecond+boot); err != nil {
			return nil, err
		}
		if err := r.prepareDesignFloor(ctx); err != nil {
			return nil, err
		}
	}
	r.procs = h.processes()
	if h.IdleWindow > 0 {
		r.idle = r.procs.idleRate(h.IdleWindow)
	}
	return r, nil
}

// begin opens the measurement window: API server counters and the manager's sampler.
func (r *run) begin() error {
	f, err := scrape(r.h.apiHTTP, r.h.apiMetricsURL())
	if err != nil {
		return err
	}
	r.apiB = f
	if r.h.Manager != nil {
		r.smp = r.h.Manager.startSampler()
		r.mgrB, _ = scrape(r.h.apiHTTP, r.h.Manager.MetricsURL) // the breakdown's means; none without
	}
	r.cpuStart = r.procs.read()
	r.began = time.Now()
	r.startLoadedFloor()
	return nil
}

// loadedFloorInterval paces the round trips measured during a scenario: a light load
// (config maps of no content) next to the sessions.
const loadedFloorInterval = 250 * time.Millisecond

// startLoadedFloor measures the floor again while the scenario runs, one round trip every
// loadedFloorInterval, until finish: how fast the API server answers a trivial write under
// the scenario's load (the pool's refills, the scheduler, kwok), next to the idle floor
// measured before. Not in the interleaved scenarios: there every bind and every floor
// sample starts from a quiet system, which a ticker would break.
func (r *run) startLoadedFloor() {
	if r.inlineDesign {
		r.stopLoadedFloor = func() {}
		return
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	r.stopLoadedFloor = func() { cancel(); <-done }
	go func() {
		defer close(done)
		t := time.NewTicker(loadedFloorInterval)
		defer t.Stop()
		for i := 0; ; i++ {
			select {
			case <-ctx.Done():
				return
			case <-t.C:
			}
			d, err := r.h.roundTrip(ctx, r.ns, fmt.Sprintf("loaded-floor-%d", i))
			if err == nil { // else cancelled at the end, or a slow moment: not a sample
				r.mu.Lock()
				r.loadedFloor = append(r.loadedFloor, d)
				r.mu.Unlock()
			}
			if !r.inlineDesign {
				r.designSample(ctx)
			}
		}
	}()
}

// Floor creates n ConfigMaps one at a time and returns, in ms, how long after each create
// call started the benchmark's watch saw it: one write-and-watch round trip.
func (h *Harness) Floor(ctx context.Context, ns string, n int) ([]float64, error) {
	out := make([]float64, 0, n)
	for i := range n {
		d, err := h.roundTrip(ctx, ns, fmt.Sprintf("floor-%d", i))
		if err != nil {
			return nil, err
		}
		out = append(out, d)
	}
	return out, nil
}

// roundTrip creates ConfigMap name and returns, in ms, how long after the create call
// started the benchmark's watch saw it.
func (h *Harness) roundTrip(ctx context.Context, ns, name string) (float64, error) {
	start := time.Now()
	if err := h.Client.Create(ctx, &corev1.ConfigMap{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: name}}); err != nil {
		return 0, err
	}
	wctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	var seen time.Time
	err := h.track.WaitUntil(wctx, func() bool { seen = h.track.cms[key(ns, name)]; return !seen.IsZero() })
	if err != nil {
		return 0, fmt.Errorf("floor: config map %s not seen: %w", name, err)
	}
	return ms(seen.Sub(start)), nil
}

func ms(d time.Duration) float64 { return float64(d) / float64(time.Millisecond) }

// create creates session name (maxLifetime 0: the class's) and records when the call started.
// createPaced creates n sessions s-00000, s-00001, ... at rate per second (an open-loop
// load: the schedule does not wait for binds), with maxLifetime lifetime(i) (0: the class's),
// and returns once every create call has returned. The sleeps pace the offered load; they
// synchronise nothing.
func (r *run) createPaced(ctx context.Context, n int, rate float64, lifetime func(i int) time.Duration) {
	interval := time.Duration(float64(time.Second) / rate)
	begin := time.Now()
	var wg sync.WaitGroup
	for i := range n {
		if d := time.Until(begin.Add(time.Duration(i) * interval)); d > 0 {
			time.Sleep(d)
		}
		wg.Go(func() { _ = r.create(ctx, fmt.Sprintf("s-%05d", i), lifetime(i)) })
	}
	wg.Wait()
}

func (r *run) create(ctx context.Context, name string, lifetime time.Duration) error {
	start := time.Now()
	s := builders.AgentSession(r.ns, name, poolName)
	if lifetime > 0 {
		s.MaxLifetime(lifetime)
	}
	err := r.h.Client.Create(ctx, s.Obj())
	returned := time.Now()
	r.mu.Lock()
	r.starts[name], r.lives[name], r.created[name] = start, lifetime, returned
	r.order = append(r.order, name)
	r.mu.Unlock()
	if err != nil {
		r.errs.Add(1)
	}
	return err
}

// waitReady waits until the watch has seen session name Ready with a pod.
func (r *run) waitReady(ctx context.Context, name string, timeout time.Duration) error {
	wctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	k := key(r.ns, name)
	return r.h.track.WaitUntil(wctx, func() bool {
		s := r.h.track.sessions[k]
		return s != nil && (!s.readyAt.IsZero() || !s.finishedAt.IsZero())
	})
}

// waitAll waits until every session created so far is Ready (or finished, with finished).
func (r *run) waitAll(ctx context.Context, timeout time.Duration, finished bool) error {
	r.mu.Lock()
	names := append([]string(nil), r.order...)
	r.mu.Unlock()
	wctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	missing := 0
	err := r.h.track.WaitUntil(wctx, func() bool {
		// Each check drops the sessions that got there: at 10,000 sessions a full scan per
		// watch event would cost the benchmark more CPU than the manager it measures.
		waiting := names[:0]
		for _, n := range names {
			s := r.h.track.sessions[key(r.ns, n)]
			if s == nil || (finished && s.finishedAt.IsZero()) || (!finished && s.readyAt.IsZero()) {
				waiting = append(waiting, n)
			}
		}
		names = waiting
		missing = len(names)
		return missing == 0
	})
	if err != nil {
		what := "Ready"
		if finished {
			what = "finished"
		}
		return fmt.Errorf("%d of %d sessions not %s within %s", missing, len(names), what, timeout)
	}
	return nil
}

// finish waits for the pool to refill, closes the window and fills in res.
func (r *run) finish(ctx context.Context, res *Result, refillTimeout time.Duration) error {
	r.stopLoadedFloor()
	var refillErr error
	if r.pool > 0 {
		refillErr = r.h.waitPoolFull(ctx, r.ns, poolName, r.pool, refillTimeout)
	}
	time.Sleep(time.Second) // let trailing status writes and events land before counting
	cpuWindow := r.procs.read().sub(r.cpuStart)
	windowSec := time.Since(r.began).Seconds()
	after, err := scrape(r.h.apiHTTP, r.h.apiMetricsURL())
	if err != nil {
		return err
	}
	res.Writes = classifyWrites(r.apiB, after)
	r.designResults(res, after)
	if r.pool > 0 {
		r.measureBound(ctx)
		res.Sizes = &r.sizes
	}
	defer func() { r.cpuResults(res, cpuWindow, windowSec) }()
	if err := r.countOperatorEvents(ctx, &res.Writes); err != nil {
		return err
	}
	if r.smp != nil {
		res.PeakRSSMiB, res.CPUSeconds = r.smp.finish()
	}
	res.Namespace = r.ns
	res.Pool = r.pool
	res.Floor = percentiles(r.floor)
	res.FloorSamplesMS = r.floor
	res.LoadedFloor = percentiles(r.loadedFloor)
	res.CreateErrors = int(r.errs.Load())

	r.h.track.Lock()
	podOwner := map[string]string{}
	var lat, toPod []float64
	var parts struct{ create, toPod, toReady []float64 }
	var first, last time.Time
	for _, name := range r.order {
		res.Sessions++
		s := r.h.track.sessions[key(r.ns, name)]
		if s == nil {
			continue
		}
		if len(s.podNames) > 1 {
			res.Rebinds++
		}
		for _, p := range s.podNames {
			if o, ok := podOwner[p]; ok && o != name {
				res.DoubleBinds++
			}
			podOwner[p] = name
		}
		if len(s.podNames) > 0 {
			res.Bound++
			if s.startType == "Cold" {
				res.Cold++
			} else {
				res.Warm++
			}
		}
		if s.readyAt.IsZero() {
			continue
		}
		res.Ready++
		start := r.starts[name]
		lat = append(lat, ms(s.readyAt.Sub(start)-r.boot))
		pb, labelled := r.h.track.podBound[key(r.ns, name)]
		if labelled {
			toPod = append(toPod, ms(pb.Sub(start)))
		}
		if c, ok := r.created[name]; ok && labelled && r.boot == 0 {
			parts.create = append(parts.create, ms(c.Sub(start)))
			parts.toPod = append(parts.toPod, ms(pb.Sub(c)))
			parts.toReady = append(parts.toReady, ms(s.readyAt.Sub(pb)))
		}
		if first.IsZero() || start.Before(first) {
			first = start
		}
		if s.readyAt.After(last) {
			last = s.readyAt
		}
	}
	r.h.track.Unlock()
	warmCreated, coldCreated, dbl := r.h.track.podCounts(r.ns, poolName)
	res.DoubleBinds += dbl
	res.PodsCreated = warmCreated + coldCreated
	res.PodsNeeded = r.pool + res.Warm + res.Cold
	res.OverCreated = res.PodsCreated - res.PodsNeeded
	res.Latency = percentiles(lat)
	res.LatenciesMS = lat
	res.PodLabelled = percentiles(toPod)
	if len(parts.create) > 0 {
		res.Breakdown = &BindBreakdown{CreateCall: percentiles(parts.create), CreatedToPodLabelled: percentiles(parts.toPod),
			PodLabelledToReady: percentiles(parts.toReady)}
		r.managerMeans(res.Breakdown, res.Ready)
	}
	if d := res.DesignFloor; d != nil && d.Total.P50 > 0 && res.Latency.N > 0 {
		d.RatioP50, d.RatioP99 = res.Latency.P50/d.Total.P50, res.Latency.P99/d.Total.P99
		d.GapP50MS, d.GapP99MS = res.Latency.P50-d.Total.P50, res.Latency.P99-d.Total.P99
	}
	if res.Floor.P50 > 0 {
		res.Ratio = res.Latency.P50 / res.Floor.P50
	}
	if res.Bound > 0 {
		res.CriticalPerBind = res.Writes.Critical / float64(res.Bound)
		res.TotalPerBind = res.Writes.Operator / float64(res.Bound)
		res.TotalNoEventsPerBind = res.Writes.OperatorNoEvents / float64(res.Bound)
		if span := last.Sub(first).Seconds(); span > 0 {
			res.BindsPerSecond = float64(res.Ready) / span
		}
	}
	res.DurationSeconds = time.Since(r.began).Seconds()
	if refillErr != nil {
		res.Notes = append(res.Notes, "pool did not refill: "+refillErr.Error())
	}
	if r.probeWrites {
		if res.WriteCosts, err = r.probeWriteCosts(ctx, r.idle); err != nil {
			res.Notes = append(res.Notes, err.Error())
		}
	}
	return nil
}

// countOperatorEvents adds the Events hyperpool reported in the scenario's namespace (each
// occurrence of a series counts: every one was a write) to w.
func (r *run) countOperatorEvents(ctx context.Context, w *Writes) error {
	list := &eventsv1.EventList{}
	if err := r.h.Client.List(ctx, list, client.InNamespace(r.ns)); err != nil {
		return fmt.Errorf("listing events of %s: %w", r.ns, err)
	}
	for _, e := range list.Items {
		if e.ReportingController != controllers.SandboxEventSource && e.ReportingController != controllers.SessionEventSource {
			continue
		}
		n := 1.0
		if e.Series != nil {
			n = float64(e.Series.Count)
		}
		w.OperatorEvents += n
		w.Operator += n
	}
	return nil
}

// interleave runs sessions binds and floorN design-floor samples one at a time, in an order
// shuffled from seed, each starting from a quiet system: the pool full and its status
// written, the previous bind's replacement pod Ready, no ticker. Binds and floor samples
// then meet the same API server in the same state, so the floor is a lower bound a bind
// can be held to. With every, each starts at least every apart (paced).
func (r *run) interleave(ctx context.Context, sessions, floorN int, every time.Duration, seed uint64) error {
	order := make([]bool, 0, sessions+floorN) // true: a bind
	for i := range sessions + floorN {
		order = append(order, i < sessions)
	}
	rng := rand.New(rand.NewPCG(seed, uint64(sessions)))
	rng.Shuffle(len(order), func(i, j int) { order[i], order[j] = order[j], order[i] })
	next, bound := time.Now(), 0
	for _, isBind := range order {
		if err := r.h.waitPoolFull(ctx, r.ns, poolName, r.pool, 30*time.Second); err != nil {
			return fmt.Errorf("not quiet before the next sample: %w", err)
		}
		// The pacing is a schedule (the offered load), it synchronises nothing.
		time.Sleep(time.Until(next))
		next = time.Now().Add(every)
		if !isBind {
			r.designSample(ctx)
			continue
		}
		name := fmt.Sprintf("s-%04d", bound)
		bound++
		if err := r.create(ctx, name, 0); err != nil {
			return err
		}
		if err := r.waitReady(ctx, name, 30*time.Second); err != nil {
			return fmt.Errorf("session %s not Ready: %w", name, err)
		}
	}
	return nil
}

// createOneAtATime creates sessions s-0000, s-0001, ... each once the previous one was seen
// Ready (within timeout).
func (r *run) createOneAtATime(ctx context.Context, n int, timeout time.Duration) error {
	for i := range n {
		name := fmt.Sprintf("s-%04d", i)
		if err := r.create(ctx, name, 0); err != nil {
			return err
		}
		if err := r.waitReady(ctx, name, timeout); err != nil {
			return fmt.Errorf("session %s not Ready: %w", name, err)
		}
	}
	return nil
}

// Serial binds sessions one at a time against a warm pool of pool, interleaved with floorN
// design-floor samples, each once the previous one is over and the system quiet.
func (h *Harness) Serial(ctx context.Context, sessions, pool, floorN int) (*Result, error) {
	res := &Result{Scenario: "serial", Params: fmt.Sprintf("%d sessions one at a time, pool %d, %d floor samples interleaved", sessions, pool, floorN)}
	r, err := h.setup(ctx, "serial", pool, floorN, 0)
	if err != nil {
		return nil, err
	}
	r.inlineDesign = true
	if err := r.begin(); err != nil {
		return nil, err
	}
	if err := r.interleave(ctx, sessions, floorN, 0, 18); err != nil {
		return nil, fmt.Errorf("serial: %w", err)
	}
	return res, r.finish(ctx, res, 2*time.Minute)
}

// Paced is serial at most one bind or floor sample every interval: the manager's timers and
// background work between binds, next to serial's back-to-back binds.
func (h *Harness) Paced(ctx context.Context, sessions, pool, floorN int, interval time.Duration) (*Result, error) {
	res := &Result{Scenario: "paced", Params: fmt.Sprintf("%d sessions, one at most every %s, pool %d, %d floor samples interleaved", sessions, interval, pool, floorN)}
	r, err := h.setup(ctx, "paced", pool, floorN, 0)
	if err != nil {
		return nil, err
	}
	r.inlineDesign, r.probeWrites = true, true
	if err := r.begin(); err != nil {
		return nil, err
	}
	if err := r.interleave(ctx, sessions, floorN, interval, 19); err != nil {
		return nil, fmt.Errorf("paced: %w", err)
	}
	return res, r.finish(ctx, res, 2*time.Minute)
}

// PoolSize binds sessions at rate per second (open loop) against a warm pool of pool, for
// the manager's CPU per bind as a function of the pool's size: a bind that copies or ranks
// the whole pool costs more with every pod the pool keeps.
func (h *Harness) PoolSize(ctx context.Context, sessions int, rate float64, pool, floorN int) (*Result, error) {
	// At most ~50 pool pods a node, well inside the simulated nodes' 250 pods and /24.
	if err := h.EnsureNodes(ctx, (pool+sessions)/50+1); err != nil {
		return nil, err
	}
	return h.openLoop(ctx, fmt.Sprintf("pool%d", pool), sessions, rate, pool, floorN)
}

// Burst creates sessions at rate per second (open loop) against a warm pool of pool.
func (h *Harness) Burst(ctx context.Context, sessions int, rate float64, pool, floorN int) (*Result, error) {
	return h.openLoop(ctx, "burst", sessions, rate, pool, floorN)
}

// openLoop is the scenario name creating sessions at rate per second, whether or not the
// earlier ones are Ready yet, against a warm pool of pool.
func (h *Harness) openLoop(ctx context.Context, name string, sessions int, rate float64, pool, floorN int) (*Result, error) {
	res := &Result{Scenario: name, Params: fmt.Sprintf("%d sessions at %g/s, pool %d", sessions, rate, pool)}
	r, err := h.setup(ctx, name, pool, floorN, 0)
	if err != nil {
		return nil, err
	}
	if err := r.begin(); err != nil {
		return nil, err
	}
	r.createPaced(ctx, sessions, rate, func(int) time.Duration { return 0 })
	if err := r.waitAll(ctx, 2*time.Minute, false); err != nil {
		res.Notes = append(res.Notes, err.Error())
	}
	return res, r.finish(ctx, res, 3*time.Minute)
}

// Throughput runs workers closed loops (create, wait Ready, repeat) for duration or until
// maxSessions were created, against a warm pool of pool.
func (h *Harness) Throughput(ctx context.Context, duration time.Duration, workers, maxSessions, pool, floorN int) (*Result, error) {
	res := &Result{Scenario: "throughput", Params: fmt.Sprintf("%d workers for %s (at most %d sessions), pool %d", workers, duration, maxSessions, pool)}
	r, err := h.setup(ctx, "throughput", pool, floorN, 0)
	if err != nil {
		return nil, err
	}
	if err := r.begin(); err != nil {
		return nil, err
	}
	deadline := time.Now().Add(duration)
	var next atomic.Int64
	var wg sync.WaitGroup
	for range workers {
		wg.Go(func() {
			for time.Now().Before(deadline) {
				i := int(next.Add(1) - 1)
				if i >= maxSessions {
					return
				}
				name := fmt.Sprintf("s-%05d", i)
				if r.create(ctx, name, 0) != nil {
					continue
				}
				_ = r.waitReady(ctx, name, 30*time.Second)
			}
		})
	}
	wg.Wait()
	if err := r.waitAll(ctx, time.Minute, false); err != nil {
		res.Notes = append(res.Notes, err.Error())
	}
	return res, r.finish(ctx, res, 3*time.Minute)
}

// Cold creates sessions one at a time against an empty pool whose pods take boot to become
// Ready; latencies are reported with boot subtracted (the operator's own overhead).
func (h *Harness) Cold(ctx context.Context, sessions int, boot time.Duration, floorN int) (*Result, error) {
	res := &Result{Scenario: "cold", Params: fmt.Sprintf("%d sessions one at a time, pool 0, VM boot %s (subtracted)", sessions, boot)}
	r, err := h.setup(ctx, "cold", 0, floorN, boot)
	if err != nil {
		return nil, err
	}
	if err := r.begin(); err != nil {
		return nil, err
	}
	if err := r.createOneAtATime(ctx, sessions, 30*time.Second+boot); err != nil {
		return nil, fmt.Errorf("cold: %w", err)
	}
	return res, r.finish(ctx, res, time.Minute)
}

// Expiry creates sessions (cold, pool 0, no boot delay) at rate per second with
// maxLifetime base + (i mod spread)*step, waits until all are finished, and reports the
// expiry lag against each session's true deadline: when the watch saw the session finished
// minus its bind (status.preciseBoundTime, to the microsecond) plus its maxLifetime (see
// expiryLags). EarlyExpiries counts sessions seen finished before that deadline.
func (h *Harness) Expiry(ctx context.Context, sessions int, rate float64, base, step time.Duration, spread, floorN int) (*Result, error) {
	res := &Result{Scenario: "expiry", Params: fmt.Sprintf("%d sessions at %g/s, maxLifetime %s + 0..%d x %s", sessions, rate, base, spread-1, step)}
	r, err := h.setup(ctx, "expiry", 0, floorN, 0)
	if err != nil {
		return nil, err
	}
	if err := r.begin(); err != nil {
		return nil, err
	}
	r.createPaced(ctx, sessions, rate, func(i int) time.Duration { return base + time.Duration(i%spread)*step })
	if err := r.waitAll(ctx, base+time.Duration(spread)*step+2*time.Minute, true); err != nil {
		res.Notes = append(res.Notes, err.Error())
	}
	r.h.track.Lock()
	for _, name := range r.order {
		if s := r.h.track.sessions[key(r.ns, name)]; s != nil && !s.finishedAt.IsZero() && s.endReason == "MaxLifetime" {
			res.Expired++
		}
	}
	lags, early, notes := expiryLags(r)
	r.h.track.Unlock()
	res.EarlyExpiries = early
	res.Notes = append(res.Notes, notes...)
	lp := percentiles(lags)
	res.ExpiryLag = &lp
	if res.Expired != sessions {
		res.Notes = append(res.Notes, fmt.Sprintf("sessions that ended, by reason: %v", r.endedByReason()))
	}
	return res, r.finish(ctx, res, time.Minute)
}

// Scale creates sessions (cold, pool 0, no boot delay) at rate per second on nodes nodes,
// waits until all are Ready and reports the manager's peak RSS with that many active.
func (h *Harness) Scale(ctx context.Context, sessions int, rate float64, nodes, floorN int) (*Result, error) {
	res := &Result{Scenario: "scale", Params: fmt.Sprintf("%d active sessions at %g/s on %d nodes, pool 0", sessions, rate, nodes)}
	if err := h.EnsureNodes(ctx, nodes); err != nil {
		return nil, err
	}
	r, err := h.setup(ctx, "scale", 0, floorN, 0)
	if err != nil {
		return nil, err
	}
	if err := r.begin(); err != nil {
		return nil, err
	}
	r.createPaced(ctx, sessions, rate, func(int) time.Duration { return 0 })
	// Every session is a cold start: allow for a machine that starts 5 pods a second.
	if err := r.waitAll(ctx, 5*time.Minute+time.Duration(sessions)*time.Second/5, false); err != nil {
		res.Notes = append(res.Notes, err.Error())
	}
	// The sessions are meant to be active at once: say which ended before the last was Ready.
	if ended := r.endedByReason(); len(ended) > 0 {
		res.Notes = append(res.Notes, fmt.Sprintf("sessions that ended inside the window, by reason: %v", ended))
	}
	return res, r.finish(ctx, res, time.Minute)
}

// endedByReason counts the scenario's sessions seen finished, by status.endReason.
func (r *run) endedByReason() map[string]int {
	r.mu.Lock()
	names := append([]string(nil), r.order...)
	r.mu.Unlock()
	r.h.track.Lock()
	defer r.h.track.Unlock()
	ended := map[string]int{}
	for _, name := range names {
		if s := r.h.track.sessions[key(r.ns, name)]; s != nil && !s.finishedAt.IsZero() {
			ended[s.endReason]++
		}
	}
	return ended
}
