package controllers

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/Microsoft/hcsshim/pkg/annotations"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/utils/clock"
	"k8s.io/utils/ptr"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/client/fake"

	agentsv1alpha1 "github.com/hyperpool/hyperpool/api/v1alpha1"
	"github.com/hyperpool/hyperpool/internal/poolbook"
	"github.com/hyperpool/hyperpool/internal/uvm"
	"github.com/hyperpool/hyperpool/test/builders"
)

// fp is a footprint of memory and vCPUs, for tables.
func fp(memory string, vcpus int32) agentsv1alpha1.Footprint {
	return agentsv1alpha1.Footprint{Memory: resource.MustParse(memory), VCPUs: vcpus}
}

// classPod is a pod of class sb as the manager builds it, with its template hash.
func classPod(t *testing.T, sb *agentsv1alpha1.AgentSandbox, name string) *corev1.Pod {
	t.Helper()
	pod := (&podRecipe{sandbox: sb, templateHash: templateHash(sb), runtimeClass: "hyperv", hostBuilds: []string{"10.0.20348"}}).build()
	pod.Name = name
	return pod
}

func TestBuildRecordsTheClassFootprint(t *testing.T) {
	for _, sb := range []*agentsv1alpha1.AgentSandbox{
		builders.AgentSandbox("ns", "hyperv").MemoryLimit("3Gi").Obj(),
		builders.AgentSandbox("ns", "process").Isolation(agentsv1alpha1.IsolationProcess).Obj(),
	} {
		pod := classPod(t, sb, "p")
		got, ok := uvm.RecordedFootprint(pod)
		if want := classFootprint(sb); !ok || !equalFootprint(got, want) {
			t.Errorf("%s: recorded footprint %+v (ok %v), want the class's %+v", sb.Name, got, ok, want)
		}
	}
}

// TestSandboxPodFootprintIsWhatTheManagerCreated: whatever a tenant strips or rewrites in a
// pod's annotations, the pod is charged at least what the manager created.
func TestSandboxPodFootprintIsWhatTheManagerCreated(t *testing.T) {
	class := builders.AgentSandbox("ns", "pool").Obj() // 1Gi limit: 1536Mi, 2 vCPUs
	bigger := builders.AgentSandbox("ns", "pool").MemoryLimit("3Gi").Obj()
	current := shapeOf(class)
	strip := func(p *corev1.Pod, keys ...string) *corev1.Pod {
		for _, k := range keys {
			delete(p.Annotations, k)
		}
		return p
	}
	set := func(p *corev1.Pod, kv ...string) *corev1.Pod {
		for i := 0; i < len(kv); i += 2 {
			p.Annotations[kv[i]] = kv[i+1]
		}
		return p
	}
	tests := []struct {
		name  string
		pod   *corev1.Pod
		class *classShape
		want  agentsv1alpha1.Footprint
	}{
		{"as created", classPod(t, class, "p"), current, fp("1536Mi", 2)},
		{"current template, VM annotations stripped", strip(classPod(t, class, "p"), annotations.MemorySizeInMB, annotations.ProcessorCount),
			current, fp("1536Mi", 2)},
		{"current template, every sizing key stripped", strip(classPod(t, class, "p"), annotations.MemorySizeInMB, annotations.ProcessorCount, uvm.FootprintAnnotation),
			current, fp("1536Mi", 2)},
		{"current template, record rewritten smaller", set(classPod(t, class, "p"), uvm.FootprintAnnotation, `{"memory":"1Mi","vcpus":1}`),
			current, fp("1536Mi", 2)},
		// The class grew since: the old pod is charged what it was made with.
		{"older template, as created", classPod(t, class, "p"), shapeOf(bigger), fp("1536Mi", 2)},
		{"older template, VM annotations stripped", strip(classPod(t, class, "p"), annotations.MemorySizeInMB, annotations.ProcessorCount),
			shapeOf(bigger), fp("1536Mi", 2)},
		// No record (a pod from before it existed, or stripped): never less than the class.
		{"older template, no record, no VM annotations", strip(classPod(t, class, "p"), annotations.MemorySizeInMB, annotations.ProcessorCount, uvm.FootprintAnnotation),
			shapeOf(bigger), fp("3584Mi", 2)},
		{"older template, record unparsable", set(classPod(t, class, "p"), uvm.FootprintAnnotation, "small"),
			shapeOf(bigger), fp("3584Mi", 2)},
		{"older template, no record, VM annotations larger than the class", set(strip(classPod(t, bigger, "p"), uvm.FootprintAnnotation), annotations.ProcessorCount, "8"),
			current, fp("3584Mi", 8)},
		{"class gone, record kept", classPod(t, class, "p"), nil, fp("1536Mi", 2)},
		{"class gone, no record: the VM annotations", strip(classPod(t, class, "p"), uvm.FootprintAnnotation), nil, fp("1536Mi", 2)},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := sandboxPodFootprint(tt.pod, tt.class); !equalFootprint(got, tt.want) {
				t.Errorf("footprint = {%s, %d}, want {%s, %d}", got.Memory.String(), got.VCPUs, tt.want.Memory.String(), tt.want.VCPUs)
			}
		})
	}
}

// TestMeasureCountsEveryRunningVM: the quota's usage charges each pod what the manager
// created, and a terminating pod's VM until the pod is gone; a pod that ended has no VM.
func TestMeasureCountsEveryRunningVM(t *testing.T) {
	const ns = "team"
	class := builders.AgentSandbox(ns, "pool").Obj() // 1536Mi, 2 vCPUs
	session := builders.AgentSession(ns, "s", "pool").UID("uid-s").Obj()
	stripped := classPod(t, class, "stripped") // bound, its VM annotations and record stripped
	stripped.Namespace = ns
	stripped.Labels[agentsv1alpha1.SessionLabel] = "s"
	stripped.OwnerReferences = []metav1.OwnerReference{*metav1.NewControllerRef(session, agentsv1alpha1.GroupVersion.WithKind("AgentSession"))}
	for _, k := range []string{annotations.MemorySizeInMB, annotations.ProcessorCount, uvm.FootprintAnnotation} {
		delete(stripped.Annotations, k)
	}
	terminating := classPod(t, class, "terminating") // its session ended; a finalizer holds it
	terminating.Namespace = ns
	terminating.Labels[agentsv1alpha1.SessionLabel] = "ended"
	terminating.Finalizers = []string{"example.com/slow-shutdown"}
	terminating.DeletionTimestamp = &metav1.Time{Time: time.Now()}
	ended := classPod(t, class, "ended") // Failed: its VM is gone
	ended.Namespace = ns
	ended.Status.Phase = corev1.PodFailed
	warm := classPod(t, class, "warm")
	warm.Namespace = ns

	c := fake.NewClientBuilder().WithScheme(unitScheme(t)).
		WithObjects(class, session, stripped, terminating, ended, warm, builders.AgentQuota(ns, "q").Sessions(5).Obj()).
		WithStatusSubresource(&agentsv1alpha1.AgentSession{}).Build()
	q := newQuotaKeeper(c, Config{MaxQueuedSessions: DefaultConfig().MaxQueuedSessions}, clock.RealClock{})
	u, err := q.currentUsage(context.Background(), ns)
	if err != nil {
		t.Fatal(err)
	}
	// stripped + terminating + warm: three VMs of 1536Mi and 2 vCPUs.
	if want := resource.MustParse("4608Mi"); u.memory.Cmp(want) != 0 || u.cpu != 6 {
		t.Errorf("usage memory %s, cpu %d; want %s, 6 (the stripped pod at its class's size, the terminating pod until it is gone)",
			u.memory.String(), u.cpu, want.String())
	}
	if u.sessions != 1 || u.warm != 1 {
		t.Errorf("usage sessions %d, warm %d; want 1, 1: a terminating pod holds no session slot and is not warm", u.sessions, u.warm)
	}
}

// TestShutdownSurgeLeft: a pool replaces its pods at once while up to its target's worth of
// VMs shut down, and no more beyond that.
func TestShutdownSurgeLeft(t *testing.T) {
	terminating := func(n int, bound bool) []*corev1.Pod {
		var pods []*corev1.Pod
		for range n {
			p := builders.Pod("ns", "p").Label(agentsv1alpha1.ClassLabel, "pool").Obj()
			if bound {
				p.Labels[agentsv1alpha1.SessionLabel] = "s"
			}
			pods = append(pods, p)
		}
		return pods
	}
	tests := []struct {
		name             string
		terminating      []*corev1.Pod
		pendingDeletions int
		have, want       int
		left             int
	}{
		{"nothing shutting down", nil, 0, 0, 3, 6},
		{"a normal delete of every warm pod is replaced at once", terminating(3, false), 0, 0, 3, 3},
		{"deletions the cache does not show yet count", terminating(1, false), 2, 0, 3, 3},
		{"deleted again before the first ones are gone: no more", terminating(6, false), 0, 0, 3, 0},
		{"bound pods shutting down are the sessions', not the pool's", terminating(10, true), 0, 0, 3, 6},
		{"partly", terminating(4, false), 0, 1, 3, 1},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			// The book's count of the class's terminating pods without a session.
			book := poolbook.New()
			for i, p := range tt.terminating {
				p = p.DeepCopy()
				p.Name = fmt.Sprint("p-", i)
				p.DeletionTimestamp = &metav1.Time{Time: time.Now()}
				book.Update(p)
			}
			st := &poolStep{view: book.Pool(types.NamespacedName{Namespace: "ns", Name: "pool"}, "", nil, 30), pendingDeletions: map[string]bool{}}
			for i := range tt.pendingDeletions {
				st.pendingDeletions[string(rune('a'+i))] = true
			}
			if got := shutdownSurgeLeft(st, tt.have, tt.want); got != tt.left {
				t.Errorf("shutdownSurgeLeft = %d, want %d", got, tt.left)
			}
		})
	}
}

// TestGraceAllowed: the class's grace period, the API's default without one, and the pod's
// own when it is shorter.
func TestGraceAllowed(t *testing.T) {
	withGrace := func(s *int64) *agentsv1alpha1.AgentSandbox {
		return builders.AgentSandbox("ns", "pool").PodSpec(func(p *corev1.PodSpec) { p.TerminationGracePeriodSeconds = s }).Obj()
	}
	pod := func(s *int64) *corev1.Pod {
		p := builders.Pod("ns", "p").Obj()
		p.Spec.TerminationGracePeriodSeconds = s
		return p
	}
	i := func(v int64) *int64 { return &v }
	tests := []struct {
		name string
		sb   *agentsv1alpha1.AgentSandbox
		pod  *corev1.Pod
		want int64
	}{
		{"class default", withGrace(nil), pod(nil), 30},
		{"class's", withGrace(i(120)), pod(nil), 120},
		{"pod's own when shorter", withGrace(i(120)), pod(i(10)), 10},
		{"class's when the pod's is longer", withGrace(i(5)), pod(i(300)), 5},
		{"zero", withGrace(i(0)), pod(nil), 0},
		{"a class stored before the CRD's cap is capped", withGrace(i(365 * 24 * 3600)), pod(nil), agentsv1alpha1.MaxTerminationGracePeriodSeconds},
	}
	for _, tt := range tests {
		if got := graceAllowed(tt.sb, tt.pod); got != tt.want {
			t.Errorf("%s: graceAllowed = %d, want %d", tt.name, got, tt.want)
		}
	}
}

// TestAutoscalerCountsOnlySessionsTheQuotaWouldAdmit: with sessions: 1 and 40 sessions
// queued behind the one that runs, the autoscaler's demand is the one session the quota
// would admit, not the 40 it holds back.
func TestAutoscalerCountsOnlySessionsTheQuotaWouldAdmit(t *testing.T) {
	const ns = "team"
	base := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	idx := recordingIndexer{}
	if err := RegisterIndexes(context.Background(), idx); err != nil {
		t.Fatal(err)
	}
	class := builders.AgentSandbox(ns, "pool").Autoscaling(1, 50, time.Minute).Obj()
	session := func(i int) *builders.AgentSessionWrapper {
		return builders.AgentSession(ns, "s-"+string(rune('a'+i/26))+string(rune('a'+i%26)), "pool").
			UID(types.UID("uid-" + string(rune('a'+i/26)) + string(rune('a'+i%26)))).Created(base.Add(time.Duration(i) * time.Second))
	}
	tests := []struct {
		name     string
		sessions int // the first admitted, the others queued
		limit    int32
		want     int
	}{
		{"full quota: the queue adds nothing", 41, 1, 0},
		{"one free slot: the head of the queue counts", 41, 2, 1},
		{"admitted and waiting for a warm pod: counts", 1, 1, 1},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			objs := []client.Object{class, builders.AgentQuota(ns, "q").Sessions(tt.limit).MaxQueued(40).Obj()}
			for i := range tt.sessions {
				s := session(i)
				if i == 0 {
					s = s.QuotaReserved()
					if tt.sessions > 1 {
						s = s.BoundTo("pool-abcde", base) // running: holds the slot
					}
				} else {
					s = s.Phase(agentsv1alpha1.SessionQueued)
				}
				objs = append(objs, s.Obj())
			}
			b := fake.NewClientBuilder().WithScheme(unitScheme(t)).WithObjects(objs...)
			for field, extract := range idx {
				if field == sessionWaitingIndex || field == sessionQueuedIndex {
					b = b.WithIndex(&agentsv1alpha1.AgentSession{}, field, extract)
				}
			}
			c := b.Build()
			r := &AgentSandboxReconciler{Client: c, quota: newQuotaKeeper(c, Config{MaxQueuedSessions: 40}, clock.RealClock{})}
			got, err := r.waitingSessions(context.Background(), class)
			if err != nil {
				t.Fatal(err)
			}
			if got != tt.want {
				t.Errorf("waitingSessions = %d, want %d", got, tt.want)
			}
		})
	}
}

// TestBuildGivesTheClassGrace: every pod gets the class's grace period, capped for a class
// stored before the CRD capped it, so the manager's own deletes never outlast it.
func TestBuildGivesTheClassGrace(t *testing.T) {
	for _, tc := range []struct {
		template *int64
		want     int64
	}{{nil, 30}, {ptr.To(int64(5)), 5}, {ptr.To(int64(365 * 24 * 3600)), agentsv1alpha1.MaxTerminationGracePeriodSeconds}} {
		sb := builders.AgentSandbox("ns", "pool").PodSpec(func(s *corev1.PodSpec) { s.TerminationGracePeriodSeconds = tc.template }).Obj()
		if got := classPod(t, sb, "p").Spec.TerminationGracePeriodSeconds; got == nil || *got != tc.want {
			t.Errorf("template grace %v: pod grace %v, want %d", tc.template, got, tc.want)
		}
	}
}

func equalFootprint(a, b agentsv1alpha1.Footprint) bool {
	return a.VCPUs == b.VCPUs && a.Memory.Cmp(b.Memory) == 0
}
