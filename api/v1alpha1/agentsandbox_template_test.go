package v1alpha1_test

import (
	"encoding/json"
	"strings"
	"testing"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/util/intstr"
	"k8s.io/utils/ptr"

	hyperpoolv1alpha1 "github.com/hyperpool/hyperpool/api/v1alpha1"
)

// A list with one class whose template holds a value the API server accepts but the Go
// type cannot hold (a probe port of 2^40 in an int-or-string) decodes: that class reports
// TemplateProblem, the other is intact. Before, the whole list failed.
func TestSandboxListWithUnreadableTemplateDecodes(t *testing.T) {
	const list = `{"apiVersion":"agents.hyperpool.io/v1alpha1","kind":"AgentSandboxList","items":[
	 {"metadata":{"name":"good"},"spec":{"replicas":2,"windows":{"imageBuild":20348},"template":{"spec":{"containers":[{"name":"c","image":"i","livenessProbe":{"httpGet":{"port":8080}}}]}}}},
	 {"metadata":{"name":"bad"},"spec":{"replicas":3,"windows":{"imageBuild":26100},"lifetime":{"maxLifetime":"2h"},"template":{"metadata":{"labels":{"app":"x"}},"spec":{"containers":[{"name":"c","image":"i","livenessProbe":{"httpGet":{"port":1099511627776}}}]}}}}]}`
	var l hyperpoolv1alpha1.AgentSandboxList
	if err := json.Unmarshal([]byte(list), &l); err != nil {
		t.Fatalf("the list must decode whatever one item holds: %v", err)
	}
	good, bad := l.Items[0].Spec, l.Items[1].Spec
	if p := good.TemplateProblem(); p != "" {
		t.Errorf("good class: TemplateProblem() = %q, want none", p)
	}
	if got := good.Template.Spec.Containers[0].LivenessProbe.HTTPGet.Port; got != intstr.FromInt32(8080) {
		t.Errorf("good class: probe port %v, want 8080", got)
	}
	p := bad.TemplateProblem()
	for _, want := range []string{"spec.template cannot be read by the manager", "httpGet.port", "1099511627776"} {
		if !strings.Contains(p, want) {
			t.Errorf("bad class: TemplateProblem() = %q, want it to contain %q", p, want)
		}
	}
	// The rest of the spec is intact; the template is empty, so nothing is built from it.
	if ptr.Deref(bad.Replicas, 0) != 3 || bad.Windows.ImageBuild != 26100 || bad.Lifetime.MaxLifetime.String() != "2h0m0s" {
		t.Errorf("bad class: the fields beside the template were not decoded: %+v", bad)
	}
	if len(bad.Template.Spec.Containers) != 0 {
		t.Errorf("bad class: template %+v, want it empty", bad.Template)
	}

	// The unreadable template is written back as it was read, whatever else changed.
	bad.Replicas = ptr.To[int32](5)
	if p := bad.DeepCopy().TemplateProblem(); p == "" {
		t.Error("DeepCopy lost the template problem")
	}
	out, err := json.Marshal(bad)
	if err != nil {
		t.Fatal(err)
	}
	var back map[string]any
	if err := json.Unmarshal(out, &back); err != nil {
		t.Fatal(err)
	}
	if back["replicas"] != float64(5) || !strings.Contains(string(out), `"port":1099511627776`) || !strings.Contains(string(out), `"labels":{"app":"x"}`) {
		t.Errorf("round trip of the unreadable template: %s", out)
	}

	// The same through the unstructured converter, which the API machinery uses.
	u, err := runtime.DefaultUnstructuredConverter.ToUnstructured(&l.Items[1])
	if err != nil {
		t.Fatal(err)
	}
	var again hyperpoolv1alpha1.AgentSandbox
	if err := runtime.DefaultUnstructuredConverter.FromUnstructured(u, &again); err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(again.Spec.TemplateProblem(), "httpGet.port") {
		t.Errorf("through unstructured: TemplateProblem() = %q", again.Spec.TemplateProblem())
	}

	// A valid spec marshals as before: no trace of the mechanism.
	out, err = json.Marshal(good)
	if err != nil {
		t.Fatal(err)
	}
	if strings.Contains(string(out), "rawTemplate") || strings.Contains(string(out), "templateError") || !strings.Contains(string(out), `"port":8080`) {
		t.Errorf("valid spec marshals as %s", out)
	}
}

// A fault outside the template still fails the decode: only the template is tolerated.
func TestSandboxSpecFaultOutsideTemplateFails(t *testing.T) {
	var s hyperpoolv1alpha1.AgentSandboxSpec
	if err := json.Unmarshal([]byte(`{"replicas":"three","template":{"spec":{"containers":[{"name":"c","image":"i"}]}}}`), &s); err == nil {
		t.Error("a string in spec.replicas decoded without error")
	}
}

// TemplateProblem finds every hardening rule in the template, including those the CRD
// cannot check within its CEL cost budget (a list inside a list).
func TestTemplateProblem(t *testing.T) {
	base := func() hyperpoolv1alpha1.AgentSandboxSpec {
		return hyperpoolv1alpha1.AgentSandboxSpec{Template: corev1.PodTemplateSpec{Spec: corev1.PodSpec{
			AutomountServiceAccountToken: ptr.To(false),
			PriorityClassName:            "sandbox-high",
			Volumes: []corev1.Volume{
				{Name: "scratch", VolumeSource: corev1.VolumeSource{EmptyDir: &corev1.EmptyDirVolumeSource{}}},
				{Name: "cfg", VolumeSource: corev1.VolumeSource{Projected: &corev1.ProjectedVolumeSource{Sources: []corev1.VolumeProjection{
					{ConfigMap: &corev1.ConfigMapProjection{LocalObjectReference: corev1.LocalObjectReference{Name: "cfg"}}}}}}},
			},
			InitContainers: []corev1.Container{{Name: "init", Image: "i"}},
			Containers: []corev1.Container{{Name: "c", Image: "i",
				Ports:   []corev1.ContainerPort{{ContainerPort: 8080}},
				Env:     []corev1.EnvVar{{Name: "A", Value: "a"}, {Name: "B", ValueFrom: &corev1.EnvVarSource{ConfigMapKeyRef: &corev1.ConfigMapKeySelector{Key: "b"}}}},
				EnvFrom: []corev1.EnvFromSource{{ConfigMapRef: &corev1.ConfigMapEnvSource{}}},
			}},
		}}}
	}
	if p := (ptr.To(base())).TemplateProblem(); p != "" {
		t.Fatalf("the base template: TemplateProblem() = %q, want none", p)
	}
	for _, tc := range []struct {
		name   string
		mutate func(s *corev1.PodSpec)
		want   []string
	}{
		{"automountServiceAccountToken", func(s *corev1.PodSpec) { s.AutomountServiceAccountToken = ptr.To(true) },
			[]string{"spec.template.spec.automountServiceAccountToken: true is not allowed", "credentials"}},
		{"system priority class", func(s *corev1.PodSpec) { s.PriorityClassName = "system-node-critical" },
			[]string{"spec.template.spec.priorityClassName", "system-node-critical"}},
		{"secret volume", func(s *corev1.PodSpec) {
			s.Volumes = append(s.Volumes, corev1.Volume{Name: "s", VolumeSource: corev1.VolumeSource{Secret: &corev1.SecretVolumeSource{SecretName: "s"}}})
		}, []string{"spec.template.spec.volumes[2].secret is not allowed"}},
		{"projected service account token", func(s *corev1.PodSpec) {
			p := s.Volumes[1].Projected
			p.Sources = append(p.Sources, corev1.VolumeProjection{ServiceAccountToken: &corev1.ServiceAccountTokenProjection{Path: "t"}})
		}, []string{"spec.template.spec.volumes[1].projected.sources[1] is not allowed", "service account token"}},
		{"projected secret", func(s *corev1.PodSpec) {
			p := s.Volumes[1].Projected
			p.Sources = append(p.Sources, corev1.VolumeProjection{Secret: &corev1.SecretProjection{}})
		}, []string{"spec.template.spec.volumes[1].projected.sources[1] is not allowed"}},
		{"env secretKeyRef", func(s *corev1.PodSpec) {
			c := &s.Containers[0]
			c.Env = append(c.Env, corev1.EnvVar{Name: "TOKEN", ValueFrom: &corev1.EnvVarSource{SecretKeyRef: &corev1.SecretKeySelector{Key: "t"}}})
		}, []string{"spec.template.spec.containers[0].env[2].valueFrom.secretKeyRef is not allowed", "credentials"}},
		{"initContainer env secretKeyRef", func(s *corev1.PodSpec) {
			s.InitContainers[0].Env = []corev1.EnvVar{{Name: "T", ValueFrom: &corev1.EnvVarSource{SecretKeyRef: &corev1.SecretKeySelector{Key: "t"}}}}
		}, []string{"spec.template.spec.initContainers[0].env[0].valueFrom.secretKeyRef is not allowed"}},
		{"envFrom secretRef", func(s *corev1.PodSpec) {
			c := &s.Containers[0]
			c.EnvFrom = append(c.EnvFrom, corev1.EnvFromSource{SecretRef: &corev1.SecretEnvSource{}})
		}, []string{"spec.template.spec.containers[0].envFrom[1].secretRef is not allowed"}},
		{"initContainer envFrom secretRef", func(s *corev1.PodSpec) {
			s.InitContainers[0].EnvFrom = []corev1.EnvFromSource{{SecretRef: &corev1.SecretEnvSource{}}}
		}, []string{"spec.template.spec.initContainers[0].envFrom[0].secretRef is not allowed"}},
		{"hostPort", func(s *corev1.PodSpec) {
			s.Containers[0].Ports = append(s.Containers[0].Ports, corev1.ContainerPort{ContainerPort: 80, HostPort: 80})
		}, []string{"spec.template.spec.containers[0].ports[1].hostPort is not allowed"}},
		{"initContainer hostPort", func(s *corev1.PodSpec) {
			s.InitContainers[0].Ports = []corev1.ContainerPort{{ContainerPort: 80, HostPort: 8080}}
		}, []string{"spec.template.spec.initContainers[0].ports[0].hostPort is not allowed"}},
		{"terminationGracePeriodSeconds a year", func(s *corev1.PodSpec) { s.TerminationGracePeriodSeconds = ptr.To[int64](31536000) },
			[]string{"spec.template.spec.terminationGracePeriodSeconds 31536000 is not allowed", "between 0 and 300"}},
		{"csi volume", func(s *corev1.PodSpec) {
			s.Volumes = append(s.Volumes, corev1.Volume{Name: "v", VolumeSource: corev1.VolumeSource{CSI: &corev1.CSIVolumeSource{Driver: "secrets-store.csi.k8s.io"}}})
		}, []string{"spec.template.spec.volumes[2].csi is not allowed", "volumeClaimTemplate"}},
		{"azureFile volume", func(s *corev1.PodSpec) {
			s.Volumes = append(s.Volumes, corev1.Volume{Name: "v", VolumeSource: corev1.VolumeSource{AzureFile: &corev1.AzureFileVolumeSource{SecretName: "key", ShareName: "s"}}})
		}, []string{"spec.template.spec.volumes[2].azureFile is not allowed", "secretName"}},
		{"gitRepo volume", func(s *corev1.PodSpec) {
			s.Volumes = append(s.Volumes, corev1.Volume{Name: "v", VolumeSource: corev1.VolumeSource{GitRepo: &corev1.GitRepoVolumeSource{Repository: "https://example.com/x.git"}}})
		}, []string{"spec.template.spec.volumes[2].gitRepo is not allowed", "CVE-2024-10220"}},
		{"persistentVolumeClaim volume", func(s *corev1.PodSpec) {
			s.Volumes = append(s.Volumes, corev1.Volume{Name: "v", VolumeSource: corev1.VolumeSource{PersistentVolumeClaim: &corev1.PersistentVolumeClaimVolumeSource{ClaimName: "shared"}}})
		}, []string{"spec.template.spec.volumes[2].persistentVolumeClaim is not allowed", "same claim"}},
		{"flexVolume secretRef", func(s *corev1.PodSpec) {
			s.Volumes = append(s.Volumes, corev1.Volume{Name: "v", VolumeSource: corev1.VolumeSource{FlexVolume: &corev1.FlexVolumeSource{Driver: "d", SecretRef: &corev1.LocalObjectReference{Name: "s"}}}})
		}, []string{"spec.template.spec.volumes[2].flexVolume.secretRef is not allowed", "credentials"}},
		{"cephfs secretRef", func(s *corev1.PodSpec) {
			s.Volumes = append(s.Volumes, corev1.Volume{Name: "v", VolumeSource: corev1.VolumeSource{CephFS: &corev1.CephFSVolumeSource{Monitors: []string{"m"}, SecretRef: &corev1.LocalObjectReference{Name: "s"}}}})
		}, []string{"spec.template.spec.volumes[2].cephfs.secretRef is not allowed"}},
		{"pod gMSA", func(s *corev1.PodSpec) {
			s.SecurityContext = &corev1.PodSecurityContext{WindowsOptions: &corev1.WindowsSecurityContextOptions{GMSACredentialSpecName: ptr.To("webapp")}}
		}, []string{"spec.template.spec.securityContext.windowsOptions.gmsaCredentialSpec", "Active Directory identity"}},
		{"initContainer gMSA", func(s *corev1.PodSpec) {
			s.InitContainers[0].SecurityContext = &corev1.SecurityContext{WindowsOptions: &corev1.WindowsSecurityContextOptions{GMSACredentialSpec: ptr.To("{}")}}
		}, []string{"spec.template.spec.initContainers[0].securityContext.windowsOptions.gmsaCredentialSpec", "Active Directory identity"}},
		{"ephemeralContainer envFrom secretRef", func(s *corev1.PodSpec) {
			s.EphemeralContainers = []corev1.EphemeralContainer{{EphemeralContainerCommon: corev1.EphemeralContainerCommon{
				Name: "e", EnvFrom: []corev1.EnvFromSource{{SecretRef: &corev1.SecretEnvSource{}}}}}}
		}, []string{"spec.template.spec.ephemeralContainers[0].envFrom[0].secretRef is not allowed"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			s := base()
			tc.mutate(&s.Template.Spec)
			p := s.TemplateProblem()
			for _, want := range tc.want {
				if !strings.Contains(p, want) {
					t.Errorf("TemplateProblem() = %q, want it to contain %q", p, want)
				}
			}
		})
	}
}

// The grace period every pod of a class gets: the template's, Kubernetes' 30 s when unset,
// and the cap for a class stored before the CRD had one.
func TestEffectiveTerminationGracePeriodSeconds(t *testing.T) {
	for _, tc := range []struct {
		template *int64
		want     int64
	}{{nil, 30}, {ptr.To[int64](0), 0}, {ptr.To[int64](120), 120}, {ptr.To[int64](300), 300}, {ptr.To[int64](31536000), 300}, {ptr.To[int64](-5), 0}} {
		var s hyperpoolv1alpha1.AgentSandboxSpec
		s.Template.Spec.TerminationGracePeriodSeconds = tc.template
		if got := s.EffectiveTerminationGracePeriodSeconds(); got != tc.want {
			t.Errorf("template grace %v: EffectiveTerminationGracePeriodSeconds() = %d, want %d", ptr.Deref(tc.template, -1), got, tc.want)
		}
	}
}
