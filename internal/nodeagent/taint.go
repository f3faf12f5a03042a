package nodeagent

import (
	"context"
	"fmt"
	"time"

	corev1 "k8s.io/api/core/v1"
)

// DefaultLeakTaintKey is the key of the node agent's leak taint unless --leak-taint-key
// says otherwise.
const DefaultLeakTaintKey = "agents.hyperpool.io/leaked-vm-memory"

// leaked reports whether a VM counts as leaked memory: its pod is gone (missing from the API
// server with its sandbox not ready) and already was in an earlier round. A VM whose pod was
// just deleted is torn down within seconds, so one round's absence is not a leak; a VM
// still there a round later is, whether it waits for the grace period or for --reap.
func (a *Agent) leaked(vm UtilityVM, v Verdict, now time.Time) bool {
	since, gone := a.missingSince[vm.ID]
	return gone && since.Before(now) && (v == VerdictOrphan || v == VerdictPending)
}

// keepLeakTaint keeps the leak taint on the Node while leaked VMs hold at least the
// threshold, and off otherwise. The scheduler charges each sandbox pod its VM (requests
// plus the RuntimeClass overhead), but a leaked VM belongs to no pod, so the node looks
// emptier than it is; PreferNoSchedule steers new pods elsewhere without evicting or
// refusing any. The Node is written only when the taint must change: its state is read
// once, then remembered, and read again after a failed write.
func (a *Agent) keepLeakTaint(ctx context.Context, leakedBytes uint64) error {
	if a.Config.LeakTaintThreshold == 0 {
		return nil
	}
	want := leakedBytes >= a.Config.LeakTaintThreshold
	a.Metrics.LeakTainted.Set(0)
	if a.tainted != nil && *a.tainted == want {
		if want {
			a.Metrics.LeakTainted.Set(1)
		}
		return nil
	}
	taint := corev1.Taint{Key: a.Config.LeakTaintKey, Effect: corev1.TaintEffectPreferNoSchedule}
	changed, err := a.Node.SetTaint(ctx, taint, want)
	if err != nil {
		a.tainted = nil
		return fmt.Errorf("setting taint %s on node %s to %t: %w", taint.Key, a.Config.NodeName, want, err)
	}
	a.tainted = &want
	if want {
		a.Metrics.LeakTainted.Set(1)
	}
	if !changed {
		return nil
	}
	leaked, threshold := formatBytes(leakedBytes), formatBytes(a.Config.LeakTaintThreshold)
	if want {
		a.Log.Info("leaked utility VMs hold memory the scheduler does not see: node tainted", "taint", taint.ToString(), "leaked", leaked, "threshold", threshold)
		a.Node.Event(corev1.EventTypeWarning, ReasonLeakTainted, "Taint", fmt.Sprintf(
			"leaked utility VMs hold %s of memory, at least the %s threshold, which no pod's requests count: tainted %s so the scheduler prefers other nodes; the taint goes once the VMs are reaped (--reap) or their memory is freed",
			leaked, threshold, taint.ToString()))
		return nil
	}
	a.Log.Info("leaked utility VM memory below the threshold: taint removed", "taint", taint.Key, "leaked", leaked, "threshold", threshold)
	a.Node.Event(corev1.EventTypeNormal, ReasonLeakUntainted, "Untaint", fmt.Sprintf(
		"leaked utility VMs hold %s of memory, below the %s threshold: removed taint %s", leaked, threshold, taint.Key))
	return nil
}
