package controllers

import (
	"context"
	"errors"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/tools/events"
	clocktesting "k8s.io/utils/clock/testing"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/client/fake"
	"sigs.k8s.io/controller-runtime/pkg/client/interceptor"
	"sigs.k8s.io/controller-runtime/pkg/recorder"

	agentsv1alpha1 "github.com/hyperpool/hyperpool/api/v1alpha1"
	"github.com/hyperpool/hyperpool/test/builders"
)

// TestEventsFollowTheStatusWrite: a session's end is announced by an Event only once the
// status that records it is written. When the write fails, no Event tells of an end the
// API server never stored.
func TestEventsFollowTheStatusWrite(t *testing.T) {
	now := time.Date(2026, 1, 1, 12, 0, 0, 0, time.UTC)
	for _, tc := range []struct {
		name       string
		writeFails bool
		wantEvents int
	}{
		{"status written: the end is announced", false, 1},
		{"status write failed: nothing announced", true, 0},
	} {
		t.Run(tc.name, func(t *testing.T) {
			sb := builders.AgentSandbox("team", "pool").Replicas(1).Obj()
			s := builders.AgentSession("team", "carol", "pool").UID("session-uid").MaxLifetime(3*time.Second).
				Phase(agentsv1alpha1.SessionReady).BoundTo("pool-klmno", now.Add(-time.Minute)).Obj()
			c := fake.NewClientBuilder().WithScheme(unitScheme(t)).WithObjects(sb, s).WithStatusSubresource(s).
				WithIndex(&corev1.Pod{}, podSessionIndex, labelIndex(agentsv1alpha1.SessionLabel)).
				WithInterceptorFuncs(interceptor.Funcs{SubResourcePatch: func(ctx context.Context, c client.Client, sub string, obj client.Object, p client.Patch, opts ...client.SubResourcePatchOption) error {
					if tc.writeFails {
						return errors.New("the API server is away")
					}
					return c.SubResource(sub).Patch(ctx, obj, p, opts...)
				}}).Build()
			rec := events.NewFakeRecorder(10)
			d := unitDeps(c, clocktesting.NewFakePassiveClock(now))
			d.recorder = func(string) recorder.EventRecorder { return rec }
			r := newAgentSessionReconciler(d, &sharedState{})

			_, err := r.Reconcile(context.Background(), ctrl.Request{NamespacedName: types.NamespacedName{Namespace: "team", Name: "carol"}})
			if (err != nil) != tc.writeFails {
				t.Fatalf("Reconcile: %v", err)
			}
			if got := len(rec.Events); got != tc.wantEvents {
				t.Errorf("%d events recorded, want %d", got, tc.wantEvents)
			}
		})
	}
}
