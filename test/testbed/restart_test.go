//go:build !windows

package testbed_test

import (
	"os/exec"
	"strings"
	"testing"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/hyperpool/hyperpool/internal/podstate"
)

// TestRestartAPIServerKeepsDataAndClients restarts kube-apiserver while etcd keeps running:
// what was stored survives, the test bed's client and kubeconfig work again, and the
// components reconnect (a new pod is scheduled and made Ready). It is not parallel: the
// other tests would see the outage. Go runs it while the parallel tests wait.
func TestRestartAPIServerKeepsDataAndClients(t *testing.T) {
	ns := env.CreateNamespace(t)
	before := &corev1.ConfigMap{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "before-restart"},
		Data: map[string]string{"kept": "yes"}}
	if err := env.Client.Create(t.Context(), before); err != nil {
		t.Fatalf("create ConfigMap: %v", err)
	}
	oldPID := env.PIDs()["kube-apiserver"]

	if err := env.RestartAPIServer(t.Context()); err != nil {
		t.Fatal(err)
	}

	if newPID := env.PIDs()["kube-apiserver"]; oldPID != 0 && (newPID == 0 || newPID == oldPID) {
		t.Errorf("kube-apiserver PID %d after the restart, want a new one (was %d)", newPID, oldPID)
	}
	got := &corev1.ConfigMap{}
	if err := env.Client.Get(t.Context(), client.ObjectKeyFromObject(before), got); err != nil {
		t.Fatalf("get ConfigMap written before the restart: %v", err)
	}
	if got.Data["kept"] != "yes" || got.UID != before.UID {
		t.Errorf("ConfigMap after the restart: uid %s data %v, want uid %s data %v", got.UID, got.Data, before.UID, before.Data)
	}
	// Another process with the kubeconfig written at Start.
	out, err := exec.CommandContext(t.Context(), env.BinaryPath("kubectl"), "--kubeconfig="+env.KubeconfigPath,
		"get", "configmap", "-n", ns, before.Name, "-o", "name").CombinedOutput()
	if err != nil || strings.TrimSpace(string(out)) != "configmap/"+before.Name {
		t.Errorf("kubectl with the test bed's kubeconfig after the restart: %v: %s", err, out)
	}
	// kube-scheduler and kwok reconnect on their own.
	pod := createPod(t, windowsPod(ns, "after-restart"))
	waitForPod(t, pod, "Ready", podstate.Ready)
}
