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
// either side. Symbolic links are sent as links.
func (s *Session) Upload(ctx context.Context, localPath, remoteDir string) error {
	if _, err := os.Lstat(localPath); err != nil {
		return fmt.Errorf("upload: %w", err)
	}
	args := []string{s.opts.Tar, "-x", "-f", "-"}
	if remoteDir != "" {
		args = append(args, "-C", remoteDir)
	}
	pr, pw := io.Pipe()
	written := make(chan error, 1)
	go func() {
		err := writeTar(pw, localPath)
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
		return fmt.Errorf("upload %s: read local files: %w", localPath, writeErr)
	case err != nil:
		return fmt.Errorf("upload %s: %w", localPath, err)
	case code != 0:
		return fmt.Errorf("upload %s to %q: %s exited with code %d: %s", localPath, remoteDir, s.opts.Tar, code, strings.TrimSpace(stderr.String()))
	}
	return nil
}

// Download copies remotePath, a file or a directory tree in the sandbox, to the local
// machine: it arrives as localDir/<base name of remotePath>, localDir being created if
// needed. The sandbox's tar streams the archive out of the exec's stdout and it is
// unpacked as it comes. Entries with absolute paths or ".." are refused, and so are links:
// nothing is written outside localDir.
func (s *Session) Download(ctx context.Context, remotePath, localDir string) error {
	parent, base := splitRemote(remotePath)
	if base == "" {
		return fmt.Errorf("download %q: not a file or directory name", remotePath)
	}
	if err := os.MkdirAll(localDir, 0o755); err != nil {
		return fmt.Errorf("download: %w", err)
	}
	args := []string{s.opts.Tar, "-c", "-f", "-"}
	if parent != "" {
		args = append(args, "-C", parent)
	}
	args = append(args, base)

	// An archive that cannot be unpacked ends the exec at once.
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	pr, pw := io.Pipe()
	extracted := make(chan error, 1)
	go func() {
		err := extractTar(pr, localDir)
		if err == nil {
			// tar pads its archive past the end marker: read it all, so the stream ends.
			_, _ = io.Copy(io.Discard, pr)
		} else {
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
		return fmt.Errorf("download %s: %w", remotePath, extractErr)
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

// writeTar writes localPath (a file, link or tree) as a tar archive whose entries start
// with its base name.
func writeTar(w io.Writer, localPath string) error {
	tw := tar.NewWriter(w)
	root := filepath.Clean(localPath)
	base := filepath.Base(root)
	err := filepath.WalkDir(root, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		info, err := d.Info()
		if err != nil {
			return err
		}
		rel, err := filepath.Rel(root, p)
		if err != nil {
			return err
		}
		name := path.Join(base, filepath.ToSlash(rel))
		link := ""
		if info.Mode()&fs.ModeSymlink != 0 {
			if link, err = os.Readlink(p); err != nil {
				return err
			}
		}
		hdr, err := tar.FileInfoHeader(info, link)
		if err != nil {
			return fmt.Errorf("%s: %w", p, err)
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
		f, err := os.Open(p)
		if err != nil {
			return err
		}
		defer f.Close()
		if _, err := io.Copy(tw, f); err != nil {
			return fmt.Errorf("%s: %w", p, err)
		}
		return nil
	})
	if err != nil {
		return err
	}
	return tw.Close()
}

// errUnsafeEntry marks an archive entry that would land outside the target directory.
var errUnsafeEntry = errors.New("unsafe archive entry")

// extractTar unpacks an archive into dir, refusing any entry that could write outside it.
func extractTar(r io.Reader, dir string) error {
	tr := tar.NewReader(r)
	for {
		hdr, err := tr.Next()
		if errors.Is(err, io.EOF) {
			return nil
		}
		if err != nil {
			return fmt.Errorf("read archive: %w", err)
		}
		target, err := safeJoin(dir, hdr.Name)
		if err != nil {
			return err
		}
		mode := fs.FileMode(hdr.Mode).Perm()
		switch hdr.Typeflag {
		case tar.TypeDir:
			if err := os.MkdirAll(target, mode|0o700); err != nil {
				return err
			}
		case tar.TypeReg, tar.TypeRegA: //nolint:staticcheck // old archives use TypeRegA
			if err := os.MkdirAll(filepath.Dir(target), 0o755); err != nil {
				return err
			}
			f, err := os.OpenFile(target, os.O_CREATE|os.O_TRUNC|os.O_WRONLY, mode|0o600)
			if err != nil {
				return err
			}
			_, err = io.Copy(f, tr)
			if cerr := f.Close(); err == nil {
				err = cerr
			}
			if err != nil {
				return fmt.Errorf("write %s: %w", target, err)
			}
		case tar.TypeXGlobalHeader:
			// Metadata only.
		case tar.TypeSymlink, tar.TypeLink:
			return fmt.Errorf("%w: %q is a link (to %q); links are not extracted", errUnsafeEntry, hdr.Name, hdr.Linkname)
		default:
			return fmt.Errorf("%w: %q has type %q; only files and directories are extracted", errUnsafeEntry, hdr.Name, string(hdr.Typeflag))
		}
	}
}

// safeJoin joins an archive entry's name to dir, refusing absolute names (/x, \x, C:x)
// and any ".." element, with / or \ as separators.
func safeJoin(dir, name string) (string, error) {
	n := strings.ReplaceAll(name, `\`, "/")
	if n == "" || strings.HasPrefix(n, "/") || (len(n) >= 2 && n[1] == ':') {
		return "", fmt.Errorf("%w: %q is an absolute path", errUnsafeEntry, name)
	}
	for _, part := range strings.Split(n, "/") {
		if part == ".." {
			return "", fmt.Errorf("%w: %q leaves the target directory", errUnsafeEntry, name)
		}
	}
	clean := path.Clean(n)
	if clean == "." {
		return dir, nil
	}
	return filepath.Join(dir, filepath.FromSlash(clean)), nil
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
