package runtimereport

import (
	"strings"
	"testing"

	"k8s.io/apimachinery/pkg/util/validation"
)

// The node agent labels Nodes with LabelKey(handler) = LabelValue; the API server refuses a
// label whose key or value is invalid, which would fail every write of the agent's labels.
// A RuntimeClass handler is a DNS label, at most 63 characters.
func TestLabelKeyIsAValidLabelForEveryHandler(t *testing.T) {
	for _, handler := range []string{"runhcs-wcow-hypervisor", "runhcs-wcow-hypervisor-26100", "a", strings.Repeat("h", validation.DNS1123LabelMaxLength)} {
		if bad := validation.IsDNS1123Label(handler); len(bad) > 0 {
			t.Fatalf("test handler %q is not a RuntimeClass handler: %v", handler, bad)
		}
		if bad := validation.IsQualifiedName(LabelKey(handler)); len(bad) > 0 {
			t.Errorf("LabelKey(%q) = %q is not a label key: %v", handler, LabelKey(handler), bad)
		}
		if !strings.HasPrefix(LabelKey(handler), LabelPrefix) {
			t.Errorf("LabelKey(%q) = %q is not under %s", handler, LabelKey(handler), LabelPrefix)
		}
	}
	if bad := validation.IsValidLabelValue(LabelValue); len(bad) > 0 {
		t.Errorf("LabelValue %q is not a label value: %v", LabelValue, bad)
	}
}
