//go:build !windows

package attack

import (
	"context"
	"fmt"
	"runtime"
	"strings"
	"testing"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"sigs.k8s.io/controller-runtime/pkg/client"

	agentsv1alpha1 "github.com/hyperpool/hyperpool/api/v1alpha1"
	"github.com/hyperpool/hyperpool/test/builders"
)

// TestTenantAnnotationsDoNotGrowTheManager: a tenant with edit adds 250 KiB of annotations
// (a key no policy guards) to each of its sandbox pods and its session. The API server
// accepts them; the manager, running in this process, keeps none of them in its cache: its
// heap grows by far less than the bytes added. Before, its cache kept every annotation, and
// a tenant could grow each object towards the API server's limit.
//
// Not parallel: the heap is the whole process's, and Go runs no parallel test while a
// sequential one does.
func TestTenantAnnotationsDoNotGrowTheManager(t *testing.T) {
	const pods, bloatBytes = 40, 250 * 1024
	ctx := context.Background()
	ns := env.CreateNamespace(t)
	user := tenant(t, ns, "hyperpool-session-user", "edit")
	mustCreate(t, admin, builders.AgentSandbox(ns, "pool").Replicas(pods).Obj())
	mustCreate(t, user, builders.AgentSession(ns, "first", "pool").Obj())
	waitSession(t, ns, "first", waitTimeout, "Ready", inPhase(agentsv1alpha1.SessionReady))
	eventually(t, waitTimeout, func(context.Context) (bool, string) {
		n := len(sandboxPods(t, ns, "pool"))
		return n == pods+1, fmt.Sprintf("%d sandbox pods, want %d (the pool refilled after the bind)", n, pods+1)
	})

	before := heapInuseAfterGC()
	patch := client.RawPatch(types.MergePatchType, []byte(fmt.Sprintf(`{"metadata":{"annotations":{"example.com/bloat":%q}}}`, strings.Repeat("x", bloatBytes))))
	added := 0
	for _, p := range sandboxPods(t, ns, "pool") {
		if err := user.Patch(ctx, &p, patch); err != nil {
			t.Fatalf("the tenant's annotation on sandbox pod %s was refused: %v (this test measures what the manager keeps of an accepted one)", p.Name, err)
		}
		added += bloatBytes
	}
	if err := user.Patch(ctx, &agentsv1alpha1.AgentSession{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "first"}}, patch); err != nil {
		t.Fatalf("the tenant's annotation on its session was refused: %v", err)
	}
	added += bloatBytes
	// A bind after the annotations: once the manager's cache shows the new session bound,
	// its pod watch has delivered every earlier pod event, the annotated ones included.
	mustCreate(t, user, builders.AgentSession(ns, "second", "pool").Obj())
	waitSession(t, ns, "second", waitTimeout, "Ready", inPhase(agentsv1alpha1.SessionReady))

	grown := heapInuseAfterGC() - before
	t.Logf("the tenant added %d KiB of annotations; this process's heap (the manager's cache among it) grew by %d KiB", added/1024, grown/1024)
	if grown > int64(added)/3 {
		t.Errorf("the manager's heap grew by %d KiB after the tenant added %d KiB of annotations its controllers never read; want well under a third", grown/1024, added/1024)
	}
}

func heapInuseAfterGC() int64 {
	runtime.GC()
	runtime.GC()
	var ms runtime.MemStats
	runtime.ReadMemStats(&ms)
	return int64(ms.HeapInuse) //nolint:gosec // a heap size fits an int64
}
