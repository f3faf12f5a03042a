//go:build !windows

package attack

import (
	"context"
	"testing"

	corev1 "k8s.io/api/core/v1"

	"github.com/hyperpool/hyperpool/test/builders"
)

// A class author cannot give a class's warm pods a priority class the platform team has not
// listed: config/policy (the chart's admissionPolicies.allowedPriorityClasses at its
// default) lists none. test/helm's TestChartPriorityClassAllowList checks a non-empty list.
func TestTemplatePriorityClassNotListedIsRefused(t *testing.T) {
	t.Parallel()
	ns := env.CreateNamespace(t)
	c := templateAuthor(t, ns)
	for _, name := range []string{"sandbox-high", "preempt-everything"} {
		class := builders.AgentSandbox(ns, "prio-"+name).PodSpec(func(p *corev1.PodSpec) { p.PriorityClassName = name }).Obj()
		wantTemplateRefused(t, c, "priorityClassName "+name, class,
			"spec.template.spec.priorityClassName "+name+" is not allowed", "the platform team allows none",
			"admissionPolicies.allowedPriorityClasses")
	}
	// A class without one is fine; so is changing a stored class's other fields.
	class := builders.AgentSandbox(ns, "plain").Obj()
	if err := c.Create(context.Background(), class); err != nil {
		t.Fatalf("a class without priorityClassName: %v", err)
	}
}
