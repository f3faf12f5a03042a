package controllers

import (
	"k8s.io/apimachinery/pkg/api/equality"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/conversion"
)

// statusEquality compares a status a reconcile computed with the stored one, field by
// field, so a field added to a status is compared without anyone remembering to:
// equality.Semantic (quantities by value, times as the API stores them), and conditions
// without their transition times, which meta.SetStatusCondition keeps when nothing else
// changed.
var statusEquality = func() conversion.Equalities {
	e := equality.Semantic.Copy()
	if err := e.AddFunc(func(a, b metav1.Condition) bool {
		return a.Type == b.Type && a.Status == b.Status && a.Reason == b.Reason &&
			a.Message == b.Message && a.ObservedGeneration == b.ObservedGeneration
	}); err != nil {
		panic(err)
	}
	return e
}()

// sameStatus reports whether two statuses of one kind say the same (statusEquality).
func sameStatus[T any](a, b *T) bool {
	return statusEquality.DeepEqual(a, b)
}
