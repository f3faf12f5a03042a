//go:build !windows

package main

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/modelcontextprotocol/go-sdk/mcp"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"sigs.k8s.io/controller-runtime/pkg/client"

	agentsv1alpha1 "github.com/hyperpool/hyperpool/api/v1alpha1"
	"github.com/hyperpool/hyperpool/test/testbed"
)

var wantTools = []string{"download", "end_session", "list_dir", "read_file", "run_command", "upload", "write_file"}

// mcpClient connects the go-sdk's MCP client to transport.
func mcpClient(t *testing.T, transport mcp.Transport) *mcp.ClientSession {
	t.Helper()
	return mcpClientWith(t, transport, nil)
}

func mcpClientWith(t *testing.T, transport mcp.Transport, opts *mcp.ClientOptions) *mcp.ClientSession {
	t.Helper()
	c := mcp.NewClient(&mcp.Implementation{Name: "test", Version: "v0"}, opts)
	ctx, cancel := context.WithTimeout(t.Context(), waitTimeout)
	defer cancel()
	cs, err := c.Connect(ctx, transport, nil)
	if err != nil {
		t.Fatalf("connect: %v", err)
	}
	return cs
}

func toolNames(t *testing.T, cs *mcp.ClientSession) []string {
	t.Helper()
	res, err := cs.ListTools(t.Context(), nil)
	if err != nil {
		t.Fatalf("list tools: %v", err)
	}
	var names []string
	for _, tool := range res.Tools {
		names = append(names, tool.Name)
	}
	slices.Sort(names)
	return names
}

// call calls a tool and decodes its structured result into out; it returns the result.
func call(t *testing.T, cs *mcp.ClientSession, name string, args map[string]any, out any) *mcp.CallToolResult {
	t.Helper()
	ctx, cancel := context.WithTimeout(t.Context(), waitTimeout)
	defer cancel()
	res, err := cs.CallTool(ctx, &mcp.CallToolParams{Name: name, Arguments: args})
	if err != nil {
		t.Fatalf("call %s: %v", name, err)
	}
	if out != nil && !res.IsError {
		raw, _ := json.Marshal(res.StructuredContent)
		if err := json.Unmarshal(raw, out); err != nil {
			t.Fatalf("%s: decode %s: %v", name, raw, err)
		}
	}
	return res
}

func resultText(res *mcp.CallToolResult) string {
	var b strings.Builder
	for _, c := range res.Content {
		if tc, ok := c.(*mcp.TextContent); ok {
			b.WriteString(tc.Text)
		}
	}
	return b.String()
}

// onlySession returns the name of the namespace's one session.
func onlySession(t *testing.T, ns string) string {
	t.Helper()
	list := &agentsv1alpha1.AgentSessionList{}
	if err := env.Client.List(t.Context(), list); err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, s := range list.Items {
		if s.Namespace == ns {
			names = append(names, s.Name)
		}
	}
	if len(names) != 1 {
		t.Fatalf("sessions in %s: %v, want one", ns, names)
	}
	return names[0]
}

// TestMCPInMemory runs the server in-process on the go-sdk's in-memory transport: the
// tools, the lazy session, files, truncation, errors with the session's reason, and the
// session ended at disconnect.
func TestMCPInMemory(t *testing.T) {
	ns := newClass(t, "win", 1)
	root := newRootOptions(nil, &bytes.Buffer{}, &bytes.Buffer{})
	kubeconfig := env.KubeconfigPath
	root.config.KubeConfig = &kubeconfig
	root.config.Namespace = &ns
	root.sandboxOS = "linux"
	local := t.TempDir() // the workspace: upload and download use local paths inside it
	srv, sb, err := newMCPServer(root, &mcpOptions{sandbox: "win", maxOutput: 100, workspace: local})
	if err != nil {
		t.Fatal(err)
	}
	serverT, clientT := mcp.NewInMemoryTransports()
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	stopped := make(chan struct{})
	go func() {
		defer close(stopped)
		_ = srv.Run(ctx, serverT)
		_ = sb.close()
	}()
	var progressMu sync.Mutex
	var progress []string
	cs := mcpClientWith(t, clientT, &mcp.ClientOptions{
		ProgressNotificationHandler: func(_ context.Context, req *mcp.ProgressNotificationClientRequest) {
			progressMu.Lock()
			defer progressMu.Unlock()
			progress = append(progress, req.Params.Message)
		}})

	if got := toolNames(t, cs); !slices.Equal(got, wantTools) {
		t.Errorf("tools %v, want %v", got, wantTools)
	}
	if n := sessionCount(t, ns); n != 0 {
		t.Fatalf("%d sessions before the first tool call, want none", n)
	}

	// The first call opens the session, with progress notifications for its token.
	var run runCommandOut
	params := &mcp.CallToolParams{Name: "run_command", Arguments: map[string]any{"args": []string{"sh", "-c", "echo hi; echo oops >&2; exit 4"}}}
	params.SetProgressToken("open-1")
	res, err := cs.CallTool(t.Context(), params)
	if err != nil {
		t.Fatal(err)
	}
	raw, _ := json.Marshal(res.StructuredContent)
	_ = json.Unmarshal(raw, &run)
	if res.IsError || run.ExitCode != 4 || run.Stdout != "hi\n" || run.Stderr != "oops\n" || run.Truncated {
		t.Errorf("run_command: error %v %q, out %+v", res.IsError, resultText(res), run)
	}
	session := onlySession(t, ns)
	testbed.Eventually(t, waitTimeout, func(context.Context) (bool, string) {
		progressMu.Lock()
		defer progressMu.Unlock()
		return len(progress) > 0 && strings.Contains(progress[len(progress)-1], session+": Ready"),
			fmt.Sprintf("progress notifications %q, want the last to say %s is Ready", progress, session)
	})

	// Output past the limit is cut, and the cut marked.
	run = runCommandOut{}
	call(t, cs, "run_command", map[string]any{"args": []string{"sh", "-c", "yes | head -c 1000"}}, &run)
	if !run.Truncated || !strings.Contains(run.Stdout, "truncated: 900 more bytes") {
		t.Errorf("a 1000-byte output with a 100-byte limit: truncated %v, stdout %q", run.Truncated, run.Stdout)
	}
	sb.o.maxOutput = defaultMaxOutput

	// write_file, read_file, list_dir.
	var done doneOut
	if res := call(t, cs, "write_file", map[string]any{"path": "notes.txt", "content": "héllo\n"}, &done); res.IsError {
		t.Fatalf("write_file: %s", resultText(res))
	}
	var read readFileOut
	if res := call(t, cs, "read_file", map[string]any{"path": "notes.txt"}, &read); res.IsError || read.Content != "héllo\n" || read.Encoding != "text" {
		t.Errorf("read_file: %s, %+v", resultText(res), read)
	}
	if res := call(t, cs, "list_dir", map[string]any{}, nil); res.IsError || !strings.Contains(resultText(res), "notes.txt") {
		t.Errorf("list_dir: %s", resultText(res))
	}
	if res := call(t, cs, "read_file", map[string]any{"path": "missing.txt"}, nil); !res.IsError {
		t.Errorf("read_file of a missing file: no tool error: %s", resultText(res))
	}

	// upload and download.
	mustWrite(t, filepath.Join(local, "tree", "a", "b.txt"), []byte("b\n"))
	if res := call(t, cs, "upload", map[string]any{"local_path": filepath.Join(local, "tree")}, nil); res.IsError {
		t.Fatalf("upload: %s", resultText(res))
	}
	if res := call(t, cs, "download", map[string]any{"remote_path": "tree", "local_dir": filepath.Join(local, "back")}, nil); res.IsError {
		t.Fatalf("download: %s", resultText(res))
	}
	if got, _ := os.ReadFile(filepath.Join(local, "back", "tree", "a", "b.txt")); string(got) != "b\n" {
		t.Errorf("upload then download: %q", got)
	}

	// A session that ends under the server: the tool error carries its reason, and the
	// next call opens a new session.
	obj := &agentsv1alpha1.AgentSession{}
	if err := env.Client.Get(t.Context(), client.ObjectKey{Namespace: ns, Name: session}, obj); err != nil {
		t.Fatal(err)
	}
	pod := obj.Status.PodName
	if err := env.Client.Delete(t.Context(), obj); err != nil {
		t.Fatal(err)
	}
	waitGone(t, ns, session)
	testbed.Eventually(t, waitTimeout, func(ctx context.Context) (bool, string) {
		err := env.Client.Get(ctx, client.ObjectKey{Namespace: ns, Name: pod}, &corev1.Pod{})
		return apierrors.IsNotFound(err), "pod " + pod + " still there"
	})
	res = call(t, cs, "run_command", map[string]any{"args": []string{"true"}}, nil)
	if !res.IsError || !strings.Contains(resultText(res), session) {
		t.Errorf("run_command in a deleted session: error %v, %q", res.IsError, resultText(res))
	}
	t.Logf("error after the session was deleted: %s", resultText(res))
	run = runCommandOut{}
	if res := call(t, cs, "run_command", map[string]any{"args": []string{"echo", "again"}}, &run); res.IsError || run.Stdout != "again\n" {
		t.Errorf("run_command after the loss: %s", resultText(res))
	}
	session = onlySession(t, ns)

	// end_session ends it; the next call would open another.
	if res := call(t, cs, "end_session", map[string]any{}, &done); res.IsError {
		t.Fatalf("end_session: %s", resultText(res))
	}
	waitGone(t, ns, session)

	// Disconnect ends the session the server holds.
	call(t, cs, "run_command", map[string]any{"args": []string{"true"}}, nil)
	session = onlySession(t, ns)
	_ = cs.Close()
	select {
	case <-stopped:
	case <-time.After(waitTimeout):
		t.Fatal("the server did not stop when the client disconnected")
	}
	waitGone(t, ns, session)
}

// TestMCPOpenErrorCarriesReason: a class that does not exist makes a tool error with the
// session's reason, and no session is left.
func TestMCPOpenErrorCarriesReason(t *testing.T) {
	ns := env.CreateNamespace(t)
	root := newRootOptions(nil, &bytes.Buffer{}, &bytes.Buffer{})
	kubeconfig := env.KubeconfigPath
	root.config.KubeConfig = &kubeconfig
	root.config.Namespace = &ns
	root.sandboxOS = "linux"
	srv, sb, err := newMCPServer(root, &mcpOptions{sandbox: "missing"})
	if err != nil {
		t.Fatal(err)
	}
	serverT, clientT := mcp.NewInMemoryTransports()
	go func() { _ = srv.Run(t.Context(), serverT); _ = sb.close() }()
	cs := mcpClient(t, clientT)
	defer func() { _ = cs.Close() }()
	res := call(t, cs, "run_command", map[string]any{"args": []string{"true"}}, nil)
	if !res.IsError || !strings.Contains(resultText(res), "SandboxNotFound") {
		t.Errorf("run_command with a missing class: error %v, %q; want SandboxNotFound", res.IsError, resultText(res))
	}
	waitNoSessions(t, ns)
}

// TestMCPOverStdioThroughKubectl runs "kubectl agents mcp" as an MCP client would: a
// subprocess on stdio, found by kubectl on PATH.
func TestMCPOverStdioThroughKubectl(t *testing.T) {
	ns := newClass(t, "win", 1)
	cmd := exec.Command(kubectl, "agents", "mcp", "--sandbox", "win", "-n", ns)
	cmd.Env = pluginEnv()
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	cs := mcpClient(t, &mcp.CommandTransport{Command: cmd, TerminateDuration: 20 * time.Second})

	if got := toolNames(t, cs); !slices.Equal(got, wantTools) {
		t.Errorf("tools %v, want %v", got, wantTools)
	}
	if n := sessionCount(t, ns); n != 0 {
		t.Fatalf("%d sessions before the first tool call, want none", n)
	}
	var run runCommandOut
	if res := call(t, cs, "run_command", map[string]any{"args": []string{"echo", "hello", "two words"}}, &run); res.IsError || run.Stdout != "hello two words\n" {
		t.Fatalf("run_command: %s", resultText(res))
	}
	session := onlySession(t, ns)

	// Disconnect: stdin closes, the server ends the session and exits.
	if err := cs.Close(); err != nil {
		t.Logf("close: %v", err)
	}
	waitGone(t, ns, session)
	if !strings.Contains(stderr.String(), "ending session") {
		t.Errorf("the server's stderr does not say it ended the session:\n%s", stderr.String())
	}
}

// TestMCPIdleTimeoutErrorCarriesReason: a session that the idle timeout ended makes a
// tool error naming the reason; the next call opens a new session.
func TestMCPIdleTimeoutErrorCarriesReason(t *testing.T) {
	ns := newClass(t, "win", 1)
	root := newRootOptions(nil, &bytes.Buffer{}, &bytes.Buffer{})
	kubeconfig := env.KubeconfigPath
	root.config.KubeConfig = &kubeconfig
	root.config.Namespace = &ns
	root.sandboxOS = "linux"
	srv, sb, err := newMCPServer(root, &mcpOptions{sandbox: "win", idleTimeout: 2 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	serverT, clientT := mcp.NewInMemoryTransports()
	go func() { _ = srv.Run(t.Context(), serverT); _ = sb.close() }()
	cs := mcpClient(t, clientT)
	defer func() { _ = cs.Close() }()

	if res := call(t, cs, "run_command", map[string]any{"args": []string{"true"}}, nil); res.IsError {
		t.Fatalf("run_command: %s", resultText(res))
	}
	session := onlySession(t, ns)
	var pod string
	testbed.Eventually(t, waitTimeout, func(ctx context.Context) (bool, string) {
		s := &agentsv1alpha1.AgentSession{}
		if err := env.Client.Get(ctx, client.ObjectKey{Namespace: ns, Name: session}, s); err != nil {
			return false, err.Error()
		}
		pod = s.Status.PodName
		return s.Status.Phase == agentsv1alpha1.SessionExpired, "phase " + string(s.Status.Phase)
	})
	testbed.Eventually(t, waitTimeout, func(ctx context.Context) (bool, string) {
		err := env.Client.Get(ctx, client.ObjectKey{Namespace: ns, Name: pod}, &corev1.Pod{})
		return apierrors.IsNotFound(err), "pod " + pod + " still there"
	})
	res := call(t, cs, "run_command", map[string]any{"args": []string{"true"}}, nil)
	if !res.IsError || !strings.Contains(resultText(res), "IdleTimeout") {
		t.Errorf("run_command in an idled-out session: error %v, %q; want IdleTimeout", res.IsError, resultText(res))
	}
	t.Logf("error: %s", resultText(res))
}
