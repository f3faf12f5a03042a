//go:build !windows

package testbed

import (
	"context"
	"testing"
	"time"

	"k8s.io/apimachinery/pkg/util/wait"
)

// WaitTimeout bounds a test's wait for the control plane or the manager to act: every
// package's waits derive from it. Sized for a loaded 2-core machine running every test
// package at once (make test), where a quiet run needs well under a second: a bound of
// 10 s has been missed on a fresh machine.
const WaitTimeout = 30 * time.Second

// Eventually polls cond every 50 ms until it holds or the timeout passes, then fails the
// test with cond's last description of what it saw. Tests wait on conditions this way,
// never with sleeps.
func Eventually(t testing.TB, timeout time.Duration, cond func(ctx context.Context) (bool, string)) {
	t.Helper()
	var last string
	err := wait.PollUntilContextTimeout(context.Background(), 50*time.Millisecond, timeout, true, func(ctx context.Context) (bool, error) {
		ok, msg := cond(ctx)
		last = msg
		return ok, nil
	})
	if err != nil {
		t.Fatalf("condition not met within %s: %s", timeout, last)
	}
}
