package results

import (
	"path/filepath"
	"strings"
	"testing"
)

func TestWriteThenRead(t *testing.T) {
	type figures struct{ P50 float64 }
	f := Begin("bench")
	if f.Commit == "" || f.Machine.Cores < 1 || f.Started.IsZero() {
		t.Fatalf("Begin left the run unrecorded: %+v", f)
	}
	path := filepath.Join(t.TempDir(), "run.json")
	if err := f.Write(path, figures{P50: 12.5}); err != nil {
		t.Fatal(err)
	}
	var got figures
	back, err := Read(path, "bench", &got)
	if err != nil {
		t.Fatal(err)
	}
	if got.P50 != 12.5 || back.Commit != f.Commit || back.Finished.Before(back.Started) {
		t.Errorf("read back %+v (%+v), want P50 12.5 from commit %s", got, back, f.Commit)
	}
	if _, err := Read(path, "chaos", nil); err == nil || !strings.Contains(err.Error(), `not "chaos"`) {
		t.Errorf("Read of a bench run as chaos: %v, want an error naming both kinds", err)
	}
}

func TestCommandLineLeavesOutGoRunsDirectory(t *testing.T) {
	f := &File{Command: "/tmp/go-build1847363072/b001/exe/bench -out=x -scenarios=serial"}
	if got, want := f.CommandLine(), "bench -out=x -scenarios=serial"; got != want {
		t.Errorf("CommandLine() = %q, want %q", got, want)
	}
}
