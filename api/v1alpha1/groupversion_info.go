// Package v1alpha1 contains the hyperpool API: AgentSandbox (a sandbox class and its warm
// pool), AgentSession (one claim on one sandbox, with a lifetime) and AgentQuota (a
// namespace's ceiling), in the API group agents.hyperpool.io.
//
// +kubebuilder:object:generate=true
// +groupName=agents.hyperpool.io
package v1alpha1

import (
	"k8s.io/apimachinery/pkg/runtime/schema"
	"sigs.k8s.io/controller-runtime/pkg/scheme"
)

var (
	// GroupVersion is the group and version of every hyperpool kind.
	GroupVersion = schema.GroupVersion{Group: "agents.hyperpool.io", Version: "v1alpha1"}

	// SchemeBuilder registers the hyperpool kinds with a runtime.Scheme.
	SchemeBuilder = &scheme.Builder{GroupVersion: GroupVersion}

	// AddToScheme adds the hyperpool kinds to a scheme.
	AddToScheme = SchemeBuilder.AddToScheme
)
