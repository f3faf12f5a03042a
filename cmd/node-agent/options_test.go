package main

import (
	"flag"
	"io"
	"strings"
	"testing"
	"time"
)

func parse(t *testing.T, args ...string) (*options, error) {
	t.Helper()
	fs := flag.NewFlagSet("node-agent", flag.ContinueOnError)
	fs.SetOutput(io.Discard)
	o := bindFlags(fs)
	if err := fs.Parse(args); err != nil {
		return nil, err
	}
	return o, o.validate()
}

func TestDefaults(t *testing.T) {
	o, err := parse(t, "--node-name=win-1")
	if err != nil {
		t.Fatal(err)
	}
	if o.agent.NodeName != "win-1" || o.agent.Reap || o.agent.GracePeriod != 10*time.Minute ||
		o.agent.Interval != 30*time.Second || o.metricsAddr != ":9090" || o.criEndpoint != "npipe:////./pipe/containerd-containerd" ||
		o.agent.LeakTaintThreshold != 0 || o.agent.LeakTaintKey != "agents.hyperpool.io/leaked-vm-memory" {
		t.Errorf("defaults = %+v metrics %q cri %q", o.agent, o.metricsAddr, o.criEndpoint)
	}
	if o.runtimeCheckInterval != 5*time.Minute || o.containerdPath != `C:\Program Files\containerd\containerd.exe` || o.containerdConfig != "" {
		t.Errorf("runtime check defaults: interval %s, containerd %q, config %q", o.runtimeCheckInterval, o.containerdPath, o.containerdConfig)
	}
}

// The chart passes exactly these.
func TestChartFlags(t *testing.T) {
	o, err := parse(t, "--node-name=akswin000001", "--reap=true", "--grace-period=15m", "--metrics-bind-address=:9191",
		"--interval=1m", "--zap-log-level=debug")
	if err != nil {
		t.Fatal(err)
	}
	if !o.agent.Reap || o.agent.GracePeriod != 15*time.Minute || o.agent.Interval != time.Minute || o.metricsAddr != ":9191" {
		t.Errorf("parsed %+v metrics %q", o.agent, o.metricsAddr)
	}
	if o, err := parse(t, "--node-name=n", "--reap=false"); err != nil || o.agent.Reap {
		t.Errorf("--reap=false: %+v, %v", o, err)
	}
	// nodeAgent.leakTaint.enabled adds these.
	o, err = parse(t, "--node-name=n", "--leak-taint-key=example.com/leaked", "--leak-taint-threshold=4Gi")
	if err != nil || o.agent.LeakTaintKey != "example.com/leaked" || o.agent.LeakTaintThreshold != 4<<30 {
		t.Errorf("leak taint flags: %+v, %v", o, err)
	}
	// The runtime check's values.
	o, err = parse(t, "--node-name=n", "--runtime-check-interval=10m", `--containerd-path=D:\containerd\bin\containerd.exe`,
		`--containerd-config=D:\containerd\config.toml`)
	if err != nil || o.runtimeCheckInterval != 10*time.Minute || o.containerdPath != `D:\containerd\bin\containerd.exe` ||
		o.containerdConfig != `D:\containerd\config.toml` {
		t.Errorf("runtime check flags: %+v, %v", o, err)
	}
}

func TestInvalid(t *testing.T) {
	for _, tc := range []struct {
		args []string
		want string
	}{
		{nil, "--node-name is required"},
		{[]string{"--node-name=n", "--grace-period=30s"}, "too short"},
		{[]string{"--node-name=n", "--interval=0s"}, "--interval"},
		{[]string{"--node-name=n", "--cri-endpoint=unix:///run/containerd/containerd.sock"}, "npipe"},
		{[]string{"--node-name=n", "--leak-taint-threshold=lots"}, `--leak-taint-threshold "lots" is not a memory size`},
		{[]string{"--node-name=n", "--leak-taint-threshold=-1Gi"}, "--leak-taint-threshold"},
		{[]string{"--node-name=n", "--leak-taint-threshold=1Gi", "--leak-taint-key=not a key"}, `--leak-taint-key "not a key" is not a taint key`},
		{[]string{"--node-name=n", "--runtime-check-interval=0s"}, "--runtime-check-interval must be at least 1s"},
		{[]string{"--node-name=n", "--runtime-check-interval=-5m"}, "--runtime-check-interval"},
		{[]string{"--node-name=n", "--containerd-path="}, "--containerd-path is required"},
	} {
		_, err := parse(t, tc.args...)
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%v: error %v, want one about %q", tc.args, err, tc.want)
		}
	}
}
