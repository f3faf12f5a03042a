//go:build !windows

package bench

import (
	"context"
	"fmt"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"time"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/apimachinery/pkg/util/wait"
	"sigs.k8s.io/controller-runtime/pkg/cache"
	"sigs.k8s.io/controller-runtime/pkg/client"

	agentsv1alpha1 "github.com/hyperpool/hyperpool/api/v1alpha1"
	"github.com/hyperpool/hyperpool/controllers"
)

// MemoryStats is the annotations scenario's row: what the manager's cache holds for a
// namespace's sandbox pods, without and with tenant-added annotations on each.
type MemoryStats struct {
	Pods                  int `json:"pods"`
	AnnotationBytesPerPod int `json:"annotationBytesPerPod"`
	// ManagerCache*: the heap (HeapInuse after GC) an in-process cache built with the
	// manager's controllers.CacheOptions takes for the namespace's pods, MiB.
	ManagerCachePlainMiB   float64 `json:"managerCachePlainMiB"`
	ManagerCacheBloatedMiB float64 `json:"managerCacheBloatedMiB"`
	// FullMetadataCache*: the same with a cache that trims the pod's spec and status but
	// keeps every label and annotation (the manager's cache before issue 23), for comparison.
	FullMetadataCachePlainMiB   float64 `json:"fullMetadataCachePlainMiB"`
	FullMetadataCacheBloatedMiB float64 `json:"fullMetadataCacheBloatedMiB"`
	// ManagerRSS*: the manager process's resident set when each cache was measured, MiB
	// (a Go process returns freed heap lazily: an upper bound of what it holds).
	ManagerRSSPlainMiB   float64 `json:"managerRssPlainMiB"`
	ManagerRSSBloatedMiB float64 `json:"managerRssBloatedMiB"`
}

// bloatAnnotation is the annotation the scenario adds to every pod: a key no admission
// policy guards, so a tenant with edit may add it to its sandbox pods.
const bloatAnnotation = "bench.example/bloat"

// Annotations fills a pool of pods warm pods, measures the manager's cache for them, adds
// annotationBytes of annotation to each pod (as admin: a load, not an attack), and
// measures again, in the same run.
func (h *Harness) Annotations(ctx context.Context, pods, annotationBytes, nodes, floorN int) (*Result, error) {
	res := &Result{Scenario: "annotations", Pool: pods,
		Params: fmt.Sprintf("%d warm pods, %d KiB of annotations added to each", pods, annotationBytes/1024)}
	began := time.Now()
	if err := h.EnsureNodes(ctx, nodes); err != nil {
		return nil, err
	}
	r, err := h.setup(ctx, "annotations", pods, floorN, 0)
	if err != nil {
		return nil, err
	}
	res.Namespace = r.ns
	m := &MemoryStats{Pods: pods, AnnotationBytesPerPod: annotationBytes}
	if m.ManagerCachePlainMiB, m.FullMetadataCachePlainMiB, m.ManagerRSSPlainMiB, err = h.measureCaches(ctx, r.ns, pods); err != nil {
		return nil, err
	}
	if err := h.bloatPods(ctx, r.ns, annotationBytes); err != nil {
		return nil, err
	}
	if m.ManagerCacheBloatedMiB, m.FullMetadataCacheBloatedMiB, m.ManagerRSSBloatedMiB, err = h.measureCaches(ctx, r.ns, pods); err != nil {
		return nil, err
	}
	res.Memory = m
	res.PeakRSSMiB = max(m.ManagerRSSPlainMiB, m.ManagerRSSBloatedMiB)
	res.Notes = append(res.Notes, fmt.Sprintf(
		"manager cache for %d pods: %.1f MiB plain, %.1f MiB with %d KiB of annotations each (a cache keeping every annotation: %.1f -> %.1f MiB); manager RSS %.0f -> %.0f MiB",
		pods, m.ManagerCachePlainMiB, m.ManagerCacheBloatedMiB, annotationBytes/1024, m.FullMetadataCachePlainMiB, m.FullMetadataCacheBloatedMiB,
		m.ManagerRSSPlainMiB, m.ManagerRSSBloatedMiB))
	res.DurationSeconds = time.Since(began).Seconds()
	return res, nil
}

// measureCaches measures, one after the other, the heap an in-process cache takes for the
// namespace's pods with the manager's options and with full metadata, and samples the
// manager's RSS.
func (h *Harness) measureCaches(ctx context.Context, ns string, pods int) (managerMiB, fullMiB, rssMiB float64, err error) {
	// The benchmark's own watches hold the pods too: let them catch up first, so their
	// growth is not measured as the cache's.
	if err := h.waitWatchedPods(ctx, ns, pods); err != nil {
		return 0, 0, 0, err
	}
	if managerMiB, err = cacheHeapMiB(ctx, h, ns, pods, controllers.CacheOptions()); err != nil {
		return 0, 0, 0, err
	}
	if fullMiB, err = cacheHeapMiB(ctx, h, ns, pods, fullMetadataCacheOptions()); err != nil {
		return 0, 0, 0, err
	}
	if h.Manager != nil {
		rss, _, sampleErr := h.Manager.Sample()
		if sampleErr == nil {
			rssMiB = rss / (1 << 20)
		}
	}
	return managerMiB, fullMiB, rssMiB, nil
}

// cacheHeapMiB starts a cache with opts over ns, waits until it holds the namespace's pods,
// and returns the heap it takes: HeapInuse after GC, less the same before it started.
func cacheHeapMiB(ctx context.Context, h *Harness, ns string, pods int, opts cache.Options) (float64, error) {
	opts.Scheme = h.Env.Scheme
	opts.DefaultNamespaces = map[string]cache.Config{ns: {}}
	before := heapInuseAfterGC()
	c, err := cache.New(h.Env.Config, opts)
	if err != nil {
		return 0, err
	}
	cctx, cancel := context.WithCancel(ctx)
	defer cancel()
	if _, err := c.GetInformer(cctx, &corev1.Pod{}, cache.BlockUntilSynced(false)); err != nil {
		return 0, err
	}
	go func() { _ = c.Start(cctx) }()
	if !c.WaitForCacheSync(cctx) {
		return 0, fmt.Errorf("annotations: the measured cache did not sync")
	}
	list := &corev1.PodList{}
	if err := c.List(cctx, list, client.InNamespace(ns)); err != nil {
		return 0, fmt.Errorf("annotations: listing the measured cache: %w", err)
	}
	if len(list.Items) < pods {
		return 0, fmt.Errorf("annotations: the measured cache holds %d pods, want %d", len(list.Items), pods)
	}
	list = nil
	after := heapInuseAfterGC()
	runtime.KeepAlive(c)
	return float64(after-before) / (1 << 20), nil
}

func heapInuseAfterGC() int64 {
	runtime.GC()
	runtime.GC() // the first may leave finalized objects for the second
	var ms runtime.MemStats
	runtime.ReadMemStats(&ms)
	return int64(ms.HeapInuse) //nolint:gosec // a heap size fits an int64
}

// fullMetadataCacheOptions is the manager's pod cache as it was before its metadata was
// trimmed: spec and status trimmed, every label and annotation kept.
func fullMetadataCacheOptions() cache.Options {
	opts := controllers.CacheOptions()
	for obj, by := range opts.ByObject {
		if _, ok := obj.(*corev1.Pod); ok {
			by.Transform = func(o any) (any, error) {
				pod, ok := o.(*corev1.Pod)
				if !ok {
					return o, nil
				}
				pod.ManagedFields = nil
				pod.Spec = corev1.PodSpec{NodeName: pod.Spec.NodeName, RuntimeClassName: pod.Spec.RuntimeClassName}
				pod.Status = corev1.PodStatus{Phase: pod.Status.Phase, Conditions: pod.Status.Conditions,
					PodIP: pod.Status.PodIP, Reason: pod.Status.Reason, Message: pod.Status.Message}
				return pod, nil
			}
			opts.ByObject[obj] = by
		}
	}
	return opts
}

// bloatPods adds an annotation of n bytes to every sandbox pod of ns, eight at a time.
func (h *Harness) bloatPods(ctx context.Context, ns string, n int) error {
	list := &corev1.PodList{}
	if err := h.Client.List(ctx, list, client.InNamespace(ns), client.HasLabels{agentsv1alpha1.ClassLabel}); err != nil {
		return err
	}
	patch := client.RawPatch(types.MergePatchType, []byte(fmt.Sprintf(`{"metadata":{"annotations":{%q:%q}}}`, bloatAnnotation, strings.Repeat("x", n))))
	sem := make(chan struct{}, 8)
	var wg sync.WaitGroup
	var mu sync.Mutex
	var firstErr error
	for i := range list.Items {
		p := &list.Items[i]
		wg.Add(1)
		sem <- struct{}{}
		go func() {
			defer func() { <-sem; wg.Done() }()
			if err := h.Client.Patch(ctx, p, patch); err != nil {
				mu.Lock()
				if firstErr == nil {
					firstErr = fmt.Errorf("annotating pod %s: %w", p.Name, err)
				}
				mu.Unlock()
			}
		}()
	}
	wg.Wait()
	return firstErr
}

// waitWatchedPods waits until the benchmark's own pod watch holds want pods of ns, each as
// the API server has it now (same resourceVersion).
func (h *Harness) waitWatchedPods(ctx context.Context, ns string, want int) error {
	live := &corev1.PodList{}
	if err := h.Client.List(ctx, live, client.InNamespace(ns), client.HasLabels{agentsv1alpha1.ClassLabel}); err != nil {
		return err
	}
	if len(live.Items) < want {
		return fmt.Errorf("annotations: %d sandbox pods in %s, want %d", len(live.Items), ns, want)
	}
	return wait.PollUntilContextTimeout(ctx, 100*time.Millisecond, 2*time.Minute, true, func(ctx context.Context) (bool, error) {
		for i := range live.Items {
			p := &corev1.Pod{}
			if err := h.cache.Get(ctx, client.ObjectKeyFromObject(&live.Items[i]), p); err != nil || !atLeast(p.ResourceVersion, live.Items[i].ResourceVersion) {
				return false, nil
			}
		}
		return true, nil
	})
}

// atLeast reports whether resourceVersion have is at least want (etcd revisions: integers).
func atLeast(have, want string) bool {
	h, errH := strconv.ParseUint(have, 10, 64)
	w, errW := strconv.ParseUint(want, 10, 64)
	return errH == nil && errW == nil && h >= w
}
