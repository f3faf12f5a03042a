package controllers

import (
	"context"
	"testing"

	corev1 "k8s.io/api/core/v1"
	nodev1 "k8s.io/api/node/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	clientgoscheme "k8s.io/client-go/kubernetes/scheme"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/client/fake"

	agentsv1alpha1 "github.com/hyperpool/hyperpool/api/v1alpha1"
	"github.com/hyperpool/hyperpool/internal/windows"
	"github.com/hyperpool/hyperpool/test/builders"
)

// A class without spec.runtimeClassName runs on the Hyper-V RuntimeClass of its image's
// guest build when the cluster has one, and on the generic one otherwise.
func TestRuntimeClassChoice(t *testing.T) {
	rc := func(name, handler string) client.Object {
		return &nodev1.RuntimeClass{ObjectMeta: metav1.ObjectMeta{Name: name}, Handler: handler}
	}
	generic, process := rc("hyperv", "runhcs-wcow-hypervisor"), rc("process", "runhcs-wcow-process")
	b17763, b20348, b26100 := rc("hyperv-17763", "runhcs-wcow-hypervisor-17763"), rc("hyperv-20348", "runhcs-wcow-hypervisor-20348"),
		rc("hyperv-26100", "runhcs-wcow-hypervisor-26100")
	custom := rc("custom", "runhcs-wcow-hypervisor")
	tests := []struct {
		name      string
		sandbox   *agentsv1alpha1.AgentSandbox
		classes   []client.Object
		want      string
		wantBlock string // a blocker reason instead
	}{
		{name: "the image's build has its class", sandbox: builders.AgentSandbox("ns", "p").ImageBuild(20348).Obj(),
			classes: []client.Object{generic, b17763, b20348, b26100}, want: "hyperv-20348"},
		{name: "a 2025 image", sandbox: builders.AgentSandbox("ns", "p").ImageBuild(26100).Obj(),
			classes: []client.Object{generic, b20348, b26100}, want: "hyperv-26100"},
		{name: "a 2019 image", sandbox: builders.AgentSandbox("ns", "p").ImageBuild(17763).Obj(),
			classes: []client.Object{generic, b17763, b20348}, want: "hyperv-17763"},
		{name: "no class of the image's build: the generic one", sandbox: builders.AgentSandbox("ns", "p").ImageBuild(20348).Obj(),
			classes: []client.Object{generic, b17763, b26100}, want: "hyperv"},
		{name: "no per-build classes at all", sandbox: builders.AgentSandbox("ns", "p").ImageBuild(20348).Obj(),
			classes: []client.Object{generic, process}, want: "hyperv"},
		{name: "spec.runtimeClassName wins", sandbox: builders.AgentSandbox("ns", "p").ImageBuild(20348).RuntimeClass("custom").Obj(),
			classes: []client.Object{generic, b20348, custom}, want: "custom"},
		{name: "process isolation never takes a Hyper-V build class",
			sandbox: builders.AgentSandbox("ns", "p").ImageBuild(20348).Isolation(agentsv1alpha1.IsolationProcess).Obj(),
			classes: []client.Object{generic, process, b20348}, want: "process"},
		{name: "neither exists: blocked, naming the generic class", sandbox: builders.AgentSandbox("ns", "p").ImageBuild(20348).Obj(),
			classes: []client.Object{b17763}, wantBlock: agentsv1alpha1.ReasonRuntimeClassNotFound},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			node := &corev1.Node{ObjectMeta: metav1.ObjectMeta{Name: "win-0",
				Labels: map[string]string{osLabel: "windows", windows.BuildLabel: "10.0.26100"}}}
			c := fake.NewClientBuilder().WithScheme(clientgoscheme.Scheme).WithObjects(append(tc.classes, node)...).Build()
			f := &podFactory{reader: c, config: DefaultConfig(), builds: &nodeBuilds{}}
			recipe, blk, err := f.recipe(context.Background(), tc.sandbox)
			if err != nil {
				t.Fatal(err)
			}
			if tc.wantBlock != "" {
				if blk == nil || blk.Reason != tc.wantBlock || recipe != nil {
					t.Fatalf("recipe %+v, blocker %+v; want blocked with %s", recipe, blk, tc.wantBlock)
				}
				return
			}
			if blk != nil {
				t.Fatalf("blocked: %+v", blk)
			}
			if recipe.runtimeClass != tc.want {
				t.Errorf("runtime class = %q, want %q", recipe.runtimeClass, tc.want)
			}
		})
	}
}
