//go:build !windows

package testbed

import (
	"context"
	"fmt"
	"os"
	"path/filepath"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/types"
)

// startComponents starts kube-scheduler, kube-controller-manager and kwok, without waiting
// for them: they become useful within about a second, and tests poll for results anyway.
func (e *Env) startComponents(opts Options) error {
	if !opts.DisableScheduler {
		if err := e.startComponent("kube-scheduler", schedulerArgs(e.KubeconfigPath)); err != nil {
			return err
		}
	}
	if !opts.DisableControllerManager {
		if err := e.startComponent("kube-controller-manager", controllerManagerArgs(e.KubeconfigPath)); err != nil {
			return err
		}
	}
	stagesPath := filepath.Join(e.Dir, "kwok-stages.yaml")
	if err := os.WriteFile(stagesPath, []byte(kwokStages(opts.PodReadyDelay)), 0o644); err != nil {
		return fmt.Errorf("write kwok stages: %w", err)
	}
	return e.startComponent("kwok", kwokArgs(e.KubeconfigPath, stagesPath))
}

// schedulerArgs: no leader election (one replica, and it would delay the first
// scheduling), no serving port (nothing scrapes it, and two test beds would collide).
func schedulerArgs(kubeconfig string) []string {
	return []string{
		"--kubeconfig=" + kubeconfig,
		"--leader-elect=false",
		"--secure-port=0",
	}
}

// controllerManagerArgs runs every default controller except the legacy ServiceAccount
// token controller, which needs a signing key and whose Secrets nothing here uses (pods get
// projected tokens, and the test pods disable automounting). The root CA it publishes to
// each namespace is taken from the kubeconfig, so --root-ca-file is not needed.
//
// A node is judged unresponsive after 5 minutes without a Lease renewal, not the default
// 50 s: kwok renews every 10 s, but with 1,000 simulated nodes on a saturated 2-core
// machine its renewals fell to one every ~50 s per node (the 10,000-session benchmark),
// past the default, and the node lifecycle controller would taint nodes that are only slow
// and evict their pods. A simulated node never fails here on its own; tests that need one
// gone delete it.
func controllerManagerArgs(kubeconfig string) []string {
	return []string{
		"--kubeconfig=" + kubeconfig,
		"--leader-elect=false",
		"--secure-port=0",
		"--controllers=*,-serviceaccount-token",
		"--node-monitor-grace-period=5m",
	}
}

// startComponent starts one of the test bed's own processes from BinDir.
func (e *Env) startComponent(name string, args []string) error {
	c, err := startChild(e.thread, name, filepath.Join(e.BinDir, name), args, e.logPath(name))
	if err != nil {
		return err
	}
	e.children = append(e.children, c)
	return nil
}

// childrenAlive returns an error, quoting its log, for the first component that has exited.
func (e *Env) childrenAlive() error {
	for _, c := range e.children {
		if err := c.exitError(); err != nil {
			return err
		}
	}
	return nil
}

// waitForServiceAccount waits until the namespace's default ServiceAccount exists, which
// the ServiceAccount admission plugin requires before it admits a pod there.
func (e *Env) waitForServiceAccount(ctx context.Context, namespace string) error {
	key := types.NamespacedName{Namespace: namespace, Name: "default"}
	return e.poll(ctx, componentReadyTimeout, func(ctx context.Context) (bool, error) {
		err := e.Client.Get(ctx, key, &corev1.ServiceAccount{})
		if apierrors.IsNotFound(err) {
			return false, nil
		}
		return err == nil, err
	})
}
