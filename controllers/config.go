package controllers

import (
	"fmt"
	"slices"
	"strconv"
	"strings"
	"time"

	"k8s.io/apimachinery/pkg/api/resource"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/utils/clock"

	agentsv1alpha1 "github.com/hyperpool/hyperpool/api/v1alpha1"
	"github.com/hyperpool/hyperpool/internal/poolbook"
)

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
	// DefaultQuota applies to namespaces without an AgentQuota (nil: no limit there). With
	// sessions=0 a platform team denies by default.
	DefaultQuota *agentsv1alpha1.QuotaLimits
	// DefaultQuotaNamespaces selects the namespaces DefaultQuota applies to (nil: all).
	DefaultQuotaNamespaces labels.Selector
	// InternetEgressExcept are the address ranges (CIDRs, IPv4 and IPv6) that a class with
	// egress Internet may not reach. Default: DefaultInternetEgressExcept.
	InternetEgressExcept []string
	// MaxQueuedSessions is how many sessions may wait for a namespace's quota when its
	// AgentQuota sets no spec.maxQueued, or under DefaultQuota; a session beyond it ends
	// Failed with reason QueueFull. 0: no session waits.
	MaxQueuedSessions int32
	// AutoscaleRateWindow is the time constant of the autoscaler's fast bind-rate average
	// (0: 1m): how quickly it follows a burst. The slow average's is 20 times longer.
	// The benchmark shortens it with the rest of its compressed day.
	AutoscaleRateWindow time.Duration
	// AutoscaleDefaultRefillTime is the refill time the autoscaler assumes for a class
	// before it has measured one of its warm pods becoming Ready (0: 20s).
	AutoscaleDefaultRefillTime time.Duration
	// SessionWorkers and SandboxWorkers are the reconcilers' concurrency.
	SessionWorkers int
	SandboxWorkers int
	// PoolBookAuditInterval is how often the pool book is compared with a list of every
	// sandbox pod in the cache (0: never). A difference is a bug; the audit reports it
	// (metric hyperpool_pool_book_drift_total, a Warning Event on the class) and the book
	// takes the cache's view of the pods that differ.
	PoolBookAuditInterval time.Duration
	// PoolBook, when set, is the book the controllers keep (nil: a new one). The tests
	// pass their own, to compare it with the cache after each test (book.DiffNamespace).
	PoolBook *poolbook.Book
	// Clock is the controllers' clock (nil: the real one). Tests set a fake one.
	Clock clock.PassiveClock
	// ReconcileObserver, when set, is called after every reconcile with the controller's
	// name ("agentsandbox", "agentsession", "agentquota") and the object's key. The tests
	// count reconciles with it, to prove that bad input settles instead of looping.
	ReconcileObserver func(controller string, key types.NamespacedName)
}

// DefaultConfig returns the configuration the manager's flags default to.
func DefaultConfig() Config {
	return Config{
		HyperVRuntimeClass:  "hyperv",
		ProcessRuntimeClass: "process",
		// Windows images are gigabytes: a first pull on a fresh node takes minutes.
		WarmPodReadyTimeout:  10 * time.Minute,
		InternetEgressExcept: slices.Clone(DefaultInternetEgressExcept),
		MaxQueuedSessions:    1000,
		SessionWorkers:       16,
		SandboxWorkers:       4,
		// A list of every sandbox pod: cheap once in 10 minutes, and drift is a bug.
		PoolBookAuditInterval: 10 * time.Minute,
	}
}

// ParseQuotaLimits parses a quota written as the --default-quota flag takes it:
// "sessions=20,warmSandboxes=10,memory=64Gi,cpu=32" (any subset; "" means no quota).
func ParseQuotaLimits(s string) (*agentsv1alpha1.QuotaLimits, error) {
	if strings.TrimSpace(s) == "" {
		return nil, nil
	}
	limits := &agentsv1alpha1.QuotaLimits{}
	for _, kv := range strings.Split(s, ",") {
		key, value, ok := strings.Cut(strings.TrimSpace(kv), "=")
		if !ok {
			return nil, fmt.Errorf("quota %q: %q is not key=value; use e.g. sessions=20,memory=64Gi", s, kv)
		}
		switch key {
		case "sessions", "warmSandboxes":
			n, err := strconv.ParseInt(value, 10, 32)
			if err != nil || n < 0 {
				return nil, fmt.Errorf("quota %q: %s=%q must be a whole number >= 0", s, key, value)
			}
			v := int32(n)
			if key == "sessions" {
				limits.Sessions = &v
			} else {
				limits.WarmSandboxes = &v
			}
		case "memory", "cpu":
			q, err := resource.ParseQuantity(value)
			if err != nil || q.Sign() < 0 {
				return nil, fmt.Errorf("quota %q: %s=%q must be a non-negative quantity, e.g. 64Gi or 32", s, key, value)
			}
			if key == "memory" {
				limits.Memory = &q
			} else {
				limits.CPU = &q
			}
		default:
			return nil, fmt.Errorf("quota %q: unknown resource %q; use sessions, warmSandboxes, memory or cpu", s, key)
		}
	}
	return limits, nil
}
