package controllers

import (
	"testing"

	"k8s.io/apimachinery/pkg/api/resource"

	agentsv1alpha1 "github.com/hyperpool/hyperpool/api/v1alpha1"
	"github.com/hyperpool/hyperpool/test/builders"
)

func TestEnforcedQuotaBlocks(t *testing.T) {
	sandbox := agentsv1alpha1.Footprint{Memory: resource.MustParse("1536Mi"), VCPUs: 2}
	inUse := func(warm int, memory string, cpu int64) *usage {
		return &usage{warm: warm, memory: resource.MustParse(memory), cpu: cpu}
	}
	quota := func(q *builders.AgentQuotaWrapper) *enforcedQuota {
		return &enforcedQuota{name: "q", hard: q.Obj().Spec.Hard}
	}
	tests := []struct {
		name  string
		quota *enforcedQuota
		used  *usage
		f     agentsv1alpha1.Footprint
		warm  bool
		// wantReason is the blocker's reason, "" for none; wantMessage its message.
		wantReason, wantMessage string
	}{
		{"no limit", quota(builders.AgentQuota("team", "q")), inUse(100, "1Ti", 500), sandbox, true, "", ""},

		{"warmSandboxes: the last one fits", quota(builders.AgentQuota("team", "q").WarmSandboxes(4)), inUse(3, "0", 0), sandbox, true, "", ""},
		{"warmSandboxes: full, the pool waits", quota(builders.AgentQuota("team", "q").WarmSandboxes(4)), inUse(4, "0", 0), sandbox, true,
			agentsv1alpha1.ReasonWaitingForQuota, "warmSandboxes: 1 requested + 4 in use > 4 allowed by AgentQuota q"},
		{"warmSandboxes: a bound or cold pod is not warm", quota(builders.AgentQuota("team", "q").WarmSandboxes(4)), inUse(4, "0", 0), sandbox, false, "", ""},
		{"warmSandboxes 0: no warm pod ever fits", quota(builders.AgentQuota("team", "q").WarmSandboxes(0)), inUse(0, "0", 0), sandbox, true,
			agentsv1alpha1.ReasonExceedsQuota, "warmSandboxes: 1 requested + 0 in use > 0 allowed by AgentQuota q"},

		{"memory: fits exactly", quota(builders.AgentQuota("team", "q").Memory("4608Mi")), inUse(0, "3Gi", 0), sandbox, false, "", ""},
		{"memory: over, waits", quota(builders.AgentQuota("team", "q").Memory("4Gi")), inUse(0, "3Gi", 0), sandbox, false,
			agentsv1alpha1.ReasonWaitingForQuota, "memory: 1536Mi requested + 3Gi in use > 4Gi allowed by AgentQuota q"},
		{"memory: one sandbox alone exceeds the quota", quota(builders.AgentQuota("team", "q").Memory("1Gi")), inUse(0, "0", 0), sandbox, false,
			agentsv1alpha1.ReasonExceedsQuota, "memory: 1536Mi requested + 0 in use > 1Gi allowed by AgentQuota q"},

		{"cpu: fits exactly", quota(builders.AgentQuota("team", "q").CPU("8")), inUse(0, "0", 6), sandbox, false, "", ""},
		{"cpu: over, waits", quota(builders.AgentQuota("team", "q").CPU("8")), inUse(0, "0", 7), sandbox, false,
			agentsv1alpha1.ReasonWaitingForQuota, "cpu: 2 requested + 7 in use > 8 allowed by AgentQuota q"},
		{"cpu: one sandbox alone exceeds the quota", quota(builders.AgentQuota("team", "q").CPU("1")), inUse(0, "0", 0), sandbox, false,
			agentsv1alpha1.ReasonExceedsQuota, "cpu: 2 requested + 0 in use > 1 allowed by AgentQuota q"},

		{"warmSandboxes is checked first", quota(builders.AgentQuota("team", "q").WarmSandboxes(1).Memory("1Gi").CPU("1")), inUse(1, "1Gi", 1), sandbox, true,
			agentsv1alpha1.ReasonWaitingForQuota, "warmSandboxes: 1 requested + 1 in use > 1 allowed by AgentQuota q"},
		{"then memory", quota(builders.AgentQuota("team", "q").Memory("4Gi").CPU("8")), inUse(0, "3Gi", 7), sandbox, false,
			agentsv1alpha1.ReasonWaitingForQuota, "memory: 1536Mi requested + 3Gi in use > 4Gi allowed by AgentQuota q"},
		{"the manager's default quota says so", &enforcedQuota{hard: builders.AgentQuota("", "").Memory("2Gi").Obj().Spec.Hard},
			inUse(0, "1Gi", 0), sandbox, false,
			agentsv1alpha1.ReasonWaitingForQuota, "memory: 1536Mi requested + 1Gi in use > 2Gi allowed by the manager's default quota"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			before := *tt.used
			before.memory = tt.used.memory.DeepCopy()
			blk := tt.quota.blocks(tt.used, tt.f, tt.warm)
			switch {
			case tt.wantReason == "" && blk != nil:
				t.Errorf("blocked: %s: %s; want nothing", blk.Reason, blk.Message)
			case tt.wantReason != "" && blk == nil:
				t.Errorf("not blocked; want %s: %s", tt.wantReason, tt.wantMessage)
			case blk != nil && (blk.Reason != tt.wantReason || blk.Message != tt.wantMessage):
				t.Errorf("blocked %s: %q; want %s: %q", blk.Reason, blk.Message, tt.wantReason, tt.wantMessage)
			}
			if tt.used.warm != before.warm || tt.used.cpu != before.cpu || !tt.used.memory.Equal(before.memory) {
				t.Errorf("blocks changed the usage it measured: %+v, was %+v", tt.used, before)
			}
		})
	}
}
