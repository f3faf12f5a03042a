package main

import (
	"io"
	"testing"
	"time"
)

func TestStepRecorderNotesMakesCommands(t *testing.T) {
	r := &stepRecorder{out: io.Discard, start: time.Now()}
	// Output arrives in pieces that split lines.
	for _, chunk := range []string{"hack/tools.sh\nCGO_ENABLED=0 go vet", " -trimpath ./...\nok  \tgithub.com/x/y\t1.2s\n", "go test -race ./...\n--- FAIL: TestX\n"} {
		if _, err := r.Write([]byte(chunk)); err != nil {
			t.Fatal(err)
		}
	}
	want := []string{"hack/tools.sh", "CGO_ENABLED=0 go vet -trimpath ./...", "go test -race ./..."}
	if len(r.steps) != len(want) {
		t.Fatalf("steps %+v, want %q", r.steps, want)
	}
	for i, s := range r.steps {
		if s.Command != want[i] {
			t.Errorf("step %d = %q, want %q", i, s.Command, want[i])
		}
	}
}
