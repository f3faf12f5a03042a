package main

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strings"

	"k8s.io/apimachinery/pkg/util/version"
	"sigs.k8s.io/kustomize/api/krusty"
	"sigs.k8s.io/kustomize/api/resmap"
	"sigs.k8s.io/kustomize/kyaml/filesys"
	"sigs.k8s.io/yaml"
)

// imageRegistry is where the chart and config/manager pull hyperpool's images from.
const imageRegistry = "ghcr.io/hyperpool/"

// chart is what this program reads of Chart.yaml.
type chart struct {
	Version    string `json:"version"`
	AppVersion string `json:"appVersion"`
}

func readChart(root string) (chart, error) {
	var c chart
	p := filepath.Join(root, "charts", "hyperpool", "Chart.yaml")
	b, err := os.ReadFile(p)
	if err != nil {
		return c, err
	}
	if err := yaml.Unmarshal(b, &c); err != nil {
		return c, fmt.Errorf("%s: %w", p, err)
	}
	if c.AppVersion == "" {
		return c, fmt.Errorf("%s has no appVersion: it is the release version", p)
	}
	return c, nil
}

// releaseVersion is the one version: appVersion of Chart.yaml. want, if set (the Makefile's
// VERSION), must be the same.
func releaseVersion(root, want string) (string, error) {
	c, err := readChart(root)
	if err != nil {
		return "", err
	}
	if want != "" && want != c.AppVersion {
		return "", fmt.Errorf("-version %q differs from appVersion %q of charts/hyperpool/Chart.yaml, the one source of the version", want, c.AppVersion)
	}
	return c.AppVersion, nil
}

// checkVersion fails, naming every disagreement, unless the chart's version and appVersion,
// the image tags of the chart's values and the kustomize install, and want (the Makefile's
// VERSION, if set) are one semantic version. The binaries and the images get it from the same
// Makefile variable; test/images checks those.
func checkVersion(root, want string) error {
	c, err := readChart(root)
	if err != nil {
		return err
	}
	v := c.AppVersion
	var problems []string
	if _, err := version.ParseSemantic(v); err != nil {
		problems = append(problems, fmt.Sprintf("appVersion %q of charts/hyperpool/Chart.yaml is not a semantic version (%v): use MAJOR.MINOR.PATCH", v, err))
	}
	if c.Version != v {
		problems = append(problems, fmt.Sprintf("charts/hyperpool/Chart.yaml: version %q differs from appVersion %q: set both to the release version", c.Version, v))
	}
	if want != "" && want != v {
		problems = append(problems, fmt.Sprintf("the Makefile's VERSION %q differs from appVersion %q of charts/hyperpool/Chart.yaml", want, v))
	}
	tags, err := valuesImageTags(root)
	if err != nil {
		return err
	}
	for key, tag := range tags {
		if tag != "" && tag != v {
			problems = append(problems, fmt.Sprintf("charts/hyperpool/values.yaml: %s is %q, not %q: leave it empty (it defaults to appVersion)", key, tag, v))
		}
	}
	images, err := kustomizeImages(root)
	if err != nil {
		return err
	}
	for _, image := range images {
		if strings.HasPrefix(image, imageRegistry) && !strings.HasSuffix(image, ":"+v) {
			problems = append(problems, fmt.Sprintf("config/default renders image %s, not tag %s: set it in config/manager/manager.yaml", image, v))
		}
	}
	if len(problems) > 0 {
		sort.Strings(problems)
		return errors.New("the version's copies disagree:\n  " + strings.Join(problems, "\n  "))
	}
	return nil
}

// valuesImageTags returns the image tags the chart's values.yaml sets, by key.
func valuesImageTags(root string) (map[string]string, error) {
	p := filepath.Join(root, "charts", "hyperpool", "values.yaml")
	b, err := os.ReadFile(p)
	if err != nil {
		return nil, err
	}
	var values struct {
		Image struct {
			Tag string `json:"tag"`
		} `json:"image"`
		NodeAgent struct {
			Image struct {
				Tag string `json:"tag"`
			} `json:"image"`
		} `json:"nodeAgent"`
	}
	if err := yaml.Unmarshal(b, &values); err != nil {
		return nil, fmt.Errorf("%s: %w", p, err)
	}
	return map[string]string{"image.tag": values.Image.Tag, "nodeAgent.image.tag": values.NodeAgent.Image.Tag}, nil
}

// kustomize renders config/default, as `kubectl kustomize config/default` does.
func kustomize(root string) (resmap.ResMap, error) {
	dir := filepath.Join(root, "config", "default")
	m, err := krusty.MakeKustomizer(krusty.MakeDefaultOptions()).Run(filesys.MakeFsOnDisk(), dir)
	if err != nil {
		return nil, fmt.Errorf("kustomize %s: %w", dir, err)
	}
	return m, nil
}

// kustomizeImages returns every container image config/default renders.
func kustomizeImages(root string) ([]string, error) {
	m, err := kustomize(root)
	if err != nil {
		return nil, err
	}
	var images []string
	for _, r := range m.Resources() {
		obj, err := r.Map()
		if err != nil {
			return nil, err
		}
		images = append(images, containerImages(obj)...)
	}
	return images, nil
}

// containerImages walks an object for the image of every container (pods, pod templates).
// CRD schemas also have "image" keys, but their values are schemas, not strings.
func containerImages(v any) []string {
	var out []string
	switch t := v.(type) {
	case map[string]any:
		for k, e := range t {
			if s, ok := e.(string); ok && k == "image" {
				out = append(out, s)
				continue
			}
			out = append(out, containerImages(e)...)
		}
	case []any:
		for _, e := range t {
			out = append(out, containerImages(e)...)
		}
	}
	return out
}

// gitRevision is the commit checked out at root, or "unknown" outside a git checkout.
func gitRevision(ctx context.Context, root string) string {
	out, err := exec.CommandContext(ctx, "git", "-C", root, "rev-parse", "HEAD").Output()
	if err != nil {
		return "unknown"
	}
	return strings.TrimSpace(string(out))
}
