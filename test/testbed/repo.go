//go:build !windows

package testbed

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
)

// findRepoRoot walks up from the working directory (a test binary runs in its package's
// directory) to the first directory with a go.mod.
func findRepoRoot() (string, error) {
	wd, err := os.Getwd()
	if err != nil {
		return "", fmt.Errorf("get working directory: %w", err)
	}
	for dir := wd; ; dir = filepath.Dir(dir) {
		if _, err := os.Stat(filepath.Join(dir, "go.mod")); err == nil {
			return dir, nil
		}
		if filepath.Dir(dir) == dir {
			return "", fmt.Errorf("no go.mod in %s or any parent directory", wd)
		}
	}
}

// resolveBinDir picks the directory with the control-plane binaries, in order: the
// explicit option, $KUBEBUILDER_ASSETS, <repo root>/bin/k8s; and checks that it holds every
// binary these options need.
func resolveBinDir(opts Options, root string) (string, error) {
	dir, source := opts.BinaryAssetsDirectory, "Options.BinaryAssetsDirectory"
	if dir == "" {
		dir, source = os.Getenv("KUBEBUILDER_ASSETS"), "$KUBEBUILDER_ASSETS"
	}
	if dir == "" {
		dir, source = filepath.Join(root, "bin", "k8s"), "the repository's bin/k8s"
	}
	var missing []error
	for _, name := range requiredBinaries(opts) {
		if err := checkExecutable(filepath.Join(dir, name)); err != nil {
			missing = append(missing, err)
		}
	}
	if len(missing) > 0 {
		return "", fmt.Errorf("binaries missing from %s (%s); run hack/tools.sh to build them: %w",
			dir, source, errors.Join(missing...))
	}
	return dir, nil
}

// requiredBinaries lists the executables Start runs with these options.
func requiredBinaries(opts Options) []string {
	names := []string{"etcd", "kube-apiserver", "kwok"}
	if !opts.DisableScheduler {
		names = append(names, "kube-scheduler")
	}
	if !opts.DisableControllerManager {
		names = append(names, "kube-controller-manager")
	}
	return names
}

func checkExecutable(path string) error {
	info, err := os.Stat(path)
	if err != nil {
		return err
	}
	if info.IsDir() || info.Mode().Perm()&0o111 == 0 {
		return fmt.Errorf("%s is not an executable file", path)
	}
	return nil
}
