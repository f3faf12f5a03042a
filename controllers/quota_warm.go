package controllers

// The warmSandboxes limit: how far a namespace is over it, and each pool's share.

import (
	"context"
	"maps"
	"slices"
	"strings"

	corev1 "k8s.io/api/core/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"

	agentsv1alpha1 "github.com/hyperpool/hyperpool/api/v1alpha1"
	"github.com/hyperpool/hyperpool/internal/poolbook"
)

// warmExcess is how far a namespace's warm pods exceed its quota's warmSandboxes.
type warmExcess struct {
	excess int // 0 when within the limit, or unlimited
	quota  *enforcedQuota
	// byPool are the cache's warm pods per class, to split the excess between the pools.
	byPool map[string]int
}

// excessWarm measures how many warm pods the namespace holds beyond its quota's
// warmSandboxes, so pools can be trimmed to fit, each by its share.
func (q *quotaKeeper) excessWarm(ctx context.Context, ns string) (warmExcess, error) {
	quota, err := q.quotaFor(ctx, ns)
	if err != nil || quota == nil || quota.hard.WarmSandboxes == nil {
		return warmExcess{quota: quota}, err
	}
	l := q.lockLedger(ns)
	defer q.unlockLedger(ns, l)
	u, err := q.measure(ctx, ns, l)
	if err != nil {
		return warmExcess{quota: quota}, err
	}
	return warmExcess{excess: max(0, u.warm-int(*quota.hard.WarmSandboxes)), quota: quota, byPool: u.warmByPool}, nil
}

// share is how many warm pods pool gives up, holding own of them (counted as the cache
// counts them): its part of the excess in proportion to its warm pods, so that the pools'
// shares, decided from one view of the namespace, add up to the excess and no more.
func (w warmExcess) share(pool string, own int) int {
	if w.excess == 0 {
		return 0
	}
	weights := maps.Clone(w.byPool)
	if weights == nil {
		weights = map[string]int{}
	}
	weights[pool] = own
	return warmShares(w.excess, weights)[pool]
}

// warmShares splits n between pools in proportion to their warm pods, by largest remainder
// (ties to the first name), so the shares add up to n exactly; a pool never gives more than
// it holds, and when n is at least all of them, every pool gives all.
func warmShares(n int, warm map[string]int) map[string]int {
	shares := make(map[string]int, len(warm))
	total := 0
	for _, w := range warm {
		total += max(w, 0)
	}
	if n <= 0 || total == 0 {
		return shares
	}
	if n >= total {
		for pool, w := range warm {
			shares[pool] = max(w, 0)
		}
		return shares
	}
	type part struct {
		pool      string
		remainder int // of n*w/total, in units of 1/total
	}
	parts := make([]part, 0, len(warm))
	given := 0
	for pool, w := range warm {
		w = max(w, 0)
		shares[pool] = n * w / total
		given += shares[pool]
		parts = append(parts, part{pool, n * w % total})
	}
	slices.SortFunc(parts, func(a, b part) int {
		if a.remainder != b.remainder {
			return b.remainder - a.remainder
		}
		return strings.Compare(a.pool, b.pool)
	})
	for _, p := range parts[:n-given] {
		shares[p.pool]++
	}
	return shares
}

// podBook is the book measure counts a namespace's pods from: the shared one, or one made
// from a list of the namespace's sandbox pods (the same count, read the slow way).
func (q *quotaKeeper) podBook(ctx context.Context, ns string) (*poolbook.Book, error) {
	if q.book != nil {
		return q.book, nil
	}
	pods := &corev1.PodList{}
	if err := q.reader.List(ctx, pods, client.InNamespace(ns), client.HasLabels{agentsv1alpha1.ClassLabel}, client.UnsafeDisableDeepCopy); err != nil {
		return nil, err
	}
	book := poolbook.New()
	for i := range pods.Items {
		book.Update(&pods.Items[i])
	}
	return book, nil
}
