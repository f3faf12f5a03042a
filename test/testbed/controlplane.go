//go:build !windows

package testbed

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"time"

	"k8s.io/apimachinery/pkg/util/wait"

	"k8s.io/client-go/rest"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/envtest"
)

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
	// envtest forks etcd and kube-apiserver on the goroutine that calls Start; the
	// parent-death signal set by the wrappers follows the thread that forked (see forkThread).
	var startErr error
	e.thread.run(func() { _, startErr = e.testEnv.Start() })
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
	if opts.ServeExec {
		args.Set("kubelet-preferred-address-types", execAddressTypes)
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
// mention Dir, and hands those it has not guarded yet to the watchdog. It runs again after
// RestartAPIServer, so the watchdog learns the new kube-apiserver.
func (e *Env) guardControlPlane() error {
	e.controlPlanePIDs = make(map[string]int)
	if e.guardedPIDs == nil {
		e.guardedPIDs = make(map[int]bool)
	}
	for _, name := range []string{"etcd", "kube-apiserver"} {
		found, err := findChildren(e.Dir, name)
		if err != nil {
			return fmt.Errorf("find envtest's %s to guard: %w", name, err)
		}
		if len(found) == 1 {
			e.controlPlanePIDs[name] = found[0]
		}
		for _, pid := range found {
			if e.guardedPIDs[pid] {
				continue
			}
			if err := e.watchdog.guard(pid); err != nil {
				return err
			}
			e.guardedPIDs[pid] = true
		}
	}
	return nil
}

// apiServerReadyTimeout bounds the wait for a restarted kube-apiserver's /readyz.
const apiServerReadyTimeout = 60 * time.Second

// RestartAPIServer stops kube-apiserver and starts it again on the same port, with the same
// certificates and the same etcd, whose data is kept: every object survives, and Config,
// KubeconfigPath and the components' connections keep working once it is back. It returns
// when /readyz answers ok. Clients see the outage as refused connections and broken
// watches, as in a real control-plane upgrade or crash; the chaos test uses it.
//
// Not safe to call concurrently with itself or with Stop. The watchdog keeps the stopped
// kube-apiserver's process group in its list as well as the new one.
func (e *Env) RestartAPIServer(ctx context.Context) error {
	if e.testEnv == nil || e.testEnv.ControlPlane.APIServer == nil {
		return errors.New("restart kube-apiserver: the test bed is not running")
	}
	apiServer := e.testEnv.ControlPlane.APIServer
	if err := e.stopAPIServer(ctx, apiServer); err != nil {
		return fmt.Errorf("restart kube-apiserver: %w", err)
	}
	// The first run's log file was closed once that process held it; append to it.
	apiServerLog, err := e.openLog("kube-apiserver")
	if err != nil {
		return err
	}
	defer apiServerLog.Close()
	apiServer.Out, apiServer.Err = apiServerLog, apiServerLog
	// On the fork thread, as in startAPIServer, so the parent-death signal applies.
	var startErr error
	e.thread.run(func() { startErr = apiServer.Start() })
	guardErr := e.guardControlPlane()
	if startErr != nil {
		return fmt.Errorf("restart kube-apiserver: start: %w%s", startErr, logTailSection(apiServerLog.Name()))
	}
	if guardErr != nil {
		return guardErr
	}
	if err := e.waitForAPIServerReady(ctx); err != nil {
		return fmt.Errorf("restart kube-apiserver: %w%s", err, logTailSection(apiServerLog.Name()))
	}
	return nil
}

// apiServerStopGrace is how long a restarted kube-apiserver gets to exit after SIGTERM
// before it is killed. With clients connected (kube-controller-manager, kwok, managers)
// it was seen to stop listening at once but not to exit within envtest's 20 s.
const apiServerStopGrace = 3 * time.Second

// stopAPIServer stops kube-apiserver for a restart: SIGTERM, then SIGKILL after
// apiServerStopGrace, by its PID, then lets envtest see that it exited. Where the PID is
// unknown (not Linux) it leaves it all to envtest.
func (e *Env) stopAPIServer(ctx context.Context, apiServer *envtest.APIServer) error {
	if pid := e.controlPlanePIDs["kube-apiserver"]; pid != 0 {
		if err := terminateProcess(ctx, pid, apiServerStopGrace); err != nil {
			return fmt.Errorf("stop kube-apiserver (pid %d): %w", pid, err)
		}
	}
	// envtest's own wait on the process may not have noticed the exit yet, and then fails
	// to signal it: ask again until it has.
	var lastErr error
	err := wait.PollUntilContextTimeout(ctx, pollInterval, componentReadyTimeout, true, func(context.Context) (bool, error) {
		lastErr = apiServer.Stop()
		return lastErr == nil, nil
	})
	if err != nil {
		return fmt.Errorf("envtest did not see kube-apiserver stop: %w (last error: %w)", err, lastErr)
	}
	return nil
}

// terminateProcess sends SIGTERM to pid, waits up to grace for it to be gone (exited and
// reaped by its waiter), then sends SIGKILL and waits again.
func terminateProcess(ctx context.Context, pid int, grace time.Duration) error {
	gone := func(context.Context) (bool, error) {
		return errors.Is(syscall.Kill(pid, 0), syscall.ESRCH), nil
	}
	if err := syscall.Kill(pid, syscall.SIGTERM); err != nil {
		if errors.Is(err, syscall.ESRCH) {
			return nil
		}
		return fmt.Errorf("send SIGTERM: %w", err)
	}
	if wait.PollUntilContextTimeout(ctx, pollInterval, grace, true, gone) == nil {
		return nil
	}
	if err := syscall.Kill(pid, syscall.SIGKILL); err != nil && !errors.Is(err, syscall.ESRCH) {
		return fmt.Errorf("send SIGKILL after %s: %w", grace, err)
	}
	if err := wait.PollUntilContextTimeout(ctx, pollInterval, componentReadyTimeout, true, gone); err != nil {
		return fmt.Errorf("still there %s after SIGKILL: %w", componentReadyTimeout, err)
	}
	return nil
}

// waitForAPIServerReady polls kube-apiserver's /readyz until it answers 200.
func (e *Env) waitForAPIServerReady(ctx context.Context) error {
	httpClient, err := rest.HTTPClientFor(e.Config)
	if err != nil {
		return fmt.Errorf("HTTP client for %s: %w", e.Config.Host, err)
	}
	readyz := strings.TrimSuffix(e.Config.Host, "/") + "/readyz"
	err = e.poll(ctx, apiServerReadyTimeout, func(ctx context.Context) (bool, error) {
		req, err := http.NewRequestWithContext(ctx, http.MethodGet, readyz, nil)
		if err != nil {
			return false, err
		}
		resp, err := httpClient.Do(req)
		if err != nil {
			return false, err
		}
		_, _ = io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		if resp.StatusCode != http.StatusOK {
			return false, fmt.Errorf("GET %s: %s", readyz, resp.Status)
		}
		return true, nil
	})
	if err != nil {
		return fmt.Errorf("/readyz not ok within %s: %w", apiServerReadyTimeout, err)
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
