package capbuf

import (
	"strings"
	"testing"
)

func TestBufferMarksTheCut(t *testing.T) {
	t.Parallel()
	c := New(5)
	_, _ = c.Write([]byte("abc"))
	if n, err := c.Write([]byte("défg")); n != 5 || err != nil {
		t.Errorf("Write past the limit = %d, %v; want all accepted", n, err)
	}
	if !c.Cut() || c.Dropped() != 3 || !strings.HasPrefix(c.String(), "abcd") || !strings.Contains(c.String(), "truncated: 4 more bytes") {
		t.Errorf("cut %v, dropped %d, %q", c.Cut(), c.Dropped(), c.String())
	}
	// The cut falls inside é (2 bytes): the partial rune is dropped from the text.
	if strings.ContainsRune(c.String(), '\uFFFD') {
		t.Errorf("a partial rune is left: %q", c.String())
	}
	c = New(5)
	_, _ = c.Write([]byte("abc"))
	if c.Cut() || c.String() != "abc" || string(c.Bytes()) != "abc" {
		t.Errorf("under the limit: %v, %q", c.Cut(), c.String())
	}
}
