//go:build !windows

package bench

// The figures of docs/performance.md, rendered from a kept run (a results.File of kind
// "bench") by hack/docs: nothing on that page is typed by hand. Rules for every table: a
// ratio comes with its absolute gap in ms, and a p99 is shown only over at least
// minSamplesForP99 samples; with fewer, the max is shown and labelled as the max.

import (
	"fmt"
	"path/filepath"
	"slices"
	"strings"
	"time"

	"github.com/hyperpool/hyperpool/test/results"
)

// minSamplesForP99: below this many samples, a p99 is one or two samples' worth of luck.
const minSamplesForP99 = 200

// ReadReport loads a kept bench run.
func ReadReport(path string) (*results.File, *Report, error) {
	rep := &Report{}
	f, err := results.Read(path, "bench", rep)
	return f, rep, err
}

// RenderDoc renders one table of docs/performance.md: args are the table's name and one or
// more kept runs. Their scenarios are read in order; a scenario of a later run replaces
// the one of the same name from an earlier run (a scenario rerun on its own, say).
func RenderDoc(args []string) (string, error) {
	if len(args) < 2 {
		return "", fmt.Errorf("want a table and one or more result files, got %q", args)
	}
	var files []*results.File
	var reports []*Report
	merged := &Report{}
	for _, path := range args[1:] {
		f, rep, err := ReadReport(path)
		if err != nil {
			return "", err
		}
		files, reports = append(files, f), append(reports, rep)
		for _, x := range rep.Results {
			if i := slices.IndexFunc(merged.Results, func(y *Result) bool { return y.Scenario == x.Scenario }); i >= 0 {
				merged.Results[i] = x
			} else {
				merged.Results = append(merged.Results, x)
			}
		}
	}
	switch args[0] {
	case "repeats":
		return repeatsTable(args[1:], files, reports), nil
	case "run":
		var b strings.Builder
		for i, f := range files {
			b.WriteString(runHeader(f, args[1+i]))
			b.WriteString("\n\n")
		}
		return b.String(), nil
	case "scenarios":
		return scenariosTable(merged), nil
	case "floor":
		return floorTable(merged), nil
	case "targets":
		return targetsTable(merged), nil
	case "poolsize":
		return poolSizeTable(merged), nil
	case "client":
		return clientTable(merged), nil
	}
	return "", fmt.Errorf("no bench table %q (run, scenarios, floor, targets, poolsize, client, repeats)", args[0])
}

// runHeader says which run a page's figures come from.
func runHeader(f *results.File, path string) string {
	dirty := ""
	if f.Dirty {
		dirty = " (with changes not committed: the figures may differ from that commit's)"
	}
	scenarios := f.Flags["scenarios"]
	return fmt.Sprintf("`%s`: commit %s%s, %s, %s long, scenarios %s.\n\n- Machine: %s.\n- Command: `%s`.",
		path, f.ShortCommit(), dirty, f.Started.Format("2006-01-02 15:04 UTC"), f.Finished.Sub(f.Started).Round(time.Second),
		scenarios, f.Machine, f.CommandLine())
}

// tail is a percentile row's tail: the p99 over enough samples, else the max, labelled.
func tail(s Stats) string {
	if s.N == 0 {
		return "-"
	}
	if s.N >= minSamplesForP99 {
		return f1(s.P99)
	}
	return fmt.Sprintf("max %s (n=%d)", f1(s.Max), s.N)
}

// tailValue is the tail figure a target is judged by, and whether it is the max.
func tailValue(s Stats) (float64, bool) {
	if s.N >= minSamplesForP99 {
		return s.P99, false
	}
	return s.Max, true
}

// vs is "a − b ms (a ÷ b×)": an absolute gap beside its ratio.
func vs(a, b float64) string {
	if b <= 0 {
		return "-"
	}
	return fmt.Sprintf("%+.1f ms (%.2f×)", a-b, a/b)
}

func scenariosTable(rep *Report) string {
	var b strings.Builder
	b.WriteString("| scenario | sizes | bound (warm / cold) | Ready p50 ms | p90 ms | p99 ms (or max) | writes per bind: critical / total | pods created / needed | double binds | binds/s | manager peak RSS MiB | manager CPU s |\n")
	b.WriteString("|---|---|---|---|---|---|---|---|---|---|---|---|\n")
	for _, x := range rep.Results {
		fmt.Fprintf(&b, "| %s | %s | %d of %d (%d / %d) | %s | %s | %s | %.2f / %.2f | %d / %d | %d | %.0f | %.0f | %.1f |\n",
			x.Scenario, x.Params, x.Bound, x.Sessions, x.Warm, x.Cold, f1(x.Latency.P50), f1(x.Latency.P90), tail(x.Latency),
			x.CriticalPerBind, x.TotalPerBind, x.PodsCreated, x.PodsNeeded, x.DoubleBinds, x.BindsPerSecond, x.PeakRSSMiB, x.CPUSeconds)
	}
	for _, x := range rep.Results {
		if x.ExpiryLag != nil {
			fmt.Fprintf(&b, "\nExpiry (%s): lag from each session's deadline to the watch seeing it ended, p50 %s ms, %s ms; %d sessions ended before their deadline.\n",
				x.Scenario, f1(x.ExpiryLag.P50), tailPhrase(*x.ExpiryLag), x.EarlyExpiries)
		}
	}
	return b.String()
}

// tailPhrase is tail in prose: "p99 12.0" or "max 12.0 (n=40)".
func tailPhrase(s Stats) string {
	if s.N >= minSamplesForP99 {
		return "p99 " + f1(s.P99)
	}
	return tail(s)
}

// floorTable holds each warm bind against its design floor: medians, their gap and ratio,
// then the tails under the p99 rule.
func floorTable(rep *Report) string {
	var b strings.Builder
	b.WriteString("| scenario | floor taken | binds (n) | design floor (n) | bind p50 ms | floor p50 ms | bind − floor at p50 | bind tail ms | floor tail ms | bind − floor at the tail |\n")
	b.WriteString("|---|---|---|---|---|---|---|---|---|---|\n")
	var faster []string
	for _, x := range rep.Results {
		d := x.DesignFloor
		if d == nil || d.Total.N == 0 {
			continue
		}
		taken := "next to the binds, every 250 ms"
		if d.Inline {
			taken = "interleaved, each from quiet"
		}
		bt, bMax := tailValue(x.Latency)
		ft, fMax := tailValue(d.Total)
		tailGap := vs(bt, ft)
		if bMax != fMax {
			tailGap = "- (p99 on one side, max on the other)"
		}
		fmt.Fprintf(&b, "| %s | %s | %d | %d | %s | %s | %s | %s | %s | %s |\n", x.Scenario, taken, x.Latency.N, d.Total.N,
			f1(x.Latency.P50), f1(d.Total.P50), vs(x.Latency.P50, d.Total.P50), tail(x.Latency), tail(d.Total), tailGap)
		if x.Latency.P50 < d.Total.P50 {
			faster = append(faster, fmt.Sprintf("%s (by %.1f ms)", x.Scenario, d.Total.P50-x.Latency.P50))
		}
	}
	if len(faster) > 0 {
		fmt.Fprintf(&b, "\n**Binds beat the floor at p50 in %s.** The floor is then not a lower bound there: see the page's explanation of how the floor is taken in that scenario.\n",
			strings.Join(faster, ", "))
	} else {
		b.WriteString("\nNo bind median is below its floor's.\n")
	}
	return b.String()
}

// target is one of the design targets of docs/performance.md and how a run is judged by it.
type target struct {
	text string
	// judge returns what was measured and whether it meets the target; ok is false when
	// the run cannot judge it: no scenario for it (measured empty), or not at its size.
	judge func(rep *Report) (measured string, met, ok bool)
}

func byScenario(rep *Report, name string) *Result {
	for _, x := range rep.Results {
		if x.Scenario == name {
			return x
		}
	}
	return nil
}

// latencyTarget judges a scenario's Ready p50 or tail against limit ms.
func latencyTarget(scenario string, useTail bool, limit float64) func(*Report) (string, bool, bool) {
	return func(rep *Report) (string, bool, bool) {
		x := byScenario(rep, scenario)
		if x == nil || x.Latency.N == 0 {
			return "", false, false
		}
		v, label := x.Latency.P50, "p50"
		if useTail {
			var isMax bool
			if v, isMax = tailValue(x.Latency); isMax {
				label = fmt.Sprintf("max (n=%d < %d)", x.Latency.N, minSamplesForP99)
			} else {
				label = "p99"
			}
		}
		return fmt.Sprintf("%s %s ms (%s)", label, f1(v), x.Params), v <= limit, true
	}
}

// warmScenarios is every result with warm binds whose writes are the binds' own: the client
// scenarios also close their sessions in the window, so their writes count the deletions.
func warmScenarios(rep *Report) []*Result {
	var out []*Result
	for _, x := range rep.Results {
		if x.mostlyWarm() && x.FirstOutput == nil && x.Transfer == nil {
			out = append(out, x)
		}
	}
	return out
}

// spread is "a" or "a–b" over the warm scenarios' values of v, with the smallest and
// largest.
func spread(rs []*Result, v func(*Result) float64, format string) (string, float64, float64) {
	vals := make([]float64, 0, len(rs))
	for _, x := range rs {
		vals = append(vals, v(x))
	}
	s := SpreadOf(vals)
	if s.Min == s.Max {
		return fmt.Sprintf(format, s.Min), s.Min, s.Max
	}
	return fmt.Sprintf(format+"–"+format, s.Min, s.Max), s.Min, s.Max
}

var targets = []target{
	{"warm bind p50 ≤ 15 ms, serial", latencyTarget("serial", false, 15)},
	{"warm bind p99 ≤ 40 ms, serial", latencyTarget("serial", true, 40)},
	{"burst p99 ≤ 100 ms", latencyTarget("burst", true, 100)},
	{"≤ 2 writes on a warm bind's critical path", func(rep *Report) (string, bool, bool) {
		rs := warmScenarios(rep)
		if len(rs) == 0 {
			return "", false, false
		}
		s, _, hi := spread(rs, func(x *Result) float64 { return x.CriticalPerBind }, "%.2f")
		return s + " in the warm scenarios", hi <= 2.005, true
	}},
	{"≤ 4 writes in all per warm bind", func(rep *Report) (string, bool, bool) {
		rs := warmScenarios(rep)
		if len(rs) == 0 {
			return "", false, false
		}
		s, _, hi := spread(rs, func(x *Result) float64 { return x.TotalPerBind }, "%.2f")
		return s + " in the warm scenarios", hi <= 4.005, true
	}},
	{"≥ 300 binds/s", func(rep *Report) (string, bool, bool) {
		x := byScenario(rep, "throughput")
		if x == nil {
			return "", false, false
		}
		return fmt.Sprintf("%.0f binds/s (%s)", x.BindsPerSecond, x.Params), x.BindsPerSecond >= 300, true
	}},
	{"manager RSS ≤ 300 MiB with 10,000 active sessions", func(rep *Report) (string, bool, bool) {
		x := byScenario(rep, "scale")
		if x == nil {
			return "", false, false
		}
		m := fmt.Sprintf("%.0f MiB peak (%s)", x.PeakRSSMiB, x.Params)
		if x.Sessions < 10000 {
			return m + "; not judged: fewer sessions than the target names (-full runs 10,000)", false, false
		}
		return m, x.PeakRSSMiB <= 300, true
	}},
	{"no pod over-created, none bound twice", func(rep *Report) (string, bool, bool) {
		over, dbl := 0, 0
		for _, x := range rep.Results {
			over, dbl = over+max(0, x.OverCreated), dbl+x.DoubleBinds
		}
		return fmt.Sprintf("%d over-created, %d double binds, over %d scenarios", over, dbl, len(rep.Results)), over == 0 && dbl == 0, len(rep.Results) > 0
	}},
	{"expiry lag p99 ≤ 1 s", func(rep *Report) (string, bool, bool) {
		x := byScenario(rep, "expiry")
		if x == nil || x.ExpiryLag == nil {
			return "", false, false
		}
		v, isMax := tailValue(*x.ExpiryLag)
		return fmt.Sprintf("%s ms, %d early (%s)", tailPhrase(*x.ExpiryLag), x.EarlyExpiries, x.Params), v <= 1000 && x.EarlyExpiries == 0 && (!isMax || v <= 1000), true
	}},
}

func targetsTable(rep *Report) string {
	var b strings.Builder
	b.WriteString("| target | measured | met? |\n|---|---|---|\n")
	for _, t := range targets {
		measured, met, ok := t.judge(rep)
		verdict := "yes"
		switch {
		case !ok && measured == "":
			measured, verdict = "not in this run", "-"
		case !ok:
			verdict = "-"
		case !met:
			verdict = "**no**"
		}
		fmt.Fprintf(&b, "| %s | %s | %s |\n", t.text, measured, verdict)
	}
	return b.String()
}

// poolSizeTable is the manager's CPU per bind against the pool's size, each pool beside the
// smallest.
func poolSizeTable(rep *Report) string {
	var rs []*Result
	for _, x := range rep.Results {
		if strings.HasPrefix(x.Scenario, "pool") && x.Ready > 0 {
			rs = append(rs, x)
		}
	}
	if len(rs) == 0 {
		return "No pool-size scenario in this run."
	}
	mgr := func(x *Result) float64 {
		for _, c := range x.CPU {
			if c.Process == "manager" {
				return c.PerBindMS
			}
		}
		return 0
	}
	var b strings.Builder
	b.WriteString("| pool | binds | manager CPU ms per bind | vs the smallest pool | pool reconcile p50 / p99 ms | pod lists per bind | Ready p50 ms | tail ms |\n|---|---|---|---|---|---|---|---|\n")
	base := mgr(rs[0])
	for _, x := range rs {
		reconcile, lists := "-", "- (not measured)"
		if bd := x.Breakdown; bd != nil && bd.PoolReconcileP99MS > 0 {
			reconcile = f1(bd.PoolReconcileP50MS) + " / " + f1(bd.PoolReconcileP99MS)
		}
		if bd := x.Breakdown; bd != nil {
			if bd.PoolPodListsPerBind != nil {
				lists = fmt.Sprintf("%.2f", *bd.PoolPodListsPerBind)
			}
		}
		fmt.Fprintf(&b, "| %d | %d | %.1f | %s | %s | %s | %s | %s |\n", x.Pool, x.Ready, mgr(x), vs(mgr(x), base), reconcile, lists, f1(x.Latency.P50), tail(x.Latency))
	}
	return b.String()
}

// clientTable is the Go client's scenarios: time to first output and transfer.
func clientTable(rep *Report) string {
	var b strings.Builder
	for _, x := range rep.Results {
		if fo := x.FirstOutput; fo != nil {
			b.WriteString("| Open to first output, ms | p50 | tail |\n|---|---|---|\n")
			for _, row := range []struct {
				name string
				s    Stats
			}{{"**Open to first byte**", fo.Total}, {"bind (Open → Ready)", fo.Bind}, {"client setup (Ready → Open returns)", fo.ClientSetup},
				{"exec setup (Run → first byte)", fo.ExecSetup}, {"Run → exit", fo.Run}, {"Close", fo.Close}} {
				fmt.Fprintf(&b, "| %s | %s | %s |\n", row.name, f1(row.s.P50), tail(row.s))
			}
			fmt.Fprintf(&b, "\n%s; %d non-zero exits.\n\n", x.Params, fo.ExitCodes)
		}
		if t := x.Transfer; t != nil {
			b.WriteString("| transfer | client MB/s | kubectl cp MB/s | client − kubectl (client ÷ kubectl) |\n|---|---|---|---|\n")
			for _, d := range []struct {
				name string
				t    TransferDirection
			}{{"upload", t.Upload}, {"download", t.Download}} {
				fmt.Fprintf(&b, "| %s | %.1f | %.1f | %+.1f MB/s (%.2f×) |\n", d.name, d.t.ClientMBps, d.t.KubectlMBps, d.t.ClientMBps-d.t.KubectlMBps, d.t.Ratio)
			}
			fmt.Fprintf(&b, "\n%s; %d files, %d bytes, median of %d runs each way; %d mismatched copies.\n\n", x.Params, t.Files, t.Bytes, t.Iterations, t.Mismatches)
		}
	}
	if b.Len() == 0 {
		return "No client scenario in this run."
	}
	return b.String()
}

// repeatsTable is one row per kept run and scenario, in the order given: the same
// scenario run several times, to show its spread beside a difference between two builds.
func repeatsTable(paths []string, files []*results.File, reports []*Report) string {
	var b strings.Builder
	b.WriteString("| run | started | manager binary | scenario | Ready p50 ms | p90 ms | tail ms | manager CPU s |\n|---|---|---|---|---|---|---|---|\n")
	for i, rep := range reports {
		for _, x := range rep.Results {
			binary := files[i].Flags["manager-binary"]
			if binary == "" {
				binary = "built from " + files[i].ShortCommit()
			}
			fmt.Fprintf(&b, "| `%s` | %s | `%s` | %s | %s | %s | %s | %.1f |\n", filepath.Base(paths[i]), files[i].Started.Format("15:04:05"),
				binary, x.Scenario, f1(x.Latency.P50), f1(x.Latency.P90), tail(x.Latency), x.CPUSeconds)
		}
	}
	return b.String()
}
