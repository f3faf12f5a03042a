package main

import (
	"archive/tar"
	"context"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"github.com/google/go-containerregistry/pkg/authn"
	"github.com/google/go-containerregistry/pkg/crane"
	"github.com/google/go-containerregistry/pkg/name"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/empty"
	"github.com/google/go-containerregistry/pkg/v1/layout"
	"github.com/google/go-containerregistry/pkg/v1/mutate"
	"github.com/google/go-containerregistry/pkg/v1/remote"
	"github.com/google/go-containerregistry/pkg/v1/tarball"
	"github.com/google/go-containerregistry/pkg/v1/types"
)

const (
	managerRepository   = imageRegistry + "hyperpool-manager"
	nodeAgentRepository = imageRegistry + "hyperpool-node-agent"

	// hostProcessBase is the base image Kubernetes publishes for HostProcess containers: a
	// Windows image with a nearly empty base layer. It lives on mcr.microsoft.com, which this
	// machine cannot reach; see docs/install.md for the command that builds on it.
	hostProcessBase = "mcr.microsoft.com/oss/kubernetes/windows-host-process-containers-base-image:v1.0.0"

	// nonRoot is distroless' "nonroot" user and group, as in kubebuilder's Dockerfile; the
	// chart's securityContext requires a non-root user.
	nonRoot = "65532:65532"

	// versionPackage receives the version and revision at link time (-ldflags -X).
	versionPackage = "github.com/hyperpool/hyperpool/internal/version"

	// ociRefName is the layout annotation naming an image (its tag), as `crane push` and
	// `skopeo copy oci:DIR:TAG` read it.
	ociRefName = "org.opencontainers.image.ref.name"
)

type imageOptions struct {
	root, out         string
	version, revision string
	// platforms of the manager image, as os/arch.
	platforms     []string
	nodeAgent     bool
	nodeAgentBase string
}

// buildImages writes, under o.out, for each image an OCI layout (a directory, tagged with
// the version) and one docker-load tarball per platform:
//
//	hyperpool-manager/                               index of linux/amd64 and linux/arm64
//	hyperpool-manager-VERSION-linux-amd64.tar        docker load, tagged ghcr.io/hyperpool/hyperpool-manager:VERSION
//	hyperpool-node-agent/                            index of windows/amd64
//	hyperpool-node-agent-VERSION-windows-amd64.tar
func buildImages(ctx context.Context, o imageOptions) error {
	if err := os.RemoveAll(o.out); err != nil {
		return err
	}
	if err := os.MkdirAll(o.out, 0o755); err != nil {
		return err
	}
	work, err := os.MkdirTemp("", "hyperpool-images-")
	if err != nil {
		return err
	}
	defer func() { _ = os.RemoveAll(work) }()
	// Every time in the images (file times, the config's created) is the commit's, so two
	// builds of one commit are byte-identical and have one digest.
	created := commitTime(ctx, o.root)
	labels := map[string]string{
		"org.opencontainers.image.source":   "https://github.com/hyperpool/hyperpool",
		"org.opencontainers.image.version":  o.version,
		"org.opencontainers.image.revision": o.revision,
		// hack/boilerplate.go.txt: every source file is under the Apache License 2.0.
		"org.opencontainers.image.licenses": "Apache-2.0",
	}

	if len(o.platforms) > 0 {
		var platforms []v1.Platform
		for _, p := range o.platforms {
			pl, err := v1.ParsePlatform(p)
			if err != nil {
				return fmt.Errorf("-platforms: %w", err)
			}
			if pl.OS != "linux" {
				return fmt.Errorf("-platforms %s: the manager image is for linux only", p)
			}
			platforms = append(platforms, *pl)
		}
		err := writeImage(ctx, o, "hyperpool-manager", managerRepository, platforms, func(p v1.Platform) (v1.Image, error) {
			bin := filepath.Join(work, "manager-"+p.Architecture)
			if err := goBuild(ctx, o, p, "./cmd/manager", bin); err != nil {
				return nil, err
			}
			return managerImage(bin, p, labels, created, work)
		})
		if err != nil {
			return err
		}
	}
	if o.nodeAgent {
		p := v1.Platform{OS: "windows", Architecture: "amd64"}
		err := writeImage(ctx, o, "hyperpool-node-agent", nodeAgentRepository, []v1.Platform{p}, func(p v1.Platform) (v1.Image, error) {
			bin := filepath.Join(work, "hyperpool-node-agent.exe")
			if err := goBuild(ctx, o, p, "./cmd/node-agent", bin); err != nil {
				return nil, err
			}
			return nodeAgentImage(ctx, bin, o.nodeAgentBase, labels, created, work)
		})
		if err != nil {
			return err
		}
		if o.nodeAgentBase == "" {
			fmt.Fprintf(os.Stderr, "release: the node agent image has no Windows base layer (none can be downloaded here); "+
				"for a release, build it on %s: make images NODE_AGENT_BASE=%s (docs/install.md)\n", hostProcessBase, hostProcessBase)
		}
	}
	return nil
}

// writeImage builds the image of each platform and writes the OCI layout dir/<image> (one
// index, tagged with the version) and a docker-load tarball per platform.
func writeImage(ctx context.Context, o imageOptions, image, repository string, platforms []v1.Platform, build func(v1.Platform) (v1.Image, error)) error {
	tag, err := name.NewTag(repository + ":" + o.version)
	if err != nil {
		return err
	}
	var index v1.ImageIndex = empty.Index
	for _, p := range platforms {
		if err := ctx.Err(); err != nil {
			return err
		}
		img, err := build(p)
		if err != nil {
			return fmt.Errorf("%s for %s: %w", image, p, err)
		}
		cfg, err := img.ConfigFile()
		if err != nil {
			return err
		}
		// The descriptor's platform is what a runtime chooses by; it is the image's own.
		index = mutate.AppendManifests(index, mutate.IndexAddendum{Add: img, Descriptor: v1.Descriptor{Platform: cfg.Platform()}})
		file := filepath.Join(o.out, fmt.Sprintf("%s-%s-%s-%s.tar", image, o.version, p.OS, p.Architecture))
		if err := tarball.WriteToFile(file, tag, img); err != nil {
			return fmt.Errorf("writing %s: %w", file, err)
		}
	}
	dir, err := layout.Write(filepath.Join(o.out, image), empty.Index)
	if err != nil {
		return err
	}
	if err := dir.AppendIndex(index, layout.WithAnnotations(map[string]string{ociRefName: o.version})); err != nil {
		return fmt.Errorf("writing the OCI layout of %s: %w", image, err)
	}
	digest, err := index.Digest()
	if err != nil {
		return err
	}
	fmt.Printf("%s@%s %s\n", tag, digest, filepath.Join(o.out, image))
	return nil
}

// goBuild cross-compiles a static, stripped binary with the version stamped in.
func goBuild(ctx context.Context, o imageOptions, p v1.Platform, pkg, out string) error {
	ldflags := fmt.Sprintf("-s -w -X %s.Version=%s -X %s.Revision=%s", versionPackage, o.version, versionPackage, o.revision)
	cmd := exec.CommandContext(ctx, "go", "build", "-trimpath", "-ldflags", ldflags, "-o", out, pkg)
	cmd.Dir = o.root
	cmd.Env = append(os.Environ(), "CGO_ENABLED=0", "GOOS="+p.OS, "GOARCH="+p.Architecture)
	cmd.Stdout, cmd.Stderr = os.Stderr, os.Stderr
	if err := cmd.Run(); err != nil {
		return fmt.Errorf("go build %s for %s/%s: %w", pkg, p.OS, p.Architecture, err)
	}
	return nil
}

// managerImage is the manager's image: an empty base, one layer holding /manager, run as
// the non-root user from /.
func managerImage(bin string, p v1.Platform, labels map[string]string, created time.Time, work string) (v1.Image, error) {
	base, err := baseImage(&v1.ConfigFile{
		OS:           p.OS,
		Architecture: p.Architecture,
		Variant:      p.Variant,
		Created:      v1.Time{Time: created},
		Config: v1.Config{
			User:       nonRoot,
			WorkingDir: "/",
			Entrypoint: []string{"/manager"},
			Labels:     labels,
		},
	})
	if err != nil {
		return nil, err
	}
	layerTar := filepath.Join(work, "manager-"+p.Architecture+".tar")
	if err := fileTar(layerTar, bin, "manager", 0o755, created); err != nil {
		return nil, err
	}
	img, err := crane.Append(base, layerTar)
	if err != nil {
		return nil, err
	}
	return withHistory(img, created, "hack/release: go build ./cmd/manager")
}

// nodeAgentImage is the node agent's Windows image: the binary in a Windows layer
// (Files/hyperpool-node-agent.exe), run as a HostProcess container, on baseRef if set.
//
// A HostProcess container runs on the host, not in a container OS, so the base brings no
// files the agent needs; but a Windows runtime unpacks an image's first layer as a base
// layer, which HCS checks for registry hives (Files/Windows/System32/config), so Microsoft
// publishes hostProcessBase with minimal hives. With baseRef empty the image has the
// agent's layer alone: the config and layer are what a release ships, the base is missing.
func nodeAgentImage(ctx context.Context, bin, baseRef string, labels map[string]string, created time.Time, work string) (v1.Image, error) {
	cfg := v1.Config{
		// containerd (1.7+) mounts a HostProcess container's image at
		// %CONTAINER_SANDBOX_MOUNT_POINT% and starts it there.
		Entrypoint: []string{"hyperpool-node-agent.exe"},
		Labels:     labels,
	}
	var base v1.Image
	if baseRef != "" {
		ref, err := name.ParseReference(baseRef)
		if err != nil {
			return nil, fmt.Errorf("-node-agent-base: %w", err)
		}
		pulled, err := remote.Image(ref, remote.WithContext(ctx), remote.WithAuthFromKeychain(authn.DefaultKeychain),
			remote.WithPlatform(v1.Platform{OS: "windows", Architecture: "amd64"}))
		if err != nil {
			return nil, fmt.Errorf("pulling the node agent's base %s: %w", baseRef, err)
		}
		// The base's own config stays (os, os.version); the agent's entrypoint and labels
		// replace the base's.
		if base, err = mutate.Config(pulled, cfg); err != nil {
			return nil, err
		}
		if base, err = mutate.CreatedAt(base, v1.Time{Time: created}); err != nil {
			return nil, err
		}
	} else {
		var err error
		// No os.version: containerd picks a HostProcess image for any Windows build only
		// when its platform names none (a process-isolated image must match the host's).
		base, err = baseImage(&v1.ConfigFile{OS: "windows", Architecture: "amd64", Created: v1.Time{Time: created}, Config: cfg})
		if err != nil {
			return nil, err
		}
	}
	c, err := base.ConfigFile()
	if err != nil {
		return nil, fmt.Errorf("reading the node agent's base %s: %w", baseRef, err)
	}
	if c.OS != "windows" {
		return nil, fmt.Errorf("the node agent's base %s is a %s image, not a Windows one", baseRef, c.OS)
	}
	layerTar := filepath.Join(work, "node-agent.tar")
	if err := fileTar(layerTar, bin, "hyperpool-node-agent.exe", 0o755, created); err != nil {
		return nil, err
	}
	// crane.Append turns the layer into a Windows layer (Files/, Hives/, the security
	// descriptor that makes the binary executable) because the base's os is windows.
	img, err := crane.Append(base, layerTar)
	if err != nil {
		return nil, err
	}
	return withHistory(img, created, "hack/release: go build ./cmd/node-agent")
}

// withHistory says, in the history entry of the image's top layer (crane.Append leaves it
// empty), when and how the layer was made: what `docker history` and `crane config` show.
func withHistory(img v1.Image, created time.Time, createdBy string) (v1.Image, error) {
	cfg, err := img.ConfigFile()
	if err != nil {
		return nil, err
	}
	cfg = cfg.DeepCopy()
	if n := len(cfg.History); n > 0 {
		cfg.History[n-1].Created = v1.Time{Time: created}
		cfg.History[n-1].CreatedBy = createdBy
	}
	return mutate.ConfigFile(img, cfg)
}

// baseImage is an empty OCI image with the given config.
func baseImage(cfg *v1.ConfigFile) (v1.Image, error) {
	img := mutate.MediaType(empty.Image, types.OCIManifestSchema1)
	img = mutate.ConfigMediaType(img, types.OCIConfigJSON)
	return mutate.ConfigFile(img, cfg)
}

// fileTar writes a tar stream holding one file, name, with the content of src, owned by
// root, with mode and modification time mtime. go-containerregistry's crane.Layer writes
// file maps with mode 0, which the non-root user could not execute; the layer's compression,
// digests, Windows conversion, manifests and layouts are all go-containerregistry's.
func fileTar(out, src, name string, mode int64, mtime time.Time) error {
	in, err := os.Open(src)
	if err != nil {
		return err
	}
	defer func() { _ = in.Close() }()
	st, err := in.Stat()
	if err != nil {
		return err
	}
	f, err := os.Create(out)
	if err != nil {
		return err
	}
	tw := tar.NewWriter(f)
	hdr := &tar.Header{Name: name, Mode: mode, Size: st.Size(), ModTime: mtime, Typeflag: tar.TypeReg, Format: tar.FormatPAX}
	if err := tw.WriteHeader(hdr); err != nil {
		_ = f.Close()
		return err
	}
	if _, err := io.Copy(tw, in); err != nil {
		_ = f.Close()
		return err
	}
	if err := tw.Close(); err != nil {
		_ = f.Close()
		return err
	}
	return f.Close()
}

// commitTime is the time of the commit checked out at root (the Unix epoch outside git).
func commitTime(ctx context.Context, root string) time.Time {
	out, err := exec.CommandContext(ctx, "git", "-C", root, "log", "-1", "--format=%ct").Output()
	if err != nil {
		return time.Unix(0, 0).UTC()
	}
	sec, err := strconv.ParseInt(strings.TrimSpace(string(out)), 10, 64)
	if err != nil {
		return time.Unix(0, 0).UTC()
	}
	return time.Unix(sec, 0).UTC()
}
