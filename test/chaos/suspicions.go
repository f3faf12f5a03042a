//go:build !windows

package chaos

import (
	"context"
	"fmt"
	"time"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"

	agentsv1alpha1 "github.com/hyperpool/hyperpool/api/v1alpha1"
)

// suspicionRetry is how long the confirmer waits before asking the API server again when
// a List fails (kube-apiserver restarting).
const suspicionRetry = 200 * time.Millisecond

// A suspicion is a count over its limit that the watch showed after the event at
// resourceVersion rv. It is resolved against the API server's state at exactly that
// revision.
type suspicion struct {
	kind string
	rv   string
	at   time.Duration // since the observer started, for the report
}

// Suspicions queue without bound: an informer handler must never block on the confirmer
// (it would stall the watch that feeds every other check) and no suspicion may be dropped,
// so each waits in the queue until one List has resolved it. The queue only grows while
// counts are over their limits, which in a run that holds its invariants is only while an
// informer relists.

// suspect queues a count over its limit for confirmation at revision rv. The lock must be
// held.
func (o *observer) suspect(kind, rv string) {
	o.pending = append(o.pending, suspicion{kind: kind, rv: rv, at: o.now().Sub(o.started).Round(time.Millisecond)})
	select {
	case o.wake <- struct{}{}:
	default: // the confirmer is already awake and drains the whole queue
	}
}

// confirmSuspicions resolves the queued suspicions one by one until ctx ends, each against
// a List from the API server at the suspicion's revision.
func (o *observer) confirmSuspicions(ctx context.Context, r client.Reader) {
	for {
		o.Lock()
		queued := len(o.pending) > 0
		var s suspicion
		if queued {
			s = o.pending[0]
		}
		o.Unlock()
		if !queued {
			select {
			case <-ctx.Done():
				return
			case <-o.wake:
			}
			continue
		}
		if !o.resolve(ctx, r, s) {
			return // ctx ended: the suspicion stays queued and drainSuspicions reports it
		}
		o.Lock()
		o.pending = o.pending[1:]
		o.Changed()
		o.Unlock()
	}
}

// resolve checks s against the API server, retrying while it is away; it returns false
// only when ctx ends first.
func (o *observer) resolve(ctx context.Context, r client.Reader, s suspicion) bool {
	for {
		n, limit, what, err := o.countAt(ctx, r, s)
		switch {
		case err == nil:
			o.Lock()
			o.resolved++
			if n > limit {
				o.violate(s.kind, "%d %s > %d at resourceVersion %s (suspected at t=%s), in one consistent List", n, what, limit, s.rv, s.at)
				if s.kind == QuotaExceeded {
					o.peakActive = max(o.peakActive, n)
				} else {
					o.peakWarm = max(o.peakWarm, n)
				}
			} else {
				o.unconfirmed[s.kind]++
			}
			o.Unlock()
			return true
		case apierrors.IsResourceExpired(err) || apierrors.IsGone(err):
			// The revision was compacted before it could be read: the suspicion can be
			// neither confirmed nor dismissed, and an unchecked suspicion fails the run.
			o.record(SuspicionUnresolved, "%s at resourceVersion %s (t=%s): %v", s.kind, s.rv, s.at, err)
			return true
		}
		select {
		case <-ctx.Done():
			return false
		case <-time.After(suspicionRetry):
		}
	}
}

// countAt counts what s is about in one List at s's revision (or, without one, at the
// latest): the sessions the quota counts, or the pool's live warm pods.
func (o *observer) countAt(ctx context.Context, r client.Reader, s suspicion) (n, limit int, what string, err error) {
	opts := []client.ListOption{client.InNamespace(o.ns)}
	if s.rv != "" {
		opts = append(opts, &client.ListOptions{Raw: &metav1.ListOptions{
			ResourceVersion: s.rv, ResourceVersionMatch: metav1.ResourceVersionMatchExact}})
	}
	switch s.kind {
	case QuotaExceeded:
		list := &agentsv1alpha1.AgentSessionList{}
		if err := r.List(ctx, list, opts...); err != nil {
			return 0, 0, "", err
		}
		for i := range list.Items {
			if countsAgainstQuota(&list.Items[i], false) {
				n++
			}
		}
		return n, o.quota, "active sessions (admitted or bound, not ended)", nil
	case PoolOverTarget:
		list := &corev1.PodList{}
		if err := r.List(ctx, list, opts...); err != nil {
			return 0, 0, "", err
		}
		for i := range list.Items {
			if o.isLiveWarm(&list.Items[i], false) {
				n++
			}
		}
		return n, o.poolTarget, "live warm pods of the pool", nil
	}
	return 0, 0, "", fmt.Errorf("unknown suspicion %q", s.kind)
}

// countsAgainstQuota reports whether the quota counts s: from its admission (or bind)
// until it ends.
func countsAgainstQuota(s *agentsv1alpha1.AgentSession, deleted bool) bool {
	return !deleted && !s.Status.Phase.IsFinished() &&
		(s.Status.PodName != "" || meta.IsStatusConditionTrue(s.Status.Conditions, agentsv1alpha1.QuotaReserved))
}

// isLiveWarm reports whether p is a live unbound pod of the pool, Ready or booting.
func (o *observer) isLiveWarm(p *corev1.Pod, deleted bool) bool {
	return p.GenerateName == o.pool+"-" && p.Labels[agentsv1alpha1.SessionLabel] == "" && !deleted && p.DeletionTimestamp.IsZero()
}

// drainSuspicions waits up to timeout until every suspicion is resolved; each one left is
// a violation.
func (o *observer) drainSuspicions(ctx context.Context, timeout time.Duration) {
	_ = waitCtx(ctx, timeout, func(ctx context.Context) error {
		return o.WaitUntil(ctx, func() bool { return len(o.pending) == 0 })
	})
	o.Lock()
	defer o.Unlock()
	o.checks++
	for _, s := range o.pending {
		o.violate(SuspicionUnresolved, "%s at resourceVersion %s (t=%s) not resolved against a List within %s", s.kind, s.rv, s.at, timeout)
	}
}
