package client

import (
	"errors"
	"path/filepath"
	"slices"
	"testing"
)

func TestEntryNameRefusesEscapesAndSiblings(t *testing.T) {
	for _, name := range []string{"../x", "out/../../x", `..\x`, "/etc/passwd", `\x`, "C:/x", `C:\x`, "c:x", "", "out/..",
		"other/x", "outx", "x/out", ".git/hooks/post-checkout", "./other"} {
		if got, err := entryName(name, "out"); !errors.Is(err, errUnsafeEntry) {
			t.Errorf("entryName(%q) = %q, %v; want it refused", name, got, err)
		}
	}
	for name, want := range map[string]string{"out": "out", "out/a/b": "out/a/b", "./out/a": "out/a", "out/./b/": "out/b", `out\b`: "out/b"} {
		got, err := entryName(name, "out")
		if err != nil || got != filepath.FromSlash(want) {
			t.Errorf("entryName(%q) = %q, %v; want %s", name, got, err, want)
		}
	}
}

func TestSplitRemote(t *testing.T) {
	for in, want := range map[string][2]string{
		"out":            {"", "out"},
		"work/out/":      {"work", "out"},
		`C:\work\out`:    {`C:\work`, "out"},
		`C:\out`:         {`C:\`, "out"},
		"/tmp/x":         {"/tmp", "x"},
		"/x":             {"/", "x"},
		`C:/Users/a b/c`: {"C:/Users/a b", "c"},
	} {
		if dir, base := splitRemote(in); dir != want[0] || base != want[1] {
			t.Errorf("splitRemote(%q) = %q, %q; want %q, %q", in, dir, base, want[0], want[1])
		}
	}
}

func TestWorkDirArgsKeepArguments(t *testing.T) {
	got := WindowsWorkDirArgs(`C:\it's here`, []string{"git.exe", "commit", "-m", "don't $x; `y`"})
	want := []string{"powershell.exe", "-NoLogo", "-NoProfile", "-NonInteractive", "-Command",
		`$ErrorActionPreference='Stop'; Set-Location -LiteralPath 'C:\it''s here'; & 'git.exe' 'commit' '-m' 'don''t $x; ` + "`y`" + `'; exit $LASTEXITCODE`}
	if !slices.Equal(got, want) {
		t.Errorf("WindowsWorkDirArgs:\n got %q\nwant %q", got, want)
	}
	if got := LinuxWorkDirArgs("a b", []string{"ls", "-l"}); !slices.Equal(got, []string{"env", "--chdir=a b", "--", "ls", "-l"}) {
		t.Errorf("LinuxWorkDirArgs: %q", got)
	}
}
