//go:build !windows

package testbed

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"

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
