package client

import (
	"archive/tar"
	"errors"
	"io"
	"os"
	"path/filepath"
	"slices"
	"strings"
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

// TestDefaultCapsStopAnEntryFlood: 200,000 entries (the same directory again and again, so
// each costs next to nothing to unpack) stop at the default cap of 100,000, with an error
// naming the option and the flag. The defaults are the documented ones.
func TestDefaultCapsStopAnEntryFlood(t *testing.T) {
	limits := downloadLimits(Options{})
	if limits.bytes != 1<<30 || limits.entries != 100_000 {
		t.Fatalf("default caps %+v, want 1 GiB and 100,000 entries", limits)
	}
	pr, pw := io.Pipe()
	go func() {
		tw := tar.NewWriter(pw)
		for range 200_000 {
			if err := tw.WriteHeader(&tar.Header{Name: "out/", Typeflag: tar.TypeDir, Mode: 0o755}); err != nil {
				pw.CloseWithError(err)
				return
			}
		}
		pw.CloseWithError(tw.Close())
	}()
	dst, err := os.OpenRoot(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = dst.Close() }()
	err = extractTar(pr, dst, "out", limits)
	_ = pr.CloseWithError(errors.New("done"))
	var limitErr *LimitError
	if !errors.As(err, &limitErr) || limitErr.Limit != 100_000 ||
		!strings.Contains(err.Error(), "Options.MaxDownloadEntries") || !strings.Contains(err.Error(), "--max-download-entries") {
		t.Errorf("200,000 entries: %v; want the entry cap of 100,000 naming its option and flag", err)
	}
}
