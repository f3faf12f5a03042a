//go:build !windows

package images_test

import (
	"archive/tar"
	"debug/pe"
	"errors"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/google/go-containerregistry/pkg/name"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/layout"
	"github.com/google/go-containerregistry/pkg/v1/mutate"
	"github.com/google/go-containerregistry/pkg/v1/tarball"
	"github.com/google/go-containerregistry/pkg/v1/types"
)

const (
	managerRepository   = "ghcr.io/hyperpool/hyperpool-manager"
	nodeAgentRepository = "ghcr.io/hyperpool/hyperpool-node-agent"
)

// wantLabels are the OCI labels every image carries.
func wantLabels() map[string]string {
	return map[string]string{
		"org.opencontainers.image.source":   "https://github.com/hyperpool/hyperpool",
		"org.opencontainers.image.version":  version,
		"org.opencontainers.image.revision": revision,
		"org.opencontainers.image.licenses": "Apache-2.0",
	}
}

// readLayout opens the OCI layout of an image: one index, tagged with the version.
func readLayout(t *testing.T, dir string) v1.ImageIndex {
	t.Helper()
	p, err := layout.FromPath(dir)
	if err != nil {
		t.Fatalf("reading the OCI layout %s: %v", dir, err)
	}
	top, err := p.ImageIndex()
	if err != nil {
		t.Fatal(err)
	}
	m, err := top.IndexManifest()
	if err != nil {
		t.Fatal(err)
	}
	if len(m.Manifests) != 1 || !m.Manifests[0].MediaType.IsIndex() {
		t.Fatalf("%s/index.json should name one image index, not %+v", dir, m.Manifests)
	}
	if got := m.Manifests[0].Annotations["org.opencontainers.image.ref.name"]; got != version {
		t.Errorf("%s: the index is tagged %q, want the version %q", dir, got, version)
	}
	idx, err := top.ImageIndex(m.Manifests[0].Digest)
	if err != nil {
		t.Fatal(err)
	}
	return idx
}

// platformImages returns the index's images by "os/arch".
func platformImages(t *testing.T, idx v1.ImageIndex) map[string]v1.Image {
	t.Helper()
	m, err := idx.IndexManifest()
	if err != nil {
		t.Fatal(err)
	}
	out := map[string]v1.Image{}
	for _, d := range m.Manifests {
		if d.Platform == nil {
			t.Fatalf("index entry %s has no platform", d.Digest)
		}
		img, err := idx.Image(d.Digest)
		if err != nil {
			t.Fatal(err)
		}
		out[d.Platform.OS+"/"+d.Platform.Architecture] = img
	}
	return out
}

// layerFiles reads every entry of an image's only layer.
func layerFiles(t *testing.T, img v1.Image) map[string]*tar.Header {
	t.Helper()
	layers, err := img.Layers()
	if err != nil {
		t.Fatal(err)
	}
	rc, err := layers[len(layers)-1].Uncompressed()
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = rc.Close() }()
	files := map[string]*tar.Header{}
	tr := tar.NewReader(rc)
	for {
		h, err := tr.Next()
		if errors.Is(err, io.EOF) {
			return files
		}
		if err != nil {
			t.Fatal(err)
		}
		files[h.Name] = h
	}
}

// extract writes the file name of an image's filesystem to dst.
func extract(t *testing.T, img v1.Image, name, dst string) {
	t.Helper()
	rc := mutate.Extract(img)
	defer func() { _ = rc.Close() }()
	tr := tar.NewReader(rc)
	for {
		h, err := tr.Next()
		if errors.Is(err, io.EOF) {
			t.Fatalf("no %s in the image", name)
		}
		if err != nil {
			t.Fatal(err)
		}
		if h.Name != name {
			continue
		}
		f, err := os.OpenFile(dst, os.O_CREATE|os.O_WRONLY|os.O_TRUNC, os.FileMode(h.Mode))
		if err != nil {
			t.Fatal(err)
		}
		if _, err := io.Copy(f, tr); err != nil {
			t.Fatal(err)
		}
		if err := f.Close(); err != nil {
			t.Fatal(err)
		}
		return
	}
}

// The index lists the platforms built: the host's under make test, every release platform
// (linux/amd64 and linux/arm64) under make release.
func TestManagerIndexListsItsPlatforms(t *testing.T) {
	idx := readLayout(t, filepath.Join(imagesDir(t), "hyperpool-manager"))
	if mt, _ := idx.MediaType(); mt != types.OCIImageIndex {
		t.Errorf("media type %s, want %s", mt, types.OCIImageIndex)
	}
	var got []string
	for p := range platformImages(t, idx) {
		got = append(got, p)
	}
	slices.Sort(got)
	if want := slices.Sorted(slices.Values(managerPlatforms())); !slices.Equal(got, want) {
		t.Errorf("the manager's index lists %v, want %v", got, want)
	}
}

func TestManagerImageConfig(t *testing.T) {
	images := platformImages(t, readLayout(t, filepath.Join(imagesDir(t), "hyperpool-manager")))
	for _, platform := range managerPlatforms() {
		t.Run(platform, func(t *testing.T) {
			img := images[platform]
			if img == nil {
				t.Fatalf("no %s image", platform)
			}
			cfg, err := img.ConfigFile()
			if err != nil {
				t.Fatal(err)
			}
			if got := cfg.OS + "/" + cfg.Architecture; got != platform {
				t.Errorf("config platform %s, want %s", got, platform)
			}
			if cfg.Config.User != "65532:65532" {
				t.Errorf("user %q, want the non-root 65532:65532", cfg.Config.User)
			}
			if !slices.Equal(cfg.Config.Entrypoint, []string{"/manager"}) || cfg.Config.WorkingDir != "/" {
				t.Errorf("entrypoint %q in %q, want [/manager] in /", cfg.Config.Entrypoint, cfg.Config.WorkingDir)
			}
			for k, v := range wantLabels() {
				if cfg.Config.Labels[k] != v {
					t.Errorf("label %s = %q, want %q", k, cfg.Config.Labels[k], v)
				}
			}
			layers, err := img.Layers()
			if err != nil {
				t.Fatal(err)
			}
			if len(layers) != 1 {
				t.Fatalf("%d layers, want 1 (the binary on an empty base)", len(layers))
			}
			files := layerFiles(t, img)
			h := files["manager"]
			if len(files) != 1 || h == nil {
				t.Fatalf("the layer holds %v, want only manager", keys(files))
			}
			if h.Mode != 0o755 || h.Uid != 0 || h.Gid != 0 {
				t.Errorf("manager: mode %o, owner %d:%d; want 755 owned by root (executable by 65532, not writable)", h.Mode, h.Uid, h.Gid)
			}
		})
	}
}

func keys[V any](m map[string]V) []string {
	var out []string
	for k := range m {
		out = append(out, k)
	}
	slices.Sort(out)
	return out
}

// The binary in the host's image, extracted from the layer and run: it prints the version
// stamped at build time, not "dev".
func TestManagerBinaryPrintsStampedVersion(t *testing.T) {
	platform := hostPlatform
	img := platformImages(t, readLayout(t, filepath.Join(imagesDir(t), "hyperpool-manager")))[platform]
	if img == nil || runtime.GOOS != "linux" {
		t.Skipf("no image for this host (%s/%s)", runtime.GOOS, runtime.GOARCH)
	}
	bin := filepath.Join(t.TempDir(), "manager")
	extract(t, img, "manager", bin)
	out, err := exec.Command(bin, "--version").CombinedOutput()
	if err != nil {
		t.Fatalf("manager --version: %v\n%s", err, out)
	}
	want := "hyperpool-manager " + version + " (revision " + revision + ")"
	if got := strings.TrimSpace(string(out)); got != want {
		t.Errorf("manager --version printed %q, want %q", got, want)
	}
}

// Each platform's tarball loads (docker load reads manifest.json) as the same image, tagged
// with the version.
func TestDockerLoadTarballs(t *testing.T) {
	dir := imagesDir(t)
	type tarballCase struct {
		image, repository, platform string
	}
	var tests []tarballCase
	for _, p := range managerPlatforms() {
		tests = append(tests, tarballCase{"hyperpool-manager", managerRepository, p})
	}
	tests = append(tests, tarballCase{"hyperpool-node-agent", nodeAgentRepository, "windows/amd64"})
	for _, tc := range tests {
		t.Run(tc.image+"/"+tc.platform, func(t *testing.T) {
			file := filepath.Join(dir, tc.image+"-"+version+"-"+strings.ReplaceAll(tc.platform, "/", "-")+".tar")
			tag, err := name.NewTag(tc.repository + ":" + version)
			if err != nil {
				t.Fatal(err)
			}
			m, err := tarball.LoadManifest(func() (io.ReadCloser, error) { return os.Open(file) })
			if err != nil {
				t.Fatalf("%s: %v", file, err)
			}
			if len(m) != 1 || !slices.Equal(m[0].RepoTags, []string{tag.String()}) {
				t.Errorf("manifest.json %+v, want one image tagged %s", m, tag)
			}
			loaded, err := tarball.ImageFromPath(file, &tag)
			if err != nil {
				t.Fatal(err)
			}
			want := platformImages(t, readLayout(t, filepath.Join(dir, tc.image)))[tc.platform]
			if want == nil {
				t.Fatalf("no %s in the layout", tc.platform)
			}
			gotCfg, _ := loaded.ConfigName()
			wantCfg, _ := want.ConfigName()
			gotLayers, _ := loaded.Layers()
			wantLayers, _ := want.Layers()
			if gotCfg != wantCfg || len(gotLayers) != len(wantLayers) {
				t.Errorf("the tarball's image (config %s, %d layers) is not the layout's (config %s, %d layers)", gotCfg, len(gotLayers), wantCfg, len(wantLayers))
			}
		})
	}
}

// The node agent: a Windows image whose layer is a Windows layer (Files/, Hives/) holding an
// amd64 Windows executable.
func TestNodeAgentImage(t *testing.T) {
	images := platformImages(t, readLayout(t, filepath.Join(imagesDir(t), "hyperpool-node-agent")))
	if got := keys(images); !slices.Equal(got, []string{"windows/amd64"}) {
		t.Fatalf("the node agent's index lists %v, want [windows/amd64]", got)
	}
	img := images["windows/amd64"]
	cfg, err := img.ConfigFile()
	if err != nil {
		t.Fatal(err)
	}
	if cfg.OS != "windows" || cfg.Architecture != "amd64" {
		t.Errorf("config os/arch %s/%s, want windows/amd64", cfg.OS, cfg.Architecture)
	}
	if !slices.Equal(cfg.Config.Entrypoint, []string{"hyperpool-node-agent.exe"}) {
		t.Errorf("entrypoint %q, want [hyperpool-node-agent.exe]", cfg.Config.Entrypoint)
	}
	for k, v := range wantLabels() {
		if cfg.Config.Labels[k] != v {
			t.Errorf("label %s = %q, want %q", k, cfg.Config.Labels[k], v)
		}
	}
	files := layerFiles(t, img)
	for _, dir := range []string{"Files", "Hives"} {
		if h := files[dir]; h == nil || h.Typeflag != tar.TypeDir {
			t.Errorf("the layer has no %s directory (a Windows layer has Files and Hives): %v", dir, keys(files))
		}
	}
	h := files["Files/hyperpool-node-agent.exe"]
	if h == nil {
		t.Fatalf("no Files/hyperpool-node-agent.exe in the layer: %v", keys(files))
	}
	if h.PAXRecords["MSWINDOWS.rawsd"] == "" {
		t.Errorf("Files/hyperpool-node-agent.exe has no MSWINDOWS.rawsd security descriptor: Windows would not execute it")
	}
	exe := filepath.Join(t.TempDir(), "agent.exe")
	extract(t, img, "Files/hyperpool-node-agent.exe", exe)
	f, err := pe.Open(exe)
	if err != nil {
		t.Fatalf("the node agent is not a PE executable: %v", err)
	}
	defer func() { _ = f.Close() }()
	if f.Machine != pe.IMAGE_FILE_MACHINE_AMD64 {
		t.Errorf("PE machine %#x, want amd64 (%#x)", f.Machine, pe.IMAGE_FILE_MACHINE_AMD64)
	}
}

// Two builds of one commit are one image: every time in it is the commit's.
func TestManagerImageIsReproducible(t *testing.T) {
	platform := hostPlatform
	first := platformImages(t, readLayout(t, filepath.Join(imagesDir(t), "hyperpool-manager")))[platform]
	if first == nil {
		t.Skipf("no manager image for %s", platform)
	}
	dir := filepath.Join(t.TempDir(), "images")
	if _, err := release(t, 10*time.Minute, "images", "-out", dir, "-revision", revision, "-platforms", platform, "-node-agent=false"); err != nil {
		t.Fatal(err)
	}
	second := platformImages(t, readLayout(t, filepath.Join(dir, "hyperpool-manager")))[platform]
	d1, err := first.Digest()
	if err != nil {
		t.Fatal(err)
	}
	d2, err := second.Digest()
	if err != nil {
		t.Fatal(err)
	}
	if d1 != d2 {
		t.Errorf("two builds of one commit differ: %s, then %s", d1, d2)
	}
}
