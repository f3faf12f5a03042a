//go:build !windows

package chaos

import (
	"context"
	"flag"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"

	"github.com/go-logr/logr"
	"k8s.io/klog/v2"
	ctrllog "sigs.k8s.io/controller-runtime/pkg/log"

	"github.com/hyperpool/hyperpool/test/bench"
	"github.com/hyperpool/hyperpool/test/testbed"
)

// The short chaos run: the faults of `make chaos` (a leader SIGKILL, a kube-apiserver
// restart) against a tenth of its sessions, with the same checks, inside `make test`.
var (
	env           *testbed.Env
	managerBinary string
)

func TestMain(m *testing.M) {
	// The watches' reconnects during the kube-apiserver restart would fill the output.
	ctrllog.SetLogger(logr.Discard())
	klog.SetLogger(logr.Discard())
	flag.Parse()
	if !selected("TestChaosShort") {
		// Only the checker's and the renderer's unit tests: they need no control plane.
		os.Exit(m.Run())
	}
	testbed.Main(m, testbed.Options{}, func(e *testbed.Env) error {
		env = e
		dir, err := os.MkdirTemp("", "hyperpool-chaos-")
		if err != nil {
			return err
		}
		e.BeforeStop(func() { _ = os.RemoveAll(dir) })
		managerBinary = filepath.Join(dir, "manager")
		return bench.BuildManager(context.Background(), e.RepoRoot, managerBinary)
	})
}

// selected reports whether go test's -run pattern selects the top-level test name (every
// test when there is none).
func selected(name string) bool {
	pattern := flag.Lookup("test.run").Value.String()
	if pattern == "" {
		return true
	}
	top, _, _ := strings.Cut(pattern, "/")
	matched, err := regexp.MatchString(top, name)
	return err != nil || matched // a bad pattern: let go test report it
}

func TestChaosShort(t *testing.T) {
	cfg := ShortConfig()
	cfg.ManagerBinary = managerBinary
	cfg.Logf = t.Logf
	res, err := Run(t.Context(), env, cfg)
	if err != nil {
		t.Fatal(err)
	}
	var out strings.Builder
	res.Print(&out)
	t.Log("\n" + out.String())
	if n := res.ViolationCount(); n != 0 {
		t.Errorf("%d violations:\n%s", n, out.String())
	}
	if want := cfg.LeaderKills + cfg.APIServerRestarts + cfg.SlowAPIKills; len(res.Faults) != want {
		t.Errorf("%d faults injected, want %d", len(res.Faults), want)
	}
	if res.Created != cfg.Sessions {
		t.Errorf("%d of %d sessions created", res.Created, cfg.Sessions)
	}
}

func TestSchedule(t *testing.T) {
	for _, tc := range []struct {
		kills, restarts, slowKills int
		want                       string
	}{
		{3, 1, 1, "kill-leader-etcd-paused,kill-leader,kill-leader,restart-apiserver,kill-leader"},
		{1, 1, 0, "kill-leader,restart-apiserver"},
		{1, 1, 1, "kill-leader-etcd-paused,kill-leader,restart-apiserver"},
		{0, 2, 0, "restart-apiserver,restart-apiserver"},
		{2, 0, 0, "kill-leader,kill-leader"},
		{0, 0, 2, "kill-leader-etcd-paused,kill-leader-etcd-paused"},
	} {
		if got := strings.Join(schedule(tc.kills, tc.restarts, tc.slowKills), ","); got != tc.want {
			t.Errorf("schedule(%d, %d, %d) = %s, want %s", tc.kills, tc.restarts, tc.slowKills, got, tc.want)
		}
	}
}
