package client

import (
	"archive/tar"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path"
	"path/filepath"
	"strings"
)

// The archive a download unpacks comes out of the sandbox, which runs code nobody trusts:
// every entry is hostile input. The unpacker therefore
//   - accepts only entries under <base>/, base being the one name the download asked for
//     (no sibling such as .git/hooks/post-checkout, no absolute name, no "..");
//   - writes only through an os.Root at the destination directory, and refuses to pass
//     through any symbolic link that already exists there, even one that stays inside;
//   - extracts regular files and directories only: links, devices, fifos and sparse
//     entries (which may claim a terabyte in a few blocks) are refused;
//   - caps the bytes and the entries it unpacks (Options.MaxDownloadBytes and
//     MaxDownloadEntries);
//   - writes each file under a temporary name and renames it into place once complete,
//     so an aborted download never leaves a partly written file under its real name.

// Default caps of a download (Options.MaxDownloadBytes, Options.MaxDownloadEntries).
const (
	// DefaultMaxDownloadBytes is 1 GiB: far more than the results an agent exports
	// (build outputs, logs, reports), small enough that a hostile sandbox cannot fill the
	// user's disk.
	DefaultMaxDownloadBytes int64 = 1 << 30
	// DefaultMaxDownloadEntries is 100,000 files and directories: a large source tree
	// (node_modules included) fits, and a flood of empty entries (each a few syscalls)
	// stays bounded to seconds.
	DefaultMaxDownloadEntries = 100_000
)

// errUnsafeEntry marks an archive entry that is refused: it would land outside the
// target, pass through a link, or is not a plain file or directory.
var errUnsafeEntry = errors.New("unsafe archive entry")

// LimitError is a download that went past one of its caps. Nothing more is written once
// it is reached; the file being written is removed.
type LimitError struct {
	// What is capped: "bytes" or "entries".
	What string
	// Limit is the cap that was reached.
	Limit int64
	// Option is the Options field that sets it; Flag is the kubectl agents flag.
	Option, Flag string
}

func (e *LimitError) Error() string {
	return fmt.Sprintf("the archive exceeds the download cap of %d %s: raise Options.%s (kubectl agents: --%s) if the sandbox really holds that much",
		e.Limit, e.What, e.Option, e.Flag)
}

// unpackLimits are the caps of one download.
type unpackLimits struct {
	bytes   int64
	entries int
}

// downloadLimits are the options' caps, the defaults where unset.
func downloadLimits(opts Options) unpackLimits {
	l := unpackLimits{bytes: opts.MaxDownloadBytes, entries: opts.MaxDownloadEntries}
	if l.bytes <= 0 {
		l.bytes = DefaultMaxDownloadBytes
	}
	if l.entries <= 0 {
		l.entries = DefaultMaxDownloadEntries
	}
	return l
}

// extractTar unpacks an archive whose entries must all lie under base/ into dst.
func extractTar(r io.Reader, dst *os.Root, base string, limits unpackLimits) error {
	tr := tar.NewReader(r)
	var total int64
	for entries := 1; ; entries++ {
		hdr, err := tr.Next()
		if errors.Is(err, io.EOF) {
			return nil
		}
		if err != nil {
			return fmt.Errorf("read archive: %w", err)
		}
		if entries > limits.entries {
			return &LimitError{What: "entries", Limit: int64(limits.entries), Option: "MaxDownloadEntries", Flag: "max-download-entries"}
		}
		if err := refuseSpecial(hdr); err != nil {
			return err
		}
		if hdr.Typeflag == tar.TypeXGlobalHeader {
			continue // metadata only
		}
		name, err := entryName(hdr.Name, base)
		if err != nil {
			return err
		}
		mode := fs.FileMode(hdr.Mode).Perm()
		if hdr.Typeflag == tar.TypeDir {
			if err := mkdirNoFollow(dst, name, mode|0o700); err != nil {
				return err
			}
			continue
		}
		if total += hdr.Size; total > limits.bytes {
			return &LimitError{What: "bytes", Limit: limits.bytes, Option: "MaxDownloadBytes", Flag: "max-download-bytes"}
		}
		if err := writeFileNoFollow(dst, name, tr, mode|0o600); err != nil {
			return err
		}
	}
}

// refuseSpecial refuses every entry but a regular file, a directory and global metadata:
// links (a symlink followed by a write through it is the classic escape), devices, fifos,
// and sparse files, whose holes the reader would expand to their claimed size.
func refuseSpecial(hdr *tar.Header) error {
	if hdr.Typeflag == tar.TypeGNUSparse || isPAXSparse(hdr) {
		return fmt.Errorf("%w: %q is a sparse file (claims %d bytes); sparse entries are not extracted", errUnsafeEntry, hdr.Name, hdr.Size)
	}
	switch hdr.Typeflag {
	case tar.TypeReg, tar.TypeRegA, tar.TypeDir, tar.TypeXGlobalHeader: //nolint:staticcheck // old archives use TypeRegA
		return nil
	case tar.TypeSymlink, tar.TypeLink:
		return fmt.Errorf("%w: %q is a link (to %q); links are not extracted", errUnsafeEntry, hdr.Name, hdr.Linkname)
	default:
		return fmt.Errorf("%w: %q has type %q; only files and directories are extracted", errUnsafeEntry, hdr.Name, string(hdr.Typeflag))
	}
}

// isPAXSparse reports a GNU sparse file in PAX form: archive/tar hands it over as a
// regular file and fills its holes with zeros on read.
func isPAXSparse(hdr *tar.Header) bool {
	for k := range hdr.PAXRecords {
		if strings.HasPrefix(k, "GNU.sparse.") {
			return true
		}
	}
	return false
}

// entryName turns an entry's name into a local path relative to the destination,
// refusing absolute names (/x, \x, C:x), any ".." element, and anything not under base/.
// Both / and \ separate elements: the sandbox is Windows.
func entryName(name, base string) (string, error) {
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
	if first, _, _ := strings.Cut(clean, "/"); first != base {
		return "", fmt.Errorf("%w: %q is not under %s/, the name the download asked for", errUnsafeEntry, name, base)
	}
	local := filepath.FromSlash(clean)
	if !filepath.IsLocal(local) {
		return "", fmt.Errorf("%w: %q is not a local file name", errUnsafeEntry, name)
	}
	return local, nil
}

// mkdirNoFollow creates dir and its parents under dst, one element at a time, refusing
// to go through an existing symbolic link (os.Root alone would follow one that stays
// inside dst).
func mkdirNoFollow(dst *os.Root, dir string, perm fs.FileMode) error {
	if dir == "." || dir == "" {
		return nil
	}
	if err := mkdirNoFollow(dst, filepath.Dir(dir), 0o755); err != nil {
		return err
	}
	info, err := dst.Lstat(dir)
	switch {
	case errors.Is(err, fs.ErrNotExist):
		if err := dst.Mkdir(dir, perm); err != nil && !errors.Is(err, fs.ErrExist) {
			return err
		}
		return nil
	case err != nil:
		return err
	case info.Mode()&fs.ModeSymlink != 0:
		return fmt.Errorf("%w: %s already exists in %s as a symbolic link; a download never writes through links",
			errUnsafeEntry, dir, dst.Name())
	case !info.IsDir():
		return fmt.Errorf("%s in %s: exists and is not a directory", dir, dst.Name())
	}
	return nil
}

// writeFileNoFollow writes r to name under dst: into a temporary file beside it, renamed
// into place once complete, so a failure leaves no partly written file under name. An
// existing symbolic link at name is refused, never written through.
func writeFileNoFollow(dst *os.Root, name string, r io.Reader, mode fs.FileMode) (err error) {
	dir := filepath.Dir(name)
	if err := mkdirNoFollow(dst, dir, 0o755); err != nil {
		return err
	}
	if info, err := dst.Lstat(name); err == nil && info.Mode()&fs.ModeSymlink != 0 {
		return fmt.Errorf("%w: %s already exists in %s as a symbolic link; a download never writes through links",
			errUnsafeEntry, name, dst.Name())
	}
	suffix := make([]byte, 6)
	_, _ = rand.Read(suffix)
	tmp := filepath.Join(dir, "."+filepath.Base(name)+".partial-"+hex.EncodeToString(suffix))
	f, err := dst.OpenFile(tmp, os.O_CREATE|os.O_EXCL|os.O_WRONLY, 0o600)
	if err != nil {
		return err
	}
	defer func() {
		if err != nil {
			_ = dst.Remove(tmp)
		}
	}()
	_, err = io.Copy(f, r)
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return fmt.Errorf("write %s: %w", filepath.Join(dst.Name(), name), err)
	}
	if err := dst.Chmod(tmp, mode); err != nil {
		return err
	}
	return dst.Rename(tmp, name)
}
