package controllers

import (
	"context"
	"fmt"
	"slices"
	"strings"
	"time"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/types"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/log"
	"sigs.k8s.io/controller-runtime/pkg/recorder"

	agentsv1alpha1 "github.com/hyperpool/hyperpool/api/v1alpha1"
	"github.com/hyperpool/hyperpool/internal/poolbook"
)

// reasonPoolBookDrift is the reason of the Warning Event on a class whose pods the pool book
// counted differently from the cache.
const reasonPoolBookDrift = "PoolBookDrift"

// bookSettle is how long the audit waits before it looks again at what differed: an event
// on its way from the cache's store to the book's handler is a difference for that long,
// and is not drift.
const bookSettle = 2 * time.Second

// bookAudit compares the pool book with a list of every sandbox pod in the cache, once per
// interval, on the leader. The book is only ever trusted for counting and ordering (a
// delete or a bind still writes with the resourceVersion the cache showed), so drift
// costs a wrong count, never a pod bound twice; the audit makes it visible and repairs it.
type bookAudit struct {
	book     *poolbook.Book
	reader   client.Reader // the manager's cache
	interval time.Duration
	recorder recorder.EventRecorder
	// settle is how long a difference must stay to count (bookSettle; tests shorten it).
	settle time.Duration
}

// NeedLeaderElection: only the leader's book counts anything.
func (a *bookAudit) NeedLeaderElection() bool { return true }

// Start audits every interval until ctx ends.
func (a *bookAudit) Start(ctx context.Context) error {
	ticker := time.NewTicker(a.interval)
	defer ticker.Stop()
	for {
		select {
		case <-ctx.Done():
			return nil
		case <-ticker.C:
			if _, err := a.audit(ctx); err != nil {
				log.FromContext(ctx).Error(err, "auditing the pool book")
			}
		}
	}
}

// audit compares the book with the cache twice, bookSettle apart, and reports what
// differed the same way both times; the book then takes the cache's view.
func (a *bookAudit) audit(ctx context.Context) ([]string, error) {
	bookAudits.Inc()
	first, pods, err := a.compare(ctx)
	if err != nil {
		return nil, err
	}
	if len(first) == 0 {
		log.FromContext(ctx).Info("audited the pool book: it agrees with the cache", "pods", len(pods))
		return nil, nil
	}
	select {
	case <-ctx.Done():
		return nil, nil
	case <-time.After(a.settle):
	}
	second, pods, err := a.compare(ctx)
	if err != nil {
		return nil, err
	}
	var drift []string
	for _, d := range second {
		if slices.Contains(first, d) {
			drift = append(drift, d)
		}
	}
	if len(drift) == 0 {
		return nil, nil
	}
	bookDrift.Add(float64(len(drift)))
	log.FromContext(ctx).Error(nil, "the pool book differs from the cache; taking the cache's view", "differences", drift)
	a.warnClasses(ctx, drift)
	a.book.Resync(pods)
	return drift, nil
}

func (a *bookAudit) compare(ctx context.Context) ([]string, []corev1.Pod, error) {
	list := &corev1.PodList{}
	if err := a.reader.List(ctx, list, client.HasLabels{agentsv1alpha1.ClassLabel}); err != nil {
		return nil, nil, fmt.Errorf("listing sandbox pods: %w", err)
	}
	return a.book.Diff(list.Items), list.Items, nil
}

// warnClasses writes a Warning Event on each existing class the differences name (each
// starts "class NAMESPACE/NAME: ").
func (a *bookAudit) warnClasses(ctx context.Context, drift []string) {
	byClass := map[types.NamespacedName][]string{}
	for _, d := range drift {
		rest, ok := strings.CutPrefix(d, "class ")
		if !ok {
			continue
		}
		name, what, _ := strings.Cut(rest, ": ")
		ns, class, ok := strings.Cut(name, "/")
		if !ok {
			continue
		}
		key := types.NamespacedName{Namespace: ns, Name: class}
		byClass[key] = append(byClass[key], what)
	}
	for key, whats := range byClass {
		sb := &agentsv1alpha1.AgentSandbox{}
		if err := a.reader.Get(ctx, key, sb); err != nil {
			continue
		}
		a.recorder.Eventf(sb, nil, corev1.EventTypeWarning, reasonPoolBookDrift, "Audit",
			"the manager's pod counts for this class differed from its cache (%d differences, first: %s); it took the cache's view. Please report this as a bug, with the manager's log",
			len(whats), whats[0])
	}
}
