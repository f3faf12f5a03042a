//go:build !windows

package helm_test

import (
	"os"
	"path/filepath"
	"reflect"
	"slices"
	"strings"
	"testing"

	rbacv1 "k8s.io/api/rbac/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"

	"github.com/hyperpool/hyperpool/test/framework"
)

// agentBackendSecretsRule reports whether rule is the agent-backend role's one read of
// Secrets: get alone (no list or watch, which would hand out every value at once), on
// secrets alone, in the core group, with nothing else in the rule.
func agentBackendSecretsRule(role *unstructured.Unstructured, rule rbacv1.PolicyRule) bool {
	return role.GetKind() == "ClusterRole" && strings.HasSuffix(role.GetName(), "-agent-backend") &&
		slices.Equal(rule.APIGroups, []string{""}) && slices.Equal(rule.Resources, []string{"secrets"}) &&
		slices.Equal(rule.Verbs, []string{"get"}) && len(rule.ResourceNames) == 0 && len(rule.NonResourceURLs) == 0
}

// TestAgentBackendRole: the agent-backend ClusterRole is the session-user role's rules plus
// what delivering credentials and running commands take (pods/exec create and get, the
// latter for an exec over WebSocket; pods get; secrets get), in the chart and in config/rbac alike; it is not aggregated into "edit" (which
// would widen every editor's reach to nothing new, but hide where Secret reads come from),
// and userRoles.agentBackend.enabled=false leaves it out.
func TestAgentBackendRole(t *testing.T) {
	b, err := os.ReadFile(filepath.Join(env.RepoRoot, "config", "rbac", "user_roles.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	config := framework.DecodeManifest(t, b)
	chart := framework.DecodeManifest(t, helmTemplate(t, "hyperpool", "hyperpool-system"))

	sessionUser := rules(t, only(t, config, "ClusterRole", "hyperpool-session-user"))
	want := append(slices.Clone(sessionUser),
		rbacv1.PolicyRule{APIGroups: []string{""}, Resources: []string{"pods"}, Verbs: []string{"get"}},
		rbacv1.PolicyRule{APIGroups: []string{""}, Resources: []string{"pods/exec"}, Verbs: []string{"create", "get"}},
		rbacv1.PolicyRule{APIGroups: []string{""}, Resources: []string{"secrets"}, Verbs: []string{"get"}})
	for source, objs := range map[string][]*unstructured.Unstructured{"config/rbac/user_roles.yaml": config, "chart defaults": chart} {
		role := only(t, objs, "ClusterRole", "hyperpool-agent-backend")
		if got := rules(t, role); !reflect.DeepEqual(got, want) {
			t.Errorf("%s: hyperpool-agent-backend rules\n  %+v\nwant session-user's plus pods get, pods/exec create and get, secrets get:\n  %+v", source, got, want)
		}
		if _, aggregated := role.GetLabels()["rbac.authorization.k8s.io/aggregate-to-edit"]; aggregated {
			t.Errorf("%s: hyperpool-agent-backend is aggregated into edit", source)
		}
		secretRules := 0
		for _, rule := range rules(t, role) {
			if slices.Contains(rule.Resources, "secrets") {
				secretRules++
				if !agentBackendSecretsRule(role, rule) {
					t.Errorf("%s: Secrets rule %+v, want get alone", source, rule)
				}
			}
		}
		if secretRules != 1 {
			t.Errorf("%s: %d rules on secrets, want 1", source, secretRules)
		}
	}
	// No other role of the chart reads Secrets, whatever its name.
	for _, o := range find(chart, "ClusterRole") {
		if o.GetName() == "hyperpool-agent-backend" {
			continue
		}
		for _, rule := range rules(t, o) {
			if slices.Contains(rule.Resources, "secrets") {
				t.Errorf("ClusterRole %s reads Secrets: %+v", o.GetName(), rule)
			}
		}
	}

	off := framework.DecodeManifest(t, helmTemplate(t, "hyperpool", "hyperpool-system", "--set", "userRoles.agentBackend.enabled=false"))
	for _, o := range find(off, "ClusterRole") {
		if strings.HasSuffix(o.GetName(), "-agent-backend") {
			t.Errorf("userRoles.agentBackend.enabled=false renders %s", o.GetName())
		}
	}
	only(t, off, "ClusterRole", "hyperpool-session-user")
	noUserRoles := framework.DecodeManifest(t, helmTemplate(t, "hyperpool", "hyperpool-system", "--set", "userRoles.enabled=false"))
	for _, o := range find(noUserRoles, "ClusterRole") {
		if strings.HasSuffix(o.GetName(), "-agent-backend") {
			t.Errorf("userRoles.enabled=false renders %s", o.GetName())
		}
	}

	out, err := runErr(t, nil, "helm", "template", "x", chartDir(), "--set", "userRoles.agentBackend.enable=false")
	if err == nil || !strings.Contains(err.Error(), "additional properties 'enable' not allowed") {
		t.Errorf("--set userRoles.agentBackend.enable=false: %v, want the schema to refuse the typo\n%.300s", err, out)
	}
}
