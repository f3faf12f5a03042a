//go:build !windows

package chaos

import (
	"strings"
	"testing"
)

// RenderDoc on the fixtures in testdata: pass.json (no violation, two faults) and
// fail.json (a session held two pods and ended PodDeleted; a dirty tree; the pool never
// back at target; over-created by two).
func TestRenderDoc(t *testing.T) {
	const pass, fail = "testdata/pass.json", "testdata/fail.json"
	for _, tc := range []struct {
		name string
		args []string
		want []string // lines or parts of lines the table must hold
		not  []string // what it must not hold
	}{{
		name: "run header of one run",
		args: []string{"run", pass},
		want: []string{"|  | pass.json |", "| commit | `0123456` |", "| work tree | clean |",
			"| machine | linux/amd64, 2 cores, Test CPU, 8.0 GiB, go1.26 |", "| 1-minute load before → after | 0.50 → 1.75 |",
			"| command | `chaos -sessions=10` |", "| flags | `-sessions=10` `-slow-api-kills=1` |",
			"| started (UTC) | 2026-01-01 10:00:00 |", "| wall time | 2m0s |", "| violations | 0 (PASS) |"},
	}, {
		name: "run header of two runs: a column each, a dirty tree and a failure said so",
		args: []string{"run", pass, fail},
		want: []string{"|  | Run 1 | Run 2 |", "| commit | `0123456` | `fedcba9+dirty` |",
			"| work tree | clean | dirty (the figures may not be this commit's) |", "| violations | 0 (PASS) | **2 (FAIL)** |"},
	}, {
		name: "summary: a row per run, with what it found",
		args: []string{"summary", pass, fail},
		want: []string{"| Run 1 | `testdata/pass.json` | 2026-01-01 10:00 | `0123456` | 0.50 → 1.75 | `chaos -sessions=10` | 2 | 1.5s | 0 |",
			"| Run 2 | `testdata/fail.json` | 2026-01-01 10:00 | `fedcba9+dirty` | 0.50 → 1.75 | `chaos -sessions=10` | 2 | 50s | **2** (session ended other than by its max lifetime: 1; session holding two pods: 1) |"},
	}, {
		name: "faults",
		args: []string{"faults", pass},
		want: []string{"| 1 | kill-leader-etcd-paused | 1.234s | leader a#1 (pid 10) | 2.001s | 4.5s | b#1 |",
			"| 2 | kill-leader | 7s | leader b#1 (pid 11) | – | 4.1s | a#2 |"},
	}, {
		name: "faults of two runs name the run",
		args: []string{"faults", pass, fail},
		want: []string{"| Run 1 | 1 | kill-leader-etcd-paused |", "| Run 2 | 2 | kill-leader |"},
	}, {
		name: "invariants: every one checked, 0s shown, a violation of a kind not listed still shown",
		args: []string{"invariants", pass, fail},
		want: []string{"| pod bound to two sessions | 0 | 0 |", "| session holding two pods | 0 | **1** |",
			"| session not ended within its deadline plus the liveness bound | 0 | 0 |",
			"| session ended other than by its max lifetime | – | **1** |", "| all | 0 | 2 |"},
	}, {
		name: "outcomes: a row per outcome any run had",
		args: []string{"outcomes", pass, fail},
		want: []string{"| Expired/MaxLifetime | 10 | 9 |", "| Failed/PodDeleted | 0 | 1 |"},
	}, {
		name: "liveness: the longest lag against the bound",
		args: []string{"liveness", pass, fail},
		want: []string{"| longest from a deadline to the session seen ended | 1.5s | 50s |", "| liveness bound | 45s | 45s |",
			"| within the bound | yes | **no** |"},
	}, {
		name: "over-creation without allowance",
		args: []string{"overcreation", pass, fail},
		want: []string{"| pods the pool created | 6 | 8 |", "| most it needed (target + warm binds) | 6 | 6 |",
			"| created beyond that | 0 | **2** |", "| pool back at target after the last fault (limit) | 4.2s (10s) | never (10s) |",
			"| over-limit counts checked against a List (not over there) | 2 (2) | 2 (2) |"},
	}, {
		name: "examples",
		args: []string{"examples", pass, fail},
		want: []string{"Run 1: no violation.", "- session holding two pods: 1", "  - `t=5s session s-0003 holds 2 live pods at once (latest pool-x)`"},
	}} {
		t.Run(tc.name, func(t *testing.T) {
			got, err := RenderDoc(tc.args)
			if err != nil {
				t.Fatal(err)
			}
			for _, w := range tc.want {
				if !strings.Contains(got, w) {
					t.Errorf("missing %q in\n%s", w, got)
				}
			}
		})
	}
}

func TestRenderDocRefuses(t *testing.T) {
	for _, tc := range []struct {
		name string
		args []string
		want string
	}{
		{"no file", []string{"faults"}, "at least one result file"},
		{"no such table", []string{"speed", "testdata/pass.json"}, `no table "speed"`},
		{"no such file", []string{"faults", "testdata/missing.json"}, "no such file"},
		{"a file of another kind", []string{"faults", "testdata/bench.json"}, `holds a "bench" run, not "chaos"`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := RenderDoc(tc.args)
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Errorf("error %v, want one saying %q", err, tc.want)
			}
		})
	}
}
