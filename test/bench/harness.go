//go:build !windows

// Package bench is hyperpool's benchmark: bind latency against a same-run floor, API writes
// per bind from the API server's own counters, throughput, cold start, expiry lag and the
// manager's memory, all against the test bed (real kube-apiserver, etcd, kube-scheduler,
// kube-controller-manager and kwok) with the manager running as its own process.
//
// Each scenario is a method of Harness that takes its sizes as parameters and returns a
// Result; cmd/bench runs them at full size, bench_test.go at a few dozen sessions inside
// `make test`, asserting correctness only.
package bench

import (
	"context"
	"fmt"
	"net/http"
	"slices"
	"strings"
	"sync"
	"time"

	corev1 "k8s.io/api/core/v1"
	nodev1 "k8s.io/api/node/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/util/rand"
	"k8s.io/apimachinery/pkg/util/wait"
	"k8s.io/client-go/rest"
	toolscache "k8s.io/client-go/tools/cache"
	"sigs.k8s.io/controller-runtime/pkg/cache"
	"sigs.k8s.io/controller-runtime/pkg/client"

	agentsv1alpha1 "github.com/hyperpool/hyperpool/api/v1alpha1"
	"github.com/hyperpool/hyperpool/test/testbed"
)

// WindowsBuild is the build of the simulated nodes and of the benchmark's pools.
const WindowsBuild = "10.0.20348"

// Harness runs scenarios against one test bed and one manager process.
type Harness struct {
	Env     *testbed.Env
	Client  client.Client // uncached, high rate limits: the benchmark's own client
	Manager *Manager
	// Logf reports progress; nil is silent.
	Logf func(format string, args ...any)
	// ReplenishQuietPeriod is the pools' spec.replenish.quietPeriod (0: refill at once,
	// the default).
	ReplenishQuietPeriod time.Duration
	// ReplenishMinReady is the pools' spec.replenish.minReady with a quiet period (nil: the
	// default, half the pool).
	ReplenishMinReady *int32

	apiHTTP   *http.Client
	cache     cache.Cache
	cancel    context.CancelFunc
	track     *tracker
	nodes     int
	nodeBatch int
	mu        sync.Mutex
	// cacheCtx runs the benchmark's watches; floorReady: the design floor's CRD is
	// installed and watched (installFloorCRD).
	cacheCtx   context.Context
	floorReady bool
	// IdleWindow is how long each scenario measures the processes' idle CPU before its
	// window opens (0: not measured, nothing is taken out).
	IdleWindow time.Duration
}

// NewHarness starts the benchmark's watches (sessions, config maps, pods, all namespaces)
// against env and creates the RuntimeClasses the manager expects. The manager is started
// separately (StartManager) and assigned to Harness.Manager.
func NewHarness(ctx context.Context, env *testbed.Env) (*Harness, error) {
	cfg := rest.CopyConfig(env.Config)
	cfg.QPS, cfg.Burst = 5000, 10000
	c, err := client.New(cfg, client.Options{Scheme: env.Scheme})
	if err != nil {
		return nil, err
	}
	httpClient, err := rest.HTTPClientFor(env.Config)
	if err != nil {
		return nil, err
	}
	for _, rc := range []struct{ name, handler string }{{"hyperv", "runhcs-wcow-hypervisor"}, {"process", "runhcs-wcow-process"}} {
		err := c.Create(ctx, &nodev1.RuntimeClass{ObjectMeta: metav1.ObjectMeta{Name: rc.name}, Handler: rc.handler})
		if err != nil && !apierrors.IsAlreadyExists(err) {
			return nil, err
		}
	}
	ca, err := cache.New(cfg, cache.Options{Scheme: env.Scheme, DefaultTransform: cache.TransformStripManagedFields()})
	if err != nil {
		return nil, err
	}
	h := &Harness{Env: env, Client: c, apiHTTP: httpClient, cache: ca, track: newTracker()}
	cctx, cancel := context.WithCancel(context.Background())
	h.cancel, h.cacheCtx = cancel, cctx
	for _, obj := range []client.Object{&agentsv1alpha1.AgentSession{}, &corev1.ConfigMap{}, &corev1.Pod{}} {
		inf, err := ca.GetInformer(cctx, obj, cache.BlockUntilSynced(false))
		if err != nil {
			cancel()
			return nil, err
		}
		if _, err := inf.AddEventHandler(h.track.handler()); err != nil {
			cancel()
			return nil, err
		}
	}
	go func() { _ = ca.Start(cctx) }()
	if !ca.WaitForCacheSync(ctx) {
		cancel()
		return nil, fmt.Errorf("bench watches did not sync")
	}
	return h, nil
}

// Close stops the watches and the manager.
func (h *Harness) Close() error {
	h.cancel()
	if h.Manager != nil {
		return h.Manager.Stop()
	}
	return nil
}

func (h *Harness) logf(format string, args ...any) {
	if h.Logf != nil {
		h.Logf(format, args...)
	}
}

// EnsureNodes makes sure at least n simulated Windows nodes exist.
func (h *Harness) EnsureNodes(ctx context.Context, n int) error {
	h.mu.Lock()
	defer h.mu.Unlock()
	if n <= h.nodes {
		return nil
	}
	prefix := fmt.Sprintf("bench%d", h.nodeBatch)
	h.nodeBatch++
	if _, err := h.Env.CreateWindowsNodes(ctx, prefix, n-h.nodes, WindowsBuild); err != nil {
		return err
	}
	h.nodes = n
	return nil
}

// newNamespace creates a namespace for one scenario and waits for its default ServiceAccount.
func (h *Harness) newNamespace(ctx context.Context, scenario string) (string, error) {
	ns := &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: "bench-" + scenario + "-" + rand.String(5)}}
	if err := h.Client.Create(ctx, ns); err != nil {
		return "", err
	}
	err := wait.PollUntilContextTimeout(ctx, 50*time.Millisecond, 30*time.Second, true, func(ctx context.Context) (bool, error) {
		err := h.Client.Get(ctx, client.ObjectKey{Namespace: ns.Name, Name: "default"}, &corev1.ServiceAccount{})
		return err == nil, nil
	})
	return ns.Name, err
}

// waitPoolFull waits until the pool reports want Ready replicas and the watch sees exactly
// want warm (unbound, live) pods of it.
func (h *Harness) waitPoolFull(ctx context.Context, ns, name string, want int, timeout time.Duration) error {
	var last string
	err := wait.PollUntilContextTimeout(ctx, 100*time.Millisecond, timeout, true, func(ctx context.Context) (bool, error) {
		sb := &agentsv1alpha1.AgentSandbox{}
		if err := h.Client.Get(ctx, client.ObjectKey{Namespace: ns, Name: name}, sb); err != nil {
			return false, nil
		}
		warm := h.track.warmPods(ns, name)
		last = fmt.Sprintf("status ready %d, watched warm pods %d, want %d", sb.Status.ReadyReplicas, warm, want)
		return int(sb.Status.ReadyReplicas) == want && warm == want, nil
	})
	if err != nil {
		return fmt.Errorf("pool %s/%s not full within %s: %s", ns, name, timeout, last)
	}
	return nil
}

// tracker records what the benchmark's watches see, with client-side monotonic timestamps.
type tracker struct {
	testbed.Notifier // guards what follows; every watch event is a change
	sessions         map[string]*sessionObs
	cms              map[string]time.Time
	pods             map[string]*podObs // by UID
	// podBound: when the watch first saw a pod labelled for the session (ns/session).
	podBound map[string]time.Time
	// floors: when the watch first saw a design-floor session Ready (ns/name).
	floors map[string]time.Time
}

type sessionObs struct {
	ns, name   string
	readyAt    time.Time // first time seen Ready with a pod
	podName    string
	podNames   []string // distinct non-empty status.podName values seen
	startType  string
	finishedAt time.Time // first time seen in a finished phase
	phase      string
	endReason  string
	// boundSeenAt: first time seen bound (status.podName and a bind time set).
	boundSeenAt time.Time
	// preciseBound is status.preciseBoundTime, the bind as the manager stored it to the
	// microsecond: the instant the session's lifetime counts from (zero until seen).
	preciseBound time.Time
}

type podObs struct {
	ns, generateName, sandbox string
	sessions                  []string // distinct non-empty session labels seen
	live, ready               bool
}

func newTracker() *tracker {
	return &tracker{sessions: map[string]*sessionObs{},
		cms: map[string]time.Time{}, pods: map[string]*podObs{}, podBound: map[string]time.Time{}, floors: map[string]time.Time{}}
}

func key(ns, name string) string { return ns + "/" + name }

func (t *tracker) handler() toolscache.ResourceEventHandler {
	return toolscache.ResourceEventHandlerFuncs{
		AddFunc:    func(obj any) { t.observe(obj, false) },
		UpdateFunc: func(_, obj any) { t.observe(obj, false) },
		DeleteFunc: func(obj any) {
			if d, ok := obj.(toolscache.DeletedFinalStateUnknown); ok {
				obj = d.Obj
			}
			t.observe(obj, true)
		},
	}
}

func (t *tracker) observe(obj any, deleted bool) {
	now := time.Now()
	t.Lock()
	defer t.Unlock()
	switch o := obj.(type) {
	case *unstructured.Unstructured:
		if !t.floorObserved(o, now) {
			return
		}
	case *agentsv1alpha1.AgentSession:
		k := key(o.Namespace, o.Name)
		s := t.sessions[k]
		if s == nil {
			s = &sessionObs{ns: o.Namespace, name: o.Name}
			t.sessions[k] = s
		}
		st := o.Status
		s.phase = string(st.Phase)
		if st.PodName != "" && !slices.Contains(s.podNames, st.PodName) {
			s.podNames = append(s.podNames, st.PodName)
		}
		if st.StartType != "" {
			s.startType = string(st.StartType)
		}
		if s.readyAt.IsZero() && st.Phase == agentsv1alpha1.SessionReady && st.PodName != "" {
			s.readyAt, s.podName = now, st.PodName
		}
		if s.boundSeenAt.IsZero() && st.PodName != "" && (st.PreciseBoundTime != nil || st.BoundTime != nil) {
			s.boundSeenAt = now
		}
		if st.PreciseBoundTime != nil {
			s.preciseBound = st.PreciseBoundTime.Time
		}
		if s.finishedAt.IsZero() && st.Phase.IsFinished() {
			s.finishedAt, s.endReason = now, st.EndReason
		}
	case *corev1.ConfigMap:
		k := key(o.Namespace, o.Name)
		if _, ok := t.cms[k]; !ok {
			t.cms[k] = now
		}
	case *corev1.Pod:
		p := t.pods[string(o.UID)]
		if p == nil {
			p = &podObs{ns: o.Namespace, generateName: o.GenerateName, sandbox: o.Labels[agentsv1alpha1.ClassLabel]}
			t.pods[string(o.UID)] = p
		}
		if s := o.Labels[agentsv1alpha1.SessionLabel]; s != "" && !slices.Contains(p.sessions, s) {
			p.sessions = append(p.sessions, s)
			if _, ok := t.podBound[key(o.Namespace, s)]; !ok {
				t.podBound[key(o.Namespace, s)] = now
			}
		}
		p.live = !deleted && o.DeletionTimestamp.IsZero()
		p.ready = false
		for _, c := range o.Status.Conditions {
			if c.Type == corev1.PodReady && c.Status == corev1.ConditionTrue {
				p.ready = true
			}
		}
	default:
		return
	}
	t.Changed()
}

// warmPods counts the live, unbound pods of a pool (created by the pool, not for a session).
func (t *tracker) warmPods(ns, sandbox string) int {
	t.Lock()
	defer t.Unlock()
	n := 0
	for _, p := range t.pods {
		if p.ns == ns && p.sandbox == sandbox && p.live && p.ready && len(p.sessions) == 0 {
			n++
		}
	}
	return n
}

// podCounts returns the pods ever seen in ns: created by the pool (warm), created for a
// session (cold), and the number bound to more than one session.
func (t *tracker) podCounts(ns, sandbox string) (warm, cold, doubleBound int) {
	t.Lock()
	defer t.Unlock()
	for _, p := range t.pods {
		if p.ns != ns || p.sandbox != sandbox {
			continue
		}
		if p.generateName == sandbox+"-" {
			warm++
		} else {
			cold++
		}
		if len(p.sessions) > 1 {
			doubleBound++
		}
	}
	return warm, cold, doubleBound
}

// DeleteNamespace deletes a scenario's namespace and waits (up to timeout) until it is gone,
// so the next scenario starts on a quiet control plane.
func (h *Harness) DeleteNamespace(ctx context.Context, ns string, timeout time.Duration) error {
	obj := &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: ns}}
	if err := h.Client.Delete(ctx, obj); err != nil && !apierrors.IsNotFound(err) {
		return err
	}
	if timeout <= 0 {
		return nil
	}
	return wait.PollUntilContextTimeout(ctx, 250*time.Millisecond, timeout, true, func(ctx context.Context) (bool, error) {
		err := h.Client.Get(ctx, client.ObjectKey{Name: ns}, &corev1.Namespace{})
		return apierrors.IsNotFound(err), nil
	})
}

func (h *Harness) apiMetricsURL() string {
	return strings.TrimSuffix(h.Env.Config.Host, "/") + "/metrics"
}
