package v1alpha1

import (
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

// AutoscalingSpec sizes a warm pool by demand. With it, the manager owns spec.replicas: it
// writes the recommendation there (through /scale) and the pool follows it. Do not point a
// HorizontalPodAutoscaler or KEDA at a class that has it: their writes are reported by the
// ScaleOverridden condition and ignored. The model is in docs/autoscaling.md.
//
// +kubebuilder:validation:XValidation:rule="!has(self.minReplicas) || self.minReplicas <= self.maxReplicas",message="spec.autoscaling.minReplicas must not be more than spec.autoscaling.maxReplicas; lower minReplicas or raise maxReplicas"
type AutoscalingSpec struct {
	// minReplicas is the fewest warm sandboxes the pool keeps, whatever the demand (0, the
	// default: none at night). At most 10000.
	// +kubebuilder:default=0
	// +kubebuilder:validation:Minimum=0
	// +kubebuilder:validation:Maximum=10000
	// +optional
	MinReplicas *int32 `json:"minReplicas,omitempty"`

	// maxReplicas is the most warm sandboxes the pool keeps, whatever the demand: the cap on
	// its idle VMs. 1 to 10000.
	// +kubebuilder:validation:Minimum=1
	// +kubebuilder:validation:Maximum=10000
	MaxReplicas int32 `json:"maxReplicas"`

	// warmHitTarget is the share of sessions that should find a warm sandbox, a decimal
	// between 0 and 1 such as 0.99 (the default) or 0.999. Each nine costs more idle VMs.
	// +kubebuilder:default="0.99"
	// +kubebuilder:validation:MaxLength=8
	// +kubebuilder:validation:XValidation:rule="self.matches('^0\\\\.[0-9]{0,5}[1-9]$')",message="spec.autoscaling.warmHitTarget must be a decimal between 0 and 1 with at most 6 digits, e.g. 0.99 (1 would need an infinite pool)"
	// +optional
	WarmHitTarget string `json:"warmHitTarget,omitempty"`

	// scaleDownDelay is how long the need must stay lower before the pool shrinks (the
	// pool grows at once): hysteresis, so the sandboxes of a burst are not given back in a
	// lull and booted again. 0s to 1h; default 5m.
	// +kubebuilder:default="5m"
	// +kubebuilder:validation:Type=string
	// +kubebuilder:validation:MaxLength=32
	// +kubebuilder:validation:Pattern=`^([0-9]+(\.[0-9]+)?(ns|us|ms|s|m|h))+$`
	// +kubebuilder:validation:XValidation:rule="duration(self) >= duration('0s') && duration(self) <= duration('1h')",message="spec.autoscaling.scaleDownDelay must be between 0s and 1h, e.g. 5m"
	// +optional
	ScaleDownDelay *Duration `json:"scaleDownDelay,omitempty"`

	// schedules are windows of wall-clock time with their own limits, e.g. business hours
	// with a higher minReplicas and nights with a lower maxReplicas. While a window is
	// open its minReplicas and maxReplicas replace the pool's (an unset one keeps the
	// pool's); when windows overlap, the first in the list applies. At most 16.
	// +kubebuilder:validation:MaxItems=16
	// +listType=map
	// +listMapKey=name
	// +optional
	Schedules []AutoscalingSchedule `json:"schedules,omitempty"`
}

// AutoscalingSchedule is a recurring window of time, read by a cron library in a time zone.
// It opens at each time of start and closes at the next time of end, so a window may cross
// midnight (start "0 22 * * *", end "0 6 * * *") and keeps its local times across a
// daylight saving change.
//
// +kubebuilder:validation:XValidation:rule="!has(self.minReplicas) || !has(self.maxReplicas) || self.minReplicas <= self.maxReplicas",message="spec.autoscaling.schedules[].minReplicas must not be more than its maxReplicas"
// +kubebuilder:validation:XValidation:rule="has(self.minReplicas) || has(self.maxReplicas)",message="spec.autoscaling.schedules[] must set minReplicas, maxReplicas or both: a window without limits changes nothing"
type AutoscalingSchedule struct {
	// name identifies the window in status (status.autoscaling.schedule): lowercase
	// letters, digits and '-', at most 63 characters, e.g. business-hours.
	// +kubebuilder:validation:MinLength=1
	// +kubebuilder:validation:MaxLength=63
	// +kubebuilder:validation:XValidation:rule="self.matches('^[a-z0-9]([-a-z0-9]*[a-z0-9])?$')",message="spec.autoscaling.schedules[].name must be lowercase letters, digits and '-', e.g. business-hours"
	Name string `json:"name"`

	// start is when the window opens: a five-field cron expression (minute hour
	// day-of-month month day-of-week), e.g. "0 8 * * 1-5" for 08:00 on weekdays, or a
	// descriptor such as @daily.
	// +kubebuilder:validation:MinLength=1
	// +kubebuilder:validation:MaxLength=128
	// +kubebuilder:validation:XValidation:rule="!self.contains('TZ=') && !self.startsWith('@every')",message="spec.autoscaling.schedules[].start must be a cron expression without TZ= (use timeZone) and not @every, e.g. \"0 8 * * 1-5\""
	Start string `json:"start"`

	// end is when the window closes, in the same form, e.g. "0 18 * * 1-5".
	// +kubebuilder:validation:MinLength=1
	// +kubebuilder:validation:MaxLength=128
	// +kubebuilder:validation:XValidation:rule="!self.contains('TZ=') && !self.startsWith('@every')",message="spec.autoscaling.schedules[].end must be a cron expression without TZ= (use timeZone) and not @every, e.g. \"0 18 * * 1-5\""
	End string `json:"end"`

	// timeZone is the IANA time zone that start and end are read in, e.g. Europe/Paris.
	// Unset: UTC.
	// +kubebuilder:validation:MaxLength=64
	// +kubebuilder:validation:XValidation:rule="self.matches('^[A-Za-z][A-Za-z0-9_+/-]*$')",message="spec.autoscaling.schedules[].timeZone must be an IANA time zone name, e.g. Europe/Paris or America/New_York"
	// +optional
	TimeZone string `json:"timeZone,omitempty"`

	// minReplicas replaces spec.autoscaling.minReplicas while the window is open.
	// +kubebuilder:validation:Minimum=0
	// +kubebuilder:validation:Maximum=10000
	// +optional
	MinReplicas *int32 `json:"minReplicas,omitempty"`

	// maxReplicas replaces spec.autoscaling.maxReplicas while the window is open.
	// +kubebuilder:validation:Minimum=0
	// +kubebuilder:validation:Maximum=10000
	// +optional
	MaxReplicas *int32 `json:"maxReplicas,omitempty"`
}

// AutoscalingLimit names the bound that decided a recommendation.
// +kubebuilder:validation:Enum=None;MinReplicas;MaxReplicas;ScheduleMinReplicas;ScheduleMaxReplicas;Quota
type AutoscalingLimit string

// AutoscalingStatus is what the autoscaler measured and decided, so the recommendation can
// be checked by hand: needReplicas is the model's answer for bindRate and refillTime (plus
// queuedSessions), recommendedReplicas what the stabiliser and the limits made of it.
type AutoscalingStatus struct {
	// bindRate is λ, sessions of this class bound per second (warm or cold), a decaying
	// average measured by this manager since it started.
	BindRate resource.Quantity `json:"bindRate"`

	// refillTime is T, a high percentile (p90) of the time recent warm pods of this class
	// took from creation to Ready, or the manager's default before any was measured
	// (refillSamples 0).
	RefillTime metav1.Duration `json:"refillTime"`

	// refillSamples is how many refills refillTime is measured from.
	// +kubebuilder:validation:Minimum=0
	RefillSamples int32 `json:"refillSamples"`

	// queuedSessions are the class's sessions waiting for a sandbox that the namespace's
	// quota would admit now, added to the model's need: each will take one. Sessions held
	// back by the quota (its session slots, memory or cpu) count nothing: a warm pod for
	// them could not be used, and a tenant could grow the pool by queueing.
	// +kubebuilder:validation:Minimum=0
	QueuedSessions int32 `json:"queuedSessions"`

	// needReplicas is the model's need: the smallest pool that serves warmHitTarget of
	// sessions warm at load bindRate × refillTime, plus queuedSessions. It is 0, whatever
	// bindRate, when fewer than 0.05 binds are expected within scaleDownDelay (the rate
	// discounted by the silence since the last bind); the ScalingLimited message then says so.
	// +kubebuilder:validation:Minimum=0
	NeedReplicas int32 `json:"needReplicas"`

	// recommendedReplicas is the need held for scaleDownDelay (the largest need of that
	// window) and bounded by limit. The pool's target, written to spec.replicas.
	// +kubebuilder:validation:Minimum=0
	RecommendedReplicas int32 `json:"recommendedReplicas"`

	// limit is the bound that decided recommendedReplicas: None, MinReplicas, MaxReplicas,
	// ScheduleMinReplicas, ScheduleMaxReplicas (the open schedule's) or Quota (the
	// namespace's AgentQuota warmSandboxes).
	Limit AutoscalingLimit `json:"limit"`

	// schedule is the open window whose limits apply, if any.
	// +optional
	Schedule string `json:"schedule,omitempty"`

	// appliedReplicas is the spec.replicas the manager last wrote. spec.replicas differing
	// from it was written by someone else (the ScaleOverridden condition).
	// +kubebuilder:validation:Minimum=0
	// +optional
	AppliedReplicas *int32 `json:"appliedReplicas,omitempty"`
}
