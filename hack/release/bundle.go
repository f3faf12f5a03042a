package main

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strings"

	"sigs.k8s.io/yaml"
)

type bundleOptions struct {
	root, out, images, helm string
	version                 string
}

// writeBundle writes the release bundle into o.out:
//
//	hyperpool-VERSION.tgz   the chart (helm package)
//	*.tar                   the images' docker-load tarballs (from o.images)
//	crds.yaml               every CRD, for kubectl apply --server-side -f
//	install.yaml            config/default rendered by kustomize
//	SHA256SUMS              of all of the above, for sha256sum -c
func writeBundle(ctx context.Context, o bundleOptions) error {
	tarballs, err := filepath.Glob(filepath.Join(o.images, "*-"+o.version+"-*.tar"))
	if err != nil {
		return err
	}
	if len(tarballs) == 0 {
		return fmt.Errorf("no image tarballs of version %s in %s: run make images first", o.version, o.images)
	}
	if err := os.RemoveAll(o.out); err != nil {
		return err
	}
	if err := os.MkdirAll(o.out, 0o755); err != nil {
		return err
	}
	files := []string{}
	chartFile, err := packageChart(ctx, o)
	if err != nil {
		return err
	}
	files = append(files, chartFile)
	for _, src := range tarballs {
		dst := filepath.Join(o.out, filepath.Base(src))
		if err := copyFile(src, dst); err != nil {
			return err
		}
		files = append(files, dst)
	}
	crds, err := crdBundle(o.root, o.version)
	if err != nil {
		return err
	}
	install, err := installManifest(o.root, o.version)
	if err != nil {
		return err
	}
	for name, content := range map[string][]byte{"crds.yaml": crds, "install.yaml": install} {
		p := filepath.Join(o.out, name)
		if err := os.WriteFile(p, content, 0o644); err != nil {
			return err
		}
		files = append(files, p)
	}
	sums, err := sha256Sums(files)
	if err != nil {
		return err
	}
	if err := os.WriteFile(filepath.Join(o.out, "SHA256SUMS"), sums, 0o644); err != nil {
		return err
	}
	fmt.Printf("release %s in %s:\n%s", o.version, o.out, sums)
	return nil
}

// packageChart runs helm package on charts/hyperpool and returns the archive's path.
func packageChart(ctx context.Context, o bundleOptions) (string, error) {
	chartDir := filepath.Join(o.root, "charts", "hyperpool")
	var stderr bytes.Buffer
	cmd := exec.CommandContext(ctx, o.helm, "package", chartDir, "--destination", o.out)
	cmd.Stderr = &stderr
	if err := cmd.Run(); err != nil {
		return "", fmt.Errorf("helm package %s: %w\n%s", chartDir, err, stderr.String())
	}
	p := filepath.Join(o.out, "hyperpool-"+o.version+".tgz")
	if _, err := os.Stat(p); err != nil {
		return "", fmt.Errorf("helm package wrote no %s (is the chart's version %s?): %w", p, o.version, err)
	}
	return p, nil
}

// crdBundle is every CRD of config/crd/bases in one file, each labelled with the version,
// so a cluster says which release its CRDs came from.
func crdBundle(root, version string) ([]byte, error) {
	paths, err := filepath.Glob(filepath.Join(root, "config", "crd", "bases", "*.yaml"))
	if err != nil {
		return nil, err
	}
	if len(paths) == 0 {
		return nil, fmt.Errorf("no CRDs in %s: run make manifests", filepath.Join(root, "config", "crd", "bases"))
	}
	sort.Strings(paths)
	var out bytes.Buffer
	fmt.Fprintf(&out, "# hyperpool %s: the CustomResourceDefinitions. Install or upgrade them with\n", version)
	fmt.Fprintf(&out, "#   kubectl apply --server-side -f crds.yaml\n")
	for _, p := range paths {
		b, err := os.ReadFile(p)
		if err != nil {
			return nil, err
		}
		var crd map[string]any
		if err := yaml.Unmarshal(b, &crd); err != nil {
			return nil, fmt.Errorf("%s: %w", p, err)
		}
		if crd["kind"] != "CustomResourceDefinition" {
			return nil, fmt.Errorf("%s holds a %v, not a CustomResourceDefinition", p, crd["kind"])
		}
		setVersionLabels(crd, version)
		y, err := yaml.Marshal(crd)
		if err != nil {
			return nil, err
		}
		out.WriteString("---\n")
		out.Write(y)
	}
	return out.Bytes(), nil
}

// installManifest is config/default rendered by kustomize, with a header saying how to use it.
func installManifest(root, version string) ([]byte, error) {
	m, err := kustomize(root)
	if err != nil {
		return nil, err
	}
	y, err := m.AsYaml()
	if err != nil {
		return nil, err
	}
	header := fmt.Sprintf("# hyperpool %s: what `helm install` installs with default values, in namespace\n"+
		"# hyperpool-system (config/default rendered by kustomize). Install with\n"+
		"#   kubectl apply --server-side -f install.yaml\n", version)
	return append([]byte(header), y...), nil
}

// setVersionLabels adds the recommended name and version labels to an object.
func setVersionLabels(obj map[string]any, version string) {
	meta, _ := obj["metadata"].(map[string]any)
	if meta == nil {
		meta = map[string]any{}
		obj["metadata"] = meta
	}
	labels, _ := meta["labels"].(map[string]any)
	if labels == nil {
		labels = map[string]any{}
		meta["labels"] = labels
	}
	labels["app.kubernetes.io/name"] = "hyperpool"
	labels["app.kubernetes.io/version"] = version
}

// sha256Sums is the content of a SHA256SUMS file for files, in the format of sha256sum.
func sha256Sums(files []string) ([]byte, error) {
	sort.Slice(files, func(i, j int) bool { return filepath.Base(files[i]) < filepath.Base(files[j]) })
	var b strings.Builder
	for _, p := range files {
		f, err := os.Open(p)
		if err != nil {
			return nil, err
		}
		h := sha256.New()
		_, err = io.Copy(h, f)
		_ = f.Close()
		if err != nil {
			return nil, err
		}
		fmt.Fprintf(&b, "%s  %s\n", hex.EncodeToString(h.Sum(nil)), filepath.Base(p))
	}
	return []byte(b.String()), nil
}

func copyFile(src, dst string) error {
	in, err := os.Open(src)
	if err != nil {
		return err
	}
	defer func() { _ = in.Close() }()
	out, err := os.Create(dst)
	if err != nil {
		return err
	}
	if _, err := io.Copy(out, in); err != nil {
		_ = out.Close()
		return err
	}
	return out.Close()
}
