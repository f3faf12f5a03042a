package v1alpha1_test

import (
	"encoding/json"
	"testing"
	"time"

	"k8s.io/apimachinery/pkg/runtime"

	hyperpoolv1alpha1 "github.com/hyperpool/hyperpool/api/v1alpha1"
)

// A list with one session whose duration time.ParseDuration refuses (it overflows int64
// nanoseconds, yet matched the CRD's old pattern) decodes: the bad item reports Invalid with
// its raw value, and the other items are intact. With metav1.Duration the whole list failed.
func TestDurationListWithOverflowDecodes(t *testing.T) {
	const list = `{"apiVersion":"agents.hyperpool.io/v1alpha1","kind":"AgentSessionList","items":[
	 {"metadata":{"name":"good"},"spec":{"sandboxName":"pool","maxLifetime":"30m","ttlAfterFinished":"10m"}},
	 {"metadata":{"name":"bad"},"spec":{"sandboxName":"pool","maxLifetime":"1h","ttlAfterFinished":"3000000h"}},
	 {"metadata":{"name":"also-good"},"spec":{"sandboxName":"pool","idleTimeout":"1h30m"}}]}`
	var l hyperpoolv1alpha1.AgentSessionList
	if err := json.Unmarshal([]byte(list), &l); err != nil {
		t.Fatalf("the list must decode whatever one item holds: %v", err)
	}
	if len(l.Items) != 3 {
		t.Fatalf("decoded %d items, want 3", len(l.Items))
	}
	good, bad, alsoGood := l.Items[0].Spec, l.Items[1].Spec, l.Items[2].Spec

	if good.MaxLifetime.Duration != 30*time.Minute || good.TTLAfterFinished.Duration != 10*time.Minute {
		t.Errorf("good item: maxLifetime %v ttlAfterFinished %v, want 30m 10m", good.MaxLifetime.Duration, good.TTLAfterFinished.Duration)
	}
	if raw, ok := good.TTLAfterFinished.Invalid(); ok {
		t.Errorf("good item reports Invalid(%q)", raw)
	}
	if alsoGood.IdleTimeout.Duration != 90*time.Minute {
		t.Errorf("also-good item: idleTimeout %v, want 1h30m", alsoGood.IdleTimeout.Duration)
	}

	raw, ok := bad.TTLAfterFinished.Invalid()
	if !ok || raw != "3000000h" {
		t.Errorf("bad item: Invalid() = %q, %v; want \"3000000h\", true", raw, ok)
	}
	if bad.TTLAfterFinished.Duration != 0 {
		t.Errorf("bad item: an invalid duration must be 0, got %v", bad.TTLAfterFinished.Duration)
	}
	if bad.MaxLifetime.Duration != time.Hour {
		t.Errorf("bad item: its valid field maxLifetime = %v, want 1h", bad.MaxLifetime.Duration)
	}

	// An invalid value writes back as it was read, so an update of another field keeps it.
	out, err := json.Marshal(bad)
	if err != nil {
		t.Fatal(err)
	}
	var back map[string]any
	if err := json.Unmarshal(out, &back); err != nil {
		t.Fatal(err)
	}
	if back["ttlAfterFinished"] != "3000000h" || back["maxLifetime"] != "1h0m0s" {
		t.Errorf("round trip: %s", out)
	}
}

// Every JSON value decodes; only null leaves the field unset.
func TestDurationDecodesAnything(t *testing.T) {
	for _, tc := range []struct {
		in      string
		want    time.Duration
		raw     string
		invalid bool
	}{
		{in: `"1h30m"`, want: 90 * time.Minute},
		{in: `"0s"`, want: 0},
		{in: `"9223372036s"`, want: 9223372036 * time.Second},
		{in: `"9223372037s"`, raw: "9223372037s", invalid: true},
		{in: `"3000000h"`, raw: "3000000h", invalid: true},
		{in: `"abc"`, raw: "abc", invalid: true},
		{in: `""`, raw: "", invalid: true},
		{in: `12`, raw: "12", invalid: true},
		{in: `{"a": 1}`, raw: `{"a": 1}`, invalid: true},
		{in: `true`, raw: "true", invalid: true},
	} {
		var s struct {
			D *hyperpoolv1alpha1.Duration `json:"d,omitempty"`
		}
		if err := json.Unmarshal([]byte(`{"d":`+tc.in+`}`), &s); err != nil {
			t.Errorf("%s: %v", tc.in, err)
			continue
		}
		raw, invalid := s.D.Invalid()
		if s.D.Duration != tc.want || invalid != tc.invalid || raw != tc.raw {
			t.Errorf("%s: got %v Invalid()=%q,%v; want %v %q,%v", tc.in, s.D.Duration, raw, invalid, tc.want, tc.raw, tc.invalid)
		}
		out, err := json.Marshal(s)
		if err != nil {
			t.Errorf("%s: marshal: %v", tc.in, err)
			continue
		}
		if tc.invalid && string(out) != `{"d":`+compact(t, tc.in)+`}` {
			t.Errorf("%s: an invalid value marshals back as read; got %s", tc.in, out)
		}
	}

	var s struct {
		D *hyperpoolv1alpha1.Duration `json:"d,omitempty"`
	}
	if err := json.Unmarshal([]byte(`{"d":null}`), &s); err != nil || s.D != nil {
		t.Errorf("null: %v, %v", s.D, err)
	}
}

// The unstructured converter (used by the API machinery, the fake client and SSA) goes
// through the same JSON methods, both ways.
func TestDurationUnstructured(t *testing.T) {
	u := map[string]any{"spec": map[string]any{"sandboxName": "pool", "maxLifetime": "5m", "ttlAfterFinished": "3000000h"}}
	var s hyperpoolv1alpha1.AgentSession
	if err := runtime.DefaultUnstructuredConverter.FromUnstructured(u, &s); err != nil {
		t.Fatal(err)
	}
	if raw, ok := s.Spec.TTLAfterFinished.Invalid(); !ok || raw != "3000000h" || s.Spec.MaxLifetime.Duration != 5*time.Minute {
		t.Fatalf("from unstructured: %+v", s.Spec)
	}
	back, err := runtime.DefaultUnstructuredConverter.ToUnstructured(&s)
	if err != nil {
		t.Fatal(err)
	}
	spec := back["spec"].(map[string]any)
	if spec["ttlAfterFinished"] != "3000000h" || spec["maxLifetime"] != "5m0s" {
		t.Errorf("to unstructured: %v", spec)
	}
	// DeepCopy keeps the raw value.
	if raw, ok := s.DeepCopy().Spec.TTLAfterFinished.Invalid(); !ok || raw != "3000000h" {
		t.Errorf("DeepCopy lost the raw value: %q %v", raw, ok)
	}
}

func compact(t *testing.T, s string) string {
	var v any
	if err := json.Unmarshal([]byte(s), &v); err != nil {
		t.Fatal(err)
	}
	b, _ := json.Marshal(v)
	return string(b)
}
