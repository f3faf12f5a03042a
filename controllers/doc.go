// Package controllers holds hyperpool's three reconcilers and the state they share:
//
//   - AgentSandboxReconciler keeps each class's warm pool of Windows sandbox pods at its
//     target, with the class's egress NetworkPolicy in place first;
//   - AgentSessionReconciler binds a session to a warm pod (or starts a cold one), tracks
//     it, and ends it by its deadline, destroying its pod;
//   - AgentQuotaReconciler reports each namespace's quota usage and FIFO queue (the quota
//     itself is enforced where sessions are admitted and pods created, by the quotaKeeper).
//
// SetupWithManager (setup.go) constructs all of it. docs/design.md describes the flows, the
// invariants and each in-memory state holder.
package controllers
