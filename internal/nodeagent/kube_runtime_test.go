package nodeagent

import (
	"context"
	"encoding/json"
	"maps"
	"slices"
	"testing"

	corev1 "k8s.io/api/core/v1"
	nodev1 "k8s.io/api/node/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	clientgoscheme "k8s.io/client-go/kubernetes/scheme"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/client/fake"
	"sigs.k8s.io/controller-runtime/pkg/client/interceptor"

	"github.com/hyperpool/hyperpool/internal/runtimereport"
)

// KubeNode.SetLabels patches only the keys under the prefix that change, keeps every other
// label, and writes nothing when the labels under the prefix are already the wanted ones.
func TestKubeNodeSetLabels(t *testing.T) {
	ctx := context.Background()
	hv, old := runtimereport.LabelKey("hv"), runtimereport.LabelKey("old")
	node := &corev1.Node{ObjectMeta: metav1.ObjectMeta{Name: "win-1",
		Labels: map[string]string{"kubernetes.io/os": "windows", old: runtimereport.LabelValue}}}
	var patches []map[string]any
	c := fake.NewClientBuilder().WithScheme(clientgoscheme.Scheme).WithObjects(node).WithInterceptorFuncs(interceptor.Funcs{
		Patch: func(ctx context.Context, cl client.WithWatch, obj client.Object, patch client.Patch, opts ...client.PatchOption) error {
			data, err := patch.Data(obj)
			if err != nil {
				return err
			}
			var p map[string]any
			if err := json.Unmarshal(data, &p); err != nil {
				return err
			}
			patches = append(patches, p)
			return cl.Patch(ctx, obj, patch, opts...)
		},
	}).Build()
	kube := KubeNode{Reader: c, Client: c, NodeName: "win-1"}
	verified := map[string]string{hv: runtimereport.LabelValue}
	for i, step := range []struct {
		want        map[string]string
		wantChanged bool
		wantPatch   map[string]any // the patch's metadata.labels; nil: no patch
		wantLabels  map[string]string
	}{
		{verified, true, map[string]any{hv: runtimereport.LabelValue, old: nil},
			map[string]string{"kubernetes.io/os": "windows", hv: runtimereport.LabelValue}},
		{verified, false, nil, map[string]string{"kubernetes.io/os": "windows", hv: runtimereport.LabelValue}},
		{map[string]string{}, true, map[string]any{hv: nil}, map[string]string{"kubernetes.io/os": "windows"}},
		{nil, false, nil, map[string]string{"kubernetes.io/os": "windows"}},
	} {
		before := len(patches)
		changed, err := kube.SetLabels(ctx, runtimereport.LabelPrefix, step.want)
		if err != nil || changed != step.wantChanged {
			t.Fatalf("step %d: SetLabels = %t, %v; want changed %t", i, changed, err, step.wantChanged)
		}
		switch {
		case step.wantPatch == nil && len(patches) != before:
			t.Errorf("step %d: patched %v, want no write", i, patches[before:])
		case step.wantPatch != nil:
			if len(patches) != before+1 {
				t.Fatalf("step %d: %d patches, want 1", i, len(patches)-before)
			}
			got := patches[before]["metadata"].(map[string]any)["labels"].(map[string]any)
			if !maps.Equal(got, step.wantPatch) || len(patches[before]) != 1 {
				t.Errorf("step %d: patch %v, want metadata.labels %v only", i, patches[before], step.wantPatch)
			}
		}
		labels, err := kube.Labels(ctx)
		if err != nil || !maps.Equal(labels, step.wantLabels) {
			t.Errorf("step %d: labels %v (%v), want %v", i, labels, err, step.wantLabels)
		}
	}
	for _, bad := range []struct {
		prefix string
		want   map[string]string
	}{
		{runtimereport.LabelPrefix, map[string]string{"node-role.kubernetes.io/x": ""}},
		{"", map[string]string{"x": "y"}},
	} {
		if _, err := kube.SetLabels(ctx, bad.prefix, bad.want); err == nil {
			t.Errorf("SetLabels(%q, %v) accepted a label outside the prefix", bad.prefix, bad.want)
		}
	}
}

func TestAPIRuntimeClassLister(t *testing.T) {
	c := fake.NewClientBuilder().WithScheme(clientgoscheme.Scheme).WithObjects(
		&nodev1.RuntimeClass{ObjectMeta: metav1.ObjectMeta{Name: "a"}, Handler: "ha"},
		&nodev1.RuntimeClass{ObjectMeta: metav1.ObjectMeta{Name: "b"}, Handler: "hb",
			Scheduling: &nodev1.Scheduling{NodeSelector: map[string]string{"kubernetes.io/os": "windows"}}},
	).Build()
	classes, err := APIRuntimeClassLister{Reader: c}.ListRuntimeClasses(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	if got := HandlersForNode(classes, map[string]string{"kubernetes.io/os": "linux"}); !slices.Equal(got, []string{"ha"}) {
		t.Errorf("handlers for a linux node = %v, want [ha]", got)
	}
	if got := HandlersForNode(classes, map[string]string{"kubernetes.io/os": "windows"}); !slices.Equal(got, []string{"ha", "hb"}) {
		t.Errorf("handlers for a windows node = %v, want [ha hb]", got)
	}
}
