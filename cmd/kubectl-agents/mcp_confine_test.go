//go:build !windows

package main

import (
	"archive/tar"
	"bytes"
	"context"
	"io/fs"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/modelcontextprotocol/go-sdk/mcp"
)

// The model is the attacker here: a go-sdk MCP client calls the tools with local paths
// that try to leave the workspace. Every such call must be a tool error naming the
// workspace, and nothing outside it may be read (uploaded into the sandbox) or written.

// startConfinedMCP serves class win of a fresh namespace in-process, confined to
// workspace, to a go-sdk client with copts; it returns the client session and the
// namespace.
func startConfinedMCP(t *testing.T, workspace string, copts *mcp.ClientOptions, sopts *mcp.ClientSessionOptions,
	roots ...string) (*mcp.ClientSession, *mcpSandbox, string) {
	t.Helper()
	ns := newClass(t, "win", 1)
	root := newRootOptions(nil, &bytes.Buffer{}, &bytes.Buffer{})
	kubeconfig := env.KubeconfigPath
	root.config.KubeConfig = &kubeconfig
	root.config.Namespace = &ns
	root.sandboxOS = "linux"
	srv, sb, err := newMCPServer(root, &mcpOptions{sandbox: "win", workspace: workspace})
	if err != nil {
		t.Fatal(err)
	}
	serverT, clientT := mcp.NewInMemoryTransports()
	stopped := make(chan struct{})
	go func() {
		defer close(stopped)
		_ = srv.Run(context.Background(), serverT)
		_ = sb.close()
		_ = sb.ws.close()
	}()
	c := mcp.NewClient(&mcp.Implementation{Name: "model", Version: "v0"}, copts)
	for _, r := range roots {
		c.AddRoots(&mcp.Root{URI: (&url.URL{Scheme: "file", Path: r}).String()}) //nolint:staticcheck // the roots the server must honour
	}
	ctx, cancel := context.WithTimeout(t.Context(), waitTimeout)
	defer cancel()
	cs, err := c.Connect(ctx, clientT, sopts)
	if err != nil {
		t.Fatalf("connect: %v", err)
	}
	t.Cleanup(func() {
		_ = cs.Close()
		select {
		case <-stopped:
		case <-time.After(waitTimeout):
			t.Error("the server did not stop when the client disconnected")
		}
	})
	return cs, sb, ns
}

// TestMCPConfinesLocalPathsToWorkspace: upload, download and end_session with absolute
// paths outside the workspace, "..", and symbolic links that lead out are refused, name
// the workspace, and neither read nor write outside it; paths inside (absolute too) work.
func TestMCPConfinesLocalPathsToWorkspace(t *testing.T) {
	base := t.TempDir()
	ws, outside := filepath.Join(base, "ws"), filepath.Join(base, "outside")
	secret := filepath.Join(outside, "id_rsa")
	mustWrite(t, secret, []byte("TOP SECRET KEY"))
	mustWrite(t, filepath.Join(ws, "ok", "in.txt"), []byte("fine"))
	for link, target := range map[string]string{"linkout": outside, "linkfile": secret, "ok/up": "../.."} {
		if err := os.Symlink(target, filepath.Join(ws, link)); err != nil {
			t.Fatal(err)
		}
	}
	cs, sb, ns := startConfinedMCP(t, ws, nil, nil)

	// Inside the workspace, relative or absolute: fine.
	if res := call(t, cs, "write_file", map[string]any{"path": "remote.txt", "content": "from the sandbox"}, nil); res.IsError {
		t.Fatalf("write_file: %s", resultText(res))
	}
	session := onlySession(t, ns)
	sb.mu.Lock()
	pod := sb.session.PodName
	sb.mu.Unlock()
	for _, c := range []struct {
		tool string
		args map[string]any
	}{
		{"upload", map[string]any{"local_path": "ok/in.txt"}},
		{"upload", map[string]any{"local_path": filepath.Join(ws, "ok")}},
		{"download", map[string]any{"remote_path": "remote.txt", "local_dir": "got"}},
		{"download", map[string]any{"remote_path": "remote.txt", "local_dir": filepath.Join(ws, "abs")}},
	} {
		if res := call(t, cs, c.tool, c.args, nil); res.IsError {
			t.Errorf("%s %v inside the workspace: %s", c.tool, c.args, resultText(res))
		}
	}
	for _, p := range []string{"got/remote.txt", "abs/remote.txt"} {
		if got, err := os.ReadFile(filepath.Join(ws, p)); err != nil || string(got) != "from the sandbox" {
			t.Errorf("%s: %q, %v", p, got, err)
		}
	}

	outsideBefore := listTree(t, outside)
	refused := []struct {
		tool string
		args map[string]any
	}{
		{"upload", map[string]any{"local_path": secret}},
		{"upload", map[string]any{"local_path": "../outside/id_rsa"}},
		{"upload", map[string]any{"local_path": "ok/../../outside/id_rsa"}},
		{"upload", map[string]any{"local_path": "linkout/id_rsa"}},
		{"upload", map[string]any{"local_path": "linkfile"}},
		{"upload", map[string]any{"local_path": "ok/up/outside/id_rsa"}},
		{"upload", map[string]any{"local_path": "/etc/passwd"}},
		{"download", map[string]any{"remote_path": "remote.txt", "local_dir": outside}},
		{"download", map[string]any{"remote_path": "remote.txt", "local_dir": "../outside"}},
		{"download", map[string]any{"remote_path": "remote.txt", "local_dir": "linkout"}},
		{"download", map[string]any{"remote_path": "remote.txt", "local_dir": "linkout/sub"}},
		{"download", map[string]any{"remote_path": "remote.txt", "local_dir": "ok/up/outside"}},
		{"end_session", map[string]any{"exports": []map[string]any{{"remote_path": "remote.txt", "local_dir": "../outside"}}}},
		{"end_session", map[string]any{"exports": []map[string]any{
			{"remote_path": "remote.txt", "local_dir": "fine"}, {"remote_path": "remote.txt", "local_dir": "linkout"}}}},
	}
	for _, c := range refused {
		res := call(t, cs, c.tool, c.args, nil)
		if !res.IsError || !strings.Contains(resultText(res), ws) {
			t.Errorf("%s %v: error %v, %q; want a tool error naming the workspace %s", c.tool, c.args, res.IsError, resultText(res), ws)
		}
	}
	if after := listTree(t, outside); !equalSets(outsideBefore, after) {
		t.Errorf("the directory outside the workspace changed: %v, was %v", after, outsideBefore)
	}
	// Nothing of the secret reached the sandbox.
	_ = filepath.WalkDir(env.PodDir(ns, pod), func(p string, d fs.DirEntry, err error) error {
		if err != nil || !d.Type().IsRegular() {
			return nil
		}
		if data, _ := os.ReadFile(p); bytes.Contains(data, []byte("TOP SECRET")) || bytes.Contains(data, []byte("root:")) {
			t.Errorf("the sandbox got %s: %q", p, data)
		}
		return nil
	})
	// A refused end_session left the session open.
	if got := onlySession(t, ns); got != session {
		t.Errorf("session %s, want %s still open", got, session)
	}
	if res := call(t, cs, "end_session", map[string]any{"exports": []map[string]any{{"remote_path": "remote.txt", "local_dir": "exports"}}}, nil); res.IsError {
		t.Errorf("end_session with an export inside the workspace: %s", resultText(res))
	}
	if _, err := os.Stat(filepath.Join(ws, "exports", "remote.txt")); err != nil {
		t.Errorf("export: %v", err)
	}
	waitGone(t, ns, session)
}

// TestMCPConfinesLocalPathsToClientRoots: a client that declares roots narrows the
// workspace to them, on the current protocol (roots asked in a second round of the call)
// and on 2025-11-25 (roots/list from the server).
func TestMCPConfinesLocalPathsToClientRoots(t *testing.T) {
	for _, version := range []string{"", "2025-11-25"} {
		t.Run("protocol "+version, func(t *testing.T) {
			ws := t.TempDir()
			allowed := filepath.Join(ws, "allowed")
			mustWrite(t, filepath.Join(allowed, "in.txt"), []byte("fine"))
			mustWrite(t, filepath.Join(ws, "private", "notes.txt"), []byte("PRIVATE NOTES"))
			if err := os.Symlink("../private", filepath.Join(allowed, "esc")); err != nil {
				t.Fatal(err)
			}
			cs, _, ns := startConfinedMCP(t, ws, nil, &mcp.ClientSessionOptions{ProtocolVersion: version}, allowed)
			if res := call(t, cs, "write_file", map[string]any{"path": "remote.txt", "content": "x"}, nil); res.IsError {
				t.Fatalf("write_file: %s", resultText(res))
			}
			session := onlySession(t, ns)
			for _, c := range []struct {
				tool string
				args map[string]any
			}{
				{"upload", map[string]any{"local_path": "allowed/in.txt"}},
				{"download", map[string]any{"remote_path": "remote.txt", "local_dir": "allowed/got"}},
			} {
				if res := call(t, cs, c.tool, c.args, nil); res.IsError {
					t.Errorf("%s %v inside the roots: %s", c.tool, c.args, resultText(res))
				}
			}
			for _, c := range []struct {
				tool string
				args map[string]any
			}{
				{"upload", map[string]any{"local_path": "private/notes.txt"}},
				{"upload", map[string]any{"local_path": "allowed/esc/notes.txt"}},
				{"download", map[string]any{"remote_path": "remote.txt", "local_dir": "private"}},
				{"download", map[string]any{"remote_path": "remote.txt", "local_dir": "elsewhere"}},
				{"download", map[string]any{"remote_path": "remote.txt", "local_dir": "allowed/esc"}},
				{"end_session", map[string]any{"exports": []map[string]any{{"remote_path": "remote.txt", "local_dir": "elsewhere"}}}},
			} {
				res := call(t, cs, c.tool, c.args, nil)
				if !res.IsError || !strings.Contains(resultText(res), "roots") {
					t.Errorf("%s %v outside the roots: error %v, %q; want a tool error naming the roots", c.tool, c.args, res.IsError, resultText(res))
				}
			}
			for _, p := range []string{"elsewhere", "private/remote.txt"} {
				if _, err := os.Lstat(filepath.Join(ws, p)); err == nil {
					t.Errorf("%s was written outside the client's roots", p)
				}
			}
			if got := onlySession(t, ns); got != session {
				t.Errorf("session %s, want %s still open", got, session)
			}
		})
	}
}

// TestMCPReadFileStopsAtLimit: the sandbox's tar announces a 1 GiB file, sends 100 KiB
// and hangs; read_file returns its first 64 KiB at once instead of waiting for the rest.
// The hostile tar is first on PATH, so this test does not run in parallel.
func TestMCPReadFileStopsAtLimit(t *testing.T) {
	realTar, err := exec.LookPath("tar")
	if err != nil {
		t.Fatal(err)
	}
	bin := t.TempDir()
	var hdr bytes.Buffer
	tw := tar.NewWriter(&hdr)
	if err := tw.WriteHeader(&tar.Header{Name: "endless", Typeflag: tar.TypeReg, Mode: 0o644, Size: 1 << 30}); err != nil {
		t.Fatal(err)
	}
	_ = tw.Flush()
	mustWrite(t, filepath.Join(bin, "endless.hdr"), hdr.Bytes())
	mustWrite(t, filepath.Join(bin, "tar"), []byte(`#!/bin/sh
if [ "$1" = "-c" ] && [ "$4" = "endless" ]; then
  cat '`+filepath.Join(bin, "endless.hdr")+`'; head -c 102400 /dev/zero; exec sleep 600
fi
exec '`+realTar+`' "$@"
`))
	if err := os.Chmod(filepath.Join(bin, "tar"), 0o755); err != nil {
		t.Fatal(err)
	}
	t.Setenv("PATH", bin+string(os.PathListSeparator)+os.Getenv("PATH"))

	cs, _, _ := startConfinedMCP(t, t.TempDir(), nil, nil)
	if res := call(t, cs, "run_command", map[string]any{"args": []string{"true"}}, nil); res.IsError {
		t.Fatalf("run_command: %s", resultText(res))
	}
	begin := time.Now()
	var read readFileOut
	res := call(t, cs, "read_file", map[string]any{"path": "endless"}, &read)
	if elapsed := time.Since(begin); elapsed > 20*time.Second {
		t.Errorf("read_file took %s: it waited for the rest of the file", elapsed)
	}
	if res.IsError || !read.Truncated || read.Size != 1<<30 || len(read.Content) != defaultMaxOutput {
		t.Errorf("read_file of an endless file: error %v, truncated %v, size %d, %d bytes of content", res.IsError, read.Truncated, read.Size, len(read.Content))
	}
}

// TestMCPToolCallTimesOut: a call that runs past --tool-timeout ends with a tool error
// naming the flag.
func TestMCPToolCallTimesOut(t *testing.T) {
	cs, sb, _ := startConfinedMCP(t, t.TempDir(), nil, nil)
	if res := call(t, cs, "run_command", map[string]any{"args": []string{"true"}}, nil); res.IsError {
		t.Fatalf("run_command: %s", resultText(res))
	}
	sb.o.toolTimeout = 2 * time.Second
	begin := time.Now()
	res := call(t, cs, "run_command", map[string]any{"args": []string{"sleep", "600"}}, nil)
	if !res.IsError || !strings.Contains(resultText(res), "--tool-timeout 2s") {
		t.Errorf("run_command past the tool timeout: error %v, %q", res.IsError, resultText(res))
	}
	if elapsed := time.Since(begin); elapsed > 20*time.Second {
		t.Errorf("a 2 s tool timeout returned after %s", elapsed)
	}
}

// listTree is every path under dir.
func listTree(t *testing.T, dir string) map[string]bool {
	t.Helper()
	paths := map[string]bool{}
	_ = filepath.WalkDir(dir, func(p string, _ fs.DirEntry, err error) error {
		if err == nil {
			paths[p] = true
		}
		return nil
	})
	return paths
}

func equalSets(a, b map[string]bool) bool {
	if len(a) != len(b) {
		return false
	}
	for k := range a {
		if !b[k] {
			return false
		}
	}
	return true
}
