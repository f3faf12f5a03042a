//go:build !windows

// Package testbed runs a small but real Kubernetes control plane for integration tests:
// etcd and kube-apiserver (through controller-runtime's envtest), kube-scheduler,
// kube-controller-manager, and kwok, which plays the kubelet of simulated Windows nodes.
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
	goruntime "runtime"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/types"
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
	startSteps    []string

	opts     Options
	testEnv  *envtest.Environment
	children []*child // in start order; Stop goes in reverse
	watchdog *watchdog
	// controlPlanePIDs are envtest's etcd and kube-apiserver, found in /proc (Linux only).
	controlPlanePIDs map[string]int

	// nodeIndex numbers simulated nodes across CreateWindowsNodes calls, for unique pod CIDRs.
	nodeIndex atomic.Int64
	// keepDir makes Stop leave Dir behind, for a post-mortem of a failed run.
	keepDir atomic.Bool

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
	e := &Env{RepoRoot: root, BinDir: binDir, Dir: dir, LogDir: filepath.Join(dir, "logs"), opts: opts}
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

// startAPIServer starts etcd and kube-apiserver through envtest and installs the CRDs. A
// watchdog is armed before, and both processes run under a parent-death signal, so that
// nothing outlives a test binary that dies even in the middle of this.
func (e *Env) startAPIServer(opts Options) error {
	crdPaths, crdPathsRequired, err := e.crdPaths(opts.CRDDirectoryPaths)
	if err != nil {
		return err
	}
	for _, d := range []string{e.certDir(), e.etcdDir(), e.wrapperDir()} {
		if err := os.MkdirAll(d, 0o700); err != nil {
			return fmt.Errorf("create %s: %w", d, err)
		}
	}
	if e.watchdog, err = startWatchdog(e.disposableDirs(), e.LogDir); err != nil {
		return err
	}
	etcdPath, err := wrapWithDeathSignal(e.wrapperDir(), e.assetPath("etcd"))
	if err != nil {
		return err
	}
	apiServerPath, err := wrapWithDeathSignal(e.wrapperDir(), e.assetPath("kube-apiserver"))
	if err != nil {
		return err
	}
	etcdLog, err := e.openLog("etcd")
	if err != nil {
		return err
	}
	defer etcdLog.Close()
	apiServerLog, err := e.openLog("kube-apiserver")
	if err != nil {
		return err
	}
	defer apiServerLog.Close()

	apiServer := &envtest.APIServer{
		Path: apiServerPath,
		// Inside Dir, which tells this test bed's processes from another's (see guardControlPlane).
		CertDir: e.certDir(),
		Out:     apiServerLog,
		Err:     apiServerLog,
	}
	configureAPIServer(apiServer.Configure(), opts)
	e.testEnv = &envtest.Environment{
		ControlPlane: envtest.ControlPlane{
			APIServer: apiServer,
			Etcd:      &envtest.Etcd{Path: etcdPath, DataDir: e.etcdDir(), Out: etcdLog, Err: etcdLog},
		},
		BinaryAssetsDirectory: e.BinDir,
		CRDDirectoryPaths:     crdPaths,
		ErrorIfCRDPathMissing: crdPathsRequired,
		Scheme:                e.Scheme,
	}
	// envtest forks etcd and kube-apiserver on this goroutine; pin it to its thread, since
	// the parent-death signal follows the thread that forked (see startChild).
	goruntime.LockOSThread()
	_, startErr := e.testEnv.Start()
	goruntime.UnlockOSThread()
	// Guard whatever did start, even when Start failed half-way.
	guardErr := e.guardControlPlane()
	if startErr != nil {
		return fmt.Errorf("envtest: %w%s%s", startErr,
			logTailSection(etcdLog.Name()), logTailSection(apiServerLog.Name()))
	}
	return guardErr
}

// assetPath is where envtest would look for a control-plane binary: $TEST_ASSET_<NAME>
// if set, else BinDir.
func (e *Env) assetPath(name string) string {
	envVar := "TEST_ASSET_" + strings.ToUpper(strings.ReplaceAll(name, "-", "_"))
	if path := os.Getenv(envVar); path != "" {
		return path
	}
	return filepath.Join(e.BinDir, name)
}

// configureAPIServer turns envtest's kube-apiserver flags closer to a real cluster's.
func configureAPIServer(args *envtest.Arguments, opts Options) {
	if !opts.DisableControllerManager {
		// envtest disables the ServiceAccount admission plugin because it runs no
		// controller-manager to create the default ServiceAccount of each namespace. The
		// test bed does, so keep the plugin on, as in a real cluster: a pod is rejected
		// until its namespace's ServiceAccount exists (CreateNamespace waits for it).
		args.Disable("disable-admission-plugins")
	}
	for flag, values := range opts.APIServerFlags {
		if len(values) == 0 {
			args.Disable(flag)
			continue
		}
		args.Set(flag, values...)
	}
}

// crdPaths returns the CRD directories to install and whether a missing one is an error.
func (e *Env) crdPaths(explicit []string) ([]string, bool, error) {
	if len(explicit) > 0 {
		return explicit, true, nil
	}
	bases := filepath.Join(e.RepoRoot, "config", "crd", "bases")
	if _, err := os.Stat(bases); err != nil {
		if errors.Is(err, os.ErrNotExist) {
			return nil, false, nil
		}
		return nil, false, fmt.Errorf("check CRD directory %s: %w", bases, err)
	}
	return []string{bases}, true, nil
}

// guardControlPlane finds envtest's etcd and kube-apiserver, by their command lines that
// mention Dir, and hands them to the watchdog.
func (e *Env) guardControlPlane() error {
	e.controlPlanePIDs = make(map[string]int)
	for _, name := range []string{"etcd", "kube-apiserver"} {
		found, err := findChildren(e.Dir, name)
		if err != nil {
			return fmt.Errorf("find envtest's %s to guard: %w", name, err)
		}
		if len(found) == 1 {
			e.controlPlanePIDs[name] = found[0]
		}
		if err := e.watchdog.guard(found...); err != nil {
			return err
		}
	}
	return nil
}

// connect provisions the admin user, writes its kubeconfig and builds the client.
func (e *Env) connect() error {
	// envtest's own default: tests should not wait on client-side throttling.
	base := &rest.Config{QPS: 1000, Burst: 2000}
	user, err := e.testEnv.AddUser(envtest.User{Name: adminUser, Groups: []string{"system:masters"}}, base)
	if err != nil {
		return fmt.Errorf("provision user %s: %w", adminUser, err)
	}
	e.Config = user.Config()
	kubeconfig, err := user.KubeConfig()
	if err != nil {
		return fmt.Errorf("render kubeconfig for %s: %w", adminUser, err)
	}
	e.KubeconfigPath = filepath.Join(e.Dir, "kubeconfig")
	if err := os.WriteFile(e.KubeconfigPath, kubeconfig, 0o600); err != nil {
		return fmt.Errorf("write kubeconfig: %w", err)
	}
	e.Client, err = client.New(e.Config, client.Options{Scheme: e.Scheme})
	if err != nil {
		return fmt.Errorf("create client for %s: %w", e.Config.Host, err)
	}
	return nil
}

// startComponents starts kube-scheduler, kube-controller-manager and kwok, without waiting
// for them: they become useful within about a second, and tests poll for results anyway.
func (e *Env) startComponents(opts Options) error {
	if !opts.DisableScheduler {
		if err := e.startComponent("kube-scheduler", schedulerArgs(e.KubeconfigPath)); err != nil {
			return err
		}
	}
	if !opts.DisableControllerManager {
		if err := e.startComponent("kube-controller-manager", controllerManagerArgs(e.KubeconfigPath)); err != nil {
			return err
		}
	}
	stagesPath := filepath.Join(e.Dir, "kwok-stages.yaml")
	if err := os.WriteFile(stagesPath, []byte(kwokStages(opts.PodReadyDelay)), 0o644); err != nil {
		return fmt.Errorf("write kwok stages: %w", err)
	}
	return e.startComponent("kwok", kwokArgs(e.KubeconfigPath, stagesPath))
}

// schedulerArgs: no leader election (one replica, and it would delay the first
// scheduling), no serving port (nothing scrapes it, and two test beds would collide).
func schedulerArgs(kubeconfig string) []string {
	return []string{
		"--kubeconfig=" + kubeconfig,
		"--leader-elect=false",
		"--secure-port=0",
	}
}

// controllerManagerArgs runs every default controller except the legacy ServiceAccount
// token controller, which needs a signing key and whose Secrets nothing here uses (pods get
// projected tokens, and the test pods disable automounting). The root CA it publishes to
// each namespace is taken from the kubeconfig, so --root-ca-file is not needed.
func controllerManagerArgs(kubeconfig string) []string {
	return []string{
		"--kubeconfig=" + kubeconfig,
		"--leader-elect=false",
		"--secure-port=0",
		"--controllers=*,-serviceaccount-token",
	}
}

// startComponent starts one of the test bed's own processes from BinDir.
func (e *Env) startComponent(name string, args []string) error {
	c, err := startChild(name, filepath.Join(e.BinDir, name), args, e.logPath(name))
	if err != nil {
		return err
	}
	e.children = append(e.children, c)
	return nil
}

// childrenAlive returns an error, quoting its log, for the first component that has exited.
func (e *Env) childrenAlive() error {
	for _, c := range e.children {
		if err := c.exitError(); err != nil {
			return err
		}
	}
	return nil
}

// waitForServiceAccount waits until the namespace's default ServiceAccount exists, which
// the ServiceAccount admission plugin requires before it admits a pod there.
func (e *Env) waitForServiceAccount(ctx context.Context, namespace string) error {
	key := types.NamespacedName{Namespace: namespace, Name: "default"}
	return e.poll(ctx, componentReadyTimeout, func(ctx context.Context) (bool, error) {
		err := e.Client.Get(ctx, key, &corev1.ServiceAccount{})
		if apierrors.IsNotFound(err) {
			return false, nil
		}
		return err == nil, err
	})
}

// poll runs condition until it is true, the timeout passes, or a component exits; the
// last two are errors, a component's exit quoting its log.
func (e *Env) poll(ctx context.Context, timeout time.Duration, condition wait.ConditionWithContextFunc) error {
	var lastErr error
	err := wait.PollUntilContextTimeout(ctx, pollInterval, timeout, true, func(ctx context.Context) (bool, error) {
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
		return fmt.Errorf("%w (last error: %v)", err, lastErr)
	}
	return err
}

// Stop stops everything Start started, each by its PID: kwok, kube-controller-manager,
// kube-scheduler, then etcd and kube-apiserver through envtest. It then removes Dir. It
// is safe to call more than once and from several goroutines; later calls return the
// first call's result.
func (e *Env) Stop() error {
	e.stopOnce.Do(func() { e.stopErr = e.stop() })
	return e.stopErr
}

func (e *Env) stop() error {
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
	errs = append(errs, e.removeDir())
	return errors.Join(errs...)
}

// removeDir removes Dir, or with KeepDir only the bulky and secret parts of it: etcd's data
// (over 100 MB, mostly preallocated log), kube-apiserver's certificates and keys, and the
// wrapper scripts.
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

// disposableDirs are the parts of Dir not worth keeping after a failure.
func (e *Env) disposableDirs() []string {
	return []string{e.etcdDir(), e.certDir(), e.wrapperDir()}
}

func (e *Env) etcdDir() string    { return filepath.Join(e.Dir, "etcd") }
func (e *Env) wrapperDir() string { return filepath.Join(e.Dir, "bin") }
func (e *Env) certDir() string    { return filepath.Join(e.Dir, "kube-apiserver") }

// hasControllerManager reports whether this test bed runs kube-controller-manager.
func (e *Env) hasControllerManager() bool { return !e.opts.DisableControllerManager }

// KeepDir makes Stop leave Dir (and the component logs in LogDir) in place. Main calls it
// when a test failed.
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
