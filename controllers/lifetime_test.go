package controllers

import (
	"testing"
	"time"

	agentsv1alpha1 "github.com/hyperpool/hyperpool/api/v1alpha1"
)

func d(v time.Duration) *agentsv1alpha1.Duration { return &agentsv1alpha1.Duration{Duration: v} }

func TestEffectiveLifetime(t *testing.T) {
	class := &agentsv1alpha1.LifetimeSpec{MaxLifetime: d(time.Hour), IdleTimeout: d(15 * time.Minute), TTLAfterFinished: d(10 * time.Minute)}
	tests := []struct {
		name    string
		class   *agentsv1alpha1.LifetimeSpec
		session agentsv1alpha1.AgentSessionSpec
		want    lifetime
	}{
		{"unset takes the class's", class, agentsv1alpha1.AgentSessionSpec{},
			lifetime{time.Hour, 15 * time.Minute, 10 * time.Minute}},
		{"shorter requests win", class, agentsv1alpha1.AgentSessionSpec{MaxLifetime: d(30 * time.Minute), IdleTimeout: d(time.Minute), TTLAfterFinished: d(time.Second)},
			lifetime{30 * time.Minute, time.Minute, time.Second}},
		{"longer requests are capped", class, agentsv1alpha1.AgentSessionSpec{MaxLifetime: d(5 * time.Hour), IdleTimeout: d(time.Hour), TTLAfterFinished: d(time.Hour)},
			lifetime{time.Hour, 15 * time.Minute, 10 * time.Minute}},
		{"idle never outlasts the lifetime", class, agentsv1alpha1.AgentSessionSpec{MaxLifetime: d(5 * time.Minute)},
			lifetime{5 * time.Minute, 5 * time.Minute, 10 * time.Minute}},
		{"class without idle timeout: 15m default capped by max", &agentsv1alpha1.LifetimeSpec{MaxLifetime: d(10 * time.Minute)}, agentsv1alpha1.AgentSessionSpec{},
			lifetime{10 * time.Minute, 10 * time.Minute, 10 * time.Minute}},
		{"class gone: defaults cap", nil, agentsv1alpha1.AgentSessionSpec{TTLAfterFinished: d(time.Minute)},
			lifetime{time.Hour, 15 * time.Minute, time.Minute}},
		{"zero request ignored", class, agentsv1alpha1.AgentSessionSpec{MaxLifetime: d(0)},
			lifetime{time.Hour, 15 * time.Minute, 10 * time.Minute}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := effectiveLifetime(tt.class, &tt.session); got != tt.want {
				t.Errorf("effectiveLifetime = %+v, want %+v", got, tt.want)
			}
		})
	}
}

func TestSessionDeadline(t *testing.T) {
	bound := time.Date(2026, 1, 2, 15, 0, 0, 0, time.UTC)
	lt := lifetime{MaxLifetime: time.Hour, IdleTimeout: 10 * time.Minute}
	tests := []struct {
		name       string
		heartbeat  time.Time
		now        time.Time
		want       time.Time
		wantReason string
		lt         *lifetime // nil: one hour, idle ten minutes
	}{
		{"no heartbeat: idle from the bind", time.Time{}, bound, bound.Add(10 * time.Minute), agentsv1alpha1.ReasonIdleTimeout, nil},
		{"heartbeat pushes idle out", bound.Add(20 * time.Minute), bound.Add(21 * time.Minute), bound.Add(30 * time.Minute), agentsv1alpha1.ReasonIdleTimeout, nil},
		{"heartbeat before the bind is ignored", bound.Add(-time.Hour), bound, bound.Add(10 * time.Minute), agentsv1alpha1.ReasonIdleTimeout, nil},
		{"max lifetime wins near the end", bound.Add(55 * time.Minute), bound.Add(55 * time.Minute), bound.Add(time.Hour), agentsv1alpha1.ReasonMaxLifetime, nil},
		{"heartbeat far in the future is ignored", bound.Add(24 * time.Hour), bound.Add(time.Minute), bound.Add(10 * time.Minute), agentsv1alpha1.ReasonIdleTimeout, nil},
		{"a max lifetime with a fraction of a second ends exactly, not on the next whole second", time.Time{}, bound,
			bound.Add(2300 * time.Millisecond), agentsv1alpha1.ReasonMaxLifetime, &lifetime{MaxLifetime: 2300 * time.Millisecond, IdleTimeout: time.Hour}},
		{"an idle timeout capped at that max lifetime does not end it first", time.Time{}, bound,
			bound.Add(2300 * time.Millisecond), agentsv1alpha1.ReasonMaxLifetime, &lifetime{MaxLifetime: 2300 * time.Millisecond, IdleTimeout: 2300 * time.Millisecond}},
		{"a max lifetime below a microsecond's precision ends on the next microsecond, as preciseExpiryTime stores it", time.Time{}, bound,
			bound.Add(2*time.Second + time.Microsecond), agentsv1alpha1.ReasonMaxLifetime, &lifetime{MaxLifetime: 2*time.Second + time.Nanosecond, IdleTimeout: 2*time.Second + time.Nanosecond}},
		{"heartbeat slightly ahead (clock skew) counts", bound.Add(5*time.Minute + 30*time.Second), bound.Add(5 * time.Minute), bound.Add(15*time.Minute + 30*time.Second), agentsv1alpha1.ReasonIdleTimeout, nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			lt := lt
			if tt.lt != nil {
				lt = *tt.lt
			}
			got := sessionDeadline(bound, tt.heartbeat, lt, tt.now)
			if !got.end.Equal(tt.want) || got.reason != tt.wantReason {
				t.Errorf("sessionDeadline ends %s (%s), want %s (%s)", got.end, got.reason, tt.want, tt.wantReason)
			}
			// The expiry is the hard deadline whatever the heartbeats: the bind plus the max
			// lifetime, less than a microsecond later, never before the end.
			exact := bound.Add(lt.MaxLifetime)
			if got.expiry.Before(exact) || got.expiry.Sub(exact) >= time.Microsecond || got.end.After(got.expiry) {
				t.Errorf("sessionDeadline expiry %s (end %s), want within a microsecond after %s and no earlier than the end", got.expiry, got.end, exact)
			}
		})
	}
}

// TestDeadlineIsExact: binds at a fraction of a second end at bind+maxLifetime to the
// microsecond. The bind time and the expiry were each rounded up to the second, so a
// session could end up to 2 s late (a bind at .1 with a max lifetime of 3.5 s ended 1.4 s
// after its deadline).
func TestDeadlineIsExact(t *testing.T) {
	second := time.Date(2026, 1, 2, 15, 0, 0, 0, time.UTC)
	for _, tc := range []struct {
		name string
		bind time.Time
		max  time.Duration
		want time.Time
	}{
		{"bind on a whole second, whole-second lifetime", second, 3 * time.Second, second.Add(3 * time.Second)},
		{"bind just after a second", second.Add(100 * time.Millisecond), 3 * time.Second, second.Add(3100 * time.Millisecond)},
		{"bind just before a second", second.Add(999_999 * time.Microsecond), 3 * time.Second, second.Add(3*time.Second + 999_999*time.Microsecond)},
		{"fractional lifetime, the old worst case", second.Add(100 * time.Millisecond), 3500 * time.Millisecond, second.Add(3600 * time.Millisecond)},
		{"lifetime with a fraction of a microsecond", second.Add(123_456 * time.Microsecond), time.Hour + 1, second.Add(time.Hour + 123_457*time.Microsecond)},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got := sessionDeadline(tc.bind, time.Time{}, lifetime{MaxLifetime: tc.max, IdleTimeout: tc.max}, tc.bind)
			if !got.end.Equal(tc.want) || !got.expiry.Equal(tc.want) || got.reason != agentsv1alpha1.ReasonMaxLifetime {
				t.Errorf("bind %s + %s: ends %s, expiry %s (%s); want %s (MaxLifetime)",
					tc.bind.Format(time.RFC3339Nano), tc.max, got.end.Format(time.RFC3339Nano), got.expiry.Format(time.RFC3339Nano), got.reason, tc.want.Format(time.RFC3339Nano))
			}
		})
	}
}

func TestParseHeartbeat(t *testing.T) {
	tests := []struct {
		value   string
		present bool
		want    time.Time
		wantErr bool
	}{
		{present: false},
		{value: "", present: true},
		{value: "2026-01-02T15:04:05Z", present: true, want: time.Date(2026, 1, 2, 15, 4, 5, 0, time.UTC)},
		{value: "2026-01-02T15:04:05.123+01:00", present: true, want: time.Date(2026, 1, 2, 14, 4, 5, 123e6, time.UTC)},
		{value: "yesterday", present: true, wantErr: true},
		{value: "1767366245", present: true, wantErr: true},
	}
	for _, tt := range tests {
		ann := map[string]string{}
		if tt.present {
			ann[agentsv1alpha1.LastActivityAnnotation] = tt.value
		}
		got, err := parseHeartbeat(ann)
		if (err != nil) != tt.wantErr || !got.Equal(tt.want) {
			t.Errorf("parseHeartbeat(%q) = %s, %v; want %s, error %v", tt.value, got, err, tt.want, tt.wantErr)
		}
	}
}

func FuzzParseHeartbeat(f *testing.F) {
	f.Add("2026-01-02T15:04:05Z")
	f.Add("not a time")
	f.Fuzz(func(t *testing.T, v string) {
		got, err := parseHeartbeat(map[string]string{agentsv1alpha1.LastActivityAnnotation: v})
		if err != nil && !got.IsZero() {
			t.Errorf("an error came with a time: %s", got)
		}
		bound := time.Date(2026, 1, 2, 15, 0, 0, 0, time.UTC)
		lt := lifetime{MaxLifetime: time.Hour, IdleTimeout: 10 * time.Minute}
		dl := sessionDeadline(bound, got, lt, bound.Add(time.Minute))
		if dl.end.After(bound.Add(lt.MaxLifetime)) || dl.end.Before(bound.Add(lt.IdleTimeout)) {
			t.Errorf("deadline %s outside [bound+idle, bound+max]", dl.end)
		}
	})
}

// FuzzEffectiveLifetime: whatever a session asks for, it never gets more than its class
// allows, never a non-positive limit, and never an idle timeout past its lifetime.
func FuzzEffectiveLifetime(f *testing.F) {
	f.Add(int64(time.Hour), int64(15*time.Minute), int64(10*time.Minute), int64(2*time.Hour), int64(time.Minute), int64(0))
	f.Add(int64(0), int64(0), int64(0), int64(-1), int64(-1), int64(-1))
	f.Fuzz(func(t *testing.T, classMax, classIdle, classTTL, max, idle, ttl int64) {
		dur := func(v int64) *agentsv1alpha1.Duration {
			if v == 0 {
				return nil
			}
			return d(time.Duration(v))
		}
		class := &agentsv1alpha1.LifetimeSpec{MaxLifetime: dur(classMax), IdleTimeout: dur(classIdle), TTLAfterFinished: dur(classTTL)}
		got := effectiveLifetime(class, &agentsv1alpha1.AgentSessionSpec{MaxLifetime: dur(max), IdleTimeout: dur(idle), TTLAfterFinished: dur(ttl)})
		if got.MaxLifetime <= 0 || got.IdleTimeout <= 0 || got.TTLAfterFinished <= 0 {
			t.Fatalf("non-positive limit: %+v", got)
		}
		if classMax > 0 && got.MaxLifetime > time.Duration(classMax) {
			t.Fatalf("max lifetime %s exceeds the class's %s", got.MaxLifetime, time.Duration(classMax))
		}
		if classTTL > 0 && got.TTLAfterFinished > time.Duration(classTTL) {
			t.Fatalf("ttl %s exceeds the class's %s", got.TTLAfterFinished, time.Duration(classTTL))
		}
		if got.IdleTimeout > got.MaxLifetime {
			t.Fatalf("idle timeout %s past the max lifetime %s", got.IdleTimeout, got.MaxLifetime)
		}
	})
}
