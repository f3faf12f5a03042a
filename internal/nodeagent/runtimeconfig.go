package nodeagent

import (
	"context"
	"errors"
	"fmt"
	"os/exec"
	"strings"
	"time"

	"github.com/hyperpool/hyperpool/internal/capbuf"
	"github.com/hyperpool/hyperpool/internal/runtimereport"
)

// DefaultContainerdPath is where containerd is installed on AKS and by containerd's own
// Windows install script (%ProgramFiles%\containerd).
const DefaultContainerdPath = `C:\Program Files\containerd\containerd.exe`

// DefaultRuntimeConfigTimeout bounds one `containerd config dump`. It only parses files and
// prints them (it does not talk to the daemon), so it takes well under a second; a run this
// long is hung.
const DefaultRuntimeConfigTimeout = 30 * time.Second

// maxStderr caps what is kept of containerd's error output for the error message (the
// report's Error is capped at runtimereport.MaxDetail anyway).
const maxStderr = 4 << 10

// ContainerdConfig reads containerd's effective configuration by running `containerd
// config dump`: containerd's own merge of its defaults, the config file and its imports,
// which is what the daemon runs with (after a restart). Reading config.toml instead would
// miss the defaults (containerd's built-in Windows handlers) and the imports.
type ContainerdConfig struct {
	// Path is containerd's executable.
	Path string
	// ConfigPath is passed as --config when set; "" is containerd's default
	// (%ProgramFiles%\containerd\config.toml on Windows).
	ConfigPath string
	// Timeout bounds one run; 0 is DefaultRuntimeConfigTimeout.
	Timeout time.Duration
}

var _ RuntimeConfigReader = ContainerdConfig{}

// Args are the arguments containerd is run with: --config is a global flag, before the
// command.
func (c ContainerdConfig) Args() []string {
	if c.ConfigPath == "" {
		return []string{"config", "dump"}
	}
	return []string{"--config", c.ConfigPath, "config", "dump"}
}

// ReadRuntimeConfig runs containerd and returns what it printed on stdout, at most
// runtimereport.MaxConfigBytes; more is an error, not a truncated configuration.
func (c ContainerdConfig) ReadRuntimeConfig(ctx context.Context) ([]byte, error) {
	timeout := c.Timeout
	if timeout <= 0 {
		timeout = DefaultRuntimeConfigTimeout
	}
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	cmd := exec.CommandContext(ctx, c.Path, c.Args()...)
	stdout, stderr := capbuf.New(runtimereport.MaxConfigBytes), capbuf.New(maxStderr)
	cmd.Stdout, cmd.Stderr = stdout, stderr
	// After the kill on timeout, a child that inherited the pipes could keep Wait waiting
	// for their end; stop waiting for it a moment later.
	cmd.WaitDelay = 2 * time.Second
	what := strings.Join(append([]string{c.Path}, cmd.Args[1:]...), " ")
	err := cmd.Run()
	switch {
	case errors.Is(ctx.Err(), context.DeadlineExceeded):
		return nil, fmt.Errorf("%s did not finish within %s", what, timeout)
	case err != nil:
		if msg := strings.TrimSpace(stderr.String()); msg != "" {
			return nil, fmt.Errorf("%s: %w: %s", what, err, msg)
		}
		return nil, fmt.Errorf("%s: %w", what, err)
	case stdout.Cut():
		return nil, fmt.Errorf("%s printed more than %d bytes, which is not a containerd configuration", what, runtimereport.MaxConfigBytes)
	}
	return stdout.Bytes(), nil
}
