package controllers

import (
	"sync"
	"time"

	"k8s.io/apimachinery/pkg/types"
	"k8s.io/utils/clock"

	agentsv1alpha1 "github.com/hyperpool/hyperpool/api/v1alpha1"
	"github.com/hyperpool/hyperpool/internal/autoscale"
	"github.com/hyperpool/hyperpool/internal/poolbook"
)

// refillSamples is how many recent refills of a class its refill time is read from, and
// refillPercentile the percentile read: a high one, since a pool sized for the median
// refill runs dry whenever boots are slower than usual.
const (
	refillSamples    = 64
	refillPercentile = 0.9
)

// demandBook holds what the autoscaler measures of each pool, in memory: its bind rate
// (the session controller records each bind) and its refill times (the pool controller
// records each warm pod it created and when it first sees it Ready). A restart, or a new
// leader, starts with none: the bind rate climbs back within a minute of binds, the refill
// time uses Config.AutoscaleDefaultRefillTime until new pods are measured, and a pool
// keeps the spec.replicas it was left with until the estimates say otherwise.
type demandBook struct {
	clock  clock.PassiveClock
	config Config

	mu    sync.Mutex
	pools map[types.NamespacedName]*poolDemand
}

// poolDemand is one pool's measurements and decision state.
type poolDemand struct {
	rate    autoscale.BindRate
	refills autoscale.RefillTimes
	// created is when this manager created each warm pod not yet seen Ready.
	created    map[string]time.Time
	stabilizer autoscale.Stabilizer
	// applied is the spec.replicas this manager last wrote, and the generation that write
	// produced: a cache showing an older generation has not seen the write yet.
	applied           *int32
	appliedGeneration int64
}

func newDemandBook(clk clock.PassiveClock, cfg Config) *demandBook {
	return &demandBook{clock: clk, config: cfg, pools: map[types.NamespacedName]*poolDemand{}}
}

// pool returns key's record, creating it. d.mu must be held.
func (d *demandBook) pool(key types.NamespacedName) *poolDemand {
	p, ok := d.pools[key]
	if !ok {
		fast := d.config.autoscaleRateWindow()
		p = &poolDemand{rate: autoscale.BindRate{Fast: fast, Slow: bindRateSlowFactor * fast},
			refills: autoscale.RefillTimes{Size: refillSamples}, created: map[string]time.Time{}}
		d.pools[key] = p
	}
	return p
}

// bound records one bind of a session of pool, warm or cold: demand either way.
func (d *demandBook) bound(pool types.NamespacedName) {
	if d == nil {
		return
	}
	d.mu.Lock()
	defer d.mu.Unlock()
	d.pool(pool).rate.Observe(d.clock.Now(), 1)
}

// podCreated records the creation of a warm pod of an autoscaled pool, the start of a
// refill. Other pools are not measured.
func (d *demandBook) podCreated(sb *agentsv1alpha1.AgentSandbox, pod string) {
	if d == nil || sb.Spec.Autoscaling == nil {
		return
	}
	d.mu.Lock()
	defer d.mu.Unlock()
	d.pool(types.NamespacedName{Namespace: sb.Namespace, Name: sb.Name}).created[pod] = d.clock.Now()
}

// observeRefills ends the refills of the pool's warm pods that are now Ready, and drops
// the ones that will never end (the pod is gone, or was bound or deleted before it was
// Ready: then it is not a refill any more). lookup reads a pod from the pool book; class is
// the pool's UID, the controller of its warm pods.
func (d *demandBook) observeRefills(key types.NamespacedName, lookup func(name string) (poolbook.Pod, bool), class types.UID) {
	d.mu.Lock()
	defer d.mu.Unlock()
	p := d.pool(key)
	now := d.clock.Now()
	for name, at := range p.created {
		pod, seen := lookup(name)
		isWarm := seen && pod.Warm() && pod.Controller == class
		switch {
		case isWarm && pod.Ready:
			p.refills.Observe(now.Sub(at))
			delete(p.created, name)
		case !isWarm && (seen || now.Sub(at) > time.Minute):
			// Bound before Ready, or gone (a minute leaves the cache time to show a new pod).
			delete(p.created, name)
		}
	}
}

func (d *demandBook) forget(key types.NamespacedName) {
	if d == nil {
		return
	}
	d.mu.Lock()
	defer d.mu.Unlock()
	delete(d.pools, key)
}
