package poolbook

import (
	"testing"

	"github.com/Microsoft/hcsshim/pkg/annotations"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	agentsv1alpha1 "github.com/hyperpool/hyperpool/api/v1alpha1"
	"github.com/hyperpool/hyperpool/internal/uvm"
)

// BenchmarkPodOf is what the book does with each pod event: read the pod, its footprint
// annotations parsed again every time (a status update included).
//
//	go test -run '^$' -bench BenchmarkPodOf -benchtime 200000x ./internal/poolbook/
func BenchmarkPodOf(b *testing.B) {
	pod := &corev1.Pod{ObjectMeta: metav1.ObjectMeta{Name: "p", Namespace: "n",
		Labels: map[string]string{agentsv1alpha1.ClassLabel: "c", agentsv1alpha1.TemplateHashLabel: "h"},
		Annotations: map[string]string{annotations.MemorySizeInMB: "1536", annotations.ProcessorCount: "2",
			uvm.FootprintAnnotation: uvm.FormatFootprint(agentsv1alpha1.Footprint{Memory: resource.MustParse("1536Mi"), VCPUs: 2})}}}
	b.ReportAllocs()
	for b.Loop() {
		_ = PodOf(pod)
	}
}
