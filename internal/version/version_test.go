package version

import "testing"

func TestString(t *testing.T) {
	tests := []struct {
		name, version, revision, want string
	}{
		{"unstamped", "dev", "unknown", "hyperpool-manager dev (revision unknown)"},
		{"stamped", "0.1.0", "17c450f", "hyperpool-manager 0.1.0 (revision 17c450f)"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			oldV, oldR := Version, Revision
			t.Cleanup(func() { Version, Revision = oldV, oldR })
			Version, Revision = tc.version, tc.revision
			if got := String("hyperpool-manager"); got != tc.want {
				t.Errorf("String = %q, want %q", got, tc.want)
			}
		})
	}
}
