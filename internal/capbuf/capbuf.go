// Package capbuf is an io.Writer for output that may not end: a sandbox's command output,
// a program run on the node. It keeps the first bytes, up to a limit, and counts the rest,
// still accepting them so that the writer is neither blocked by a full pipe nor failed.
package capbuf

import (
	"fmt"
	"unicode/utf8"
)

// Buffer keeps the first Limit bytes written to it and counts the rest. It has no
// ReadFrom, so io.Copy and os/exec write to it through Write, within the limit.
type Buffer struct {
	limit   int
	buf     []byte
	dropped int64
}

// New returns a Buffer that keeps at most limit bytes.
func New(limit int) *Buffer { return &Buffer{limit: limit} }

// Write keeps what fits and counts the rest; it never fails.
func (b *Buffer) Write(p []byte) (int, error) {
	room := b.limit - len(b.buf)
	if room >= len(p) {
		b.buf = append(b.buf, p...)
		return len(p), nil
	}
	if room > 0 {
		b.buf = append(b.buf, p[:room]...)
	}
	b.dropped += int64(len(p) - max(room, 0))
	return len(p), nil
}

// Bytes are the bytes kept.
func (b *Buffer) Bytes() []byte { return b.buf }

// Dropped is how many bytes were written past the limit.
func (b *Buffer) Dropped() int64 { return b.dropped }

// Cut reports whether anything was dropped.
func (b *Buffer) Cut() bool { return b.dropped > 0 }

// String is the kept output, with the cut marked (and a rune the cut split left out).
func (b *Buffer) String() string {
	if b.dropped == 0 {
		return string(b.buf)
	}
	kept := TrimPartialRune(b.buf)
	return fmt.Sprintf("%s\n[... truncated: %d more bytes]", kept, b.dropped+int64(len(b.buf)-len(kept)))
}

// TrimPartialRune drops an incomplete UTF-8 sequence that a cut left at the end.
func TrimPartialRune(b []byte) []byte {
	for i := 0; i < utf8.UTFMax && i < len(b); i++ {
		r, size := utf8.DecodeLastRune(b[:len(b)-i])
		if r != utf8.RuneError || size > 1 {
			return b[:len(b)-i]
		}
	}
	return b
}
