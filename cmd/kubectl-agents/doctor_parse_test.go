//go:build !windows

package main

import (
	"testing"
	"time"

	coordinationv1 "k8s.io/api/coordination/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/version"
	fakediscovery "k8s.io/client-go/discovery/fake"
	clienttesting "k8s.io/client-go/testing"
	"k8s.io/utils/ptr"

	"github.com/hyperpool/hyperpool/internal/nodeagent"
)

// doctor reads the node agent's summary without importing the agent: it must read what the
// agent writes (nodeagent.Summary.String).
func TestParseUVMSummaryReadsTheAgentsFormat(t *testing.T) {
	t.Parallel()
	const mib = 1 << 20
	for _, s := range []nodeagent.Summary{
		{},
		{VMs: 12, MemoryBytes: 18 << 30, ScratchBytes: 40 << 30, Orphans: 1, LeakedBytes: 1536 * mib, SizeMismatches: 2},
		{VMs: 1, LeakedBytes: mib + 1}, // rounded up to whole MiB by the agent
	} {
		got, ok := parseUVMSummary(s.String())
		wantLeaked := (s.LeakedBytes + mib - 1) / mib * mib
		if !ok || got.vms != s.VMs || got.leaked.Value() != int64(wantLeaked) { //nolint:gosec // small test values
			t.Errorf("parseUVMSummary(%q) = %+v, %v; want vms %d, leaked %d", s.String(), got, ok, s.VMs, wantLeaked)
		}
	}
	for _, bad := range []string{"", "memory=1Gi", "vms=x leaked=1Gi"} {
		if _, ok := parseUVMSummary(bad); ok {
			t.Errorf("parseUVMSummary(%q) accepted a summary without a VM count", bad)
		}
	}
}

func TestLeaseFresh(t *testing.T) {
	t.Parallel()
	now := time.Date(2026, 12, 7, 9, 0, 0, 0, time.UTC)
	lease := func(holder string, renewedAgo time.Duration, durationSeconds *int32) *coordinationv1.Lease {
		l := &coordinationv1.Lease{Spec: coordinationv1.LeaseSpec{LeaseDurationSeconds: durationSeconds}}
		if holder != "" {
			l.Spec.HolderIdentity = ptr.To(holder)
		}
		if renewedAgo >= 0 {
			l.Spec.RenewTime = &metav1.MicroTime{Time: now.Add(-renewedAgo)}
		}
		return l
	}
	for _, tc := range []struct {
		name  string
		lease *coordinationv1.Lease
		want  bool
	}{
		{"renewed just now", lease("m-1", time.Second, ptr.To[int32](15)), true},
		{"within duration and slack", lease("m-1", 15*time.Second+leaseSlack-time.Second, ptr.To[int32](15)), true},
		{"past duration and slack", lease("m-1", 15*time.Second+leaseSlack+time.Second, ptr.To[int32](15)), false},
		{"no duration: 15 s", lease("m-1", 20*time.Second, nil), true},
		{"released: no holder", lease("", time.Second, ptr.To[int32](15)), false},
		{"never renewed", lease("m-1", -1, ptr.To[int32](15)), false},
	} {
		if got := leaseFresh(tc.lease, now); got != tc.want {
			t.Errorf("%s: leaseFresh = %v, want %v", tc.name, got, tc.want)
		}
	}
}

func TestCheckAPIServerVersion(t *testing.T) {
	t.Parallel()
	vap := []*metav1.APIResourceList{{GroupVersion: "admissionregistration.k8s.io/v1",
		APIResources: []metav1.APIResource{{Name: "validatingadmissionpolicies"}}}}
	for _, tc := range []struct {
		gitVersion string
		resources  []*metav1.APIResourceList
		want       checkStatus
	}{
		{"v1.30.0", nil, checkPass},
		{"v1.34.2", nil, checkPass},
		{"v1.29.9", vap, checkFail}, // a release says enough: 1.29 is too old
		{"v0.0.0-master+$Format:%H$", vap, checkPass},
		{"v0.0.0-master+$Format:%H$", nil, checkFail},
	} {
		disc := &fakediscovery.FakeDiscovery{Fake: &clienttesting.Fake{Resources: tc.resources},
			FakedServerVersion: &version.Info{GitVersion: tc.gitVersion}}
		if got := checkAPIServer(t.Context(), &doctorEnv{discovery: disc}); got.Status != tc.want {
			t.Errorf("%s (VAP served: %v): %s %q, want %s", tc.gitVersion, tc.resources != nil, got.Status, got.Detail, tc.want)
		}
	}
}
