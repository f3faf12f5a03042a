// Package indexheap is the heap.Interface of a slice of elements that keep their own
// position in it, so that container/heap can remove or fix one in O(log n): the pool book's
// pods not yet Ready and the warm candidates a bind takes from are such heaps.
package indexheap

// Elem is an element of a Heap: it orders itself against another, and records the index the
// heap moves it to (-1 once it is popped).
type Elem[T any] interface {
	HeapLess(other T) bool
	SetHeapIndex(i int)
}

// Heap implements heap.Interface; use it through container/heap (heap.Push, heap.Remove
// with the element's recorded index). Its element 0 is the least.
type Heap[T Elem[T]] []T

func (h Heap[T]) Len() int           { return len(h) }
func (h Heap[T]) Less(i, j int) bool { return h[i].HeapLess(h[j]) }
func (h Heap[T]) Swap(i, j int) {
	h[i], h[j] = h[j], h[i]
	h[i].SetHeapIndex(i)
	h[j].SetHeapIndex(j)
}

// Push is for container/heap: use heap.Push.
func (h *Heap[T]) Push(x any) {
	e := x.(T)
	e.SetHeapIndex(len(*h))
	*h = append(*h, e)
}

// Pop is for container/heap: use heap.Pop or heap.Remove.
func (h *Heap[T]) Pop() any {
	old := *h
	e := old[len(old)-1]
	var zero T
	old[len(old)-1] = zero // no reference kept past the slice's length
	*h = old[:len(old)-1]
	e.SetHeapIndex(-1)
	return e
}
