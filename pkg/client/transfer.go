package client

import (
	"archive/tar"
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path"
	"path/filepath"
	"strings"
	"sync"
)

// stderrLimit is how much of tar's stderr an error message quotes.
const stderrLimit = 4096

// Upload copies localPath, a file or a directory tree, into the sandbox: it arrives as
// remoteDir/<base name of localPath>. remoteDir must exist; empty is the working
// directory of the sandbox's commands. The tree is streamed as a tar archive into the
// exec's stdin and unpacked by the sandbox's tar (Options.Tar); nothing is staged on
// either side. Symbolic links are sent as links, never followed. localPath is the
// caller's own choice; to confine it to a directory, use UploadFrom.
func (s *Session) Upload(ctx context.Context, localPath, remoteDir string) error {
	dir, name := splitLocal(localPath)
	src, err := os.OpenRoot(dir)
	if err != nil {
		return fmt.Errorf("upload: %w", err)
	}
	defer func() { _ = src.Close() }()
	return s.upload(ctx, src, name, localPath, remoteDir)
}

// UploadFrom is Upload of name, a path relative to src: every file is read through src,
// so nothing outside it (by "..", an absolute name or a symbolic link) is ever read.
func (s *Session) UploadFrom(ctx context.Context, src *os.Root, name, remoteDir string) error {
	return s.upload(ctx, src, name, filepath.Join(src.Name(), name), remoteDir)
}

// splitLocal splits a local path into the directory to open as a root and the name in
// it; "." and the like name the directory itself, whose contents then arrive directly in
// the remote directory.
func splitLocal(localPath string) (dir, name string) {
	clean := filepath.Clean(localPath)
	dir, name = filepath.Dir(clean), filepath.Base(clean)
	if name == "." || name == ".." || name == string(filepath.Separator) || dir == clean {
		return clean, "."
	}
	return dir, name
}

func (s *Session) upload(ctx context.Context, src *os.Root, name, shown, remoteDir string) error {
	if _, err := src.Lstat(name); err != nil {
		return fmt.Errorf("upload: %w", err)
	}
	args := []string{s.opts.Tar, "-x", "-f", "-"}
	if remoteDir != "" {
		args = append(args, "-C", remoteDir)
	}
	pr, pw := io.Pipe()
	written := make(chan error, 1)
	go func() {
		err := writeTar(pw, src, name)
		pw.CloseWithError(err)
		written <- err
	}()
	stderr := &limitedBuffer{limit: stderrLimit}
	code, err := s.Run(ctx, Command{Args: args, Stdin: pr, Stderr: stderr})
	// Unblock the writer if the remote side stopped reading early.
	pr.CloseWithError(errUploadEnded)
	writeErr := <-written
	switch {
	case writeErr != nil && !errors.Is(writeErr, errUploadEnded):
		return fmt.Errorf("upload %s: read local files: %w", shown, writeErr)
	case err != nil:
		return fmt.Errorf("upload %s: %w", shown, err)
	case code != 0:
		return fmt.Errorf("upload %s to %q: %s exited with code %d: %s", shown, remoteDir, s.opts.Tar, code, strings.TrimSpace(stderr.String()))
	}
	return nil
}

// Download copies remotePath, a file or a directory tree in the sandbox, to the local
// machine: it arrives as localDir/<base name of remotePath>, localDir being created if
// needed. The sandbox's tar streams the archive out of the exec's stdout and it is
// unpacked as it comes, as a hostile archive (see DownloadInto): only entries under the
// base name, only files and directories, never through a link, within
// Options.MaxDownloadBytes and MaxDownloadEntries.
func (s *Session) Download(ctx context.Context, remotePath, localDir string) error {
	if err := os.MkdirAll(localDir, 0o755); err != nil {
		return fmt.Errorf("download: %w", err)
	}
	dst, err := os.OpenRoot(localDir)
	if err != nil {
		return fmt.Errorf("download: %w", err)
	}
	defer func() { _ = dst.Close() }()
	return s.DownloadInto(ctx, remotePath, dst)
}

// DownloadInto is Download into the directory of dst: every write goes through dst, so
// nothing lands outside it. Entries that are not under the base name of remotePath,
// absolute, with "..", links, devices, fifos or sparse files are refused; an existing
// symbolic link under dst is never written through; past the caps the download stops with
// a *LimitError. A failed download may leave the entries unpacked before the failure,
// never a partly written file under its own name.
func (s *Session) DownloadInto(ctx context.Context, remotePath string, dst *os.Root) error {
	parent, base := splitRemote(remotePath)
	if base == "" || base == "." || base == ".." {
		return fmt.Errorf("download %q: not a file or directory name", remotePath)
	}
	args := []string{s.opts.Tar, "-c", "-f", "-"}
	if parent != "" {
		args = append(args, "-C", parent)
	}
	args = append(args, base)
	limits := downloadLimits(s.opts)

	// An archive that cannot be unpacked ends the exec at once.
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	pr, pw := io.Pipe()
	extracted := make(chan error, 1)
	go func() {
		err := extractTar(pr, dst, base, limits)
		if err == nil {
			// tar pads its archive past the end marker (to a 10 KiB record): read that, so
			// the stream ends, but no more than drainLimit: a hostile tar pads for ever.
			if n, _ := io.Copy(io.Discard, io.LimitReader(pr, drainLimit+1)); n > drainLimit {
				err = fmt.Errorf("the sandbox's tar sent more than %d bytes after the archive's end", drainLimit)
			}
		}
		if err != nil {
			cancel()
		}
		pr.CloseWithError(err)
		extracted <- err
	}()
	stderr := &limitedBuffer{limit: stderrLimit}
	code, err := s.Run(ctx, Command{Args: args, Stdout: pw, Stderr: stderr})
	if err != nil || code != 0 {
		pw.CloseWithError(errRemoteFailed)
	} else {
		pw.Close()
	}
	extractErr := <-extracted
	switch {
	case extractErr != nil && !errors.Is(extractErr, errRemoteFailed):
		return fmt.Errorf("download %s into %s: %w", remotePath, dst.Name(), extractErr)
	case err != nil:
		return fmt.Errorf("download %s: %w", remotePath, err)
	case code != 0:
		return fmt.Errorf("download %s: %s exited with code %d: %s", remotePath, s.opts.Tar, code, strings.TrimSpace(stderr.String()))
	}
	return nil
}

// errRemoteFailed ends Download's unpacking when the sandbox's tar failed.
var errRemoteFailed = errors.New("the sandbox's tar failed")

// errUploadEnded unblocks Upload's archive writer once the exec is over.
var errUploadEnded = errors.New("upload ended")

// splitRemote splits a sandbox path, trailing separators dropped, into the directory for
// tar -C and the name to archive.
func splitRemote(p string) (dir, base string) {
	return SplitSandboxPath(strings.TrimRight(p, `/\`))
}

// SplitSandboxPath splits a sandbox path at its last / or \ (Windows takes both) into its
// directory and its last element: C:\work\a.txt is C:\work and a.txt, C:\a.txt is C:\ and
// a.txt, a trailing separator leaves an empty last element.
func SplitSandboxPath(p string) (dir, base string) {
	i := strings.LastIndexAny(p, `/\`)
	if i < 0 {
		return "", p
	}
	dir = p[:i]
	if dir == "" || strings.HasSuffix(dir, ":") {
		dir = p[:i+1] // "/" or "C:\"
	}
	return dir, p[i+1:]
}

// writeTar writes name (a file, link or tree under src) as a tar archive whose entries
// start with its base name. Everything is read through src; links are written as links.
func writeTar(w io.Writer, src *os.Root, name string) error {
	tw := tar.NewWriter(w)
	base := filepath.Base(name)
	top, err := src.Lstat(name)
	if err != nil {
		return err
	}
	if !top.IsDir() {
		// A file, or a link sent as a link (fs.WalkDir would follow it).
		if err := writeEntry(tw, src, name, base, top); err != nil {
			return err
		}
		return tw.Close()
	}
	fsys := src.FS()
	err = fs.WalkDir(fsys, filepath.ToSlash(name), func(p string, _ fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		// Lstat, not the entry's Info: WalkDir stats its root through links.
		local := filepath.FromSlash(p)
		info, err := src.Lstat(local)
		if err != nil {
			return err
		}
		rel, err := filepath.Rel(filepath.FromSlash(name), local)
		if err != nil {
			return err
		}
		return writeEntry(tw, src, local, path.Join(base, filepath.ToSlash(rel)), info)
	})
	if err != nil {
		return err
	}
	return tw.Close()
}

// writeEntry writes one file, directory or link of src into the archive as name.
func writeEntry(tw *tar.Writer, src *os.Root, local, name string, info fs.FileInfo) error {
	link := ""
	if info.Mode()&fs.ModeSymlink != 0 {
		var err error
		if link, err = src.Readlink(local); err != nil {
			return err
		}
	}
	hdr, err := tar.FileInfoHeader(info, link)
	if err != nil {
		return fmt.Errorf("%s: %w", local, err)
	}
	hdr.Name = name
	if info.IsDir() {
		hdr.Name += "/"
	}
	hdr.Uname, hdr.Gname, hdr.Uid, hdr.Gid = "", "", 0, 0
	if err := tw.WriteHeader(hdr); err != nil {
		return err
	}
	if !info.Mode().IsRegular() {
		return nil
	}
	f, err := src.Open(local)
	if err != nil {
		return err
	}
	defer func() { _ = f.Close() }()
	if _, err := io.CopyN(tw, f, hdr.Size); err != nil {
		return fmt.Errorf("%s: %w", local, err)
	}
	return nil
}

// limitedBuffer keeps the first limit bytes written to it and discards the rest.
type limitedBuffer struct {
	mu    sync.Mutex
	buf   bytes.Buffer
	limit int
}

func (b *limitedBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	if room := b.limit - b.buf.Len(); room > 0 {
		b.buf.Write(p[:min(len(p), room)])
	}
	return len(p), nil
}

func (b *limitedBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}
