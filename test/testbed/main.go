//go:build !windows

package testbed

import (
	"context"
	"flag"
	"fmt"
	"os"
	"os/signal"
	"sync"
	"syscall"
	"testing"
	"time"
)

// Main runs a test package against one test bed. Call it from TestMain:
//
//	var env *testbed.Env
//
//	func TestMain(m *testing.M) {
//		testbed.Main(m, testbed.Options{}, func(e *testbed.Env) error { env = e; return nil })
//	}
//
// It starts the test bed, runs setup (if not nil), runs the tests, stops the test bed and
// exits with the tests' code. On SIGINT or SIGTERM it stops the test bed before exiting;
// if the binary dies any other way, the kernel and a watchdog kill the components. When a
// test failed, the component logs are kept and their directory is printed.
func Main(m *testing.M, opts Options, setup func(*Env) error) {
	os.Exit(run(m, opts, setup))
}

func run(m *testing.M, opts Options, setup func(*Env) error) int {
	// Parse now rather than in m.Run, so testing.Verbose works here.
	flag.Parse()
	guard := newSignalGuard()
	defer guard.release()

	env, err := Start(guard.ctx, opts)
	if err != nil {
		fmt.Fprintf(os.Stderr, "testbed: %v\n", err)
		return 1
	}
	if !guard.adopt(env) {
		return 1 // a signal arrived during Start; the guard is stopping env
	}
	if testing.Verbose() {
		fmt.Fprintf(os.Stderr, "testbed: started in %s (%s), API server %s, logs in %s\n",
			env.StartDuration.Round(time.Millisecond), env.StartReport(), env.Config.Host, env.LogDir)
	}

	code := runWithSetup(m, env, setup)
	if code != 0 {
		env.KeepDir()
	}
	if err := env.Stop(); err != nil { // runs the BeforeStop hooks first
		fmt.Fprintf(os.Stderr, "testbed: stop: %v\n", err)
		if code == 0 {
			code = 1
		}
	}
	return code
}

// runWithSetup runs setup and then the tests.
func runWithSetup(m *testing.M, env *Env, setup func(*Env) error) int {
	if setup != nil {
		if err := setup(env); err != nil {
			fmt.Fprintf(os.Stderr, "testbed: setup: %v\n", err)
			return 1
		}
	}
	return m.Run()
}

// signalGuard stops the test bed when the test binary gets SIGINT or SIGTERM (Ctrl-C, or
// a CI runner cancelling the job), then exits. Without it the binary would die at once and
// leave the components to the parent-death signal and the watchdog, skipping a clean stop.
type signalGuard struct {
	ctx    context.Context // cancelled by a signal, to abort Start's waits
	cancel context.CancelFunc
	sigs   chan os.Signal
	done   chan struct{}

	mu       sync.Mutex
	env      *Env
	signaled bool
}

func newSignalGuard() *signalGuard {
	g := &signalGuard{sigs: make(chan os.Signal, 1), done: make(chan struct{})}
	g.ctx, g.cancel = context.WithCancel(context.Background())
	signal.Notify(g.sigs, syscall.SIGINT, syscall.SIGTERM)
	go g.watch()
	return g
}

func (g *signalGuard) watch() {
	var sig os.Signal
	select {
	case sig = <-g.sigs:
	case <-g.done:
		return
	}
	// A second signal now gets the default action: a way out if stopping hangs.
	signal.Stop(g.sigs)
	g.cancel()
	g.mu.Lock()
	g.signaled = true
	env := g.env
	g.mu.Unlock()
	fmt.Fprintf(os.Stderr, "testbed: got %v, stopping the test bed\n", sig)
	if env == nil {
		return // Start is still running; it sees the cancelled context, and adopt stops env
	}
	env.KeepDir()
	if err := env.Stop(); err != nil {
		fmt.Fprintf(os.Stderr, "testbed: stop: %v\n", err)
	}
	os.Exit(128 + int(sig.(syscall.Signal)))
}

// adopt hands a started test bed to the guard. It returns false, having stopped env, if a
// signal arrived while Start ran.
func (g *signalGuard) adopt(env *Env) bool {
	g.mu.Lock()
	signaled := g.signaled
	if !signaled {
		g.env = env
	}
	g.mu.Unlock()
	if signaled {
		if err := env.Stop(); err != nil {
			fmt.Fprintf(os.Stderr, "testbed: stop: %v\n", err)
		}
		return false
	}
	return true
}

func (g *signalGuard) release() {
	signal.Stop(g.sigs)
	close(g.done)
	g.cancel()
}
