//go:build !windows

package main

import (
	"bytes"
	"io"
	"strings"
	"testing"

	"github.com/hyperpool/hyperpool/internal/version"
)

// --version prints the version stamped at build time (internal/version), and nothing else.
func TestVersionFlag(t *testing.T) {
	t.Parallel()
	var out bytes.Buffer
	cmd := newRootCommand(newRootOptions(strings.NewReader(""), &out, io.Discard))
	cmd.SetArgs([]string{"--version"})
	if err := cmd.Execute(); err != nil {
		t.Fatalf("kubectl agents --version: %v", err)
	}
	if want := version.String("kubectl-agents") + "\n"; out.String() != want {
		t.Errorf("kubectl agents --version printed %q, want %q", out.String(), want)
	}
}
