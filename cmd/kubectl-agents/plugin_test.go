//go:build !windows

package main

import (
	"bytes"
	"crypto/rand"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/hyperpool/hyperpool/test/builders"
)

// TestPluginOpenExecCpEndThroughKubectl runs the plugin as kubectl runs it: found on PATH
// by the real kubectl binary, as a subprocess.
func TestPluginOpenExecCpEndThroughKubectl(t *testing.T) {
	ns := newClass(t, "win", 1)

	out, errOut, code := kubectlAgents(t, nil, "open", "win", "-n", ns, "--idle-timeout", "5m")
	if code != 0 {
		t.Fatalf("open: exit %d: %s", code, errOut)
	}
	session := strings.TrimSpace(out)
	if session == "" || strings.Contains(session, "\n") {
		t.Fatalf("open printed %q, want one session name", out)
	}
	if !strings.Contains(errOut, "Ready") {
		t.Errorf("open's progress on stderr lacks the Ready phase:\n%s", errOut)
	}
	t.Logf("open progress:\n%s", errOut)

	// exec: output, stderr and exit code kept; arguments as they are.
	out, errOut, code = kubectlAgents(t, nil, "exec", session, "-n", ns, "--", "sh", "-c", "echo out; echo err >&2; exit 3")
	if code != 3 || out != "out\n" || errOut != "err\n" {
		t.Errorf("exec: code %d, stdout %q, stderr %q; want 3, %q, %q", code, out, errOut, "out\n", "err\n")
	}
	out, _, code = kubectlAgents(t, []byte("from stdin"), "exec", session, "-n", ns, "-i", "--", "cat")
	if code != 0 || out != "from stdin" {
		t.Errorf("exec -i: code %d, stdout %q", code, out)
	}
	// -t: on a terminal, stderr comes through stdout; the exit code is kept.
	out, errOut, code = kubectlAgents(t, []byte("typed\n"), "exec", session, "-n", ns, "-it", "--", "sh", "-c", "read l; echo got $l; echo err >&2; exit 5")
	if code != 5 || !strings.Contains(out, "got typed") || !strings.Contains(out, "err") || errOut != "" {
		t.Errorf("exec -it: code %d, stdout %q, stderr %q; want 5, both lines on stdout", code, out, errOut)
	}

	// cp in, then out: bytes equal, a file and a tree.
	local := t.TempDir()
	data := make([]byte, 3<<20)
	_, _ = rand.Read(data)
	mustWrite(t, filepath.Join(local, "in", "blob.bin"), data)
	mustWrite(t, filepath.Join(local, "in", "sub", "a.txt"), []byte("a\n"))
	if _, errOut, code := kubectlAgents(t, nil, "cp", filepath.Join(local, "in"), session+":", "-n", ns); code != 0 {
		t.Fatalf("cp in: exit %d: %s", code, errOut)
	}
	if out, _, _ := kubectlAgents(t, nil, "exec", session, "-n", ns, "--", "cat", "in/sub/a.txt"); out != "a\n" {
		t.Errorf("after cp in, in/sub/a.txt holds %q", out)
	}
	back := filepath.Join(local, "back")
	if _, errOut, code := kubectlAgents(t, nil, "cp", session+":in", back, "-n", ns); code != 0 {
		t.Fatalf("cp out: exit %d: %s", code, errOut)
	}
	if got, err := os.ReadFile(filepath.Join(back, "in", "blob.bin")); err != nil || !bytes.Equal(got, data) {
		t.Errorf("cp round trip of blob.bin: %d bytes, %v; want %d equal bytes", len(got), err, len(data))
	}
	if _, errOut, code := kubectlAgents(t, nil, "cp", session+":in/sub/a.txt", filepath.Join(local, "one"), "-n", ns); code != 0 {
		t.Fatalf("cp out a file: exit %d: %s", code, errOut)
	}
	if got, _ := os.ReadFile(filepath.Join(local, "one", "a.txt")); string(got) != "a\n" {
		t.Errorf("cp out a file: %q", got)
	}

	// ls and top show it.
	out, errOut, code = kubectlAgents(t, nil, "ls", "-n", ns)
	if code != 0 || !strings.Contains(out, session) || !strings.Contains(out, "Ready") {
		t.Errorf("ls: exit %d, %s%s", code, out, errOut)
	}
	t.Logf("ls:\n%s", out)
	out, errOut, code = kubectlAgents(t, nil, "top", "-n", ns)
	if code != 0 || !strings.Contains(out, "win") {
		t.Errorf("top: exit %d, %s%s", code, out, errOut)
	}
	t.Logf("top:\n%s", out)

	// Completion of session names.
	out, _, _ = kubectlAgents(t, nil, "__complete", "exec", "-n", ns, "")
	if !strings.Contains(out, session) {
		t.Errorf("completion of exec's SESSION lacks %s:\n%s", session, out)
	}

	// end with an export: the files arrive, the session is gone.
	exported := filepath.Join(local, "exported")
	if _, errOut, code := kubectlAgents(t, nil, "end", session, "-n", ns, "--export", "in/sub:"+exported); code != 0 {
		t.Fatalf("end: exit %d: %s", code, errOut)
	}
	if got, _ := os.ReadFile(filepath.Join(exported, "sub", "a.txt")); string(got) != "a\n" {
		t.Errorf("end --export: sub/a.txt holds %q", got)
	}
	waitGone(t, ns, session)
	if _, errOut, code := kubectlAgents(t, nil, "exec", session, "-n", ns, "--", "true"); code == 0 || !strings.Contains(errOut, "not found") {
		t.Errorf("exec after end: exit %d, stderr %q; want a not-found error", code, errOut)
	}
}

// TestPluginOpenFailsFastWithReason: open of a missing class says why, and leaves nothing.
func TestPluginOpenFailsFastWithReason(t *testing.T) {
	ns := env.CreateNamespace(t)
	_, errOut, code := kubectlAgents(t, nil, "open", "missing", "-n", ns)
	if code == 0 || !strings.Contains(errOut, "SandboxNotFound") {
		t.Errorf("open of a missing class: exit %d, stderr %q; want SandboxNotFound", code, errOut)
	}
	waitNoSessions(t, ns)
}

func mustWrite(t testing.TB, path string, data []byte) {
	t.Helper()
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(path, data, 0o644); err != nil {
		t.Fatal(err)
	}
}

// TestPluginOpenShowsQueueAndDeletesOnTimeout: with the quota full, open reports the
// queue on stderr, and on --timeout deletes the session it created.
func TestPluginOpenShowsQueueAndDeletesOnTimeout(t *testing.T) {
	ns := newClass(t, "win", 1)
	if err := env.Client.Create(t.Context(), builders.AgentQuota(ns, "quota").Sessions(1).Obj()); err != nil {
		t.Fatal(err)
	}
	holder, errOut, code := kubectlAgents(t, nil, "open", "win", "-n", ns)
	if code != 0 {
		t.Fatalf("open: exit %d: %s", code, errOut)
	}
	holder = strings.TrimSpace(holder)
	_, errOut, code = kubectlAgents(t, nil, "open", "win", "-n", ns, "--timeout", "3s", "--name", "waiting")
	if code == 0 {
		t.Fatalf("open with the quota full returned 0")
	}
	t.Logf("queued open:\n%s", errOut)
	if !strings.Contains(errOut, "waiting: Queued #1 in the queue WaitingForQuota") || !strings.Contains(errOut, "next: this session") {
		t.Errorf("open's progress lacks the queue:\n%s", errOut)
	}
	waitGone(t, ns, "waiting")
	if n := sessionCount(t, ns); n != 1 {
		t.Errorf("%d sessions, want the holder %s alone", n, holder)
	}
}
