//go:build !windows

package bench

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/hyperpool/hyperpool/test/testbed"
)

// The small benchmark: every scenario with a few dozen sessions against one test bed and
// one manager process, asserting correctness (all bound, none twice, no pod over-created),
// never timings.
var h *Harness

func TestMain(m *testing.M) {
	var dir string
	testbed.Main(m, testbed.Options{ServeExec: true}, func(env *testbed.Env) error {
		ctx := context.Background()
		var err error
		if dir, err = os.MkdirTemp("", "hyperpool-bench-"); err != nil {
			return err
		}
		env.BeforeStop(func() { _ = os.RemoveAll(dir) })
		binary := filepath.Join(dir, "manager")
		if err := BuildManager(ctx, env.RepoRoot, binary); err != nil {
			return err
		}
		if h, err = NewHarness(ctx, env); err != nil {
			return err
		}
		env.BeforeStop(func() { _ = h.Close() })
		if err := h.EnsureNodes(ctx, 4); err != nil {
			return err
		}
		h.Manager, err = StartManager(ctx, binary, env.KubeconfigPath, filepath.Join(env.LogDir, "manager.log"), 200, 400)
		return err
	})
}

// checkBinds asserts what every scenario must hold.
func checkBinds(t *testing.T, r *Result, wantWarm bool) {
	t.Helper()
	if r.Scenario != "expiry" && r.Ready != r.Sessions { // an expiring session may end before it is seen Ready
		t.Errorf("%s: %d of %d sessions seen Ready", r.Scenario, r.Ready, r.Sessions)
	}
	t.Helper()
	t.Logf("%s: bound %d/%d (warm %d, cold %d), p50 %.1f ms, floor p50 %.1f ms, writes/bind %.2f critical %.2f total, pods %d/%d",
		r.Scenario, r.Bound, r.Sessions, r.Warm, r.Cold, r.Latency.P50, r.Floor.P50, r.CriticalPerBind, r.TotalPerBind, r.PodsCreated, r.PodsNeeded)
	if r.Sessions == 0 || r.Bound != r.Sessions || r.CreateErrors != 0 {
		t.Errorf("%s: %d of %d sessions bound, %d create errors; notes %v", r.Scenario, r.Bound, r.Sessions, r.CreateErrors, r.Notes)
	}
	if r.Rebinds != 0 || r.DoubleBinds != 0 {
		t.Errorf("%s: %d sessions bound more than once, %d pods bound to two sessions", r.Scenario, r.Rebinds, r.DoubleBinds)
	}
	if r.OverCreated != 0 {
		t.Errorf("%s: %d pods created, %d needed (pool %d + %d warm + %d cold binds)", r.Scenario, r.PodsCreated, r.PodsNeeded, r.Pool, r.Warm, r.Cold)
	}
	if wantWarm && r.Cold != 0 {
		t.Errorf("%s: %d cold starts against a pool large enough", r.Scenario, r.Cold)
	}
	deleteScenarioNamespace(t, r.Namespace)
}

func TestSerial(t *testing.T) {
	r, err := h.Serial(context.Background(), 15, 15, 5)
	if err != nil {
		t.Fatal(err)
	}
	checkDesignFloor(t, r, 5)
	checkBinds(t, r, true)
	if r.Floor.N != 5 || r.CriticalPerBind == 0 {
		t.Errorf("floor samples %d, critical writes per bind %.2f", r.Floor.N, r.CriticalPerBind)
	}
}

// checkDesignFloor asserts the design floor ran next to the binds (exactly samples of them
// where they are interleaved, at least that many else) and stayed out of their write counts:
// exactly two critical writes per warm bind, the floor's own under its keys.
func checkDesignFloor(t *testing.T, r *Result, samples int) {
	t.Helper()
	d := r.DesignFloor
	if d == nil || d.Total.N < samples || (d.Inline && d.Total.N != samples) || d.RatioP50 <= 0 || d.GapP50MS != r.Latency.P50-d.Total.P50 {
		t.Fatalf("%s: design floor %+v, want %d samples, a ratio and a gap", r.Scenario, d, samples)
	}
	t.Logf("%s: bind p50 %.1f ms, design floor p50 %.1f ms (%.2fx)", r.Scenario, r.Latency.P50, d.Total.P50, d.RatioP50)
	if r.CriticalPerBind != 2 {
		t.Errorf("%s: %.2f critical writes per bind, want 2 (the floor's own writes counted?): %v", r.Scenario, r.CriticalPerBind, r.Writes.ByRequest)
	}
	for _, k := range []string{"design floor: POST agentsessions", "design floor: PATCH agentsessions/status", "design floor: PATCH pods"} {
		if r.Writes.ByRequest[k] < float64(d.Total.N) {
			t.Errorf("%s: %s = %.0f, want at least %d", r.Scenario, k, r.Writes.ByRequest[k], d.Total.N)
		}
	}
	if len(r.CPU) == 0 || r.Sizes == nil || r.Sizes.WarmPod == 0 || r.Sizes.ReadySession == 0 {
		t.Errorf("%s: CPU %v, object sizes %+v", r.Scenario, r.CPU, r.Sizes)
	}
}

func TestPaced(t *testing.T) {
	r, err := h.Paced(context.Background(), 6, 8, 3, 200*time.Millisecond)
	if err != nil {
		t.Fatal(err)
	}
	checkDesignFloor(t, r, 3)
	if len(r.WriteCosts) != 4 || r.WriteCosts[0].N != writeCostBatch {
		t.Errorf("paced: write costs %+v; notes %v", r.WriteCosts, r.Notes)
	}
	checkBinds(t, r, true)
}

func TestPoolSize(t *testing.T) {
	r, err := h.PoolSize(context.Background(), 10, 20, 20, 3)
	if err != nil {
		t.Fatal(err)
	}
	checkBinds(t, r, true)
}

func TestBurst(t *testing.T) {
	r, err := h.Burst(context.Background(), 30, 60, 35, 3)
	if err != nil {
		t.Fatal(err)
	}
	checkBinds(t, r, true)
}

func TestThroughput(t *testing.T) {
	r, err := h.Throughput(context.Background(), 3*time.Second, 8, 30, 35, 3)
	if err != nil {
		t.Fatal(err)
	}
	checkBinds(t, r, true)
}

func TestCold(t *testing.T) {
	r, err := h.Cold(context.Background(), 3, 500*time.Millisecond, 3)
	if err != nil {
		t.Fatal(err)
	}
	checkBinds(t, r, false)
	if r.Cold != r.Sessions {
		t.Errorf("cold: %d of %d sessions started cold", r.Cold, r.Sessions)
	}
}

func TestExpiry(t *testing.T) {
	r, err := h.Expiry(context.Background(), 20, 50, 4*time.Second, 50*time.Millisecond, 10, 3)
	if err != nil {
		t.Fatal(err)
	}
	checkBinds(t, r, false)
	if r.Expired != r.Sessions || r.ExpiryLag == nil || r.ExpiryLag.N != r.Sessions {
		t.Errorf("expiry: %d of %d sessions expired (MaxLifetime); lag %+v; notes %v", r.Expired, r.Sessions, r.ExpiryLag, r.Notes)
	}
}

func TestScale(t *testing.T) {
	r, err := h.Scale(context.Background(), 30, 60, 4, 3)
	if err != nil {
		t.Fatal(err)
	}
	checkBinds(t, r, false)
	if r.PeakRSSMiB <= 0 {
		t.Errorf("scale: no manager RSS sampled")
	}
}

func TestFirstOutput(t *testing.T) {
	r, err := h.FirstOutput(context.Background(), 3, 3, 3)
	if err != nil {
		t.Fatal(err)
	}
	fo := r.FirstOutput
	if fo == nil || fo.Total.N != r.Sessions || fo.ExitCodes != 0 || fo.BadOutput != 0 {
		t.Errorf("firstoutput: %+v", fo)
	} else {
		t.Logf("firstoutput: Open to first byte p50 %.1f ms (bind %.1f, client setup %.1f, exec setup %.1f)",
			fo.Total.P50, fo.Bind.P50, fo.ClientSetup.P50, fo.ExecSetup.P50)
	}
	checkBinds(t, r, true)
}

func TestTransfer(t *testing.T) {
	r, err := h.Transfer(context.Background(), 1<<20, 20, 1, 3)
	if err != nil {
		t.Fatal(err)
	}
	tr := r.Transfer
	if tr == nil || tr.Mismatches != 0 || tr.Files != 21 || len(tr.Upload.ClientSeconds) != 1 || len(tr.Download.KubectlSeconds) != 1 {
		t.Errorf("transfer: %+v; notes %v", tr, r.Notes)
	} else {
		t.Logf("transfer: upload %.1f MB/s (kubectl cp %.1f), download %.1f MB/s (kubectl cp %.1f)",
			tr.Upload.ClientMBps, tr.Upload.KubectlMBps, tr.Download.ClientMBps, tr.Download.KubectlMBps)
	}
	checkBinds(t, r, true)
}

func TestReportRenders(t *testing.T) {
	r := &Report{Started: time.Now(), Results: []*Result{{Scenario: "x", LatenciesMS: []float64{1, 2, 3}, FloorSamplesMS: []float64{1},
		Latency: percentiles([]float64{1, 2, 3}), ExpiryLag: &Stats{}, FirstOutput: &FirstOutputStats{}, Transfer: &TransferStats{},
		DesignFloor: &DesignFloorStats{Total: percentiles([]float64{2})}, Ready: 3, CPU: []ProcessCPU{{Process: "kube-apiserver", PerBindMS: 1}}}}}
	dir := t.TempDir()
	if err := r.Write(dir); err != nil {
		t.Fatal(err)
	}
	for _, f := range []string{"results.md", "latency-cdf.png"} { // the figures are kept in the run's bench.json
		if _, err := os.Stat(filepath.Join(dir, f)); err != nil {
			t.Error(err)
		}
	}
	if md := r.Markdown(); !strings.Contains(md, "Bind vs design floor") || !strings.Contains(md, "CPU ms per bind") {
		t.Errorf("the design floor's tables are missing:\n%s", md)
	}
	if md := r.Markdown(); !strings.Contains(md, "Time to first output") || !strings.Contains(md, "upload kubectl cp") {
		t.Errorf("the session scenarios' tables are missing:\n%s", md)
	}
	if got := percentiles([]float64{5, 1, 4, 2, 3}); got.P50 != 3 || got.Max != 5 {
		t.Errorf("percentiles: %+v", got)
	}
}

// The annotations scenario at a small size: a tenant's annotations on sandbox pods grow the
// manager's cache by almost nothing, where a cache keeping every annotation grows by all of
// them (20 pods x 128 KiB = 2.5 MiB).
func TestAnnotations(t *testing.T) {
	r, err := h.Annotations(context.Background(), 20, 128*1024, 4, 2)
	if err != nil {
		t.Fatal(err)
	}
	m := r.Memory
	t.Logf("%s: %v", r.Scenario, r.Notes)
	if m == nil || m.FullMetadataCacheBloatedMiB-m.FullMetadataCachePlainMiB < 2 {
		t.Fatalf("a cache keeping every annotation did not grow by the 2.5 MiB added: %+v", m)
	}
	if grown := m.ManagerCacheBloatedMiB - m.ManagerCachePlainMiB; grown > 0.5 {
		t.Errorf("the manager's cache grew by %.1f MiB with the tenant's annotations; want almost nothing: %+v", grown, m)
	}
	deleteScenarioNamespace(t, r.Namespace)
}

// namespaceGoneTimeout bounds the wait for a scenario's namespace to be gone: its sessions
// end and its pods go, on a loaded 2-core machine.
const namespaceGoneTimeout = 2 * time.Minute

// deleteScenarioNamespace deletes a scenario's namespace and waits until it is gone. The
// write counts are read from the API server's metrics, for the whole cluster: a namespace
// still being torn down while the next scenario runs (its sessions ending, its pods deleted)
// counted in that scenario's writes per bind on a loaded machine.
func deleteScenarioNamespace(t *testing.T, ns string) {
	t.Helper()
	if err := h.DeleteNamespace(context.Background(), ns, namespaceGoneTimeout); err != nil {
		t.Errorf("namespace %s not gone within %s: %v", ns, namespaceGoneTimeout, err)
	}
}
