// Package nodeagenttest is a Windows node's HCS and container runtime as the node agent's
// tests see them, for tests that run the agent against a real API server from another
// package. Neither is safe for concurrent use: a test changes them between the agent's
// rounds, never during one.
package nodeagenttest

import (
	"context"
	"slices"

	"github.com/hyperpool/hyperpool/internal/nodeagent"
)

// Host is a node's HCS: it lists VMs; terminating one does nothing, so a test decides when
// a VM is gone.
type Host struct{ VMs []nodeagent.UtilityVM }

var _ nodeagent.Host = (*Host)(nil)

// ListUtilityVMs returns a copy of VMs.
func (h *Host) ListUtilityVMs(context.Context) ([]nodeagent.UtilityVM, error) {
	return slices.Clone(h.VMs), nil
}

// TerminateUtilityVM does nothing.
func (h *Host) TerminateUtilityVM(context.Context, string) error { return nil }

// Runtime is the container runtime's pod sandboxes, by sandbox ID; a sandbox it no longer
// knows is one deleted from the map.
type Runtime map[string]nodeagent.PodRef

var _ nodeagent.SandboxResolver = Runtime(nil)

// ResolveSandboxes returns the map itself.
func (r Runtime) ResolveSandboxes(context.Context) (map[string]nodeagent.PodRef, error) {
	return r, nil
}
