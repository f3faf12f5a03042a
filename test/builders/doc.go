// Package builders makes the objects tests create: AgentSandbox, AgentSession, AgentQuota
// and Pod, in the style of JobSet's and Kueue's testing wrappers.
//
// Each builder starts from the defaults the tests share and takes one setter per field a
// test cares about; Obj returns the object:
//
//	sb := builders.AgentSandbox(ns, "pool").Replicas(2).ImageBuild(20348).Obj()
//	s := builders.AgentSession(ns, "s1", "pool").MaxLifetime(time.Minute).Obj()
//	q := builders.AgentQuota(ns, "quota").Sessions(3).Obj()
//	p := builders.Pod(ns, "pool-abcde").Label(agentsv1alpha1.ClassLabel, "pool").Ready().Obj()
//
// Obj returns a deep copy, so a builder can be kept and built from again. Setters change
// the builder and return it; none of them validates, so a test can build the invalid
// objects it means the API server or the controllers to refuse.
package builders
