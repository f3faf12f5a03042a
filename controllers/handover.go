package controllers

// A new leader's handover: before its first bind, it learns from the API server which pod
// every session holds, because its cache may not show the binds its predecessor made.

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"sync/atomic"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/apimachinery/pkg/selection"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/log"

	agentsv1alpha1 "github.com/hyperpool/hyperpool/api/v1alpha1"
)

// handover makes a manager's first decision about any session wait until it has read, from
// the API server, every pod bound to a session, and recorded each bind as if it had made it
// itself (Claims.SessionBound): for ClaimTTL, a session its cache shows unbound but that
// holds a pod there is read around the cache (boundPod's rare path) instead of being bound
// a second time.
//
// Why: a standby's informers run all along, and may lag the API server by seconds when it
// takes the Lease, more so right after kube-apiserver restarted or while etcd is slow. Its
// Claims are empty: they only know this process's binds. A session its predecessor bound
// looks unbound in that cache (no pod labelled for it, status.podName empty) and would get
// a second pod. The pod patch's resourceVersion lock only stops two binds of one pod, not
// two pods for one session. The chaos test's kill with etcd paused found such a double bind
// (docs/chaos.md).
//
// It costs one List of pod metadata per process (controllers run only once the process
// leads, and a process that loses the Lease exits), none on any later bind. Binds the
// predecessor had in flight when it died landed before this manager could take the Lease,
// which needs a write to the same etcd after the predecessor's Lease ran out, so the List
// shows them.
type handover struct {
	mu   sync.Mutex
	done atomic.Bool
}

// sessionPodSelector selects the pods bound to a session.
var sessionPodSelector = func() labels.Selector {
	bound, err := labels.NewRequirement(agentsv1alpha1.SessionLabel, selection.Exists, nil)
	if err != nil {
		panic(err) // a constant label key
	}
	return labels.NewSelector().Add(*bound)
}()

// takeOver runs the handover once; every reconcile that may bind waits for it. An error
// (the API server away) is returned, and the next reconcile tries again.
func (r *AgentSessionReconciler) takeOver(ctx context.Context) error {
	if r.handover.done.Load() {
		return nil
	}
	r.handover.mu.Lock()
	defer r.handover.mu.Unlock()
	if r.handover.done.Load() {
		return nil
	}
	list := &metav1.PartialObjectMetadataList{}
	list.SetGroupVersionKind(corev1.SchemeGroupVersion.WithKind("PodList"))
	if err := r.apiReader.List(ctx, list, client.MatchingLabelsSelector{Selector: sessionPodSelector}); err != nil {
		return fmt.Errorf("listing the pods bound to sessions before the first bind: %w", err)
	}
	adopted := 0
	for i := range list.Items {
		p := &list.Items[i]
		owner := metav1.GetControllerOf(p)
		if owner == nil || owner.Kind != "AgentSession" || owner.Name != p.Labels[agentsv1alpha1.SessionLabel] || !p.DeletionTimestamp.IsZero() {
			continue
		}
		r.claims.SessionBound(owner.UID, p.Name)
		adopted++
	}
	r.handover.done.Store(true)
	log.FromContext(ctx).Info("took over the binds made before this manager led", "sessionPods", adopted)
	return nil
}

// heldAfterUnknownWrite returns the pods the API server shows s holding, when a bind write
// of this manager for s failed without saying whether it landed (writeMayHaveLanded): the
// cache may not show the pod yet, and binding again would give the session a second one.
// Otherwise, or when the API server shows none, it returns nil and the cache decides.
func (r *AgentSessionReconciler) heldAfterUnknownWrite(ctx context.Context, s *agentsv1alpha1.AgentSession) ([]*corev1.Pod, error) {
	if !r.claims.SessionWriteIsUnknown(s.UID) {
		return nil, nil
	}
	list := &corev1.PodList{}
	if err := r.apiReader.List(ctx, list, client.InNamespace(s.Namespace), client.MatchingLabels{agentsv1alpha1.SessionLabel: s.Name}); err != nil {
		return nil, fmt.Errorf("listing the pods of AgentSession %s after a bind write of unknown outcome: %w", s.Name, err)
	}
	var held []*corev1.Pod
	for i := range list.Items {
		if metav1.IsControlledBy(&list.Items[i], s) {
			held = append(held, &list.Items[i])
		}
	}
	if len(held) == 0 {
		r.claims.ForgetSession(s.UID) // it did not land
	}
	return held, nil
}

// writeMayHaveLanded reports whether a failed write may still have been applied: the API
// server did not refuse it, but the connection dropped, the request timed out, or the
// server failed inside it (an etcd timeout is a 500 after which the write may commit).
func writeMayHaveLanded(err error) bool {
	var status apierrors.APIStatus
	if !errors.As(err, &status) {
		return true // no answer from the API server
	}
	return apierrors.IsTimeout(err) || apierrors.IsServerTimeout(err) || apierrors.IsInternalError(err) || apierrors.IsUnexpectedServerError(err)
}
