package nodeagent

import (
	"context"
	"errors"
	"testing"
	"time"

	"google.golang.org/grpc"
	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"
)

func TestSandboxIDFromVMID(t *testing.T) {
	tests := []struct {
		id     string
		want   string
		wantOK bool
	}{
		{"0f3b9c3e5d8a4f2e9b7c6d5e4f3a2b1c0d9e8f7a6b5c4d3e2f1a0b9c8d7e6f5a@vm", "0f3b9c3e5d8a4f2e9b7c6d5e4f3a2b1c0d9e8f7a6b5c4d3e2f1a0b9c8d7e6f5a", true},
		{"sb@vm", "sb", true},
		{"@vm", "", false},
		{"sb", "", false},
		{"sb@vm@vm", "", false},
		{"sb@VM", "", false},
		{"", "", false},
	}
	for _, tc := range tests {
		got, ok := SandboxIDFromVMID(tc.id)
		if got != tc.want || ok != tc.wantOK {
			t.Errorf("SandboxIDFromVMID(%q) = %q, %v; want %q, %v", tc.id, got, ok, tc.want, tc.wantOK)
		}
	}
}

func TestClassify(t *testing.T) {
	now := t0
	old := UtilityVM{ID: "a@vm", Created: now.Add(-time.Hour)}
	pod := &PodRef{UID: "u"}
	ready := &PodRef{UID: "u", State: SandboxReady}
	notReady := &PodRef{UID: "u", State: SandboxNotReady}
	tests := []struct {
		name         string
		vm           UtilityVM
		pod          *PodRef
		exists       bool
		missingSince time.Time
		want         Verdict
	}{
		{"no attribution", old, nil, false, now.Add(-time.Hour), VerdictUnattributed},
		{"attribution without UID", old, &PodRef{Name: "p"}, false, now.Add(-time.Hour), VerdictUnattributed},
		{"pod exists", old, pod, true, now.Add(-time.Hour), VerdictLive},
		{"pod exists, VM of unknown age", UtilityVM{ID: "a@vm"}, pod, true, time.Time{}, VerdictLive},
		{"pod gone, VM of unknown age", UtilityVM{ID: "a@vm"}, pod, false, now.Add(-time.Hour), VerdictPending},
		{"pod gone now", old, pod, false, time.Time{}, VerdictPending},
		{"pod gone long, VM young", UtilityVM{ID: "a@vm", Created: now.Add(-time.Minute)}, pod, false, now.Add(-time.Hour), VerdictPending},
		{"pod gone long, VM old", old, pod, false, now.Add(-grace), VerdictOrphan},
		{"missing-since in the future (clock step)", old, pod, false, now.Add(time.Hour), VerdictPending},
		{"VM created in the future (clock skew)", UtilityVM{ID: "a@vm", Created: now.Add(time.Hour)}, pod, false, now.Add(-time.Hour), VerdictPending},
		// The runtime lists the sandbox as ready: the kubelet still runs it, whatever the API says.
		{"sandbox ready, pod gone long, VM old", old, ready, false, now.Add(-10 * grace), VerdictSandboxReady},
		{"sandbox ready, pod gone now", old, ready, false, time.Time{}, VerdictSandboxReady},
		{"sandbox ready, VM of unknown age", UtilityVM{ID: "a@vm"}, ready, false, now.Add(-time.Hour), VerdictSandboxReady},
		{"sandbox ready, pod exists", old, ready, true, time.Time{}, VerdictLive},
		{"sandbox ready, no UID", old, &PodRef{Name: "p", State: SandboxReady}, false, now.Add(-time.Hour), VerdictUnattributed},
		{"sandbox not ready, pod gone long, VM old", old, notReady, false, now.Add(-grace), VerdictOrphan},
		{"sandbox not ready, pod gone now", old, notReady, false, time.Time{}, VerdictPending},
	}
	for _, tc := range tests {
		if got := Classify(tc.vm, tc.pod, tc.exists, tc.missingSince, now, grace); got != tc.want {
			t.Errorf("%s: Classify = %s, want %s", tc.name, got, tc.want)
		}
	}
}

func TestSummaryString(t *testing.T) {
	tests := []struct {
		s    Summary
		want string
	}{
		{Summary{}, "vms=0 memory=0 scratch=0 orphans=0 unattributed=0 leaked=0 sizeMismatches=0"},
		{Summary{VMs: 12, MemoryBytes: 18 * gib, ScratchBytes: 40 * gib, Orphans: 1}, "vms=12 memory=18Gi scratch=40Gi orphans=1 unattributed=0 leaked=0 sizeMismatches=0"},
		{Summary{VMs: 1, MemoryBytes: 1536 << 20, ScratchBytes: 1}, "vms=1 memory=1536Mi scratch=1Mi orphans=0 unattributed=0 leaked=0 sizeMismatches=0"},
		{Summary{VMs: 1, MemoryBytes: gib + 1, Unattributed: 2}, "vms=1 memory=1025Mi scratch=0 orphans=0 unattributed=2 leaked=0 sizeMismatches=0"},
		{Summary{MemoryBytes: 1 << 40}, "vms=0 memory=1Ti scratch=0 orphans=0 unattributed=0 leaked=0 sizeMismatches=0"},
		{Summary{MemoryBytes: ^uint64(0)}, "vms=0 memory=8796093022207Mi scratch=0 orphans=0 unattributed=0 leaked=0 sizeMismatches=0"},
	}
	for _, tc := range tests {
		if got := tc.s.String(); got != tc.want {
			t.Errorf("%+v.String() = %q, want %q", tc.s, got, tc.want)
		}
	}
}

func TestParseSummary(t *testing.T) {
	got, err := ParseSummary("vms=12 memory=18Gi scratch=40Gi orphans=1 unattributed=3 future=x")
	if err != nil {
		t.Fatal(err)
	}
	if want := (Summary{VMs: 12, MemoryBytes: 18 * gib, ScratchBytes: 40 * gib, Orphans: 1, Unattributed: 3}); got != want {
		t.Errorf("ParseSummary = %+v, want %+v", got, want)
	}
	if got, err := ParseSummary(""); err != nil || got != (Summary{}) {
		t.Errorf("ParseSummary(\"\") = %+v, %v", got, err)
	}
	for _, bad := range []string{"vms", "vms=-1", "vms=x", "memory=-1Gi", "memory=1.5", "memory=banana", "orphans=99999999999", "memory=9Ei"} {
		if _, err := ParseSummary(bad); err == nil {
			t.Errorf("ParseSummary(%q) accepted", bad)
		}
	}
}

// FuzzSummary: whatever ParseSummary accepts, String writes back in a form that parses to
// the same summary (memory and scratch rounded up to whole MiB), and that form is stable.
func FuzzSummary(f *testing.F) {
	for _, s := range []string{"", "vms=12 memory=18Gi scratch=40Gi orphans=1", "memory=1 scratch=1048577", "memory=1.5Ki vms=0", "memory=8Ei"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, in string) {
		s, err := ParseSummary(in)
		if err != nil {
			return
		}
		out := s.String()
		back, err := ParseSummary(out)
		if err != nil {
			t.Fatalf("ParseSummary(%q) (from %q): %v", out, in, err)
		}
		if back.VMs != s.VMs || back.Orphans != s.Orphans || back.Unattributed != s.Unattributed ||
			back.MemoryBytes < min(s.MemoryBytes, maxBytes) || back.ScratchBytes < min(s.ScratchBytes, maxBytes) ||
			back.MemoryBytes%mebibyte != 0 || back.ScratchBytes%mebibyte != 0 {
			t.Fatalf("%q -> %+v -> %q -> %+v", in, s, out, back)
		}
		if again := back.String(); again != out {
			t.Fatalf("unstable: %q then %q", out, again)
		}
	})
}

type fakeCRI struct {
	resp *runtimeapi.ListPodSandboxResponse
	err  error
	req  *runtimeapi.ListPodSandboxRequest
}

func (f *fakeCRI) ListPodSandbox(ctx context.Context, in *runtimeapi.ListPodSandboxRequest, _ ...grpc.CallOption) (*runtimeapi.ListPodSandboxResponse, error) {
	if _, ok := ctx.Deadline(); !ok {
		return nil, errors.New("no deadline")
	}
	f.req = in
	return f.resp, f.err
}

func TestCRIResolver(t *testing.T) {
	cri := &fakeCRI{resp: &runtimeapi.ListPodSandboxResponse{Items: []*runtimeapi.PodSandbox{
		{Id: "sb1", Metadata: &runtimeapi.PodSandboxMetadata{Name: "warm-abc", Namespace: "team-a", Uid: "uid-1"}, State: runtimeapi.PodSandboxState_SANDBOX_READY},
		{Id: "sb2", Metadata: &runtimeapi.PodSandboxMetadata{Name: "warm-def", Namespace: "team-b", Uid: "uid-2", Attempt: 1}, State: runtimeapi.PodSandboxState_SANDBOX_NOTREADY},
		{Id: "sb3"}, // no metadata: unattributable
		{Metadata: &runtimeapi.PodSandboxMetadata{Uid: "uid-4"}},
		{Id: "sb5", Metadata: &runtimeapi.PodSandboxMetadata{Name: "p5", Namespace: "team-c", Uid: "uid-5"}, State: runtimeapi.PodSandboxState(7)},
	}}}
	got, err := CRIResolver{Client: cri}.ResolveSandboxes(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	want := map[string]PodRef{
		"sb1": {Namespace: "team-a", Name: "warm-abc", UID: "uid-1", SandboxID: "sb1", State: SandboxReady},
		"sb2": {Namespace: "team-b", Name: "warm-def", UID: "uid-2", SandboxID: "sb2", State: SandboxNotReady},
		"sb5": {Namespace: "team-c", Name: "p5", UID: "uid-5", SandboxID: "sb5", State: SandboxStateUnknown}, // a state this agent does not know is not ready
	}
	if !equalMaps(got, want) {
		t.Errorf("ResolveSandboxes = %v, want %v", got, want)
	}
	if cri.req.GetFilter() != nil {
		t.Errorf("filtered the sandboxes (%v): NOTREADY ones matter too", cri.req.GetFilter())
	}
	cri.err = errors.New("unavailable")
	if _, err := (CRIResolver{Client: cri}).ResolveSandboxes(context.Background()); err == nil {
		t.Error("error not returned")
	}
}

func TestPipePath(t *testing.T) {
	tests := []struct{ in, want string }{
		{"npipe:////./pipe/containerd-containerd", `\\.\pipe\containerd-containerd`},
		{"npipe://./pipe/containerd-containerd", `\\.\pipe\containerd-containerd`},
		{`npipe://\\.\pipe\dockershim`, `\\.\pipe\dockershim`},
	}
	for _, tc := range tests {
		if got, err := PipePath(tc.in); err != nil || got != tc.want {
			t.Errorf("PipePath(%q) = %q, %v; want %q", tc.in, got, err, tc.want)
		}
	}
	for _, bad := range []string{"unix:///run/containerd/containerd.sock", "npipe://", "npipe:////./pipe/", "npipe:////./notpipe/x", "tcp://localhost:1"} {
		if got, err := PipePath(bad); err == nil {
			t.Errorf("PipePath(%q) = %q, want an error", bad, got)
		}
	}
}
