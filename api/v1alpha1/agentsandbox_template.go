package v1alpha1

import (
	"encoding/json"
	"fmt"
	"strings"

	corev1 "k8s.io/api/core/v1"
)

// UnmarshalJSON decodes a spec the way encoding/json would, except that a spec.template the
// PodTemplateSpec type cannot hold does not fail the decode.
//
// The API server judges spec.template by its OpenAPI schema alone, which lets through values
// the Go types refuse: an integer port of a probe or lifecycle handler (an int-or-string in
// the schema, without a format) of 2^40 is stored, yet does not fit the int32 of
// intstr.IntOrString. Failing here would fail the manager's list/watch of every AgentSandbox
// in the cluster. Instead, the template decodes as empty, the raw JSON is kept (MarshalJSON
// writes it back unchanged) and TemplateProblem reports it, so the manager reports it on this
// one class (reason InvalidSpec) and creates no pod from it.
func (s *AgentSandboxSpec) UnmarshalJSON(b []byte) error {
	type plain AgentSandboxSpec // the same fields without the methods: no recursion
	var p plain
	err := json.Unmarshal(b, &p)
	if err == nil {
		*s = AgentSandboxSpec(p)
		return nil
	}
	var rest struct {
		plain
		// Shadows plain.Template (a shallower field wins in encoding/json).
		Template json.RawMessage `json:"template"`
	}
	if json.Unmarshal(b, &rest) != nil {
		return err // the fault is not in the template alone
	}
	var t corev1.PodTemplateSpec
	terr := json.Unmarshal(rest.Template, &t)
	if terr == nil {
		return err // not a template problem after all
	}
	*s = AgentSandboxSpec(rest.plain)
	s.Template = corev1.PodTemplateSpec{}
	s.rawTemplate = string(rest.Template)
	s.templateError = terr.Error()
	return nil
}

// MarshalJSON encodes the spec as encoding/json would. A spec whose template could not be
// decoded writes that template back as it was read, so that a write of the object (a status
// or finalizer update) never rewrites a value the manager could not read.
func (s AgentSandboxSpec) MarshalJSON() ([]byte, error) {
	type plain AgentSandboxSpec
	if s.rawTemplate == "" {
		return json.Marshal(plain(s))
	}
	return json.Marshal(struct {
		plain
		Template json.RawMessage `json:"template"`
	}{plain(s), json.RawMessage(s.rawTemplate)})
}

// TemplateProblem says why the manager must not create pods from spec.template, or "" when
// it may. The message names the field and says what to do; the manager reports it on the
// class with reason InvalidSpec.
//
// It reports:
//   - a stored template the PodTemplateSpec type cannot hold (see UnmarshalJSON);
//   - the rules of the tenant boundary that the CRD cannot check: its CEL rules have a cost
//     budget, and a rule that walks a list inside a list (env of a container, ports of a
//     container) exceeds it. A credential in a warm pod (env[].valueFrom.secretKeyRef,
//     envFrom[].secretRef) and ports[].hostPort are found here only;
//   - the rules the CRD does check (automountServiceAccountToken: true, secret and projected
//     service account token volumes, system- priority classes, csi, azureFile, secretRef
//     and persistentVolumeClaim volumes, gMSA, terminationGracePeriodSeconds over 300), for
//     a class stored before the CRD checked them.
func (s *AgentSandboxSpec) TemplateProblem() string {
	if s.templateError != "" {
		return fmt.Sprintf("spec.template cannot be read by the manager (%s): the API server stored a value out of range for its type, e.g. a probe port above 65535; correct it",
			strings.TrimPrefix(s.templateError, "json: "))
	}
	spec := &s.Template.Spec
	const noCredentials = "a warm sandbox holds no credentials, they come with the session"
	if spec.AutomountServiceAccountToken != nil && *spec.AutomountServiceAccountToken {
		return "spec.template.spec.automountServiceAccountToken: true is not allowed: " + noCredentials + "; remove it"
	}
	if strings.HasPrefix(spec.PriorityClassName, "system-") {
		return fmt.Sprintf("spec.template.spec.priorityClassName %q is not allowed: system- priority classes are for the cluster's own components; use a priority class of your own", spec.PriorityClassName)
	}
	if g := spec.TerminationGracePeriodSeconds; g != nil && (*g < 0 || *g > MaxTerminationGracePeriodSeconds) {
		return fmt.Sprintf("spec.template.spec.terminationGracePeriodSeconds %d is not allowed: it must be between 0 and %d (5 minutes), since a sandbox's VM keeps running for its grace period after its session ends; shorten it (unset: 30)", *g, MaxTerminationGracePeriodSeconds)
	}
	if problem := gmsaProblem(spec); problem != "" {
		return problem
	}
	for i, v := range spec.Volumes {
		if v.Secret != nil {
			return fmt.Sprintf("spec.template.spec.volumes[%d].secret is not allowed: %s; remove the volume", i, noCredentials)
		}
		if problem := volumeProblem(i, &v.VolumeSource); problem != "" {
			return problem
		}
		if v.Projected == nil {
			continue
		}
		for j, src := range v.Projected.Sources {
			if src.ServiceAccountToken != nil || src.Secret != nil {
				return fmt.Sprintf("spec.template.spec.volumes[%d].projected.sources[%d] is not allowed: a service account token or a Secret; %s; remove it", i, j, noCredentials)
			}
		}
	}
	type container struct {
		path    string
		env     []corev1.EnvVar
		envFrom []corev1.EnvFromSource
		ports   []corev1.ContainerPort
	}
	var all []container
	for i, c := range spec.InitContainers {
		all = append(all, container{fmt.Sprintf("spec.template.spec.initContainers[%d]", i), c.Env, c.EnvFrom, c.Ports})
	}
	for i, c := range spec.Containers {
		all = append(all, container{fmt.Sprintf("spec.template.spec.containers[%d]", i), c.Env, c.EnvFrom, c.Ports})
	}
	for i, c := range spec.EphemeralContainers {
		all = append(all, container{fmt.Sprintf("spec.template.spec.ephemeralContainers[%d]", i), c.Env, c.EnvFrom, c.Ports})
	}
	for _, c := range all {
		for i, e := range c.env {
			if e.ValueFrom != nil && e.ValueFrom.SecretKeyRef != nil {
				return fmt.Sprintf("%s.env[%d].valueFrom.secretKeyRef is not allowed: %s; pass the value with the session", c.path, i, noCredentials)
			}
		}
		for i, e := range c.envFrom {
			if e.SecretRef != nil {
				return fmt.Sprintf("%s.envFrom[%d].secretRef is not allowed: %s; pass the values with the session", c.path, i, noCredentials)
			}
		}
		for i, p := range c.ports {
			if p.HostPort != 0 {
				return fmt.Sprintf("%s.ports[%d].hostPort is not allowed: a sandbox never listens on the node's address; remove it and reach the pod by its IP", c.path, i)
			}
		}
	}
	return ""
}

// EffectiveTerminationGracePeriodSeconds is the grace period every pod of the class gets:
// the template's, or Kubernetes' default of 30 seconds when the template sets none, and never
// more than MaxTerminationGracePeriodSeconds (a class stored before the CRD capped it). A
// delete of a sandbox pod that asks for a longer grace outlasts the class's deadlines.
func (s *AgentSandboxSpec) EffectiveTerminationGracePeriodSeconds() int64 {
	g := s.Template.Spec.TerminationGracePeriodSeconds
	if g == nil {
		return corev1.DefaultTerminationGracePeriodSeconds
	}
	return min(max(*g, 0), MaxTerminationGracePeriodSeconds)
}

// volumeProblem reports a volume kind that the CRD refuses in a template (for a class stored
// before it did): one that mounts with a Secret, or a claim every pod of the pool would share.
func volumeProblem(i int, v *corev1.VolumeSource) string {
	const noCredentials = "the volume is mounted with a Secret, and a warm sandbox holds no credentials, they come with the session"
	const ownStorage = "for storage of its own use volumes[].ephemeral.volumeClaimTemplate"
	field := func(kind string) string { return fmt.Sprintf("spec.template.spec.volumes[%d].%s", i, kind) }
	switch {
	case v.CSI != nil:
		return field("csi") + " is not allowed: a CSI volume can carry node-publish secrets and mounts storage the driver may share between pods; " + ownStorage
	case v.AzureFile != nil:
		return field("azureFile") + " is not allowed: " + noCredentials + " (its secretName); remove the volume (" + ownStorage + ")"
	case v.GitRepo != nil:
		return field("gitRepo") + " is not allowed: the kubelet runs git for it on the node (CVE-2024-10220), and the volume kind is deprecated; clone the repository inside the sandbox after the bind"
	case v.PersistentVolumeClaim != nil:
		return field("persistentVolumeClaim") + " is not allowed: every warm sandbox of the pool would mount the same claim, so one session's files would reach the next; use volumes[].ephemeral.volumeClaimTemplate for a claim per sandbox"
	}
	withSecret := map[string]bool{
		"cephfs":     v.CephFS != nil && v.CephFS.SecretRef != nil,
		"cinder":     v.Cinder != nil && v.Cinder.SecretRef != nil,
		"flexVolume": v.FlexVolume != nil && v.FlexVolume.SecretRef != nil,
		"iscsi":      v.ISCSI != nil && v.ISCSI.SecretRef != nil,
		"rbd":        v.RBD != nil && v.RBD.SecretRef != nil,
		"scaleIO":    v.ScaleIO != nil, // its secretRef is required
		"storageos":  v.StorageOS != nil && v.StorageOS.SecretRef != nil,
	}
	for _, kind := range []string{"cephfs", "cinder", "flexVolume", "iscsi", "rbd", "scaleIO", "storageos"} {
		if withSecret[kind] {
			return field(kind+".secretRef") + " is not allowed: " + noCredentials + "; remove the volume (" + ownStorage + ")"
		}
	}
	return ""
}

// gmsaProblem reports a gMSA credential spec in the pod's or a container's Windows options:
// a warm sandbox would hold an Active Directory identity before any session takes it.
func gmsaProblem(spec *corev1.PodSpec) string {
	const why = " and gmsaCredentialSpecName are not allowed: a warm sandbox would hold an Active Directory identity before any session takes it; remove them"
	hasGMSA := func(w *corev1.WindowsSecurityContextOptions) bool {
		return w != nil && (w.GMSACredentialSpec != nil || w.GMSACredentialSpecName != nil)
	}
	if spec.SecurityContext != nil && hasGMSA(spec.SecurityContext.WindowsOptions) {
		return "spec.template.spec.securityContext.windowsOptions.gmsaCredentialSpec" + why
	}
	lists := []struct {
		name       string
		containers []corev1.Container
	}{{"initContainers", spec.InitContainers}, {"containers", spec.Containers}}
	for _, list := range lists {
		for i, c := range list.containers {
			if c.SecurityContext != nil && hasGMSA(c.SecurityContext.WindowsOptions) {
				return fmt.Sprintf("spec.template.spec.%s[%d].securityContext.windowsOptions.gmsaCredentialSpec", list.name, i) + why
			}
		}
	}
	return ""
}
