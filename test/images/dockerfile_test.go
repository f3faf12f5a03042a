//go:build !windows

package images_test

import (
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"

	"github.com/moby/buildkit/frontend/dockerfile/parser"
)

// instruction is one Dockerfile instruction: its name, its flags and its arguments.
type instruction struct {
	name  string
	flags []string
	args  []string
}

// stages parses hack/Dockerfile with buildkit's own parser and splits it into stages.
func stages(t *testing.T) [][]instruction {
	t.Helper()
	f, err := os.Open(filepath.Join(root, "hack", "Dockerfile"))
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = f.Close() }()
	res, err := parser.Parse(f)
	if err != nil {
		t.Fatalf("parsing hack/Dockerfile: %v", err)
	}
	var out [][]instruction
	for _, n := range res.AST.Children {
		in := instruction{name: strings.ToLower(n.Value), flags: n.Flags}
		for a := n.Next; a != nil; a = a.Next {
			in.args = append(in.args, a.Value)
		}
		if in.name == "from" || len(out) == 0 {
			out = append(out, nil)
		}
		out[len(out)-1] = append(out[len(out)-1], in)
	}
	return out
}

// last returns the stage's last instruction called name.
func last(t *testing.T, stage []instruction, name string) instruction {
	t.Helper()
	for i := len(stage) - 1; i >= 0; i-- {
		if stage[i].name == name {
			return stage[i]
		}
	}
	t.Fatalf("hack/Dockerfile: no %s in the stage", strings.ToUpper(name))
	return instruction{}
}

// The Dockerfile builds what `make images` builds: the same user, working directory,
// entrypoint, binary path and labels as the built manager image, the binary linked with the
// same version stamp, from the Go of go.mod and every directory the manager's packages are in.
func TestDockerfileMatchesImage(t *testing.T) {
	all := stages(t)
	if len(all) != 3 { // the global ARGs, the builder, the final image
		t.Fatalf("hack/Dockerfile has %d parts, want global ARGs, a builder stage and a final stage", len(all))
	}
	builder, final := all[1], all[2]

	img := platformImages(t, readLayout(t, filepath.Join(imagesDir(t), "hyperpool-manager")))[hostPlatform]
	if img == nil {
		t.Fatalf("no %s manager image", hostPlatform)
	}
	cfg, err := img.ConfigFile()
	if err != nil {
		t.Fatal(err)
	}
	files := keys(layerFiles(t, img))

	if from := final[0].args; len(from) == 0 || from[0] != "gcr.io/distroless/static:nonroot" {
		t.Errorf("final stage FROM %v, want gcr.io/distroless/static:nonroot", from)
	}
	if got := last(t, final, "user").args; !slices.Equal(got, []string{cfg.Config.User}) {
		t.Errorf("USER %v, the image's user is %q", got, cfg.Config.User)
	}
	if got := last(t, final, "workdir").args; !slices.Equal(got, []string{cfg.Config.WorkingDir}) {
		t.Errorf("WORKDIR %v, the image's is %q", got, cfg.Config.WorkingDir)
	}
	if got := last(t, final, "entrypoint").args; !slices.Equal(got, cfg.Config.Entrypoint) {
		t.Errorf("ENTRYPOINT %q, the image's is %q", got, cfg.Config.Entrypoint)
	}
	copyIn := last(t, final, "copy")
	if !slices.Contains(copyIn.flags, "--from=builder") || len(copyIn.args) != 2 || copyIn.args[1] != "/"+files[0] {
		t.Errorf("COPY %v %v, want --from=builder ... /%s (the image's layer holds %v)", copyIn.flags, copyIn.args, files[0], files)
	}

	// LABEL key value = key value = ...; versions are build arguments.
	labels := map[string]string{}
	args := last(t, final, "label").args
	for i := 0; i+1 < len(args); i += 3 {
		v, err := strconv.Unquote(args[i+1])
		if err != nil {
			v = args[i+1]
		}
		labels[args[i]] = v
	}
	want := map[string]string{}
	for k, v := range cfg.Config.Labels {
		want[k] = strings.NewReplacer(version, "${VERSION}", revision, "${REVISION}").Replace(v)
	}
	if got, w := keys(labels), keys(want); !slices.Equal(got, w) {
		t.Errorf("LABEL keys %v, the image's %v", got, w)
	}
	for k, v := range want {
		if labels[k] != v {
			t.Errorf("LABEL %s=%q, the image's is %q", k, labels[k], v)
		}
	}

	run := last(t, builder, "run").args
	build := strings.Join(run, " ")
	for _, s := range []string{
		"CGO_ENABLED=0", "-trimpath", "./cmd/manager",
		"-X github.com/hyperpool/hyperpool/internal/version.Version=${VERSION}",
		"-X github.com/hyperpool/hyperpool/internal/version.Revision=${REVISION}",
	} {
		if !strings.Contains(build, s) {
			t.Errorf("the builder's go build lacks %q: %s", s, build)
		}
	}

	mod, err := goCmd("list", "-m", "-f", "{{.Path}} {{.GoVersion}}").Output()
	if err != nil {
		t.Fatalf("go list -m: %v", err)
	}
	module, goVersion, _ := strings.Cut(strings.TrimSpace(string(mod)), " ")
	if got := last(t, all[0], "arg").args; !slices.Equal(got, []string{"GO_VERSION=" + goVersion}) {
		t.Errorf("ARG %v, want GO_VERSION=%s (go.mod's go directive)", got, goVersion)
	}

	copied := map[string]bool{}
	for _, in := range builder {
		if in.name == "copy" && len(in.args) > 1 {
			for _, src := range in.args[:len(in.args)-1] {
				copied[strings.TrimSuffix(src, "/")] = true
			}
		}
	}
	out, err := goCmd("list", "-deps", "-f", "{{if .Module}}{{if .Module.Main}}{{.ImportPath}}{{end}}{{end}}", "./cmd/manager").Output()
	if err != nil {
		t.Fatalf("go list -deps ./cmd/manager: %v", err)
	}
	for _, pkg := range strings.Fields(string(out)) {
		dir := strings.Split(strings.TrimPrefix(pkg, module+"/"), "/")[0]
		if !copied[dir] {
			t.Errorf("the manager imports %s, but the builder stage does not COPY %s/", pkg, dir)
		}
	}
}
