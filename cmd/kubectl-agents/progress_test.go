package main

import (
	"bytes"
	"strings"
	"sync"
	"testing"
	"time"

	agentsv1alpha1 "github.com/hyperpool/hyperpool/api/v1alpha1"
	hpclient "github.com/hyperpool/hyperpool/pkg/client"
)

// lockedBuffer is a bytes.Buffer safe for the printer's goroutine and the test.
type lockedBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (l *lockedBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

func (l *lockedBuffer) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}

func TestProgressWithoutTerminalIsOneLinePerChange(t *testing.T) {
	var buf lockedBuffer
	p := startProgressPrinter(&buf, "win", false)
	p.update(hpclient.Progress{Session: "s", Phase: agentsv1alpha1.SessionPending})
	p.update(hpclient.Progress{Session: "s", Phase: agentsv1alpha1.SessionReady, StartType: agentsv1alpha1.StartWarm,
		Reason: "Bound", Elapsed: 1200 * time.Millisecond})
	p.stop()
	want := "s: Pending [0s]\ns: Ready (warm) Bound [1.2s]\n"
	if got := buf.String(); got != want {
		t.Errorf("got %q, want %q", got, want)
	}
	if strings.ContainsAny(buf.String(), "\r\033") {
		t.Error("control characters without a terminal")
	}
}

func TestProgressOnTerminalSpinsOnOneLine(t *testing.T) {
	var buf lockedBuffer
	p := startProgressPrinter(&buf, "win", true)
	p.update(hpclient.Progress{Session: "s", Phase: agentsv1alpha1.SessionStarting, StartType: agentsv1alpha1.StartCold})
	time.Sleep(350 * time.Millisecond)
	p.stop()
	out := buf.String()
	if !strings.Contains(out, "\r\033[K") || !strings.Contains(out, spinner[0]) || !strings.Contains(out, "s: Starting (cold)") {
		t.Errorf("no spinner line: %q", out)
	}
	if !strings.HasSuffix(out, "\n") || strings.Count(out, "\n") != 1 {
		t.Errorf("want one final line, got %q", out)
	}
}
