//go:build !windows

package nodeagent

import (
	"context"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/hyperpool/hyperpool/internal/runtimereport"
)

// fakeContainerd writes a shell script standing in for containerd.exe: it records its
// arguments in args and runs body.
func fakeContainerd(t *testing.T, body string) (path, argsFile string) {
	t.Helper()
	dir := t.TempDir()
	path, argsFile = filepath.Join(dir, "containerd"), filepath.Join(dir, "args")
	script := "#!/bin/sh\nprintf '%s\\n' \"$*\" > '" + argsFile + "'\n" + body + "\n"
	if err := os.WriteFile(path, []byte(script), 0o700); err != nil {
		t.Fatal(err)
	}
	return path, argsFile
}

func TestContainerdConfig(t *testing.T) {
	const config = "version = 3\n[plugins]\n"
	for _, tc := range []struct {
		name       string
		body       string
		configPath string
		timeout    time.Duration
		wantArgs   string
		wantOut    string
		wantErr    []string // substrings; none: success
	}{
		{name: "default config", body: "printf '" + config + "'", wantArgs: "config dump", wantOut: config},
		{name: "--config before the command", body: "printf '" + config + "'", configPath: `C:\k\containerd.toml`,
			wantArgs: `--config C:\k\containerd.toml config dump`, wantOut: config},
		{name: "failure says why", body: "echo 'failed to load TOML: bad key' >&2; exit 3",
			wantArgs: "config dump", wantErr: []string{"config dump", "exit status 3", "failed to load TOML: bad key"}},
		{name: "more than MaxConfigBytes", body: "head -c " + strconv.Itoa(runtimereport.MaxConfigBytes+1) + " /dev/zero",
			wantArgs: "config dump", wantErr: []string{"printed more than 4194304 bytes"}},
		{name: "hung", body: "exec sleep 60", timeout: 200 * time.Millisecond,
			wantArgs: "config dump", wantErr: []string{"did not finish within 200ms"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			path, argsFile := fakeContainerd(t, tc.body)
			c := ContainerdConfig{Path: path, ConfigPath: tc.configPath, Timeout: tc.timeout}
			start := time.Now()
			out, err := c.ReadRuntimeConfig(context.Background())
			if elapsed := time.Since(start); elapsed > 20*time.Second {
				t.Errorf("took %s", elapsed)
			}
			if args, rerr := os.ReadFile(argsFile); rerr != nil || strings.TrimSpace(string(args)) != tc.wantArgs {
				t.Errorf("containerd ran with %q (%v), want %q", args, rerr, tc.wantArgs)
			}
			if len(tc.wantErr) == 0 {
				if err != nil || string(out) != tc.wantOut {
					t.Errorf("ReadRuntimeConfig = %q, %v; want %q", out, err, tc.wantOut)
				}
				return
			}
			if err == nil {
				t.Fatalf("ReadRuntimeConfig = %d bytes, no error; want one naming %q", len(out), tc.wantErr)
			}
			for _, want := range tc.wantErr {
				if !strings.Contains(err.Error(), want) {
					t.Errorf("error %q does not say %q", err, want)
				}
			}
		})
	}
	if _, err := (ContainerdConfig{Path: filepath.Join(t.TempDir(), "missing")}).ReadRuntimeConfig(context.Background()); err == nil {
		t.Error("no error for a containerd that does not exist")
	}
}
