//go:build !windows

package bench

// The day's figures over its seeds, and the page's generated parts (RenderDayDoc): pure
// functions of a kept result file, so `make docs` renders them again without a run.

import (
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/hyperpool/hyperpool/internal/autoscale"
	"github.com/hyperpool/hyperpool/test/results"
)

// SizeFor is the fixed pool the autoscaler's own model asks for at a steady rate
// (sessions per simulated hour) and target, with the refill the day measured: the size a
// fixed pool sized "for the peak" or "for the average" gets.
func (d DaySeed) SizeFor(perHour, target float64) int32 {
	return int32(autoscale.WarmNeeded(perHour/3600*d.RefillP90.Seconds(), target))
}

// PoolFor is the ladder's smallest fixed pool of at least n sandboxes, or its largest
// when none is that large (zero when the day had no fixed pool).
func (d DaySeed) PoolFor(n int32) DayPool {
	var best, largest DayPool
	for _, p := range d.Pools {
		if p.Autoscaled() {
			continue
		}
		if p.Replicas >= n && (best.Replicas == 0 || p.Replicas < best.Replicas) {
			best = p
		}
		if p.Replicas > largest.Replicas {
			largest = p
		}
	}
	if best.Replicas == 0 {
		return largest
	}
	return best
}

// pool is the day's pool of that name.
func (d DaySeed) pool(name string) (DayPool, bool) {
	i := slices.IndexFunc(d.Pools, func(p DayPool) bool { return p.Name == name })
	if i < 0 {
		return DayPool{}, false
	}
	return d.Pools[i], true
}

// Spread is a figure over the seeds: its mean, its smallest and its largest value.
type Spread struct {
	Mean float64 `json:"mean"`
	Min  float64 `json:"min"`
	Max  float64 `json:"max"`
	N    int     `json:"n"`
}

// SpreadOf is the mean, min and max of v (zero for none).
func SpreadOf(v []float64) Spread {
	if len(v) == 0 {
		return Spread{}
	}
	s := Spread{Min: v[0], Max: v[0], N: len(v)}
	for _, x := range v {
		s.Mean += x / float64(len(v))
		s.Min, s.Max = min(s.Min, x), max(s.Max, x)
	}
	return s
}

// format writes "mean (min–max)" with f for each number; one seed is just its value.
func (s Spread) format(f func(float64) string) string {
	switch s.N {
	case 0:
		return "–"
	case 1:
		return f(s.Mean)
	}
	return fmt.Sprintf("%s (%s–%s)", f(s.Mean), f(s.Min), f(s.Max))
}

func pct2(x float64) string { return fmt.Sprintf("%.2f %%", 100*x) }
func pct0(x float64) string { return fmt.Sprintf("%.0f %%", 100*x) }
func gbh(x float64) string  { return fmt.Sprintf("%.1f", x) }
func msec(x float64) string { return fmt.Sprintf("%.0f", x) }

// DayPolicyRow is one policy over the seeds.
type DayPolicyRow struct {
	Policy string
	// Sizes are the fixed pool's size on each seed (fixed-for-peak and -for-average are
	// picked per seed with its measured refill).
	Sizes                        []int32
	Warm, Idle, VsPeak, ReadyP50 Spread
}

// dayRows gathers, for each named policy, the pool pick chooses on each seed.
func dayRows(run *DayRun, names []string, pick func(d DaySeed, name string) (DayPool, bool)) []DayPolicyRow {
	var rows []DayPolicyRow
	for _, name := range names {
		row := DayPolicyRow{Policy: name}
		var warm, idle, vs, ready []float64
		for _, d := range run.Seeds {
			p, ok := pick(d, name)
			if !ok {
				continue
			}
			peak := d.PoolFor(d.SizeFor(d.PeakPerHour, run.Options.SizingTarget))
			if !p.Autoscaled() && !slices.Contains(row.Sizes, p.Replicas) {
				row.Sizes = append(row.Sizes, p.Replicas)
			}
			warm, idle, ready = append(warm, p.WarmHitRatio), append(idle, p.IdleGBHours), append(ready, p.ReadyMS.P50)
			if peak.IdleGBHours > 0 {
				vs = append(vs, p.IdleGBHours/peak.IdleGBHours)
			}
		}
		slices.Sort(row.Sizes)
		row.Warm, row.Idle, row.VsPeak, row.ReadyP50 = SpreadOf(warm), SpreadOf(idle), SpreadOf(vs), SpreadOf(ready)
		rows = append(rows, row)
	}
	return rows
}

// DayPolicies are the page's policies over the seeds: fixed for the peak, fixed for the
// average (both picked from the ladder with the day's measured refill), and each
// autoscaler target.
func DayPolicies(run *DayRun) []DayPolicyRow {
	names := []string{"fixed-peak", "fixed-average"}
	for _, t := range run.Options.Targets {
		names = append(names, autoPoolName(t))
	}
	return dayRows(run, names, func(d DaySeed, name string) (DayPool, bool) {
		switch name {
		case "fixed-peak":
			p := d.PoolFor(d.SizeFor(d.PeakPerHour, run.Options.SizingTarget))
			return p, p.Replicas > 0
		case "fixed-average":
			p := d.PoolFor(d.SizeFor(d.MeanPerHour, run.Options.SizingTarget))
			return p, p.Replicas > 0
		}
		return d.pool(name)
	})
}

// DayCurve is every pool of the run over the seeds: the ladder, then the autoscalers.
func DayCurve(run *DayRun) []DayPolicyRow {
	var names []string
	for _, n := range run.Options.Ladder {
		names = append(names, fixedPoolName(n))
	}
	for _, t := range run.Options.Targets {
		names = append(names, autoPoolName(t))
	}
	return dayRows(run, names, DaySeed.pool)
}

// BestFixedAt is the cheapest fixed pool (least idle GB-hours) of pools that served at
// least warm of its sessions warm; false when none did.
func BestFixedAt(pools []DayPool, warm float64) (DayPool, bool) {
	var best DayPool
	found := false
	for _, p := range pools {
		if p.Autoscaled() || p.WarmHitRatio < warm {
			continue
		}
		if !found || p.IdleGBHours < best.IdleGBHours {
			best, found = p, true
		}
	}
	return best, found
}

// closestFixed is the fixed pool with the most warm hits (zero when there is none).
func closestFixed(pools []DayPool) DayPool {
	var best DayPool
	for _, p := range pools {
		if !p.Autoscaled() && (best.Name == "" || p.WarmHitRatio > best.WarmHitRatio) {
			best = p
		}
	}
	return best
}

// DayVersusSeed is one autoscaler against the best fixed pool of the same day.
type DayVersusSeed struct {
	Seed               uint64
	AutoWarm, AutoIdle float64
	// Fixed is the cheapest fixed pool with at least AutoWarm warm hits; Reached is false
	// when no pool of the ladder reached it, and Fixed is then the pool that came closest.
	Fixed   DayPool
	Reached bool
}

// DayVersus is one autoscaler target against the best fixed pool at equal warm hits,
// over the seeds.
type DayVersus struct {
	Target float64
	Seeds  []DayVersusSeed
	// AutoWarm and AutoIdle are over every seed; FixedIdle and Ratio (the autoscaler's
	// idle GB-hours over the fixed pool's) over the seeds where a fixed pool reached it.
	AutoWarm, AutoIdle, FixedIdle, Ratio Spread
	// Cheaper counts the seeds where the autoscaler held less idle memory than that pool.
	Cheaper, Compared int
	// Beyond counts the seeds where no fixed pool reached the autoscaler's warm hits and
	// the closest held more idle memory than the autoscaler: it did better on both.
	Beyond int
}

// DayVersusTargets sets each autoscaler target, seed by seed, against the cheapest fixed
// pool of the same day that served at least as many sessions warm.
func DayVersusTargets(run *DayRun) []DayVersus {
	var out []DayVersus
	for _, t := range run.Options.Targets {
		v := DayVersus{Target: t}
		var warm, idle, fixed, ratio []float64
		for _, d := range run.Seeds {
			a, ok := d.pool(autoPoolName(t))
			if !ok {
				continue
			}
			s := DayVersusSeed{Seed: d.Seed, AutoWarm: a.WarmHitRatio, AutoIdle: a.IdleGBHours}
			if s.Fixed, s.Reached = BestFixedAt(d.Pools, a.WarmHitRatio); !s.Reached {
				if s.Fixed = closestFixed(d.Pools); s.Fixed.Name != "" && a.IdleGBHours < s.Fixed.IdleGBHours {
					v.Beyond++
				}
			}
			warm, idle = append(warm, a.WarmHitRatio), append(idle, a.IdleGBHours)
			if s.Reached {
				v.Compared++
				fixed = append(fixed, s.Fixed.IdleGBHours)
				if s.Fixed.IdleGBHours > 0 {
					ratio = append(ratio, a.IdleGBHours/s.Fixed.IdleGBHours)
				}
				if a.IdleGBHours < s.Fixed.IdleGBHours {
					v.Cheaper++
				}
			}
			v.Seeds = append(v.Seeds, s)
		}
		v.AutoWarm, v.AutoIdle, v.FixedIdle, v.Ratio = SpreadOf(warm), SpreadOf(idle), SpreadOf(fixed), SpreadOf(ratio)
		out = append(out, v)
	}
	return out
}

// bestFixed lists the fixed pool picked on each seed ("fixed-6, fixed-8, none").
func (v DayVersus) bestFixed() string {
	var names []string
	for _, s := range v.Seeds {
		if s.Reached {
			names = append(names, fmt.Sprint(s.Fixed.Replicas))
		} else if s.Fixed.Name != "" {
			names = append(names, fmt.Sprintf("none (%d: %s)", s.Fixed.Replicas, pct2(s.Fixed.WarmHitRatio)))
		} else {
			names = append(names, "none")
		}
	}
	return strings.Join(names, ", ")
}

// String is one line for the benchmark's report.
func (v DayVersus) String() string {
	return fmt.Sprintf("%s: %s warm, %s idle GB-h; cheapest fixed pool at >= its warm hits (per seed: %s): %s GB-h; autoscaler/fixed %s, cheaper on %d of %d seeds",
		autoPoolName(v.Target), v.AutoWarm.format(pct2), v.AutoIdle.format(gbh), v.bestFixed(), v.FixedIdle.format(gbh), v.Ratio.format(pct0), v.Cheaper, v.Compared)
}

// dayTables are RenderDayDoc's tables.
var dayTables = map[string]func(f *results.File, path string, run *DayRun) string{
	"header":   dayHeader,
	"seeds":    daySeedsTable,
	"policies": dayPoliciesTable,
	"curve":    dayCurveTable,
	"versus":   dayVersusTable,
}

// RenderDayDoc renders one generated part of a page from a kept day run: args are the
// table (header, seeds, policies, curve, versus) and the result file.
func RenderDayDoc(args []string) (string, error) {
	if len(args) != 2 || dayTables[args[0]] == nil {
		return "", fmt.Errorf("day wants a table (header, seeds, policies, curve or versus) and one result file, got %q", args)
	}
	run := &DayRun{}
	f, err := readDayRun(args[1], run)
	if err != nil {
		return "", err
	}
	return dayTables[args[0]](f, args[1], run), nil
}

// readDayRun reads a kept day run, which must hold at least one day.
func readDayRun(path string, run *DayRun) (*results.File, error) {
	f, err := results.Read(path, "day", run)
	if err != nil {
		return nil, err
	}
	if len(run.Seeds) == 0 {
		return nil, fmt.Errorf("%s holds no day", path)
	}
	return f, nil
}

// renderDayAll is every table, for the run's own day.md.
func renderDayAll(f *results.File, run *DayRun) string {
	var b strings.Builder
	for _, t := range []string{"header", "seeds", "policies", "versus", "curve"} {
		b.WriteString(dayTables[t](f, "day.json", run))
		b.WriteString("\n\n")
	}
	return b.String()
}

func dayHeader(f *results.File, path string, run *DayRun) string {
	o := run.Options
	var seeds []string
	sessions, refills := []float64{}, []float64{}
	for _, d := range run.Seeds {
		seeds = append(seeds, fmt.Sprint(d.Seed))
		sessions = append(sessions, float64(d.Sessions))
		refills = append(refills, d.RefillP90.Seconds())
	}
	var ladder, targets []string
	for _, n := range o.Ladder {
		ladder = append(ladder, fmt.Sprint(n))
	}
	for _, t := range o.Targets {
		targets = append(targets, fmt.Sprint(t))
	}
	s, r := SpreadOf(sessions), SpreadOf(refills)
	var b strings.Builder
	fmt.Fprintf(&b, "Kept run `%s`: commit %s, %s to %s UTC (%s), %s.\n\n", path, f.ShortCommit(),
		f.Started.Format("2006-01-02 15:04"), f.Finished.Format("15:04"), f.Finished.Sub(f.Started).Round(time.Minute), f.Machine)
	fmt.Fprintf(&b, "Command: `%s`.\n\n", f.CommandLine())
	fmt.Fprintf(&b, "%d seeds (%s), one simulated 24 h each, replayed in %s (%.0f times faster): %.0f to %.0f sessions a day "+
		"(mean lifetime %s), fed at the same moments to %d pools in their own namespaces: fixed pools of %s warm sandboxes and "+
		"`spec.autoscaling` at warmHitTarget %s (minReplicas 0, maxReplicas %d, scaleDownDelay %s). "+
		"VM boot %s (kwok's ready delay, scaled: %s real); refill measured (p90, simulated) %.0f to %.0f s; %.1f GiB per VM.",
		len(run.Seeds), strings.Join(seeds, ", "), o.Duration, o.speedup(), s.Min, s.Max, o.Lifetime,
		len(o.Ladder)+len(o.Targets), strings.Join(ladder, ", "), strings.Join(targets, ", "), o.MaxReplicas, o.ScaleDownDelay,
		o.Boot, o.real(o.Boot).Round(time.Millisecond), r.Min, r.Max, run.VMMemoryGiB)
	return b.String()
}

func daySeedsTable(_ *results.File, _ string, run *DayRun) string {
	var b strings.Builder
	b.WriteString("| seed | sessions | peak / mean (sessions per hour) | refill p90 (simulated) | fixed-peak / fixed-average pool | Ready p50 / p99, slowest pool (real ms) | 1-minute load after |\n|---|---|---|---|---|---|---|\n")
	for _, d := range run.Seeds {
		worst, worst99 := 0.0, 0.0
		for _, p := range d.Pools {
			worst, worst99 = max(worst, p.ReadyMS.P50), max(worst99, p.ReadyMS.P99)
		}
		peakNeed, avgNeed := d.SizeFor(d.PeakPerHour, run.Options.SizingTarget), d.SizeFor(d.MeanPerHour, run.Options.SizingTarget)
		fmt.Fprintf(&b, "| %d | %d | %.0f / %.1f | %.0f s | %d (needs %d) / %d (needs %d) | %.0f / %.0f | %.2f |\n", d.Seed, d.Sessions,
			d.PeakPerHour, d.MeanPerHour, d.RefillP90.Seconds(), d.PoolFor(peakNeed).Replicas, peakNeed, d.PoolFor(avgNeed).Replicas, avgNeed,
			worst, worst99, d.LoadAfter[0])
	}
	return b.String()
}

// sizes writes a fixed policy's sizes over the seeds ("8" or "6, 8"), "autoscaled" for none.
func sizes(r DayPolicyRow) string {
	if len(r.Sizes) == 0 {
		return "`spec.autoscaling`"
	}
	var s []string
	for _, n := range r.Sizes {
		s = append(s, fmt.Sprint(n))
	}
	return strings.Join(s, ", ") + " warm"
}

func dayPoliciesTable(_ *results.File, _ string, run *DayRun) string {
	var b strings.Builder
	fmt.Fprintf(&b, "Mean over %d seeds (min–max).\n\n", len(run.Seeds))
	b.WriteString("| policy | pool | warm-hit ratio | idle VM GB-hours | vs fixed-peak | Ready p50 (real ms) |\n|---|---|---|---|---|---|\n")
	for _, r := range DayPolicies(run) {
		fmt.Fprintf(&b, "| %s | %s | %s | %s | %s | %s |\n", r.Policy, sizes(r), r.Warm.format(pct2), r.Idle.format(gbh), r.VsPeak.format(pct0), r.ReadyP50.format(msec))
	}
	return b.String()
}

func dayCurveTable(_ *results.File, _ string, run *DayRun) string {
	var b strings.Builder
	fmt.Fprintf(&b, "Every pool, mean over %d seeds (min–max).\n\n", len(run.Seeds))
	b.WriteString("| pool | warm-hit ratio | idle VM GB-hours | Ready p50 (real ms) |\n|---|---|---|---|\n")
	for _, r := range DayCurve(run) {
		fmt.Fprintf(&b, "| %s | %s | %s | %s |\n", r.Policy, r.Warm.format(pct2), r.Idle.format(gbh), r.ReadyP50.format(msec))
	}
	return b.String()
}

func dayVersusTable(_ *results.File, _ string, run *DayRun) string {
	var b strings.Builder
	fmt.Fprintf(&b, "Each seed's autoscaler against the cheapest fixed pool of the same day that served at least as many sessions warm; mean over the seeds (min–max).\n\n")
	b.WriteString("| autoscaler | its warm-hit ratio | its idle GB-hours | cheapest fixed pool at ≥ its warm hits, per seed | that pool's idle GB-hours | autoscaler ÷ fixed | autoscaler cheaper |\n|---|---|---|---|---|---|---|\n")
	for _, v := range DayVersusTargets(run) {
		fmt.Fprintf(&b, "| warmHitTarget %s | %s | %s | %s | %s | %s | %d of %d seeds |\n", fmt.Sprint(v.Target), v.AutoWarm.format(pct2),
			v.AutoIdle.format(gbh), v.bestFixed(), v.FixedIdle.format(gbh), v.Ratio.format(pct0), v.Cheaper, v.Compared)
	}
	missed, all, beyond := 0, 0, 0
	for _, v := range DayVersusTargets(run) {
		missed, all, beyond = missed+len(v.Seeds)-v.Compared, all+len(v.Seeds), beyond+v.Beyond
	}
	if missed > 0 {
		fmt.Fprintf(&b, "\n\"none\": no fixed pool of the ladder reached the autoscaler's warm hits that day (%d of %d comparisons; in brackets the ladder's closest pool and its warm hits); those seeds are left out of the fixed pool's columns.\n", missed, all)
		fmt.Fprintf(&b, "In %d of those %d, the autoscaler also held less idle memory than that closest pool: more warm hits for less.\n", beyond, missed)
	}
	return b.String()
}
