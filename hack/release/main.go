// Command release builds hyperpool's container images and its release bundle with Go alone:
// no Docker engine, no buildx. An OCI image is a few files (layers, a config, manifests); go
// build makes the binaries and go-containerregistry writes the rest.
//
//	go run ./hack/release images        # bin/images: OCI layouts and docker-load tarballs
//	go run ./hack/release bundle        # bin/release: chart, image tarballs, crds.yaml, install.yaml, SHA256SUMS
//	go run ./hack/release chart -out D  # only `helm package` (what bundle does), for test/helm
//	go run ./hack/release check-version # fail when the version's copies disagree (make verify)
//
// The version is appVersion in charts/hyperpool/Chart.yaml (see internal/version); the
// Makefile's targets images, release and verify call this program. Run it from the
// repository root, or pass -root.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"os"
	"os/signal"
	"strings"
)

const usage = `usage: go run ./hack/release <images|bundle|chart|check-version> [flags]

  images         build the manager (multi-arch) and node agent images into -out (bin/images)
  bundle         write the release bundle into -out (bin/release) from the images in -images
  chart          helm package the chart into -out
  check-version  fail when the chart, the manifests or -version disagree on the version
`

func main() {
	if len(os.Args) < 2 {
		fmt.Fprint(os.Stderr, usage)
		os.Exit(2)
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt)
	err := run(ctx, os.Args[1], os.Args[2:])
	stop()
	if err != nil {
		fmt.Fprintln(os.Stderr, "release:", err)
		if errors.Is(err, flag.ErrHelp) {
			os.Exit(2)
		}
		os.Exit(1)
	}
}

func run(ctx context.Context, command string, args []string) error {
	fs := flag.NewFlagSet(command, flag.ContinueOnError)
	root := fs.String("root", ".", "The repository's root directory.")
	ver := fs.String("version", "", "The release version; default: appVersion of charts/hyperpool/Chart.yaml. check-version fails if it differs.")
	switch command {
	case "images":
		o := imageOptions{}
		fs.StringVar(&o.out, "out", "bin/images", "Directory to write the OCI layouts and tarballs into; replaced.")
		fs.StringVar(&o.revision, "revision", "", "Source revision for the binaries and the image labels; default: git rev-parse HEAD.")
		platforms := fs.String("platforms", "linux/amd64,linux/arm64", "Comma-separated platforms of the manager image.")
		fs.BoolVar(&o.nodeAgent, "node-agent", true, "Also build the Windows node agent image.")
		fs.StringVar(&o.nodeAgentBase, "node-agent-base", "", "Base image of the node agent, pulled from its registry, e.g. "+hostProcessBase+"; empty: no base layer (see docs/install.md).")
		if err := fs.Parse(args); err != nil {
			return err
		}
		v, err := releaseVersion(*root, *ver)
		if err != nil {
			return err
		}
		o.root, o.version = *root, v
		if o.revision == "" {
			o.revision = gitRevision(ctx, *root)
		}
		if *platforms != "" {
			o.platforms = strings.Split(*platforms, ",")
		}
		return buildImages(ctx, o)
	case "bundle", "chart":
		o := bundleOptions{}
		fs.StringVar(&o.out, "out", "bin/release", "Directory to write into; replaced.")
		fs.StringVar(&o.images, "images", "bin/images", "Directory of `images`' output.")
		fs.StringVar(&o.helm, "helm", "bin/k8s/helm", "The helm binary (hack/tools.sh builds it).")
		if err := fs.Parse(args); err != nil {
			return err
		}
		v, err := releaseVersion(*root, *ver)
		if err != nil {
			return err
		}
		o.root, o.version = *root, v
		if command == "chart" {
			if err := os.MkdirAll(o.out, 0o755); err != nil {
				return err
			}
			_, err := packageChart(ctx, o)
			return err
		}
		return writeBundle(ctx, o)
	case "check-version":
		if err := fs.Parse(args); err != nil {
			return err
		}
		return checkVersion(*root, *ver)
	default:
		fmt.Fprint(os.Stderr, usage)
		return fmt.Errorf("unknown command %q", command)
	}
}
