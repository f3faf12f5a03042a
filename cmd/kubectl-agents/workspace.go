package main

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"net/url"
	"os"
	"path/filepath"
	"runtime"
	"strings"

	"github.com/modelcontextprotocol/go-sdk/jsonrpc"
	"github.com/modelcontextprotocol/go-sdk/mcp"
)

// The MCP server's tools are driven by a model that reads what the sandbox prints: every
// local path a tool takes is hostile. They all resolve inside the workspace (--workspace,
// default the working directory) through an os.Root, which refuses absolute paths outside
// it, ".." and symbolic links that lead out; and, when the client declares MCP roots,
// inside one of those too.

// workspace is the directory the MCP tools' local paths are confined to.
type workspace struct {
	dir  string // absolute
	root *os.Root
}

func openWorkspace(dir string) (*workspace, error) {
	if dir == "" {
		dir = "."
	}
	abs, err := filepath.Abs(dir)
	if err != nil {
		return nil, fmt.Errorf("--workspace %q: %w", dir, err)
	}
	root, err := os.OpenRoot(abs)
	if err != nil {
		return nil, fmt.Errorf("--workspace %q: %w", dir, err)
	}
	return &workspace{dir: abs, root: root}, nil
}

func (w *workspace) close() error { return w.root.Close() }

// refusal is the tool error for a local path the workspace does not allow.
func (w *workspace) refusal(p, why string) error {
	return fmt.Errorf("local path %q %s: the tools read and write local files only inside the workspace %s (kubectl agents mcp --workspace)", p, why, w.dir)
}

// wrap names the workspace in an error of its os.Root, e.g. a link that leads out.
func (w *workspace) wrap(p string, err error) error {
	if err == nil {
		return nil
	}
	if strings.Contains(err.Error(), "escapes") {
		return w.refusal(p, "leads outside the workspace through a symbolic link")
	}
	return fmt.Errorf("local path %q in the workspace %s: %w", p, w.dir, err)
}

// rel turns a tool's local path, relative to the workspace or absolute, into a path
// relative to it; one that is outside, lexically, is refused. Links are judged by the
// os.Root when the path is used.
func (w *workspace) rel(p string) (string, error) {
	if p == "" {
		return ".", nil
	}
	clean := filepath.Clean(p)
	if filepath.IsAbs(clean) {
		r, err := filepath.Rel(w.dir, clean)
		if err != nil {
			return "", w.refusal(p, "is outside the workspace")
		}
		clean = r
	}
	if clean != "." && !filepath.IsLocal(clean) {
		return "", w.refusal(p, "is outside the workspace")
	}
	return clean, nil
}

// source checks a path to upload: it must exist inside the workspace, and a symbolic
// link at its end must lead to something inside too.
func (w *workspace) source(p string) (string, error) {
	rel, err := w.rel(p)
	if err != nil {
		return "", err
	}
	info, err := w.root.Lstat(rel)
	if err != nil {
		return "", w.wrap(p, err)
	}
	if info.Mode()&fs.ModeSymlink != 0 {
		if _, err := w.root.Stat(rel); err != nil {
			return "", w.wrap(p, err)
		}
	}
	return rel, nil
}

// destination creates (if needed) and opens a directory to download into, inside the
// workspace. The caller closes it.
func (w *workspace) destination(p string) (*os.Root, error) {
	rel, err := w.rel(p)
	if err != nil {
		return nil, err
	}
	if err := w.root.MkdirAll(rel, 0o755); err != nil {
		return nil, w.wrap(p, err)
	}
	dst, err := w.root.OpenRoot(rel)
	return dst, w.wrap(p, err)
}

// rootsRequest is the ID of the server's request for the client's roots, in a tool call
// that needs them (multi round-trip, protocol 2026-07-28 and later).
const rootsRequest = "roots"

// clientRoots returns the local directories of the roots the client declares; none when
// it declares no roots or an empty list. On the newer protocol the roots come back in a
// second round of the same call: then ask is the result to return now, and the SDK calls
// the tool again with the client's answer.
func clientRoots(ctx context.Context, req *mcp.CallToolRequest) (dirs []string, ask *mcp.CallToolResult, err error) {
	if req == nil || req.Session == nil {
		return nil, nil, nil
	}
	var list *mcp.ListRootsResult //nolint:staticcheck // MCP roots are deprecated by SEP-2577 but still what clients declare
	if req.ProtocolVersion() >= "2026-07-28" {
		if caps := req.ClientCapabilities(); caps == nil || caps.RootsV2 == nil { //nolint:staticcheck // MCP roots are deprecated by SEP-2577 but still what clients declare
			return nil, nil, nil
		}
		var ok bool
		if list, ok = req.Params.InputResponses[rootsRequest].(*mcp.ListRootsResult); !ok { //nolint:staticcheck // MCP roots are deprecated by SEP-2577 but still what clients declare
			return nil, &mcp.CallToolResult{InputRequests: mcp.InputRequestMap{rootsRequest: &mcp.ListRootsParams{}}}, nil //nolint:staticcheck // MCP roots are deprecated by SEP-2577 but still what clients declare
		}
	} else {
		list, err = req.Session.ListRoots(ctx, nil) //nolint:staticcheck // MCP roots are deprecated by SEP-2577 but still what clients declare
		var werr *jsonrpc.Error
		if errors.As(err, &werr) && werr.Code == jsonrpc.CodeMethodNotFound {
			return nil, nil, nil // the client has no roots
		}
		if err != nil {
			return nil, nil, fmt.Errorf("list the MCP client's roots: %w", err)
		}
	}
	for _, r := range list.Roots {
		if dir, ok := rootDir(r.URI); ok {
			dirs = append(dirs, dir)
		}
	}
	if len(list.Roots) > 0 && len(dirs) == 0 {
		return nil, nil, fmt.Errorf("the MCP client's roots name no local directory (file:// URI): no local path is allowed")
	}
	return dirs, nil, nil
}

// rootDir is the local directory of a file:// root URI.
func rootDir(uri string) (string, bool) {
	u, err := url.Parse(uri)
	if err != nil || u.Scheme != "file" || (u.Host != "" && u.Host != "localhost") || u.Path == "" {
		return "", false
	}
	p := u.Path
	if runtime.GOOS == "windows" {
		p = strings.TrimPrefix(p, "/") // file:///C:/x
	}
	return filepath.Clean(filepath.FromSlash(p)), true
}

// insideRoots checks that the workspace path rel lies inside one of the client's roots:
// lexically, and through the root's own os.Root for the part that exists (so a link
// inside the workspace cannot lead out of the root).
func (w *workspace) insideRoots(p, rel string, roots []string) error {
	if len(roots) == 0 {
		return nil
	}
	abs := filepath.Join(w.dir, rel)
	for _, dir := range roots {
		r, err := filepath.Rel(dir, abs)
		if err != nil || (r != "." && !filepath.IsLocal(r)) {
			continue
		}
		if resolvesInside(dir, r) {
			return nil
		}
	}
	return fmt.Errorf("local path %q (%s) is outside the roots the MCP client declares (%s): the tools use local files only inside both the workspace %s and one of those roots",
		p, abs, strings.Join(roots, ", "), w.dir)
}

// resolvesInside reports whether the longest existing part of rel resolves, links
// followed, inside dir.
func resolvesInside(dir, rel string) bool {
	root, err := os.OpenRoot(dir)
	if err != nil {
		return false
	}
	defer func() { _ = root.Close() }()
	for p := rel; ; p = filepath.Dir(p) {
		_, err := root.Stat(p)
		if err == nil {
			return true
		}
		if !errors.Is(err, fs.ErrNotExist) || p == "." {
			return false
		}
	}
}
