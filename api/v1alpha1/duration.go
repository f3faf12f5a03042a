package v1alpha1

import (
	"bytes"
	"encoding/json"
	"time"
)

// Duration is a Go duration (90s, 15m, 1h30m) in an API field, serialized as its string.
//
// It replaces metav1.Duration, whose UnmarshalJSON fails on any value time.ParseDuration
// refuses. The API server judges a duration only by the CRD's schema, which cannot know
// every limit of the Go parser: a stored `ttlAfterFinished: 3000000h` matched the pattern
// but overflows int64 nanoseconds. With metav1.Duration that one object made the manager's
// typed list/watch of the kind fail for the whole cluster. Duration never fails on a JSON
// string: a value time.ParseDuration refuses decodes as 0 with the text kept, Invalid
// reports it, and the controller reports it on that one object (reason InvalidSpec) instead
// of failing every other.
//
// The embedded time.Duration keeps `d.Duration` working as with metav1.Duration. Build a
// valid value as Duration{Duration: 5 * time.Minute}.
//
// +kubebuilder:validation:Type=string
type Duration struct {
	time.Duration `json:"-"`

	// invalid is the raw JSON token a decoded value came from when it is not a duration
	// time.ParseDuration accepts (e.g. `"3000000h"`, or a number); empty for a valid value.
	invalid string
}

// Invalid reports whether the value was decoded from something that is not a valid Go
// duration, and returns that raw text (the string's content for a JSON string, the JSON
// token otherwise). An invalid Duration's Duration field is 0; callers must not use it.
func (d Duration) Invalid() (raw string, ok bool) {
	if d.invalid == "" {
		return "", false
	}
	var s string
	if err := json.Unmarshal([]byte(d.invalid), &s); err == nil {
		return s, true
	}
	return d.invalid, true
}

// MarshalJSON encodes the duration as its Go string (e.g. "1h30m0s"). An invalid value
// encodes as the raw JSON it was decoded from, so a read-modify-write keeps it unchanged.
func (d Duration) MarshalJSON() ([]byte, error) {
	if d.invalid != "" {
		return []byte(d.invalid), nil
	}
	return json.Marshal(d.String())
}

// UnmarshalJSON decodes a Go duration string. It never fails: a string time.ParseDuration
// refuses, or a JSON value that is not a string, decodes as an invalid Duration (see
// Invalid). JSON null leaves the value unchanged.
func (d *Duration) UnmarshalJSON(b []byte) error {
	b = bytes.TrimSpace(b)
	if bytes.Equal(b, []byte("null")) {
		return nil
	}
	var s string
	if err := json.Unmarshal(b, &s); err == nil {
		if pd, err := time.ParseDuration(s); err == nil {
			*d = Duration{Duration: pd}
			return nil
		}
	}
	*d = Duration{invalid: string(b)}
	if len(b) == 0 || !json.Valid(b) {
		// Not reachable through encoding/json, which hands over one valid JSON value; kept
		// so that MarshalJSON always returns valid JSON.
		q, _ := json.Marshal(string(b))
		d.invalid = string(q)
	}
	return nil
}
