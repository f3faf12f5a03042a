//go:build !windows

// Package images_test checks what `make images` and `make release` produce, by running the
// program they run (hack/release) and reading its output back with go-containerregistry: the
// manager's multi-arch image (config, one layer, the stamped binary inside), the Windows node
// agent image, the docker-load tarballs, the Dockerfile's agreement with them, the release
// bundle, and the version check of make verify. No Docker, no registry on the network.
//
// Under `make test` it builds the manager for the host's platform only (each platform is a
// full compile of the manager's dependencies, minutes on a 2-core machine). `make release`
// runs it again on what it built, every platform, by setting HYPERPOOL_IMAGES (and
// HYPERPOOL_RELEASE for the bundle, HYPERPOOL_REVISION for the commit it was built from):
// then the tests read those directories instead.
package images_test

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"sync"
	"testing"
	"time"

	"sigs.k8s.io/yaml"
)

var (
	// root is the repository's root; the test binary runs in test/images.
	root = mustAbs("../..")
	// work is TestMain's temporary directory, removed when the tests end.
	work string
	// tool is hack/release, built once by TestMain.
	tool string
	// version and revision are what the images must carry: Chart.yaml's appVersion and the
	// commit checked out when the test started.
	version, revision string
)

func mustAbs(p string) string {
	a, err := filepath.Abs(p)
	if err != nil {
		panic(err)
	}
	return a
}

func TestMain(m *testing.M) {
	code, err := setup(m)
	if err != nil {
		fmt.Fprintln(os.Stderr, "test/images:", err)
		os.Exit(1)
	}
	os.Exit(code)
}

func setup(m *testing.M) (int, error) {
	dir, err := os.MkdirTemp("", "hyperpool-images-test-")
	if err != nil {
		return 0, err
	}
	defer func() { _ = os.RemoveAll(dir) }()
	work = dir
	tool = filepath.Join(dir, "release")
	build := goCmd("build", "-trimpath", "-o", tool, "./hack/release") // make test-programs' flags: its packages are compiled
	build.Env = append(os.Environ(), "CGO_ENABLED=0")
	if out, err := build.CombinedOutput(); err != nil {
		return 0, fmt.Errorf("building hack/release: %w\n%s", err, out)
	}
	b, err := os.ReadFile(filepath.Join(root, "charts", "hyperpool", "Chart.yaml"))
	if err != nil {
		return 0, err
	}
	var chart struct {
		AppVersion string `json:"appVersion"`
	}
	if err := yaml.Unmarshal(b, &chart); err != nil {
		return 0, err
	}
	version = chart.AppVersion
	out, err := exec.Command("git", "-C", root, "rev-parse", "HEAD").Output()
	if err != nil {
		return 0, fmt.Errorf("git rev-parse HEAD: %w", err)
	}
	revision = strings.TrimSpace(string(out))
	if r := os.Getenv("HYPERPOOL_REVISION"); r != "" {
		// make release's REVISION: the commit its images were built from.
		revision = r
	}
	return m.Run(), nil
}

func goCmd(args ...string) *exec.Cmd {
	cmd := exec.Command("go", args...)
	cmd.Dir = root
	return cmd
}

// release runs hack/release from the repository root and returns its stdout; stderr is in
// the error.
func release(t testing.TB, timeout time.Duration, args ...string) (string, error) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	cmd := exec.CommandContext(ctx, tool, args...)
	cmd.Dir = root
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	if err := cmd.Run(); err != nil {
		return stdout.String(), fmt.Errorf("release %s: %w\n%s", strings.Join(args, " "), err, stderr.String())
	}
	return stdout.String(), nil
}

// releasePlatforms are the manager image's platforms in a release (hack/release's default
// -platforms).
var releasePlatforms = []string{"linux/amd64", "linux/arm64"}

// hostPlatform is the manager platform this machine builds and can run.
var hostPlatform = "linux/" + runtime.GOARCH

// releaseImages and releaseBundle are what `make release` built (bin/images and
// bin/release), when it runs these tests on them.
var (
	releaseImages = os.Getenv("HYPERPOOL_IMAGES")
	releaseBundle = os.Getenv("HYPERPOOL_RELEASE")
)

// managerPlatforms are the platforms imagesDir's manager image must list: every release
// platform in a release's images, the host's alone in the ones the tests build.
func managerPlatforms() []string {
	if releaseImages != "" {
		return releasePlatforms
	}
	return []string{hostPlatform}
}

// built is the output of one `images` run, shared by the tests that read it: the manager
// for the host's platform and the node agent (whose packages `make test-programs` leaves
// compiled in the build cache under `make test`).
var built struct {
	once sync.Once
	dir  string
	err  error
}

// imagesDir returns the output directory of `release images`: make release's, or one built
// once for the host's platform.
func imagesDir(t *testing.T) string {
	t.Helper()
	built.once.Do(func() {
		if releaseImages != "" {
			built.dir = filepath.Join(root, releaseImages)
			if filepath.IsAbs(releaseImages) {
				built.dir = releaseImages
			}
			_, built.err = os.Stat(filepath.Join(built.dir, "hyperpool-manager"))
			return
		}
		built.dir = filepath.Join(work, "images")
		_, built.err = release(t, 15*time.Minute, "images", "-out", built.dir, "-revision", revision,
			"-platforms", hostPlatform)
	})
	if built.err != nil {
		t.Fatal(built.err)
	}
	return built.dir
}
