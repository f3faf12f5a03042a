package main

import (
	"testing"

	hpclient "github.com/hyperpool/hyperpool/pkg/client"
)

func TestSplitRemote(t *testing.T) {
	for _, tc := range []struct {
		arg, session, path string
		remote             bool
	}{
		{"s1:C:\\work", "s1", "C:\\work", true},
		{"s1:", "s1", "", true},
		{"s1:dir/x", "s1", "dir/x", true},
		{"C:\\local", "", "C:\\local", false},
		{"./a:b", "", "./a:b", false},
		{"plain", "", "plain", false},
	} {
		s, p, r := splitRemote(tc.arg)
		if s != tc.session || p != tc.path || r != tc.remote {
			t.Errorf("splitRemote(%q) = %q, %q, %v", tc.arg, s, p, r)
		}
	}
}

func TestSplitExport(t *testing.T) {
	for _, tc := range []struct {
		arg, remote, local string
		ok                 bool
	}{
		{`C:\work\out:results`, `C:\work\out`, "results", true},
		{`C:\out:D:\results`, `C:\out`, `D:\results`, true},
		{"in/sub:/tmp/x", "in/sub", "/tmp/x", true},
		{`C:\out`, "", "", false},
		{"nocolon", "", "", false},
	} {
		r, l, ok := splitExport(tc.arg)
		if r != tc.remote || l != tc.local || ok != tc.ok {
			t.Errorf("splitExport(%q) = %q, %q, %v", tc.arg, r, l, ok)
		}
	}
}

func TestSplitSandboxPath(t *testing.T) {
	for _, tc := range []struct{ p, dir, base string }{
		{`C:\work\a.txt`, `C:\work`, "a.txt"},
		{`C:\a.txt`, `C:\`, "a.txt"},
		{"/a.txt", "/", "a.txt"},
		{"d/a.txt", "d", "a.txt"},
		{"a.txt", "", "a.txt"},
	} {
		d, b := hpclient.SplitSandboxPath(tc.p)
		if d != tc.dir || b != tc.base {
			t.Errorf("SplitSandboxPath(%q) = %q, %q", tc.p, d, b)
		}
	}
}
