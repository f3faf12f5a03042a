package controllers

import (
	"k8s.io/apimachinery/pkg/api/resource"
	"k8s.io/apimachinery/pkg/types"

	agentsv1alpha1 "github.com/hyperpool/hyperpool/api/v1alpha1"
	"github.com/hyperpool/hyperpool/internal/poolbook"
	"github.com/hyperpool/hyperpool/internal/uvm"
)

// bookShape is sb's shape in the book's terms (nil for a class that is gone).
func bookShape(sb *agentsv1alpha1.AgentSandbox) *poolbook.Shape {
	shape := shapeOf(sb)
	if shape == nil {
		return nil
	}
	return &poolbook.Shape{Footprint: shape.footprint, Hash: shape.hash}
}

// warmCounts are a pool's warm pods as a reconcile counts them: the book's, less the ones
// it deleted that the book still shows as warm.
type warmCounts struct {
	warm, ready, bound int
	// footprint is the warm and bound pods' total; warmMemory the warm pods' memory in
	// bytes.
	footprint  agentsv1alpha1.Footprint
	warmMemory int64
}

// countWarm reads the pool's counts from the book now (after this reconcile's own
// deletions), taking out each pending deletion it still counts: a few lookups, no list.
func (r *AgentSandboxReconciler) countWarm(st *poolStep) warmCounts {
	key := types.NamespacedName{Namespace: st.sb.Namespace, Name: st.sb.Name}
	view := r.book.Pool(key, st.sb.UID, st.shape, classGraceSeconds(st.sb))
	c := warmCounts{warm: view.Warm, ready: view.WarmReady, bound: view.Bound, warmMemory: view.WarmMemory}
	gone := agentsv1alpha1.Footprint{}
	for name := range st.pendingDeletions {
		p, ok := r.book.Get(types.NamespacedName{Namespace: st.sb.Namespace, Name: name})
		if !ok || !p.Warm() || p.Controller != st.sb.UID {
			continue
		}
		c.warm--
		if p.Ready {
			c.ready--
		}
		f := p.Footprint(st.shape)
		gone = uvm.AddFootprint(gone, f)
		c.warmMemory -= f.Memory.Value()
	}
	// In the format the class writes its memory in (4Gi, not 4294967296).
	format := resource.BinarySI
	if st.shape != nil && st.shape.Footprint.Memory.Format != "" {
		format = st.shape.Footprint.Memory.Format
	}
	c.footprint = agentsv1alpha1.Footprint{Memory: *resource.NewQuantity(view.Footprint.Memory.Value()-gone.Memory.Value(), format),
		VCPUs: view.Footprint.VCPUs - gone.VCPUs}
	return c
}
