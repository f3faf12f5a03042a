//go:build !windows

package chaos

import (
	"context"
	"errors"
	"fmt"
	"go/ast"
	"go/parser"
	"go/token"
	"maps"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"sigs.k8s.io/controller-runtime/pkg/client"

	agentsv1alpha1 "github.com/hyperpool/hyperpool/api/v1alpha1"
)

// The checker's unit tests: synthetic event sequences fed to the observer, each breaking
// (or keeping) one invariant on purpose. They need no control plane.

var t0 = time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)

const testNS = "chaos-test"

// event is one watch event at a moment of the fake clock.
type event struct {
	at      time.Duration // after t0
	obj     client.Object
	deleted bool
}

// readySession is a session bound at t0 whose true deadline is t0+deadline (its max
// lifetime).
func readySession(name, pod string, deadline time.Duration, rv string) *agentsv1alpha1.AgentSession {
	return boundSession(name, pod, t0, deadline, rv)
}

// boundSession is a Ready session bound at bound (status.preciseBoundTime) with a max
// lifetime of lifetime, its status as the manager writes it.
func boundSession(name, pod string, bound time.Time, lifetime time.Duration, rv string) *agentsv1alpha1.AgentSession {
	s := &agentsv1alpha1.AgentSession{ObjectMeta: metav1.ObjectMeta{Namespace: testNS, Name: name, ResourceVersion: rv}}
	s.Spec.MaxLifetime = &agentsv1alpha1.Duration{Duration: lifetime}
	s.Status.Phase, s.Status.PodName = agentsv1alpha1.SessionReady, pod
	s.Status.PreciseBoundTime = &metav1.MicroTime{Time: bound}
	s.Status.BoundTime = &metav1.Time{Time: bound.Truncate(time.Second)}
	s.Status.PreciseExpiryTime = &metav1.MicroTime{Time: bound.Add(lifetime)}
	s.Status.ExpiryTime = &metav1.Time{Time: bound.Add(lifetime).Truncate(time.Second)}
	s.Status.Conditions = []metav1.Condition{{Type: agentsv1alpha1.SessionReadyCondition, Status: metav1.ConditionTrue, Reason: agentsv1alpha1.ReasonBound}}
	return s
}

func endedSession(name, pod string, deadline time.Duration, phase agentsv1alpha1.SessionPhase, reason string) *agentsv1alpha1.AgentSession {
	s := readySession(name, pod, deadline, "")
	s.Status.Phase, s.Status.EndReason = phase, reason
	s.Status.Conditions = []metav1.Condition{{Type: agentsv1alpha1.SessionReadyCondition, Status: metav1.ConditionFalse, Reason: reason}}
	return s
}

func expired(name, pod string, deadline time.Duration) *agentsv1alpha1.AgentSession {
	return endedSession(name, pod, deadline, agentsv1alpha1.SessionExpired, agentsv1alpha1.ReasonMaxLifetime)
}

// poolPod is a pod of the pool "pool"; session "" is a warm pod.
func poolPod(name, session, rv string) *corev1.Pod {
	p := &corev1.Pod{ObjectMeta: metav1.ObjectMeta{Namespace: testNS, Name: name, GenerateName: poolName + "-",
		UID: types.UID("uid-" + name), ResourceVersion: rv}}
	if session != "" {
		p.Labels = map[string]string{agentsv1alpha1.SessionLabel: session}
	}
	return p
}

// quotaUsing is an AgentQuota with hard.sessions hard whose status says used sessions.
func quotaUsing(used, hard int32) *agentsv1alpha1.AgentQuota {
	q := &agentsv1alpha1.AgentQuota{ObjectMeta: metav1.ObjectMeta{Namespace: testNS, Name: "quota"}}
	q.Spec.Hard.Sessions, q.Status.Used.Sessions = &hard, &used
	return q
}

// newTestObserver is an observer on a fake clock that the events move.
func newTestObserver(poolTarget, quota int) (*observer, *time.Time) {
	o := newObserver(testNS, poolName, poolTarget, quota)
	clock := t0
	o.now = func() time.Time { return clock }
	o.started = t0
	return o, &clock
}

func feed(o *observer, clock *time.Time, events []event) {
	for _, e := range events {
		o.Lock()
		*clock = t0.Add(e.at)
		o.Unlock()
		o.observe(e.obj, e.deleted)
	}
}

func TestObserverCatchesBrokenInvariants(t *testing.T) {
	const lifetime = 3 * time.Second
	for _, tc := range []struct {
		name   string
		target int
		events []event
		// end is the clock when the run's closing checks (liveness, over-creation) run.
		end  time.Duration
		want map[string]int
	}{{
		name: "two live sessions show one pod",
		events: []event{
			{0, readySession("s-1", "pool-a", lifetime, ""), false},
			{time.Second, readySession("s-2", "pool-a", lifetime, ""), false},
		},
		end:  lifetime,
		want: map[string]int{PodNameShared: 1},
	}, {
		name: "live sessions on distinct pods",
		events: []event{
			{0, readySession("s-1", "pool-a", lifetime, ""), false},
			{time.Second, readySession("s-2", "pool-b", lifetime, ""), false},
		},
		end: lifetime,
	}, {
		name: "a pod name shown again only after its session ended",
		events: []event{
			{0, readySession("s-1", "pool-a", lifetime, ""), false},
			{lifetime, expired("s-1", "pool-a", lifetime), false},
			{lifetime, readySession("s-2", "pool-a", 2*lifetime, ""), false},
		},
		end: lifetime,
	}, {
		name: "ended at its deadline plus the bound",
		events: []event{
			{0, readySession("s-1", "pool-a", lifetime, ""), false},
			{lifetime + livenessBound, expired("s-1", "pool-a", lifetime), false},
		},
		end: lifetime + livenessBound,
	}, {
		name: "ended past its deadline plus the bound",
		events: []event{
			{0, readySession("s-1", "pool-a", lifetime, ""), false},
			{lifetime + livenessBound + time.Millisecond, expired("s-1", "pool-a", lifetime), false},
		},
		end:  lifetime + livenessBound + time.Millisecond,
		want: map[string]int{SessionLate: 1},
	}, {
		name: "never expires: still Ready past its deadline plus the bound at the end",
		events: []event{
			{0, readySession("s-1", "pool-a", lifetime, ""), false},
		},
		end:  lifetime + livenessBound + time.Second,
		want: map[string]int{SessionLate: 1},
	}, {
		name: "ended other than by its max lifetime",
		events: []event{
			{0, readySession("s-1", "pool-a", lifetime, ""), false},
			{time.Second, endedSession("s-1", "pool-a", lifetime, agentsv1alpha1.SessionFailed, agentsv1alpha1.ReasonPodDeleted), false},
		},
		end:  lifetime,
		want: map[string]int{SessionNotExpired: 1},
	}, {
		name:   "pool creates beyond its target and deletes the extra pod itself",
		target: 2,
		events: []event{
			{0, poolPod("pool-a", "", ""), false},
			{0, poolPod("pool-b", "", ""), false},
			{time.Second, poolPod("pool-c", "", ""), false},
			{2 * time.Second, poolPod("pool-c", "", ""), true},
		},
		want: map[string]int{PoolOverCreated: 1},
	}, {
		name: "a pod relabelled for a second session (the double bind seen from the pod)",
		events: []event{
			{0, poolPod("pool-a", "s-1", ""), false},
			{time.Second, poolPod("pool-a", "s-2", ""), false},
		},
		want: map[string]int{PodTwoSessions: 1},
	}, {
		name: "a session holding two live pods at once (the double bind seen from the session)",
		events: []event{
			{0, poolPod("pool-a", "s-1", ""), false},
			{time.Second, poolPod("pool-b", "s-1", ""), false},
		},
		want: map[string]int{SessionTwoPods: 1},
	}, {
		name: "a session's second pod only once the first is gone",
		events: []event{
			{0, poolPod("pool-a", "s-1", ""), false},
			{time.Second, poolPod("pool-a", "s-1", ""), true},
			{2 * time.Second, poolPod("pool-b", "s-1", ""), false},
		},
	}, {
		name: "a session's status.podName changes",
		events: []event{
			{0, readySession("s-1", "pool-a", lifetime, ""), false},
			{time.Second, readySession("s-1", "pool-b", lifetime, ""), false},
		},
		end:  lifetime,
		want: map[string]int{SessionPodChanged: 1},
	}, {
		name: "a session Ready without a pod",
		events: []event{
			{0, readySession("s-1", "", lifetime, ""), false},
		},
		end:  lifetime,
		want: map[string]int{BadSessionState: 1},
	}, {
		name: "the AgentQuota's status.used over its hard limit",
		events: []event{
			{0, quotaUsing(2, 1), false},
		},
		want: map[string]int{QuotaStatusOver: 1},
	}, {
		name: "the AgentQuota's status.used at its hard limit",
		events: []event{
			{0, quotaUsing(1, 1), false},
		},
	}, {
		name:   "pool replaces each warm bind once",
		target: 2,
		events: []event{
			{0, poolPod("pool-a", "", ""), false},
			{0, poolPod("pool-b", "", ""), false},
			{time.Second, poolPod("pool-a", "s-1", ""), false},
			{time.Second, poolPod("pool-c", "", ""), false},
		},
	}} {
		t.Run(tc.name, func(t *testing.T) {
			o, clock := newTestObserver(tc.target, 10)
			feed(o, clock, tc.events)
			o.Lock()
			*clock = t0.Add(tc.end)
			o.Unlock()
			o.checkLiveness([]string{"s-1", "s-2"})
			o.checkOverCreation()
			if got := o.figures().counts; !maps.Equal(got, tc.want) && len(got)+len(tc.want) > 0 {
				t.Errorf("violations %v, want %v; examples %v", got, tc.want, o.figures().examples)
			}
		})
	}
}

// stubReader answers Lists with canned objects, or an error, and records the revision and
// match each List asked for.
type stubReader struct {
	client.Reader
	sessions []agentsv1alpha1.AgentSession
	pods     []corev1.Pod
	err      error

	mu    sync.Mutex
	asked []string // "rv/match"
}

func (r *stubReader) List(_ context.Context, list client.ObjectList, opts ...client.ListOption) error {
	lo := &client.ListOptions{}
	lo.ApplyOptions(opts)
	r.mu.Lock()
	if lo.Raw != nil {
		r.asked = append(r.asked, lo.Raw.ResourceVersion+"/"+string(lo.Raw.ResourceVersionMatch))
	} else {
		r.asked = append(r.asked, "latest")
	}
	r.mu.Unlock()
	if r.err != nil {
		return r.err
	}
	switch l := list.(type) {
	case *agentsv1alpha1.AgentSessionList:
		l.Items = r.sessions
	case *corev1.PodList:
		l.Items = r.pods
	default:
		return fmt.Errorf("unexpected list %T", list)
	}
	return nil
}

func TestSuspicionsAreResolvedAgainstAList(t *testing.T) {
	over := []event{ // quota 1: two bound sessions, the second at resourceVersion 7
		{0, readySession("s-1", "pool-a", time.Minute, "6"), false},
		{0, readySession("s-2", "pool-b", time.Minute, "7"), false},
	}
	many := make([]event, 0, 100) // quota 0: every event is a suspicion, more than any buffer
	for i := range 100 {
		many = append(many, event{0, readySession(fmt.Sprintf("s-%d", i), fmt.Sprintf("pool-%d", i), time.Minute, fmt.Sprint(100+i)), false})
	}
	compacted := apierrors.NewResourceExpired("too old resource version: 7 (42)")
	for _, tc := range []struct {
		name          string
		quota, target int
		events        []event
		reader        *stubReader
		want          map[string]int
		wantResolved  int
		wantAsked     []string // the first Lists' revisions
	}{{
		name: "quota overrun confirmed by a List at the event's revision", quota: 1, target: 5, events: over,
		reader: &stubReader{sessions: []agentsv1alpha1.AgentSession{*over[0].obj.(*agentsv1alpha1.AgentSession), *over[1].obj.(*agentsv1alpha1.AgentSession)}},
		want:   map[string]int{QuotaExceeded: 1}, wantResolved: 1, wantAsked: []string{"7/Exact"},
	}, {
		name: "quota overrun the List does not show is dismissed", quota: 1, target: 5, events: over,
		reader:       &stubReader{sessions: []agentsv1alpha1.AgentSession{*over[0].obj.(*agentsv1alpha1.AgentSession)}},
		wantResolved: 1, wantAsked: []string{"7/Exact"},
	}, {
		name: "pool over target confirmed by a List", quota: 5, target: 1,
		events: []event{{0, poolPod("pool-a", "", "3"), false}, {0, poolPod("pool-b", "", "4"), false}},
		reader: &stubReader{pods: []corev1.Pod{*poolPod("pool-a", "", "3"), *poolPod("pool-b", "", "4")}},
		want:   map[string]int{PoolOverTarget: 1}, wantResolved: 1, wantAsked: []string{"4/Exact"},
	}, {
		name: "a hundred suspicions at once: none dropped", quota: 0, target: 5, events: many,
		reader:       &stubReader{},
		wantResolved: 100, wantAsked: []string{"100/Exact", "101/Exact"},
	}, {
		name: "the API server never answers: the run fails", quota: 1, target: 5, events: over,
		reader: &stubReader{err: errors.New("connection refused")},
		want:   map[string]int{SuspicionUnresolved: 1},
	}, {
		name: "the revision was compacted: the run fails", quota: 1, target: 5, events: over,
		reader: &stubReader{err: compacted},
		want:   map[string]int{SuspicionUnresolved: 1}, wantAsked: []string{"7/Exact"},
	}} {
		t.Run(tc.name, func(t *testing.T) {
			o, clock := newTestObserver(tc.target, tc.quota)
			feed(o, clock, tc.events)
			ctx, cancel := context.WithCancel(t.Context())
			done := make(chan struct{})
			go func() { defer close(done); o.confirmSuspicions(ctx, tc.reader) }()
			drain := 30 * time.Second
			if tc.reader.err != nil && !apierrors.IsResourceExpired(tc.reader.err) {
				drain = time.Second // it will never resolve; the drain must give up and fail the run
			}
			o.drainSuspicions(t.Context(), drain)
			cancel()
			<-done
			f := o.figures()
			if !maps.Equal(f.counts, tc.want) && len(f.counts)+len(tc.want) > 0 {
				t.Errorf("violations %v, want %v; examples %v", f.counts, tc.want, f.examples)
			}
			if f.suspicionsResolved != tc.wantResolved {
				t.Errorf("%d suspicions resolved, want %d", f.suspicionsResolved, tc.wantResolved)
			}
			tc.reader.mu.Lock()
			defer tc.reader.mu.Unlock()
			for i, want := range tc.wantAsked {
				if i >= len(tc.reader.asked) || tc.reader.asked[i] != want {
					t.Errorf("Lists asked for %v, want %v first", tc.reader.asked, tc.wantAsked)
					break
				}
			}
		})
	}
}

// The closing checks: once the run waited for the sessions, every one must have ended
// with a reason; Queued or Ready then is a violation, as is a wait that timed out.
func TestClosingChecksAcceptOnlyEndedSessions(t *testing.T) {
	queued := &agentsv1alpha1.AgentSession{ObjectMeta: metav1.ObjectMeta{Namespace: testNS, Name: "s-2"}}
	queued.Status.Phase = agentsv1alpha1.SessionQueued
	for _, tc := range []struct {
		name     string
		sessions []agentsv1alpha1.AgentSession
		want     map[string]int
	}{
		{"all ended by their max lifetime", []agentsv1alpha1.AgentSession{*expired("s-1", "pool-a", 0), *expired("s-2", "pool-b", 0)}, nil},
		{"one still Ready", []agentsv1alpha1.AgentSession{*expired("s-1", "pool-a", 0), *readySession("s-2", "pool-b", 0, "")}, map[string]int{SessionUnsettled: 1}},
		{"one still Queued", []agentsv1alpha1.AgentSession{*expired("s-1", "pool-a", 0), *queued}, map[string]int{SessionUnsettled: 1}},
		{"one missing", []agentsv1alpha1.AgentSession{*expired("s-1", "pool-a", 0)}, map[string]int{SessionUnsettled: 1}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			o, _ := newTestObserver(1, 1)
			if err := finalChecks(t.Context(), &stubReader{sessions: tc.sessions}, testNS, []string{"s-1", "s-2"}, o); err != nil {
				t.Fatal(err)
			}
			if got := o.figures().counts; !maps.Equal(got, tc.want) && len(got)+len(tc.want) > 0 {
				t.Errorf("violations %v, want %v", got, tc.want)
			}
		})
	}

	t.Run("the wait for the sessions timed out", func(t *testing.T) {
		o, clock := newTestObserver(1, 1)
		feed(o, clock, []event{{0, readySession("s-1", "pool-a", time.Minute, ""), false}})
		o.recordUnsettled([]string{"s-1"}, time.Minute)
		if got := o.figures().counts[SessionUnsettled]; got != 1 {
			t.Errorf("%d %q violations, want 1", got, SessionUnsettled)
		}
	})
}

// The end lag counts from the true deadline, the stored precise bind plus the max
// lifetime, not from status.expiryTime: the manager used to round the bind and the expiry
// up to the second, and a session bound at .1 s with a max lifetime of 3.5 s showed an
// expiryTime 1.4 s after its true deadline, which hid that much lag.
func TestEndLagCountsFromTheTrueDeadline(t *testing.T) {
	bound := t0.Add(100 * time.Millisecond)
	const lifetime = 3500 * time.Millisecond
	deadline := bound.Add(lifetime)
	rounded := func(s *agentsv1alpha1.AgentSession) *agentsv1alpha1.AgentSession {
		s.Status.ExpiryTime = &metav1.Time{Time: t0.Add(5 * time.Second)} // ceil(ceil(0.1 s) + 3.5 s)
		return s
	}
	for _, tc := range []struct {
		name     string
		endAfter time.Duration // after the true deadline
		wantLate int
	}{
		{"250 ms after the true deadline", 250 * time.Millisecond, 0},
		{"just past the liveness bound after the true deadline, within it after the rounded expiryTime", livenessBound + time.Millisecond, 1},
	} {
		t.Run(tc.name, func(t *testing.T) {
			o, clock := newTestObserver(1, 1)
			ended := rounded(boundSession("s-1", "pool-a", bound, lifetime, ""))
			ended.Status.Phase, ended.Status.EndReason = agentsv1alpha1.SessionExpired, agentsv1alpha1.ReasonMaxLifetime
			feed(o, clock, []event{
				{bound.Sub(t0), rounded(boundSession("s-1", "pool-a", bound, lifetime, "")), false},
				{deadline.Sub(t0) + tc.endAfter, ended, false},
			})
			f := o.figures()
			if f.maxEndLag != tc.endAfter || f.counts[SessionLate] != tc.wantLate {
				t.Errorf("end lag %s, %d %q violations; want %s from the true deadline %s, %d violations",
					f.maxEndLag, f.counts[SessionLate], SessionLate, tc.endAfter, deadline.Format(time.RFC3339Nano), tc.wantLate)
			}
		})
	}
}

// Every violation kind the observer declares is in Invariants, once: a result file names
// the kinds its run checked, and docs/chaos.md's table shows each, with its 0.
func TestInvariantsListsEveryKind(t *testing.T) {
	file, err := parser.ParseFile(token.NewFileSet(), "observer.go", nil, parser.ParseComments)
	if err != nil {
		t.Fatal(err)
	}
	var declared []string
	for _, decl := range file.Decls {
		gen, ok := decl.(*ast.GenDecl)
		if !ok || gen.Tok != token.CONST || !strings.HasPrefix(gen.Doc.Text(), "Violation kinds") {
			continue
		}
		for _, spec := range gen.Specs {
			for _, v := range spec.(*ast.ValueSpec).Values {
				declared = append(declared, constString(t, v))
			}
		}
	}
	slices.Sort(declared)
	listed := slices.Clone(Invariants)
	slices.Sort(listed)
	if !slices.Equal(declared, listed) || len(slices.Compact(slices.Clone(listed))) != len(Invariants) {
		t.Errorf("Invariants %q\nwant each of the violation kinds %q once", listed, declared)
	}
}

func constString(t *testing.T, e ast.Expr) string {
	lit, ok := e.(*ast.BasicLit)
	if !ok || lit.Kind != token.STRING {
		return ""
	}
	v, err := strconv.Unquote(lit.Value)
	if err != nil {
		t.Fatal(err)
	}
	return v
}
