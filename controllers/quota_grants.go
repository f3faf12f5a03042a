package controllers

// Pod grants: the quota's permission to create a pod, held until the cache shows the pod.

import (
	"context"
	"fmt"

	"k8s.io/utils/clock"

	agentsv1alpha1 "github.com/hyperpool/hyperpool/api/v1alpha1"
)

// podGrant is a permission to create one pod, to be confirmed with its name or released.
type podGrant struct {
	ledger *namespaceLedger
	token  string
	clock  clock.PassiveClock
}

// confirm records the created pod's name, so the grant counts until the cache shows it.
func (g *podGrant) confirm(name string) {
	if g == nil {
		return
	}
	g.ledger.mu.Lock()
	defer g.ledger.mu.Unlock()
	p := g.ledger.pods[g.token]
	delete(g.ledger.pods, g.token)
	p.at = g.clock.Now()
	g.ledger.pods[name] = p
}

// release gives back a grant whose pod was not created.
func (g *podGrant) release() {
	if g == nil {
		return
	}
	g.ledger.mu.Lock()
	defer g.ledger.mu.Unlock()
	delete(g.ledger.pods, g.token)
}

// reservePods grants up to n pods of footprint f (warm: for a pool). It returns the grants
// (possibly fewer than n) and, when the quota held some back, why.
func (q *quotaKeeper) reservePods(ctx context.Context, ns string, f agentsv1alpha1.Footprint, n int, warm bool) ([]*podGrant, *blocker, error) {
	quota, err := q.quotaFor(ctx, ns)
	if err != nil {
		return nil, nil, err
	}
	if quota == nil {
		return make([]*podGrant, n), nil, nil // nil grants: nothing to confirm or release
	}
	l := q.lockLedger(ns)
	defer q.unlockLedger(ns, l)
	u, err := q.measure(ctx, ns, l)
	if err != nil {
		return nil, nil, err
	}
	var grants []*podGrant
	var blk *blocker
	for range n {
		if blk = quota.blocks(u, f, warm); blk != nil {
			break
		}
		token := fmt.Sprintf("grant-%p-%d", l, len(l.pods))
		for _, exists := l.pods[token]; exists; _, exists = l.pods[token] {
			token += "+"
		}
		l.pods[token] = grantedPod{footprint: f, warm: warm, at: q.clock.Now()}
		if warm {
			u.warm++
		}
		u.add(f)
		grants = append(grants, &podGrant{ledger: l, token: token, clock: q.clock})
	}
	return grants, blk, nil
}

// blocks says why one more pod of footprint f would exceed the quota, or nil.
func (e *enforcedQuota) blocks(u *usage, f agentsv1alpha1.Footprint, warm bool) *blocker {
	h := e.hard
	exceeds := func(what string, requested, used, allowed string, alone bool) *blocker {
		reason := agentsv1alpha1.ReasonWaitingForQuota
		if alone {
			reason = agentsv1alpha1.ReasonExceedsQuota
		}
		return &blocker{Reason: reason, Message: fmt.Sprintf("%s: %s requested + %s in use > %s allowed by %s",
			what, requested, used, allowed, e.describe())}
	}
	if warm && h.WarmSandboxes != nil && u.warm+1 > int(*h.WarmSandboxes) {
		return exceeds("warmSandboxes", "1", fmt.Sprint(u.warm), fmt.Sprint(*h.WarmSandboxes), *h.WarmSandboxes == 0)
	}
	if h.Memory != nil {
		total := u.memory.DeepCopy()
		total.Add(f.Memory)
		if total.Cmp(*h.Memory) > 0 {
			return exceeds("memory", f.Memory.String(), u.memory.String(), h.Memory.String(), f.Memory.Cmp(*h.Memory) > 0)
		}
	}
	if h.CPU != nil && u.cpu+int64(f.VCPUs) > h.CPU.Value() {
		return exceeds("cpu", fmt.Sprint(f.VCPUs), fmt.Sprint(u.cpu), h.CPU.String(), int64(f.VCPUs) > h.CPU.Value())
	}
	return nil
}
