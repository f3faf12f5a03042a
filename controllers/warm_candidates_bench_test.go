package controllers

import (
	"fmt"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/types"

	agentsv1alpha1 "github.com/hyperpool/hyperpool/api/v1alpha1"
	"github.com/hyperpool/hyperpool/test/builders"
)

// BenchmarkTakeAndRelink is a bind's work in the warm candidates: take the best of 1,000
// Ready pods on 20 nodes, then put it back (release), so every round sees the same pool.
//
//	go test -run '^$' -bench BenchmarkTakeAndRelink -benchtime 20000x -count 5 ./controllers/
func BenchmarkTakeAndRelink(b *testing.B) {
	sb := builders.AgentSandbox("ns", "pool").Obj()
	sb.UID = "uid"
	w := newWarmCandidates()
	h := w.handler()
	for i := range 1000 {
		p := builders.Pod("ns", fmt.Sprintf("p%04d", i)).Label(agentsv1alpha1.ClassLabel, "pool").Label(agentsv1alpha1.TemplateHashLabel, "h").
			OwnedBy(sb).Node(fmt.Sprintf("n%d", i%20)).Ready().Obj()
		p.CreationTimestamp.Time = time.Unix(int64(i), 0)
		p.Status.Phase = corev1.PodRunning
		h.OnAdd(p, false)
	}
	class := types.NamespacedName{Namespace: "ns", Name: "pool"}
	for b.Loop() {
		key, ok := w.take(class, sb.UID, "h", false)
		if !ok {
			b.Fatal("no candidate")
		}
		w.release(key)
	}
}
