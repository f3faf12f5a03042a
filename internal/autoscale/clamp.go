package autoscale

// Limit names the bound that decided a recommendation, as status reports it.
type Limit string

// The limits, in the order Clamp applies them: the model's need, raised to the minimum,
// cut to the maximum (the active schedule's, else the pool's), then cut to the
// namespace's warmSandboxes quota, which no schedule can raise.
const (
	LimitNone                Limit = "None"
	LimitMinReplicas         Limit = "MinReplicas"
	LimitMaxReplicas         Limit = "MaxReplicas"
	LimitScheduleMinReplicas Limit = "ScheduleMinReplicas"
	LimitScheduleMaxReplicas Limit = "ScheduleMaxReplicas"
	LimitQuota               Limit = "Quota"
)

// Bounds are the limits around a pool's need.
type Bounds struct {
	Min, Max int
	// FromSchedule: Min and Max are an active schedule's (its unset values are the pool's).
	MinFromSchedule, MaxFromSchedule bool
	// Quota is what the namespace's warmSandboxes quota leaves this pool, or -1 for no limit.
	Quota int
}

// Clamp bounds need and names the limit that changed it (LimitNone when none did).
func Clamp(need int, b Bounds) (int, Limit) {
	out, limit := need, LimitNone
	if out < b.Min {
		out, limit = b.Min, pick(b.MinFromSchedule, LimitScheduleMinReplicas, LimitMinReplicas)
	}
	if out > b.Max {
		out, limit = b.Max, pick(b.MaxFromSchedule, LimitScheduleMaxReplicas, LimitMaxReplicas)
	}
	if b.Quota >= 0 && out > b.Quota {
		out, limit = b.Quota, LimitQuota
	}
	return out, limit
}

func pick(cond bool, a, b Limit) Limit {
	if cond {
		return a
	}
	return b
}
