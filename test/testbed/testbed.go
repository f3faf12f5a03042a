//go:build !windows

// Package testbed runs a small but real Kubernetes control plane for integration tests:
// etcd and kube-apiserver (through controller-runtime's envtest), kube-scheduler,
// kube-controller-manager, and kwok, which plays the kubelet of simulated Windows nodes.
// With Options.ServeExec, pods/exec works too: the test bed serves the nodes' exec
// endpoint and runs each command as a local process in the pod's own directory.
//
// Each integration test package starts one Env from its TestMain with Main, and each test
// works in its own namespace from Env.CreateNamespace. The binaries come from
// hack/tools.sh (bin/k8s in the repository) or from $KUBEBUILDER_ASSETS.
//
// The package does not build for windows because envtest does not.
package testbed

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/util/wait"
	clientgoscheme "k8s.io/client-go/kubernetes/scheme"
	"k8s.io/client-go/rest"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/envtest"

	hyperpoolv1alpha1 "github.com/hyperpool/hyperpool/api/v1alpha1"
)

// adminUser is the identity the test bed, its components and the tests use.
const adminUser = "testbed-admin"

// componentReadyTimeout bounds each wait for a component to show that it works.
const componentReadyTimeout = 30 * time.Second

// pollInterval is how often the test bed polls the API server while it waits.
const pollInterval = 50 * time.Millisecond

// Options configures Start. The zero value starts everything with defaults.
type Options struct {
	// CRDDirectoryPaths are the CRD manifests to install. Default: <repo root>/config/crd/bases,
	// skipped without error if that directory does not exist. Paths given explicitly must exist.
	CRDDirectoryPaths []string

	// Scheme for Env.Client. Default: client-go's kinds plus the hyperpool API.
	Scheme *runtime.Scheme

	// PodReadyDelay models the boot of a pod's Hyper-V utility VM: how long after a pod is
	// scheduled to a simulated node kwok marks it Running and Ready. Default 0. A pod
	// overrides it with the annotation PodReadyDelayAnnotation (milliseconds).
	PodReadyDelay time.Duration

	// DisableScheduler leaves kube-scheduler out; pods then stay Pending unless they name a node.
	DisableScheduler bool

	// DisableControllerManager leaves kube-controller-manager out: no garbage collection,
	// no namespace deletion, no ResourceQuota usage, no default ServiceAccounts (the
	// ServiceAccount admission plugin is then disabled, or no pod could be created).
	DisableControllerManager bool

	// APIServerFlags are extra kube-apiserver flags, replacing envtest's value for the same
	// flag. A nil or empty value removes the flag altogether.
	APIServerFlags map[string][]string

	// BinaryAssetsDirectory holds kube-apiserver, etcd, kube-scheduler,
	// kube-controller-manager and kwok. Default: $KUBEBUILDER_ASSETS, else <repo root>/bin/k8s.
	BinaryAssetsDirectory string

	// ServeExec serves pods/exec for the simulated nodes: kube-apiserver proxies a pod's
	// exec to an in-process stand-in for the kubelet's streaming endpoint, on 127.0.0.1,
	// which runs the command as a local process in the pod's own directory (PodDir) and
	// reports its exit code. Nodes created by CreateWindowsNodes then carry its port and a
	// 127.0.0.1 InternalDNS address. It adds no measurable start time.
	ServeExec bool
}

// Env is a running test bed. Its exported fields are read-only.
type Env struct {
	// Config connects as a member of system:masters.
	Config *rest.Config
	// Client is an uncached client with Scheme.
	Client client.Client
	Scheme *runtime.Scheme
	// KubeconfigPath is a kubeconfig file, equivalent to Config, for other processes
	// (kubectl, helm, the manager binary).
	KubeconfigPath string
	// RepoRoot is the directory holding the repository's go.mod.
	RepoRoot string
	// BinDir is where the control-plane binaries were found; see BinaryPath.
	BinDir string
	// Dir is the test bed's temporary directory; Stop removes it.
	Dir string
	// LogDir holds one log file per component: etcd.log, kube-apiserver.log,
	// kube-scheduler.log, kube-controller-manager.log, kwok.log.
	LogDir string
	// StartDuration is how long Start took; StartReport breaks it down.
	StartDuration time.Duration

	opts       Options
	startSteps []string    // each step of Start with its duration
	thread     *forkThread // where every component is forked
	testEnv    *envtest.Environment
	children   []*child // in start order; Stop goes in reverse
	watchdog   *watchdog
	// controlPlanePIDs are envtest's etcd and kube-apiserver, found in /proc (Linux only).
	controlPlanePIDs map[string]int
	// guardedPIDs are the process groups already handed to the watchdog.
	guardedPIDs map[int]bool

	// exec serves pods/exec (Options.ServeExec); nil without.
	exec *execServer

	// nodeIndex numbers simulated nodes across CreateWindowsNodes calls, for unique pod CIDRs.
	nodeIndex atomic.Int64
	// keepDir makes Stop leave Dir behind, for a post-mortem of a failed run.
	keepDir atomic.Bool

	hooksMu    sync.Mutex
	beforeStop []func() // see BeforeStop
	// afterEachTest are the checks run at the end of each test (AfterEachTest).
	afterEachTest []func(t testing.TB, namespace string)

	stopOnce sync.Once
	stopErr  error
}

// Start brings up a test bed and returns once it can run pods: the API server answers, the
// CRDs are installed, and the controller-manager has created the default ServiceAccount.
// Nodes are not created; see CreateWindowsNodes. On error nothing is left running, and the
// temporary directory with the component logs is kept (the error names it).
func Start(ctx context.Context, opts Options) (*Env, error) {
	begin := time.Now()
	root, err := findRepoRoot()
	if err != nil {
		return nil, err
	}
	binDir, err := resolveBinDir(opts, root)
	if err != nil {
		return nil, err
	}
	dir, err := os.MkdirTemp("", "hyperpool-testbed-")
	if err != nil {
		return nil, fmt.Errorf("create test bed directory: %w", err)
	}
	e := &Env{RepoRoot: root, BinDir: binDir, Dir: dir, LogDir: filepath.Join(dir, "logs"), opts: opts,
		thread: newForkThread()}
	if err := e.start(ctx, opts); err != nil {
		e.keepDir.Store(true)
		return nil, errors.Join(fmt.Errorf("start test bed (logs in %s): %w", e.LogDir, err), e.Stop())
	}
	e.StartDuration = time.Since(begin)
	return e, nil
}

func (e *Env) start(ctx context.Context, opts Options) error {
	if err := os.MkdirAll(e.LogDir, 0o755); err != nil {
		return fmt.Errorf("create log directory: %w", err)
	}
	e.Scheme = opts.Scheme
	if e.Scheme == nil {
		var err error
		if e.Scheme, err = defaultScheme(); err != nil {
			return err
		}
	}
	steps := []struct {
		name string
		run  func() error
	}{
		{"exec server", func() error {
			if !opts.ServeExec {
				return nil
			}
			var err error
			e.exec, err = startExecServer(e.podsDir())
			return err
		}},
		{"etcd, kube-apiserver and CRDs", func() error { return e.startAPIServer(opts) }},
		{"admin user", e.connect},
		{"components", func() error { return e.startComponents(opts) }},
		{"default ServiceAccount", func() error {
			if opts.DisableControllerManager {
				return nil
			}
			if err := e.waitForServiceAccount(ctx, corev1.NamespaceDefault); err != nil {
				return fmt.Errorf("kube-controller-manager did not create the default ServiceAccount: %w", err)
			}
			return nil
		}},
	}
	for _, step := range steps {
		begin := time.Now()
		if err := step.run(); err != nil {
			return err
		}
		e.startSteps = append(e.startSteps, fmt.Sprintf("%s %s", step.name, time.Since(begin).Round(time.Millisecond)))
	}
	return e.childrenAlive()
}

// StartReport says how long each step of Start took, for a slow start's post-mortem.
func (e *Env) StartReport() string { return strings.Join(e.startSteps, ", ") }

// defaultScheme holds client-go's kinds and the hyperpool API.
func defaultScheme() (*runtime.Scheme, error) {
	scheme := runtime.NewScheme()
	if err := clientgoscheme.AddToScheme(scheme); err != nil {
		return nil, fmt.Errorf("add client-go kinds to scheme: %w", err)
	}
	if err := hyperpoolv1alpha1.AddToScheme(scheme); err != nil {
		return nil, fmt.Errorf("add %s to scheme: %w", hyperpoolv1alpha1.GroupVersion, err)
	}
	return scheme, nil
}

// poll runs condition until it is true, the timeout passes, or a component exits; the
// last two are errors, a component's exit quoting its log.
func (e *Env) poll(ctx context.Context, timeout time.Duration, condition wait.ConditionWithContextFunc) error {
	return e.pollEvery(ctx, pollInterval, timeout, condition)
}

// pollEvery is poll with its own interval, for conditions that are costly to check.
func (e *Env) pollEvery(ctx context.Context, interval, timeout time.Duration, condition wait.ConditionWithContextFunc) error {
	var lastErr error
	err := wait.PollUntilContextTimeout(ctx, interval, timeout, true, func(ctx context.Context) (bool, error) {
		if err := e.childrenAlive(); err != nil {
			return false, err
		}
		done, err := condition(ctx)
		if err != nil {
			// Transient API errors are retried until the timeout, then reported.
			lastErr = err
			return false, nil
		}
		return done, nil
	})
	// On a timeout, say what kept failing; a cancelled ctx needs no more explanation.
	if err != nil && lastErr != nil && ctx.Err() == nil {
		return fmt.Errorf("%w (last error: %w)", err, lastErr)
	}
	return err
}

// Stop runs the BeforeStop hooks, then stops everything Start started, each by its PID:
// kwok, kube-controller-manager, kube-scheduler, then etcd and kube-apiserver through
// envtest. It then removes Dir. It is safe to call more than once and from several
// goroutines; later calls return the first call's result.
func (e *Env) Stop() error {
	e.stopOnce.Do(func() { e.stopErr = e.stop() })
	return e.stopErr
}

func (e *Env) stop() error {
	e.runBeforeStop()
	e.exec.close()
	var errs []error
	for i := len(e.children) - 1; i >= 0; i-- {
		errs = append(errs, e.children[i].stop())
	}
	// Disarm first: once envtest has stopped etcd and kube-apiserver, their PIDs may be reused.
	errs = append(errs, e.watchdog.disarm())
	if e.testEnv != nil {
		if err := e.testEnv.Stop(); err != nil {
			errs = append(errs, fmt.Errorf("stop envtest (etcd, kube-apiserver): %w", err))
		}
	}
	e.thread.release()
	errs = append(errs, e.removeDir())
	return errors.Join(errs...)
}

// removeDir removes Dir, or with KeepDir only the bulky and secret parts of it: etcd's data
// (over 100 MB, mostly preallocated log), kube-apiserver's certificates and keys, the
// wrapper scripts, and the pods' directories (ServeExec).
func (e *Env) removeDir() error {
	if !e.keepDir.Load() {
		if err := os.RemoveAll(e.Dir); err != nil {
			return fmt.Errorf("remove test bed directory: %w", err)
		}
		return nil
	}
	for _, d := range e.disposableDirs() {
		if err := os.RemoveAll(d); err != nil {
			return fmt.Errorf("remove %s: %w", d, err)
		}
	}
	fmt.Fprintf(os.Stderr, "testbed: kept the component logs in %s\n", e.LogDir)
	return nil
}

// disposableDirs are the parts of Dir not worth keeping after a failure. The pods'
// directories (ServeExec) can hold what tests uploaded, tens of megabytes.
func (e *Env) disposableDirs() []string {
	return []string{e.etcdDir(), e.certDir(), e.wrapperDir(), e.podsDir()}
}

func (e *Env) etcdDir() string    { return filepath.Join(e.Dir, "etcd") }
func (e *Env) wrapperDir() string { return filepath.Join(e.Dir, "bin") }
func (e *Env) certDir() string    { return filepath.Join(e.Dir, "kube-apiserver") }
func (e *Env) podsDir() string    { return filepath.Join(e.Dir, "pods") }

// hasControllerManager reports whether this test bed runs kube-controller-manager.
func (e *Env) hasControllerManager() bool { return !e.opts.DisableControllerManager }

// KeepDir makes Stop keep the component logs (LogDir), the kubeconfig and the kwok stages
// for a post-mortem, removing only etcd's data, the certificates, the wrapper scripts and
// the pods' directories. Main calls it when a test failed.
func (e *Env) KeepDir() { e.keepDir.Store(true) }

// PIDs returns the process IDs of the components, keyed by name: kube-scheduler,
// kube-controller-manager, kwok, and on Linux etcd and kube-apiserver.
func (e *Env) PIDs() map[string]int {
	pids := make(map[string]int)
	for name, pid := range e.controlPlanePIDs {
		pids[name] = pid
	}
	for _, c := range e.children {
		pids[c.name] = c.pid()
	}
	return pids
}

// BinaryPath returns the path of a tool in BinDir (kubectl, helm, controller-gen, ...).
func (e *Env) BinaryPath(name string) string { return filepath.Join(e.BinDir, name) }

// openLog creates the log file of a component in LogDir.
func (e *Env) openLog(name string) (*os.File, error) {
	f, err := os.OpenFile(e.logPath(name), os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		return nil, fmt.Errorf("open log for %s: %w", name, err)
	}
	return f, nil
}

func (e *Env) logPath(name string) string { return filepath.Join(e.LogDir, name+".log") }

// logTailSection formats the end of a log for an error message.
func logTailSection(path string) string {
	return fmt.Sprintf("\n--- last lines of %s ---\n%s", path, tailFile(path, logTailBytes))
}
