package runtimereport

import (
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
)

func TestCheck(t *testing.T) {
	t.Parallel()
	type want struct {
		handler string
		problem Problem
		detail  string // a substring of Detail
	}
	for _, tc := range []struct {
		file     string
		version  int64
		handlers []string
		want     []want
	}{
		{"containerd2-good.toml", 3, []string{"runhcs-wcow-hypervisor", "runhcs-wcow-process", "runhcs-wcow-hypervisor-26100"}, []want{
			{"runhcs-wcow-hypervisor", NoProblem, ""},
			{"runhcs-wcow-hypervisor-26100", HandlerMissing, "no plugins.'io.containerd.cri.v1.runtime'.containerd.runtimes.runhcs-wcow-hypervisor-26100"},
			{"runhcs-wcow-process", NotHyperV, `options.SandboxIsolation 0`},
		}},
		{"containerd2-agentbaker.toml", 3, []string{"runhcs-wcow-hypervisor-20348"}, []want{
			{"runhcs-wcow-hypervisor-20348", HandlerMissing, "found under plugins.'io.containerd.grpc.v1.cri', which containerd ignores in a version-3 configuration"},
		}},
		{"containerd17-no-annotations.toml", 2, []string{"runhcs-wcow-hypervisor-20348", "memory-only", "runhcs-wcow-process"}, []want{
			{"memory-only", AnnotationsDropped, "drop io.microsoft.virtualmachine.computetopology.processor.count"},
			{"runhcs-wcow-hypervisor-20348", AnnotationsDropped, "pod_annotations [] drop io.microsoft.virtualmachine.computetopology.memory.sizeinmb"},
			{"runhcs-wcow-process", NotHyperV, `runtime_type "io.containerd.runhcs.v1", options.SandboxIsolation 0`},
		}},
	} {
		t.Run(tc.file, func(t *testing.T) {
			t.Parallel()
			config, err := os.ReadFile(filepath.Join("testdata", tc.file))
			if err != nil {
				t.Fatal(err)
			}
			r := Check(config, tc.handlers)
			if r.Error != "" || r.ConfigVersion != tc.version {
				t.Fatalf("Check: version %d, error %q; want version %d, no error", r.ConfigVersion, r.Error, tc.version)
			}
			var got []want
			for _, h := range r.Handlers {
				w := want{h.Handler, h.Problem(), h.Detail}
				got = append(got, w)
			}
			if len(got) != len(tc.want) {
				t.Fatalf("got %d handlers, want %d: %+v", len(got), len(tc.want), got)
			}
			for i, w := range tc.want {
				g := got[i]
				if g.handler != w.handler || g.problem != w.problem || !strings.Contains(g.detail, w.detail) || (w.detail == "") != (g.detail == "") {
					t.Errorf("handler %d: got %+v, want %+v (detail as a substring)", i, g, w)
				}
			}
		})
	}
}

// Check reports on at most MaxHandlers handlers, the first by name: the node agent labels
// only handlers in its report, and the annotation carries no more.
func TestCheckCapsTheHandlers(t *testing.T) {
	t.Parallel()
	var handlers []string
	for i := range MaxHandlers + 3 {
		handlers = append(handlers, fmt.Sprintf("h%03d", i))
	}
	r := Check([]byte("version = 3"), handlers)
	if len(r.Handlers) != MaxHandlers || r.Handlers[MaxHandlers-1].Handler != handlers[MaxHandlers-1] {
		t.Fatalf("%d handler reports (last %+v), want the first %d", len(r.Handlers), r.Handlers[len(r.Handlers)-1], MaxHandlers)
	}
}

func TestCheckRefusesWhatIsNotAConfiguration(t *testing.T) {
	t.Parallel()
	for name, config := range map[string][]byte{
		"not TOML":  []byte("version = = 3\n[plugins"),
		"too large": []byte(strings.Repeat("#", MaxConfigBytes+1)),
	} {
		r := Check(config, []string{"runhcs-wcow-hypervisor"})
		if r.Error == "" || len(r.Handlers) != 0 {
			t.Errorf("%s: got %+v, want an error and no handlers", name, r)
		}
	}
}

func TestFormatParseRoundTripAndCaps(t *testing.T) {
	t.Parallel()
	var r Report
	for i := range MaxHandlers + 5 {
		r.Handlers = append(r.Handlers, HandlerReport{Handler: string(rune('z'-i%26)) + strings.Repeat("x", i), Registered: true, Detail: strings.Repeat("é", MaxDetail)})
	}
	value := Format(r)
	got, ok, err := Parse(value)
	if err != nil || !ok {
		t.Fatalf("Parse(Format(r)): %v, ok %v", err, ok)
	}
	if len(got.Handlers) != MaxHandlers {
		t.Errorf("got %d handlers, want the cap %d", len(got.Handlers), MaxHandlers)
	}
	for i, h := range got.Handlers {
		if len(h.Detail) > MaxDetail || !strings.HasSuffix(h.Detail, "...") {
			t.Errorf("handler %d: detail of %d bytes, want at most %d ending in ...", i, len(h.Detail), MaxDetail)
		}
		if i > 0 && got.Handlers[i-1].Handler > h.Handler {
			t.Errorf("handlers not sorted: %q before %q", got.Handlers[i-1].Handler, h.Handler)
		}
	}
	if _, ok, err := Parse(""); ok || err != nil {
		t.Errorf(`Parse(""): ok %v, err %v; want no report, no error`, ok, err)
	}
	if _, _, err := Parse("{"); err == nil {
		t.Error(`Parse("{"): no error`)
	}
	small := Report{ConfigVersion: 3, Handlers: []HandlerReport{{Handler: "h", Registered: true, HyperV: true, PodAnnotations: true}}}
	back, _, _ := Parse(Format(small))
	if diff := cmp.Diff(small, back); diff != "" {
		t.Errorf("round trip (-want +got):\n%s", diff)
	}
}

// FuzzCheck feeds Check arbitrary configurations: it never panics, reports each handler
// once or an error, and its report survives the annotation's round trip within the caps.
func FuzzCheck(f *testing.F) {
	for _, name := range []string{"containerd2-good.toml", "containerd2-agentbaker.toml", "containerd17-no-annotations.toml"} {
		b, err := os.ReadFile(filepath.Join("testdata", name))
		if err != nil {
			f.Fatal(err)
		}
		f.Add(b)
	}
	f.Add([]byte("version = 3\n[plugins.'io.containerd.cri.v1.runtime'.containerd.runtimes.h]\npod_annotations = 7\noptions = 'x'"))
	f.Fuzz(func(t *testing.T, config []byte) {
		handlers := []string{"h", "runhcs-wcow-hypervisor", "runhcs-wcow-hypervisor-20348"}
		r := Check(config, handlers)
		if r.Error == "" && len(r.Handlers) != len(handlers) {
			t.Fatalf("%d handler reports without an error, want %d", len(r.Handlers), len(handlers))
		}
		back, ok, err := Parse(Format(r))
		if err != nil || !ok || len(back.Handlers) != len(r.Handlers) || len(back.Error) > MaxDetail {
			t.Fatalf("round trip: %+v, %v, %v", back, ok, err)
		}
	})
}

// A report written by whoever may write the Node, not by Format: Parse holds it to the same
// caps, so the manager never quotes a detail larger than MaxDetail or keeps more than
// MaxHandlers handlers of one node.
func TestParseCapsAForgedReport(t *testing.T) {
	t.Parallel()
	forged := Report{Error: strings.Repeat("e", 100_000)}
	for i := range 1000 {
		forged.Handlers = append(forged.Handlers, HandlerReport{Handler: fmt.Sprintf("h%04d", i), Detail: strings.Repeat("d", 100_000)})
	}
	value, err := json.Marshal(forged)
	if err != nil {
		t.Fatal(err)
	}
	r, ok, err := Parse(string(value))
	if err != nil || !ok {
		t.Fatalf("Parse: %v, %v", ok, err)
	}
	if len(r.Handlers) != MaxHandlers || len(r.Error) > MaxDetail {
		t.Errorf("Parse kept %d handlers and a %d-byte error, want %d and at most %d", len(r.Handlers), len(r.Error), MaxHandlers, MaxDetail)
	}
	for _, h := range r.Handlers {
		if len(h.Detail) > MaxDetail {
			t.Fatalf("handler %s: a %d-byte detail, want at most %d", h.Handler, len(h.Detail), MaxDetail)
		}
	}
}
