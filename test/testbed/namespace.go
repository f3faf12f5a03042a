//go:build !windows

package testbed

import (
	"context"
	"crypto/rand"
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"
)

// TestNameAnnotation on a namespace from CreateNamespace holds the full name of its test.
const TestNameAnnotation = "testbed.hyperpool.io/test"

// namespaceNameMax leaves room for "-" and the random suffix within a DNS label's 63 bytes,
// while keeping names short enough to read in logs.
const namespaceNameMax = 40

// namespaceCleanupTimeout bounds the delete request in a test's cleanup.
const namespaceCleanupTimeout = 10 * time.Second

// CreateNamespace creates a namespace for one test and deletes it when the test ends. Its
// name comes from t.Name() (lowercased, other characters turned into '-', truncated) plus
// a random suffix, so parallel tests and reruns never share one. It returns once the
// namespace's default ServiceAccount exists, so pods can be created there right away.
//
// Deletion is not awaited: the namespace controller empties the namespace in the
// background (kwok removes its pods), and no other test uses the name.
func (e *Env) CreateNamespace(t testing.TB) string {
	t.Helper()
	ns := &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{
		Name:        namespaceName(t.Name()),
		Annotations: map[string]string{TestNameAnnotation: t.Name()},
	}}
	ctx := context.Background()
	if err := e.Client.Create(ctx, ns); err != nil {
		t.Fatalf("create namespace %s: %v", ns.Name, err)
	}
	t.Cleanup(func() {
		e.runAfterEachTest(t, ns.Name)
		e.deleteNamespace(t, ns)
	})
	if e.hasControllerManager() {
		if err := e.waitForServiceAccount(ctx, ns.Name); err != nil {
			t.Fatalf("namespace %s: default ServiceAccount did not appear: %v", ns.Name, err)
		}
	}
	return ns.Name
}

func (e *Env) deleteNamespace(t testing.TB, ns *corev1.Namespace) {
	ctx, cancel := context.WithTimeout(context.Background(), namespaceCleanupTimeout)
	defer cancel()
	err := e.Client.Delete(ctx, ns, client.PropagationPolicy(metav1.DeletePropagationBackground))
	if err != nil && !apierrors.IsNotFound(err) {
		t.Errorf("delete namespace %s: %v", ns.Name, err)
	}
}

// namespaceName turns a test name into a valid, unique namespace name.
func namespaceName(testName string) string {
	var b strings.Builder
	dash := true // no leading '-'
	for _, r := range strings.ToLower(testName) {
		switch {
		case r >= 'a' && r <= 'z' || r >= '0' && r <= '9':
			b.WriteRune(r)
			dash = false
		case !dash:
			b.WriteByte('-')
			dash = true
		}
	}
	name := strings.TrimRight(b.String(), "-")
	if len(name) > namespaceNameMax {
		name = strings.TrimRight(name[:namespaceNameMax], "-")
	}
	if name == "" {
		name = "test"
	}
	return name + "-" + randomSuffix(5)
}

// randomSuffix returns n random lowercase letters and digits.
func randomSuffix(n int) string {
	const alphabet = "abcdefghijklmnopqrstuvwxyz0123456789"
	buf := make([]byte, n)
	_, _ = rand.Read(buf) // never fails, per crypto/rand
	for i := range buf {
		buf[i] = alphabet[int(buf[i])%len(alphabet)]
	}
	return string(buf)
}
