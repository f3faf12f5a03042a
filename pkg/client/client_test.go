//go:build !windows

package client_test

import (
	"bytes"
	"context"
	"crypto/rand"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	rbacv1 "k8s.io/api/rbac/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/rest"
	"sigs.k8s.io/controller-runtime/pkg/client"

	agentsv1alpha1 "github.com/hyperpool/hyperpool/api/v1alpha1"
	hpclient "github.com/hyperpool/hyperpool/pkg/client"
	"github.com/hyperpool/hyperpool/test/builders"
	"github.com/hyperpool/hyperpool/test/testbed"
)

// TestUploadDownloadRoundTripKeepsBytes sends a 50 MB file and a tree of 1,000 small
// files into the sandbox and takes them back out: every byte equal.
func TestUploadDownloadRoundTripKeepsBytes(t *testing.T) {
	t.Parallel()
	ns := newClass(t, "win", 1)
	var progress []hpclient.Progress
	s := open(t, ns, "win", hpclient.Options{Progress: func(p hpclient.Progress) { progress = append(progress, p) }})
	if last := progress[len(progress)-1]; last.Phase != agentsv1alpha1.SessionReady || last.StartType == "" {
		t.Errorf("last progress %+v, want Ready with a start type", last)
	}

	src := filepath.Join(t.TempDir(), "payload")
	big := make([]byte, 50<<20)
	_, _ = rand.Read(big)
	mustWrite(t, filepath.Join(src, "big.bin"), big)
	for i := range 1000 {
		mustWrite(t, filepath.Join(src, "tree", fmt.Sprintf("d%02d", i%20), fmt.Sprintf("f%04d.txt", i)), []byte(fmt.Sprintf("file %d\n", i)))
	}

	begin := time.Now()
	if err := s.Upload(t.Context(), src, ""); err != nil {
		t.Fatalf("upload: %v", err)
	}
	up := time.Since(begin)
	dst := t.TempDir()
	begin = time.Now()
	if err := s.Download(t.Context(), "payload", dst); err != nil {
		t.Fatalf("download: %v", err)
	}
	t.Logf("upload %s, download %s (50 MB and 1,000 small files)", up.Round(time.Millisecond), time.Since(begin).Round(time.Millisecond))
	assertSameTree(t, src, filepath.Join(dst, "payload"))
	// The upload landed in the pod's own directory, not anywhere else.
	if _, err := os.Stat(filepath.Join(env.PodDir(ns, s.PodName), "payload", "big.bin")); err != nil {
		t.Errorf("uploaded file not in the pod's directory: %v", err)
	}

	// A single file, into a directory of the sandbox.
	if code, err := s.Run(t.Context(), hpclient.Command{Args: []string{"mkdir", "inbox"}}); err != nil || code != 0 {
		t.Fatalf("mkdir: code %d, %v", code, err)
	}
	if err := s.Upload(t.Context(), filepath.Join(src, "tree", "d01", "f0001.txt"), "inbox"); err != nil {
		t.Fatalf("upload a file: %v", err)
	}
	var out bytes.Buffer
	if _, err := s.Run(t.Context(), hpclient.Command{Args: []string{"cat", "f0001.txt"}, WorkDir: "inbox", Stdout: &out}); err != nil || out.String() != "file 1\n" {
		t.Errorf("uploaded file reads %q (%v), want %q", out.String(), err, "file 1\n")
	}
	if err := s.Download(t.Context(), "no-such-file", t.TempDir()); err == nil || !strings.Contains(err.Error(), "exited with code") {
		t.Errorf("download of a missing path: %v, want tar's failure", err)
	}
}

// TestRunKeepsExitCodeStderrAndArgs runs commands and checks what comes back.
func TestRunKeepsExitCodeStderrAndArgs(t *testing.T) {
	t.Parallel()
	ns := newClass(t, "win", 1)
	s := open(t, ns, "win", hpclient.Options{MaxLifetime: time.Hour})

	var stdout, stderr bytes.Buffer
	code, err := s.Run(t.Context(), hpclient.Command{
		Args:  []string{"sh", "-c", `read line; echo "got $line"; echo oops >&2; exit 7`},
		Stdin: strings.NewReader("hello\n"), Stdout: &stdout, Stderr: &stderr,
	})
	if err != nil || code != 7 {
		t.Fatalf("run: code %d, err %v; want 7, nil", code, err)
	}
	if stdout.String() != "got hello\n" || stderr.String() != "oops\n" {
		t.Errorf("stdout %q, stderr %q; want %q, %q", stdout.String(), stderr.String(), "got hello\n", "oops\n")
	}

	// Args are exec arguments: no shell sees them.
	stdout.Reset()
	args := []string{"printf", "%s|", "a b", "$HOME", "; ls", `"q"`}
	if code, err := s.Run(t.Context(), hpclient.Command{Args: args, Stdout: &stdout}); err != nil || code != 0 {
		t.Fatalf("printf: code %d, %v", code, err)
	}
	if want := `a b|$HOME|; ls|"q"|`; stdout.String() != want {
		t.Errorf("printf printed %q, want %q", stdout.String(), want)
	}

	// WorkDir, and a Timeout that ends the command.
	if code, err := s.Run(t.Context(), hpclient.Command{Args: []string{"mkdir", "-p", "sub dir"}}); err != nil || code != 0 {
		t.Fatalf("mkdir: code %d, %v", code, err)
	}
	stdout.Reset()
	if _, err := s.Run(t.Context(), hpclient.Command{Args: []string{"pwd"}, WorkDir: "sub dir", Stdout: &stdout}); err != nil ||
		strings.TrimSpace(stdout.String()) != filepath.Join(env.PodDir(ns, s.PodName), "sub dir") {
		t.Errorf("pwd in WorkDir printed %q (%v)", stdout.String(), err)
	}
	begin := time.Now()
	if _, err := s.Run(t.Context(), hpclient.Command{Args: []string{"sleep", "30"}, Timeout: 500 * time.Millisecond}); !errors.Is(err, context.DeadlineExceeded) {
		t.Errorf("run past its timeout: %v, want a deadline error", err)
	} else if elapsed := time.Since(begin); elapsed > 5*time.Second {
		t.Errorf("a 500 ms timeout returned after %s", elapsed)
	}
	if _, err := s.Run(t.Context(), hpclient.Command{Args: []string{"no-such-program"}}); err == nil {
		t.Error("run of a missing program: no error")
	}
}

// TestDownloadRefusesPathEscapes feeds Download archives that try to leave the target
// directory, through the real exec path: the session's "tar" is a script that prints a
// crafted archive.
func TestDownloadRefusesPathEscapes(t *testing.T) {
	t.Parallel()
	ns := newClass(t, "win", 1)
	s := open(t, ns, "win", hpclient.Options{})
	podDir := env.PodDir(ns, s.PodName)
	for name, archive := range map[string][]byte{
		"dotdot":   tarOf(t, "../escaped.txt", "x"),
		"absolute": tarOf(t, "/tmp/escaped.txt", "x"),
		"drive":    tarOf(t, `C:\escaped.txt`, "x"),
		"nested":   tarOf(t, "ok/../../escaped.txt", "x"),
		"symlink":  symlinkTar(t, "link", "/etc"),
	} {
		t.Run(name, func(t *testing.T) {
			mustWrite(t, filepath.Join(podDir, name+".tar"), archive)
			script := filepath.Join(podDir, name+"-tar")
			mustWrite(t, script, []byte("#!/bin/sh\ncat "+name+".tar\n"))
			if err := os.Chmod(script, 0o755); err != nil {
				t.Fatal(err)
			}
			evil, err := cli.Attach(t.Context(), ns, s.Name, hpclient.Options{Tar: "./" + name + "-tar"})
			if err != nil {
				t.Fatal(err)
			}
			root := t.TempDir()
			target := filepath.Join(root, "target")
			err = evil.Download(t.Context(), "anything", target)
			if err == nil || !strings.Contains(err.Error(), "unsafe archive entry") {
				t.Errorf("download of an archive with %s: %v, want it refused", name, err)
			}
			_ = filepath.WalkDir(root, func(p string, d fs.DirEntry, err error) error {
				if err == nil && !d.IsDir() {
					t.Errorf("download wrote %s", p)
				}
				return nil
			})
		})
	}
}

// TestHeartbeatKeepsBusySessionAndLetsIdleOneExpire: a session with a 3 s idle timeout
// lives through a 10 s command, then expires about 3 s after the last call.
func TestHeartbeatKeepsBusySessionAndLetsIdleOneExpire(t *testing.T) {
	t.Parallel()
	ns := newClass(t, "win", 1)
	const idle = 3 * time.Second
	s := open(t, ns, "win", hpclient.Options{IdleTimeout: idle, MaxLifetime: 10 * time.Minute})
	if s.IdleTimeout != idle {
		t.Errorf("session's IdleTimeout %s, want %s", s.IdleTimeout, idle)
	}

	patches := countHeartbeats(t, ns, s.Name)
	code, err := s.Run(t.Context(), hpclient.Command{Args: []string{"sleep", "10"}})
	last := time.Now()
	if err != nil || code != 0 {
		t.Fatalf("10 s command in a session with a 3 s idle timeout: code %d, %v", code, err)
	}
	got, err := getSession(t.Context(), ns, s.Name)
	if err != nil || got.Status.Phase != agentsv1alpha1.SessionReady {
		t.Fatalf("after the command the session is %q (%v), want Ready", got.Status.Phase, err)
	}

	// Now idle: it must end by its idle timeout, about 3 s after the last call.
	testbed.Eventually(t, testbed.WaitTimeout, func(ctx context.Context) (bool, string) {
		got, err := getSession(ctx, ns, s.Name)
		if err != nil {
			return false, err.Error()
		}
		return got.Status.Phase.IsFinished(), fmt.Sprintf("phase %s", got.Status.Phase)
	})
	ended := time.Since(last)
	got, _ = getSession(t.Context(), ns, s.Name)
	if got.Status.EndReason != agentsv1alpha1.ReasonIdleTimeout {
		t.Errorf("ended with %s, want IdleTimeout", got.Status.EndReason)
	}
	// The manager rounds deadlines up to whole seconds and reacts within a moment.
	if ended < idle-time.Second || ended > idle+3*time.Second {
		t.Errorf("expired %s after the last call, want about %s", ended.Round(10*time.Millisecond), idle)
	}
	// At most one patch a second (a third of 3 s) over 10 s: 11 or so, and at least 3.
	if n := patches(); n < 3 || n > 13 {
		t.Errorf("%d heartbeat patches during a 10 s command, want one per second or less, and some", n)
	}
	t.Logf("expired %s after the last call", ended.Round(10*time.Millisecond))
}

// TestCloseExportsThenDeletes: Close downloads the exports, reports the one that fails,
// and deletes the session anyway.
func TestCloseExportsThenDeletes(t *testing.T) {
	t.Parallel()
	ns := newClass(t, "win", 1)
	s := open(t, ns, "win", hpclient.Options{})
	if code, err := s.Run(t.Context(), hpclient.Command{Args: []string{"sh", "-c", "mkdir -p out/logs && echo result > out/result.txt && echo log > out/logs/run.log"}}); err != nil || code != 0 {
		t.Fatalf("prepare results: code %d, %v", code, err)
	}
	local := t.TempDir()
	err := s.Close(t.Context(), hpclient.CloseOptions{Export: []hpclient.ExportSpec{
		{RemotePath: "out", LocalDir: local},
		{RemotePath: "missing", LocalDir: local},
	}})
	if err == nil || !strings.Contains(err.Error(), "export missing") {
		t.Errorf("close: %v, want the failed export of missing reported", err)
	}
	for file, want := range map[string]string{"out/result.txt": "result\n", "out/logs/run.log": "log\n"} {
		if data, err := os.ReadFile(filepath.Join(local, file)); err != nil || string(data) != want {
			t.Errorf("exported %s: %q (%v), want %q", file, data, err, want)
		}
	}
	testbed.Eventually(t, waitTimeout, func(ctx context.Context) (bool, string) {
		_, err := getSession(ctx, ns, s.Name)
		return apierrors.IsNotFound(err), fmt.Sprintf("session still there (%v)", err)
	})
}

// TestCancelWhileQueuedDeletesSession: Open reports Queued, and cancelling it then deletes
// the session it created.
func TestCancelWhileQueuedDeletesSession(t *testing.T) {
	t.Parallel()
	ns := newClass(t, "win", 1)
	if err := env.Client.Create(t.Context(), builders.AgentQuota(ns, "quota").Sessions(1).Obj()); err != nil {
		t.Fatal(err)
	}
	holder := open(t, ns, "win", hpclient.Options{})

	ctx, cancel := context.WithTimeout(t.Context(), waitTimeout)
	defer cancel()
	var mu sync.Mutex
	var queued *hpclient.Progress
	_, err := cli.Open(ctx, ns, "win", linux(hpclient.Options{Progress: func(p hpclient.Progress) {
		if p.Phase == agentsv1alpha1.SessionQueued {
			mu.Lock()
			queued = &p
			mu.Unlock()
			cancel()
		}
	}}))
	if !errors.Is(err, context.Canceled) {
		t.Fatalf("open cancelled while queued: %v, want context.Canceled", err)
	}
	mu.Lock()
	if queued == nil || queued.Reason != agentsv1alpha1.ReasonWaitingForQuota || queued.Message == "" {
		t.Errorf("queued progress %+v, want reason WaitingForQuota and the quota's message", queued)
	}
	name := queued.Session
	mu.Unlock()
	testbed.Eventually(t, waitTimeout, func(ctx context.Context) (bool, string) {
		_, err := getSession(ctx, ns, name)
		return apierrors.IsNotFound(err), fmt.Sprintf("queued session %s still there (%v)", name, err)
	})
	if _, err := getSession(t.Context(), ns, holder.Name); err != nil {
		t.Errorf("the other session: %v", err)
	}
}

// TestOpenFailsFastWithoutSandbox: no class of that name; Open says so at once and leaves
// no session behind.
func TestOpenFailsFastWithoutSandbox(t *testing.T) {
	t.Parallel()
	ns := env.CreateNamespace(t)
	ctx, cancel := context.WithTimeout(t.Context(), waitTimeout)
	defer cancel()
	_, err := cli.Open(ctx, ns, "nope", linux(hpclient.Options{}))
	var serr *hpclient.SessionError
	if !errors.As(err, &serr) || serr.Reason != agentsv1alpha1.ReasonSandboxNotFound {
		t.Fatalf("open of a missing class: %v, want a SessionError with SandboxNotFound", err)
	}
	testbed.Eventually(t, waitTimeout, func(ctx context.Context) (bool, string) {
		list := &agentsv1alpha1.AgentSessionList{}
		if err := env.Client.List(ctx, list, client.InNamespace(ns)); err != nil {
			return false, err.Error()
		}
		return len(list.Items) == 0, fmt.Sprintf("%d sessions left", len(list.Items))
	})
}

// TestExpiringFiresBeforeDeadline: Expiring fires ExpiryWarning before status.expiryTime.
func TestExpiringFiresBeforeDeadline(t *testing.T) {
	t.Parallel()
	ns := newClass(t, "win", 1)
	s := open(t, ns, "win", hpclient.Options{MaxLifetime: 6 * time.Second, ExpiryWarning: 4 * time.Second})
	if s.ExpiryTime.IsZero() {
		t.Fatal("session has no expiry time")
	}
	select {
	case deadline := <-s.Expiring():
		if left := time.Until(deadline); left < 3*time.Second || left > 4*time.Second+500*time.Millisecond {
			t.Errorf("Expiring fired %s before the deadline, want about 4s", left)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("Expiring did not fire")
	}
}

// TestOpenReportsColdStart: with no warm pool, Open reports Starting while the pod boots,
// then Ready Cold.
func TestOpenReportsColdStart(t *testing.T) {
	t.Parallel()
	ns := env.CreateNamespace(t)
	class := builders.AgentSandbox(ns, "cold").Replicas(0).Obj()
	class.Spec.Template.Annotations = map[string]string{testbed.PodReadyDelayAnnotation: "1000"}
	if err := env.Client.Create(t.Context(), class); err != nil {
		t.Fatal(err)
	}
	var phases []string
	s := open(t, ns, "cold", hpclient.Options{Progress: func(p hpclient.Progress) {
		phases = append(phases, string(p.Phase)+"/"+string(p.StartType))
	}})
	if s.StartType != agentsv1alpha1.StartCold {
		t.Errorf("start type %s, want Cold", s.StartType)
	}
	if !slices.Contains(phases, "Starting/Cold") || phases[len(phases)-1] != "Ready/Cold" {
		t.Errorf("progress %v, want Starting/Cold then Ready/Cold", phases)
	}
}

// TestOpenFailsFastWhenQuotaCannotFit: a quota that allows no session fails Open at once
// with ExceedsQuota, and the session is deleted.
func TestOpenFailsFastWhenQuotaCannotFit(t *testing.T) {
	t.Parallel()
	ns := newClass(t, "win", 0)
	if err := env.Client.Create(t.Context(), builders.AgentQuota(ns, "quota").Sessions(0).Obj()); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(t.Context(), waitTimeout)
	defer cancel()
	_, err := cli.Open(ctx, ns, "win", linux(hpclient.Options{}))
	var serr *hpclient.SessionError
	if !errors.As(err, &serr) || serr.Reason != agentsv1alpha1.ReasonExceedsQuota {
		t.Fatalf("open against a quota of 0 sessions: %v, want a SessionError with ExceedsQuota", err)
	}
	testbed.Eventually(t, waitTimeout, func(ctx context.Context) (bool, string) {
		list := &agentsv1alpha1.AgentSessionList{}
		if err := env.Client.List(ctx, list, client.InNamespace(ns)); err != nil {
			return false, err.Error()
		}
		return len(list.Items) == 0, fmt.Sprintf("%d sessions left", len(list.Items))
	})
}

// TestSessionUserRoleWithExecIsEnough: an identity with only hyperpool-session-user,
// create and get on pods/exec, and get on pods opens, runs and closes; without pods/exec,
// Run fails with the API server's Forbidden.
func TestSessionUserRoleWithExecIsEnough(t *testing.T) {
	t.Parallel()
	ns := newClass(t, "win", 1)
	user := "agent-" + ns
	bind := func(name, kind, role string) {
		b := &rbacv1.RoleBinding{
			ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: name},
			RoleRef:    rbacv1.RoleRef{APIGroup: rbacv1.GroupName, Kind: kind, Name: role},
			Subjects:   []rbacv1.Subject{{Kind: rbacv1.UserKind, APIGroup: rbacv1.GroupName, Name: user}},
		}
		if err := env.Client.Create(t.Context(), b); err != nil {
			t.Fatal(err)
		}
	}
	bind("session-user", "ClusterRole", "hyperpool-session-user")
	cfg := rest.CopyConfig(env.Config)
	cfg.Impersonate = rest.ImpersonationConfig{UserName: user, Groups: []string{"system:authenticated"}}
	c, err := hpclient.New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(t.Context(), waitTimeout)
	defer cancel()
	var s *hpclient.Session
	// RBAC bindings take a moment to apply.
	testbed.Eventually(t, waitTimeout, func(context.Context) (bool, string) {
		s, err = c.Open(ctx, ns, "win", linux(hpclient.Options{}))
		return err == nil, fmt.Sprintf("open as %s: %v", user, err)
	})
	_, err = s.Run(ctx, hpclient.Command{Args: []string{"true"}})
	t.Logf("run without pods/exec: %v", err)
	if err == nil || !strings.Contains(err.Error(), "forbidden") {
		t.Errorf("run without pods/exec: %v, want Forbidden", err)
	}

	role := &rbacv1.Role{
		ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "exec"},
		Rules: []rbacv1.PolicyRule{
			{APIGroups: []string{""}, Resources: []string{"pods/exec"}, Verbs: []string{"create", "get"}},
			{APIGroups: []string{""}, Resources: []string{"pods"}, Verbs: []string{"get"}},
		},
	}
	if err := env.Client.Create(t.Context(), role); err != nil {
		t.Fatal(err)
	}
	bind("exec", "Role", "exec")
	testbed.Eventually(t, waitTimeout, func(ctx context.Context) (bool, string) {
		var out bytes.Buffer
		code, err := s.Run(ctx, hpclient.Command{Args: []string{"echo", "hi"}, Stdout: &out})
		return err == nil && code == 0 && out.String() == "hi\n", fmt.Sprintf("run as %s: code %d, %v, %q", user, code, err, out.String())
	})
	if err := s.Close(ctx, hpclient.CloseOptions{}); err != nil {
		t.Errorf("close as %s: %v", user, err)
	}
}

// TestQueuedProgressCountsThePosition: Open's progress says where a queued session stands
// in its namespace's FIFO queue, counted the way the manager admits (creation, then name).
func TestQueuedProgressCountsThePosition(t *testing.T) {
	t.Parallel()
	ns := newClass(t, "win", 1)
	if err := env.Client.Create(t.Context(), builders.AgentQuota(ns, "quota").Sessions(1).Obj()); err != nil {
		t.Fatal(err)
	}
	open(t, ns, "win", hpclient.Options{})
	// Ahead in the queue: created first, and named to sort before any generated name.
	if err := env.Client.Create(t.Context(), builders.AgentSession(ns, "a-ahead", "win").Obj()); err != nil {
		t.Fatal(err)
	}
	testbed.Eventually(t, waitTimeout, func(ctx context.Context) (bool, string) {
		s, err := getSession(ctx, ns, "a-ahead")
		return err == nil && s.Status.Phase == agentsv1alpha1.SessionQueued, fmt.Sprintf("a-ahead not Queued yet (%v)", err)
	})

	ctx, cancel := context.WithTimeout(t.Context(), waitTimeout)
	defer cancel()
	var mu sync.Mutex
	position := -1
	_, err := cli.Open(ctx, ns, "win", linux(hpclient.Options{Progress: func(p hpclient.Progress) {
		if p.Phase == agentsv1alpha1.SessionQueued {
			mu.Lock()
			position = p.QueuePosition
			mu.Unlock()
			cancel()
		}
	}}))
	if !errors.Is(err, context.Canceled) {
		t.Fatalf("open cancelled while queued: %v, want context.Canceled", err)
	}
	mu.Lock()
	defer mu.Unlock()
	if position != 2 {
		t.Errorf("queue position %d, want 2 (behind a-ahead)", position)
	}
}
