package indexheap

import (
	"container/heap"
	"math/rand/v2"
	"slices"
	"testing"
)

type item struct {
	v, index int
}

func (a *item) HeapLess(b *item) bool { return a.v < b.v }
func (a *item) SetHeapIndex(i int)    { a.index = i }

// Random pushes and removals by recorded index keep every element's index right and pop in
// order.
func TestHeapKeepsIndexes(t *testing.T) {
	t.Parallel()
	r := rand.New(rand.NewPCG(1, 2))
	var h Heap[*item]
	var live []*item
	for range 2000 {
		if len(live) > 0 && r.IntN(3) == 0 {
			i := r.IntN(len(live))
			e := live[i]
			if got := heap.Remove(&h, e.index).(*item); got != e || e.index != -1 {
				t.Fatalf("Remove at the recorded index returned %v (index %d), want %v", got, e.index, e)
			}
			live = slices.Delete(live, i, i+1)
			continue
		}
		e := &item{v: r.IntN(100)}
		heap.Push(&h, e)
		live = append(live, e)
		for i, x := range h {
			if x.index != i {
				t.Fatalf("element at %d records index %d", i, x.index)
			}
		}
	}
	prev := -1
	for h.Len() > 0 {
		e := heap.Pop(&h).(*item)
		if e.v < prev || e.index != -1 {
			t.Fatalf("popped %d after %d (index %d)", e.v, prev, e.index)
		}
		prev = e.v
	}
}
