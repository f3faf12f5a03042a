//go:build !windows

package client_test

import (
	"archive/tar"
	"bytes"
	"encoding/binary"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"testing"

	hpclient "github.com/hyperpool/hyperpool/pkg/client"
)

// TestDownloadTreatsArchiveAsHostile: the sandbox is the attacker. Its "tar" is a script
// that prints a crafted archive, through the real exec path; Download of "out" must refuse
// every trick with a clear error, write nothing outside target/out, never write through a
// link that already exists there, and leave no partly written file.
func TestDownloadTreatsArchiveAsHostile(t *testing.T) {
	t.Parallel()
	ns := newClass(t, "win", 1)
	s := open(t, ns, "win", hpclient.Options{})
	podDir := env.PodDir(ns, s.PodName)
	const tib = int64(1) << 40

	cases := []struct {
		name    string
		archive func(d dirs) []byte
		opts    hpclient.Options
		prepare func(t *testing.T, d dirs)
		wantErr string
		check   func(t *testing.T, d dirs)
	}{
		{name: "dotdot sibling", wantErr: "leaves the target directory",
			archive: func(dirs) []byte { return archiveOf(t, file("out/ok.txt", "ok"), file("../x", "evil")) }},
		{name: "sibling next to base", wantErr: "not under out/",
			archive: func(dirs) []byte { return archiveOf(t, file("out/ok.txt", "ok"), file("other/x", "evil")) },
			check:   absent("other")},
		{name: "git hook next to base", wantErr: "not under out/",
			archive: func(dirs) []byte { return archiveOf(t, file(".git/hooks/post-checkout", "#!/bin/sh\nevil")) },
			check:   absent(".git")},
		{name: "absolute path", wantErr: "absolute path",
			archive: func(d dirs) []byte { return archiveOf(t, file(filepath.Join(d.outside, "x"), "evil")) }},
		{name: "symlink then a write through it", wantErr: "is a link",
			archive: func(d dirs) []byte {
				return archiveOf(t, &tar.Header{Name: "out/link", Typeflag: tar.TypeSymlink, Linkname: d.outside}, file("out/link/x", "evil"))
			},
			check: absent("out/link")},
		{name: "hard link", wantErr: "is a link",
			archive: func(dirs) []byte {
				return archiveOf(t, &tar.Header{Name: "out/passwd", Typeflag: tar.TypeLink, Linkname: "/etc/passwd"})
			}},
		{name: "existing symlink out of the target", wantErr: "as a symbolic link",
			prepare: func(t *testing.T, d dirs) { mustSymlink(t, d.outside, filepath.Join(d.target, "out")) },
			archive: func(dirs) []byte { return archiveOf(t, file("out/x", "evil")) }},
		{name: "existing symlink to a file inside the target", wantErr: "as a symbolic link",
			prepare: func(t *testing.T, d dirs) {
				mustWrite(t, filepath.Join(d.target, "victim"), []byte("keep"))
				mustSymlink(t, "../victim", filepath.Join(d.target, "out", "f"))
			},
			archive: func(dirs) []byte { return archiveOf(t, file("out/f", "evil")) },
			check:   contains("victim", "keep")},
		{name: "existing symlink to a directory inside the target", wantErr: "as a symbolic link",
			prepare: func(t *testing.T, d dirs) {
				if err := os.MkdirAll(filepath.Join(d.target, "elsewhere"), 0o755); err != nil {
					t.Fatal(err)
				}
				mustSymlink(t, "../elsewhere", filepath.Join(d.target, "out", "d"))
			},
			archive: func(dirs) []byte { return archiveOf(t, file("out/d/x", "evil")) },
			check:   absent("elsewhere/x")},
		{name: "PAX sparse bomb of 1 TiB", wantErr: "is a sparse file",
			archive: func(dirs) []byte { return paxSparse("out/bomb", tib) }, check: absent("out/bomb")},
		{name: "PAX sparse file under the byte cap", wantErr: "is a sparse file",
			archive: func(dirs) []byte { return paxSparse("out/holes", 16<<20) }, check: absent("out/holes")},
		{name: "old GNU sparse bomb of 1 TiB", wantErr: "is a sparse file",
			archive: func(dirs) []byte { return gnuSparse("out/bomb", tib) }, check: absent("out/bomb")},
		{name: "device file", wantErr: "only files and directories",
			archive: func(dirs) []byte {
				return archiveOf(t, &tar.Header{Name: "out/null", Typeflag: tar.TypeChar, Devmajor: 1, Devminor: 3, Mode: 0o666})
			}},
		{name: "fifo", wantErr: "only files and directories",
			archive: func(dirs) []byte {
				return archiveOf(t, &tar.Header{Name: "out/pipe", Typeflag: tar.TypeFifo, Mode: 0o644})
			}},
		{name: "more bytes than the cap", wantErr: "Options.MaxDownloadBytes",
			opts: hpclient.Options{MaxDownloadBytes: 1000},
			archive: func(dirs) []byte {
				return archiveOf(t, file("out/a", strings.Repeat("a", 600)), file("out/b", strings.Repeat("b", 600)))
			},
			check: absent("out/b")},
		{name: "one file bigger than the cap", wantErr: "Options.MaxDownloadBytes",
			opts:    hpclient.Options{MaxDownloadBytes: 1000},
			archive: func(dirs) []byte { return archiveOf(t, file("out/big", strings.Repeat("x", 5000))) },
			check:   absent("out/big")},
		{name: "more entries than the cap", wantErr: "Options.MaxDownloadEntries",
			opts: hpclient.Options{MaxDownloadEntries: 50},
			archive: func(dirs) []byte {
				var entries []*tar.Header
				for i := range 60 {
					entries = append(entries, file(fmt.Sprintf("out/f%03d", i), ""))
				}
				return archiveOf(t, entries...)
			},
			check: atMostFiles("out", 50)},
		{name: "endless padding after the archive's end", wantErr: "after the archive's end",
			archive: func(dirs) []byte {
				return append(archiveOf(t, file("out/ok", "fine")), make([]byte, 4<<20)...)
			}},
		{name: "archive cut inside a file", wantErr: "unexpected EOF",
			archive: func(dirs) []byte {
				full := archiveOf(t, file("out/cut", strings.Repeat("c", 100_000)))
				return full[:512+1000]
			},
			check: absent("out/cut")},
	}
	for i, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			root := t.TempDir()
			d := dirs{target: filepath.Join(root, "target"), outside: filepath.Join(root, "outside")}
			for _, dir := range []string{d.target, d.outside} {
				if err := os.MkdirAll(dir, 0o755); err != nil {
					t.Fatal(err)
				}
			}
			if tc.prepare != nil {
				tc.prepare(t, d)
			}
			before := listFiles(t, root)
			script := hostileTar(t, podDir, fmt.Sprintf("case%02d", i), tc.archive(d))
			opts := tc.opts
			opts.Tar = script
			evil, err := cli.Attach(t.Context(), ns, s.Name, opts)
			if err != nil {
				t.Fatal(err)
			}
			err = evil.Download(t.Context(), "out", d.target)
			if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
				t.Errorf("download: %v; want an error with %q", err, tc.wantErr)
			}
			t.Logf("error: %v", err)
			// Nothing new outside target/out, and no partly written file anywhere.
			for p := range listFiles(t, root) {
				rel, _ := filepath.Rel(d.target, p)
				if before[p] || strings.HasPrefix(rel, "out"+string(filepath.Separator)) && !strings.Contains(filepath.Base(p), ".partial-") {
					continue
				}
				t.Errorf("download left %s", p)
			}
			if tc.check != nil {
				tc.check(t, d)
			}
		})
	}
}

// dirs are a hostile download's target and a directory beside it that must stay empty.
type dirs struct{ target, outside string }

// hostileTar writes the archive and a "tar" that prints it into the pod's directory, and
// returns the command to give as Options.Tar.
func hostileTar(t *testing.T, podDir, name string, archive []byte) string {
	t.Helper()
	mustWrite(t, filepath.Join(podDir, name+".tar"), archive)
	script := filepath.Join(podDir, name+"-tar")
	mustWrite(t, script, []byte("#!/bin/sh\ncat "+name+".tar\n"))
	if err := os.Chmod(script, 0o755); err != nil {
		t.Fatal(err)
	}
	return "./" + name + "-tar"
}

func file(name, content string) *tar.Header {
	return &tar.Header{Name: name, Typeflag: tar.TypeReg, Mode: 0o644, Size: int64(len(content)), Linkname: content}
}

// archiveOf writes the entries; a regular file's content travels in Linkname (see file).
func archiveOf(t *testing.T, entries ...*tar.Header) []byte {
	t.Helper()
	var buf bytes.Buffer
	tw := tar.NewWriter(&buf)
	for _, h := range entries {
		content := ""
		if h.Typeflag == tar.TypeReg {
			content, h.Linkname = h.Linkname, ""
		}
		if err := tw.WriteHeader(h); err != nil {
			t.Fatal(err)
		}
		if _, err := tw.Write([]byte(content)); err != nil {
			t.Fatal(err)
		}
	}
	if err := tw.Close(); err != nil {
		t.Fatal(err)
	}
	return buf.Bytes()
}

// rawHeader is a tar header block built by hand, for what archive/tar will not write.
func rawHeader(name string, typeflag byte, size int64, magic string) []byte {
	b := make([]byte, 512)
	copy(b[0:100], name)
	copy(b[100:], "0000644\x00")
	copy(b[108:], "0000000\x00")
	copy(b[116:], "0000000\x00")
	copy(b[124:], fmt.Sprintf("%011o\x00", size))
	copy(b[136:], "00000000000\x00")
	b[156] = typeflag
	copy(b[257:], magic)
	return b
}

func setChecksum(b []byte) []byte {
	copy(b[148:156], "        ")
	sum := 0
	for _, c := range b[:512] {
		sum += int(c)
	}
	copy(b[148:], fmt.Sprintf("%06o\x00 ", sum))
	return b
}

// base256 is a tar numeric field too big for octal.
func base256(field []byte, v int64) {
	for i := range field {
		field[i] = 0
	}
	binary.BigEndian.PutUint64(field[len(field)-8:], uint64(v))
	field[0] |= 0x80
}

func pad(b []byte) []byte {
	if r := len(b) % 512; r != 0 {
		b = append(b, make([]byte, 512-r)...)
	}
	return b
}

// paxSparse is a GNU sparse file in PAX 1.0 form claiming realSize bytes, with only its
// last 512 bytes stored: archive/tar hands it over as a regular file of realSize.
func paxSparse(name string, realSize int64) []byte {
	var records string
	for _, kv := range [][2]string{{"GNU.sparse.major", "1"}, {"GNU.sparse.minor", "0"}, {"GNU.sparse.name", name},
		{"GNU.sparse.realsize", fmt.Sprint(realSize)}} {
		rec := " " + kv[0] + "=" + kv[1] + "\n"
		n := len(rec) + 1
		for len(fmt.Sprint(n))+len(rec) != n {
			n++
		}
		records += fmt.Sprint(n) + rec
	}
	var out []byte
	out = append(out, setChecksum(rawHeader("PaxHeaders/bomb", 'x', int64(len(records)), "ustar\x0000"))...)
	out = append(out, pad([]byte(records))...)
	out = append(out, setChecksum(rawHeader("GNUSparseFile.0/bomb", '0', 1024, "ustar\x0000"))...)
	out = append(out, pad(fmt.Appendf(nil, "1\n%d\n512\n", realSize-512))...)
	out = append(out, bytes.Repeat([]byte("S"), 512)...)
	return append(out, make([]byte, 1024)...)
}

// gnuSparse is an old GNU sparse entry (type S) claiming realSize bytes.
func gnuSparse(name string, realSize int64) []byte {
	h := rawHeader(name, 'S', 512, "ustar  \x00")
	base256(h[386:398], realSize-512) // first sparse entry: offset
	copy(h[398:], "00000001000\x00")  // and length
	base256(h[483:495], realSize)     // real size
	out := append(setChecksum(h), bytes.Repeat([]byte("S"), 512)...)
	return append(out, make([]byte, 1024)...)
}

func mustSymlink(t *testing.T, target, link string) {
	t.Helper()
	if err := os.MkdirAll(filepath.Dir(link), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink(target, link); err != nil {
		t.Fatal(err)
	}
}

// listFiles is every file and link under root (directories left out).
func listFiles(t *testing.T, root string) map[string]bool {
	t.Helper()
	files := map[string]bool{}
	_ = filepath.WalkDir(root, func(p string, d fs.DirEntry, err error) error {
		if err == nil && !d.IsDir() {
			files[p] = true
		}
		return nil
	})
	return files
}

func absent(rel string) func(*testing.T, dirs) {
	return func(t *testing.T, d dirs) {
		t.Helper()
		if _, err := os.Lstat(filepath.Join(d.target, rel)); err == nil {
			t.Errorf("%s exists", rel)
		}
	}
}

func contains(rel, want string) func(*testing.T, dirs) {
	return func(t *testing.T, d dirs) {
		t.Helper()
		if got, err := os.ReadFile(filepath.Join(d.target, rel)); err != nil || string(got) != want {
			t.Errorf("%s holds %q (%v), want %q", rel, got, err, want)
		}
	}
}

func atMostFiles(rel string, n int) func(*testing.T, dirs) {
	return func(t *testing.T, d dirs) {
		t.Helper()
		if got := len(listFiles(t, filepath.Join(d.target, rel))); got > n {
			t.Errorf("%d files in %s, want at most %d", got, rel, n)
		}
	}
}
