package client

import (
	"archive/tar"
	"context"
	"errors"
	"fmt"
	"io"
	"strings"
)

// FileHead is the start of a sandbox file, as ReadFile returns it.
type FileHead struct {
	// Data is the file's first bytes, at most the limit ReadFile was given.
	Data []byte
	// Size is the file's size as the sandbox's tar reported it.
	Size int64
	// Truncated is true when Size is more than len(Data).
	Truncated bool
}

// drainLimit is how much more of a failed archive ReadFile reads while the sandbox's tar
// exits.
const drainLimit = 1 << 20

// errHeadRead ends ReadFile's exec once it has what it needs.
var errHeadRead = errors.New("read the file's head")

// ReadFile reads the first limit bytes of the file remotePath in the sandbox. It streams
// the sandbox's tar archive and stops reading, and ends the exec, once it has them: a
// huge (or endless) file costs no more than limit. A directory, link, sparse or special
// entry, or an entry under another name, is an error.
func (s *Session) ReadFile(ctx context.Context, remotePath string, limit int64) (FileHead, error) {
	parent, base := splitRemote(remotePath)
	if base == "" || base == "." || base == ".." {
		return FileHead{}, fmt.Errorf("read %q: not a file name", remotePath)
	}
	args := []string{s.opts.Tar, "-c", "-f", "-"}
	if parent != "" {
		args = append(args, "-C", parent)
	}
	args = append(args, base)

	ctx, cancel := context.WithCancelCause(ctx)
	defer cancel(nil)
	pr, pw := io.Pipe()
	type result struct {
		head FileHead
		err  error
	}
	read := make(chan result, 1)
	go func() {
		head, err := readHead(pr, base, limit)
		if err != nil && !errors.Is(err, errUnsafeEntry) {
			// A tar that failed (no such file) is about to exit: let it, for its exit code
			// and message. A hostile one cannot make this long: the read is capped.
			_, _ = io.Copy(io.Discard, io.LimitReader(pr, drainLimit))
		}
		// Whatever follows is not needed: end the exec now, not when the sandbox is done.
		cancel(errHeadRead)
		pr.CloseWithError(errHeadRead)
		read <- result{head, err}
	}()
	stderr := &limitedBuffer{limit: stderrLimit}
	code, err := s.Run(ctx, Command{Args: args, Stdout: pw, Stderr: stderr})
	if err != nil || code != 0 {
		pw.CloseWithError(errRemoteFailed)
	} else {
		pw.Close()
	}
	r := <-read
	switch {
	case r.err == nil:
		return r.head, nil
	case errors.Is(r.err, errUnsafeEntry):
	case err == nil && code != 0:
		return FileHead{}, fmt.Errorf("read %s: %s exited with code %d: %s", remotePath, s.opts.Tar, code, strings.TrimSpace(stderr.String()))
	case err != nil && !errors.Is(context.Cause(ctx), errHeadRead):
		return FileHead{}, fmt.Errorf("read %s: %w", remotePath, err)
	}
	return FileHead{}, fmt.Errorf("read %s: %w", remotePath, r.err)
}

// readHead reads the archive's first entry, which must be the regular file base, up to
// limit bytes of it.
func readHead(r io.Reader, base string, limit int64) (FileHead, error) {
	tr := tar.NewReader(r)
	for {
		hdr, err := tr.Next()
		if errors.Is(err, io.EOF) {
			return FileHead{}, fmt.Errorf("the archive holds no file %s", base)
		}
		if err != nil {
			return FileHead{}, fmt.Errorf("read archive: %w", err)
		}
		if hdr.Typeflag == tar.TypeXGlobalHeader {
			continue
		}
		if err := refuseSpecial(hdr); err != nil {
			return FileHead{}, err
		}
		name, err := entryName(hdr.Name, base)
		if err != nil {
			return FileHead{}, err
		}
		if hdr.Typeflag == tar.TypeDir {
			return FileHead{}, fmt.Errorf("%s is a directory", base)
		}
		if name != base {
			return FileHead{}, fmt.Errorf("%w: %q is not the file %s", errUnsafeEntry, hdr.Name, base)
		}
		data, err := io.ReadAll(io.LimitReader(tr, limit))
		if err != nil {
			return FileHead{}, fmt.Errorf("read %s: %w", base, err)
		}
		return FileHead{Data: data, Size: hdr.Size, Truncated: hdr.Size > int64(len(data))}, nil
	}
}
