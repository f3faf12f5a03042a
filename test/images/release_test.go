//go:build !windows

package images_test

import (
	"bufio"
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"io"
	"log"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/google/go-containerregistry/pkg/name"
	"github.com/google/go-containerregistry/pkg/registry"
	"github.com/google/go-containerregistry/pkg/v1/mutate"
	"github.com/google/go-containerregistry/pkg/v1/random"
	"github.com/google/go-containerregistry/pkg/v1/remote"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"sigs.k8s.io/yaml"

	"github.com/hyperpool/hyperpool/test/framework"
)

// helm is hack/tools.sh's helm (make test builds the tools first).
func helm(t *testing.T) string {
	t.Helper()
	p := filepath.Join(root, "bin", "k8s", "helm")
	if _, err := os.Stat(p); err != nil {
		t.Fatalf("%s: run hack/tools.sh (make tools)", p)
	}
	return p
}

// bundleDir returns make release's bundle (HYPERPOOL_RELEASE), or one written from imagesDir.
func bundleDir(t *testing.T) string {
	t.Helper()
	if releaseBundle != "" {
		if filepath.IsAbs(releaseBundle) {
			return releaseBundle
		}
		return filepath.Join(root, releaseBundle)
	}
	out := filepath.Join(t.TempDir(), "release")
	if _, err := release(t, 5*time.Minute, "bundle", "-images", imagesDir(t), "-out", out, "-helm", helm(t)); err != nil {
		t.Fatal(err)
	}
	return out
}

// `make release`: the chart, the tarballs, crds.yaml, install.yaml and SHA256SUMS, every
// one of them carrying the version.
func TestReleaseBundle(t *testing.T) {
	t.Parallel()
	out := bundleDir(t)
	entries, err := os.ReadDir(out)
	if err != nil {
		t.Fatal(err)
	}
	var got []string
	for _, e := range entries {
		got = append(got, e.Name())
	}
	want := []string{
		"SHA256SUMS", "crds.yaml",
		"hyperpool-" + version + ".tgz",
		"hyperpool-node-agent-" + version + "-windows-amd64.tar",
		"install.yaml",
	}
	for _, p := range managerPlatforms() {
		want = append(want, "hyperpool-manager-"+version+"-"+strings.ReplaceAll(p, "/", "-")+".tar")
	}
	slices.Sort(want)
	if !slices.Equal(got, want) {
		t.Fatalf("bin/release holds %v, want %v", got, want)
	}

	// SHA256SUMS covers every other file, and each sum is right (as sha256sum -c checks).
	sums, err := os.ReadFile(filepath.Join(out, "SHA256SUMS"))
	if err != nil {
		t.Fatal(err)
	}
	var summed []string
	sc := bufio.NewScanner(bytes.NewReader(sums))
	for sc.Scan() {
		sum, file, ok := strings.Cut(sc.Text(), "  ")
		if !ok {
			t.Fatalf("SHA256SUMS line %q is not '<sum>  <file>'", sc.Text())
		}
		b, err := os.ReadFile(filepath.Join(out, file))
		if err != nil {
			t.Fatal(err)
		}
		if h := sha256.Sum256(b); hex.EncodeToString(h[:]) != sum {
			t.Errorf("SHA256SUMS: %s is %x, listed as %s", file, h, sum)
		}
		summed = append(summed, file)
	}
	if w := slices.DeleteFunc(slices.Clone(want), func(f string) bool { return f == "SHA256SUMS" }); !slices.Equal(summed, w) {
		t.Errorf("SHA256SUMS lists %v, want %v", summed, w)
	}

	// crds.yaml: every generated CRD, labelled with the version.
	bases, err := filepath.Glob(filepath.Join(root, "config", "crd", "bases", "*.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	b, err := os.ReadFile(filepath.Join(out, "crds.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	crds := framework.DecodeManifest(t, b)
	if len(crds) != len(bases) {
		t.Errorf("crds.yaml holds %d objects, config/crd/bases %d CRDs", len(crds), len(bases))
	}
	for _, crd := range crds {
		if crd.GetKind() != "CustomResourceDefinition" || crd.GetLabels()["app.kubernetes.io/version"] != version {
			t.Errorf("crds.yaml: %s %s has labels %v, want app.kubernetes.io/version=%s", crd.GetKind(), crd.GetName(), crd.GetLabels(), version)
		}
	}

	// install.yaml: kustomize's config/default, whose manager runs this version's image.
	b, err = os.ReadFile(filepath.Join(out, "install.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	var images []string
	kinds := map[string]int{}
	for _, o := range framework.DecodeManifest(t, b) {
		kinds[o.GetKind()]++
		if o.GetKind() == "Deployment" {
			cs, _, _ := unstructured.NestedSlice(o.Object, "spec", "template", "spec", "containers")
			for _, c := range cs {
				images = append(images, c.(map[string]any)["image"].(string))
			}
		}
	}
	if !slices.Equal(images, []string{managerRepository + ":" + version}) {
		t.Errorf("install.yaml's Deployment runs %v, want %s:%s", images, managerRepository, version)
	}
	if kinds["CustomResourceDefinition"] != len(bases) || kinds["ClusterRole"] == 0 || kinds["ValidatingAdmissionPolicy"] == 0 {
		t.Errorf("install.yaml holds %v: want the CRDs, RBAC and admission policies of config/default", kinds)
	}

	// The packaged chart says the version.
	show, err := exec.Command(helm(t), "show", "chart", filepath.Join(out, "hyperpool-"+version+".tgz")).Output()
	if err != nil {
		t.Fatalf("helm show chart: %v", err)
	}
	var chart struct{ Version, AppVersion string }
	if err := yaml.Unmarshal(show, &chart); err != nil {
		t.Fatal(err)
	}
	if chart.Version != version || chart.AppVersion != version {
		t.Errorf("the packaged chart has version %q, appVersion %q; want %q", chart.Version, chart.AppVersion, version)
	}
}

// With a base (NODE_AGENT_BASE, here from an in-memory registry standing in for
// mcr.microsoft.com), the node agent's layer goes on top of the base's, and the base's
// os.version stays.
func TestNodeAgentOnBase(t *testing.T) {
	t.Parallel()
	srv := httptest.NewServer(registry.New(registry.Logger(log.New(io.Discard, "", 0))))
	t.Cleanup(srv.Close)
	ref, err := name.ParseReference(strings.TrimPrefix(srv.URL, "http://") + "/windows-host-process-containers-base-image:v1.0.0")
	if err != nil {
		t.Fatal(err)
	}
	base, err := random.Image(256, 1)
	if err != nil {
		t.Fatal(err)
	}
	cfg, err := base.ConfigFile()
	if err != nil {
		t.Fatal(err)
	}
	cfg.OS, cfg.Architecture, cfg.OSVersion = "windows", "amd64", "10.0.17763.6659"
	if base, err = mutate.ConfigFile(base, cfg); err != nil {
		t.Fatal(err)
	}
	if err := remote.Write(ref, base, remote.WithContext(context.Background())); err != nil {
		t.Fatal(err)
	}

	dir := filepath.Join(t.TempDir(), "images")
	if _, err := release(t, 10*time.Minute, "images", "-out", dir, "-revision", revision, "-platforms", "", "-node-agent-base", ref.String()); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(filepath.Join(dir, "hyperpool-manager")); !os.IsNotExist(err) {
		t.Errorf("-platforms \"\" built the manager anyway (%v)", err)
	}
	idx := readLayout(t, filepath.Join(dir, "hyperpool-node-agent"))
	m, err := idx.IndexManifest()
	if err != nil {
		t.Fatal(err)
	}
	if p := m.Manifests[0].Platform; p == nil || p.OSVersion != cfg.OSVersion {
		t.Errorf("the index entry's platform %+v lacks the base's os.version %s", p, cfg.OSVersion)
	}
	img := platformImages(t, idx)["windows/amd64"]
	got, err := img.ConfigFile()
	if err != nil {
		t.Fatal(err)
	}
	if got.OSVersion != cfg.OSVersion || !slices.Equal(got.Config.Entrypoint, []string{"hyperpool-node-agent.exe"}) || got.Config.Labels["org.opencontainers.image.version"] != version {
		t.Errorf("config: os.version %q, entrypoint %q, labels %v; want the base's os.version and the agent's entrypoint and labels", got.OSVersion, got.Config.Entrypoint, got.Config.Labels)
	}
	layers, err := img.Layers()
	if err != nil {
		t.Fatal(err)
	}
	baseLayers, err := base.Layers()
	if err != nil {
		t.Fatal(err)
	}
	if len(layers) != 2 {
		t.Fatalf("%d layers, want the base's and the agent's", len(layers))
	}
	d0, _ := layers[0].Digest()
	b0, _ := baseLayers[0].Digest()
	if d0 != b0 {
		t.Errorf("first layer %s, want the base's %s", d0, b0)
	}
	if files := layerFiles(t, img); files["Files/hyperpool-node-agent.exe"] == nil {
		t.Errorf("the top layer holds %v, want Files/hyperpool-node-agent.exe", keys(files))
	}
}

// copyRoot copies what check-version reads (the chart's Chart.yaml and values.yaml, and
// config/) into a new directory.
func copyRoot(t *testing.T) string {
	t.Helper()
	dst := t.TempDir()
	if err := os.CopyFS(filepath.Join(dst, "config"), os.DirFS(filepath.Join(root, "config"))); err != nil {
		t.Fatal(err)
	}
	chart := filepath.Join(dst, "charts", "hyperpool")
	if err := os.MkdirAll(chart, 0o755); err != nil {
		t.Fatal(err)
	}
	for _, f := range []string{"Chart.yaml", "values.yaml"} {
		b, err := os.ReadFile(filepath.Join(root, "charts", "hyperpool", f))
		if err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(chart, f), b, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	return dst
}

// edit replaces the first match of re in a file under dir.
func edit(t *testing.T, dir, file, re, repl string) {
	t.Helper()
	p := filepath.Join(dir, file)
	b, err := os.ReadFile(p)
	if err != nil {
		t.Fatal(err)
	}
	rx := regexp.MustCompile(re)
	loc := rx.FindIndex(b)
	if loc == nil {
		t.Fatalf("%s: no match for %s", file, re)
	}
	out := append(append(slices.Clone(b[:loc[0]]), rx.ReplaceAll(b[loc[0]:loc[1]], []byte(repl))...), b[loc[1]:]...)
	if err := os.WriteFile(p, out, 0o644); err != nil {
		t.Fatal(err)
	}
}

// make verify's version check fails on each kind of disagreement, naming it.
func TestCheckVersion(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name    string
		change  func(t *testing.T, dir string)
		flag    string
		wantErr string
	}{
		{name: "agreeing", change: func(*testing.T, string) {}},
		{name: "the Makefile agrees", change: func(*testing.T, string) {}, flag: version},
		{
			name: "chart version differs from appVersion",
			change: func(t *testing.T, d string) {
				edit(t, d, "charts/hyperpool/Chart.yaml", `(?m)^version: .*$`, "version: 9.9.9")
			},
			wantErr: `version "9.9.9" differs from appVersion`,
		},
		{
			name:    "the Makefile's VERSION differs",
			change:  func(*testing.T, string) {},
			flag:    "9.9.9",
			wantErr: `the Makefile's VERSION "9.9.9" differs`,
		},
		{
			name:    "a values image tag differs",
			change:  func(t *testing.T, d string) { edit(t, d, "charts/hyperpool/values.yaml", `tag: ""`, `tag: "9.9.9"`) },
			wantErr: `image.tag is "9.9.9"`,
		},
		{
			name: "config/manager's image tag differs",
			change: func(t *testing.T, d string) {
				edit(t, d, "config/manager/manager.yaml", `hyperpool-manager:\S+`, "hyperpool-manager:9.9.9")
			},
			wantErr: "config/default renders image " + managerRepository + ":9.9.9",
		},
		{
			name: "not a semantic version",
			change: func(t *testing.T, d string) {
				edit(t, d, "charts/hyperpool/Chart.yaml", `(?m)^version: .*$`, "version: latest")
				edit(t, d, "charts/hyperpool/Chart.yaml", `(?m)^appVersion: .*$`, "appVersion: latest")
			},
			wantErr: "is not a semantic version",
		},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			dir := copyRoot(t)
			tc.change(t, dir)
			args := []string{"check-version", "-root", dir}
			if tc.flag != "" {
				args = append(args, "-version", tc.flag)
			}
			_, err := release(t, time.Minute, args...)
			switch {
			case tc.wantErr == "" && err != nil:
				t.Errorf("check-version failed: %v", err)
			case tc.wantErr != "" && err == nil:
				t.Errorf("check-version passed, want a failure naming %q", tc.wantErr)
			case tc.wantErr != "" && !strings.Contains(err.Error(), tc.wantErr):
				t.Errorf("check-version failed with %v, want it to name %q", err, tc.wantErr)
			}
		})
	}
}

// The Makefile reads the same version as hack/release (it passes it to every target).
func TestMakefileVersion(t *testing.T) {
	t.Parallel()
	cmd := exec.Command("make", "-s", "version")
	cmd.Dir = root
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("make -s version: %v", err)
	}
	if got := strings.TrimSpace(string(out)); got != version {
		t.Errorf("make version prints %q, Chart.yaml's appVersion is %q", got, version)
	}
}
