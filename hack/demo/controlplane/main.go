//go:build !windows

// Command controlplane runs the test bed (etcd, kube-apiserver, kube-scheduler,
// kube-controller-manager and kwok) for `make demo`, creates simulated Windows nodes, writes
// a kubeconfig, and runs until SIGINT or SIGTERM, when it stops everything it started.
// It serves pods/exec for the simulated nodes (testbed.Options.ServeExec): a command runs
// as a local process in the pod's own directory, so `kubectl agents exec` and `cp` work
// (with --sandbox-os linux).
// hack/demo.sh starts it in the background and records its PID in .demo/.
package main

import (
	"context"
	"flag"
	"fmt"
	"os"
	"os/signal"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/hyperpool/hyperpool/test/testbed"
)

func main() {
	if err := run(); err != nil {
		fmt.Fprintln(os.Stderr, "controlplane:", err)
		os.Exit(1)
	}
}

func run() error {
	kubeconfig := flag.String("write-kubeconfig", ".demo/kubeconfig", "Where to write the admin kubeconfig.")
	nodes := flag.String("nodes", "win2022=10.0.20348:3,win2019=10.0.17763:1", "Simulated Windows nodes: prefix=build:count,...")
	bootDelay := flag.Duration("vm-boot-delay", 3*time.Second, "How long a simulated Hyper-V sandbox takes to become Ready.")
	flag.Parse()

	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGINT, syscall.SIGTERM)
	defer stop()
	begin := time.Now()
	// No CRDs from the test bed: the demo's `helm install` installs them from the chart.
	noCRDs, err := os.MkdirTemp("", "hyperpool-demo-nocrds-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(noCRDs)
	env, err := testbed.Start(ctx, testbed.Options{PodReadyDelay: *bootDelay, CRDDirectoryPaths: []string{noCRDs}, ServeExec: true})
	if err != nil {
		return err
	}
	defer func() {
		if err := env.Stop(); err != nil {
			fmt.Fprintln(os.Stderr, "controlplane: stop:", err)
		}
	}()
	fmt.Printf("control plane up in %s (%s); logs in %s\n", time.Since(begin).Round(time.Millisecond), env.StartReport(), env.LogDir)
	fmt.Printf("pods/exec served on 127.0.0.1:%d (the nodes' kubelet port): a command runs as a local process in its pod's own directory\n", env.ExecPort())

	for _, spec := range strings.Split(*nodes, ",") {
		prefix, rest, ok1 := strings.Cut(spec, "=")
		build, countText, ok2 := strings.Cut(rest, ":")
		count, err := strconv.Atoi(countText)
		if !ok1 || !ok2 || err != nil {
			return fmt.Errorf("bad --nodes entry %q, want prefix=build:count", spec)
		}
		created, err := env.CreateWindowsNodes(ctx, prefix, count, build)
		if err != nil {
			return err
		}
		for _, n := range created {
			fmt.Printf("node %s: %s (build %s), Ready\n", n.Name, n.Status.NodeInfo.OSImage, build)
		}
	}

	kc, err := os.ReadFile(env.KubeconfigPath)
	if err != nil {
		return err
	}
	if err := os.WriteFile(*kubeconfig+".tmp", kc, 0o600); err != nil {
		return err
	}
	if err := os.Rename(*kubeconfig+".tmp", *kubeconfig); err != nil {
		return err
	}
	fmt.Printf("kubeconfig: %s\n", *kubeconfig)
	<-ctx.Done()
	fmt.Println("stopping the control plane")
	return nil
}
