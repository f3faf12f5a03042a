package controllers

import "time"

// Config is the manager's configuration that the controllers act on. cmd/manager fills it
// from flags; tests fill it directly.
type Config struct {
	// HyperVRuntimeClass is the RuntimeClass of HyperV sandboxes that name none themselves.
	HyperVRuntimeClass string
	// ProcessRuntimeClass is the RuntimeClass of Process sandboxes that name none themselves.
	ProcessRuntimeClass string
	// WarmPodReadyTimeout is how long a warm pod may take to become Ready before it is
	// replaced. It doubles with each consecutive timeout of a pool (up to 16x), so a pool
	// whose pods never start backs off instead of churning.
	WarmPodReadyTimeout time.Duration
	// SessionWorkers and SandboxWorkers are the reconcilers' concurrency.
	SessionWorkers int
	SandboxWorkers int
}

// DefaultConfig returns the configuration the manager's flags default to.
func DefaultConfig() Config {
	return Config{
		HyperVRuntimeClass:  "hyperv",
		ProcessRuntimeClass: "process",
		// Windows images are gigabytes: a first pull on a fresh node takes minutes.
		WarmPodReadyTimeout: 10 * time.Minute,
		SessionWorkers:      16,
		SandboxWorkers:      4,
	}
}
