//go:build !windows

package bench

import (
	"fmt"
	"image"
	"image/color"
	"image/png"
	"math"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"time"
)

// Stats are percentiles in milliseconds.
type Stats struct {
	N   int     `json:"n"`
	P50 float64 `json:"p50"`
	P90 float64 `json:"p90"`
	P99 float64 `json:"p99"`
	Max float64 `json:"max"`
}

func percentiles(v []float64) Stats {
	if len(v) == 0 {
		return Stats{}
	}
	s := append([]float64(nil), v...)
	sort.Float64s(s)
	at := func(q float64) float64 {
		i := int(math.Ceil(q*float64(len(s)))) - 1
		return s[max(0, min(i, len(s)-1))]
	}
	return Stats{N: len(s), P50: at(0.5), P90: at(0.9), P99: at(0.99), Max: s[len(s)-1]}
}

// Result is one scenario's measurements.
type Result struct {
	Scenario  string `json:"scenario"`
	Params    string `json:"params"`
	Namespace string `json:"namespace"`
	Pool      int    `json:"pool"`

	Sessions     int `json:"sessions"`
	Bound        int `json:"bound"` // got a pod (status.podName set)
	Ready        int `json:"ready"` // seen Ready with a pod (the latency samples)
	Warm         int `json:"warm"`
	Cold         int `json:"cold"`
	CreateErrors int `json:"createErrors"`
	Rebinds      int `json:"rebinds"`     // sessions whose status.podName changed
	DoubleBinds  int `json:"doubleBinds"` // pods held by two sessions
	Expired      int `json:"expired,omitempty"`
	// EarlyExpiries: sessions seen finished before their true deadline, the stored
	// precise bind (status.preciseBoundTime) + maxLifetime (expiryLags).
	EarlyExpiries int `json:"earlyExpiries,omitempty"`

	// Latency: session create call started -> watch sees Ready with a pod (ms; cold: boot subtracted).
	Latency     Stats     `json:"latencyMs"`
	LatenciesMS []float64 `json:"latenciesMs,omitempty"`
	// PodLabelled: session create call started -> the watch sees a pod labelled for it
	// (the bind's first write, or a cold pod's create), in ms: where the bind's time goes.
	PodLabelled Stats `json:"podLabelledMs"`
	// Floor: config map create call started -> the same kind of watch sees it (ms).
	Floor          Stats     `json:"floorMs"`
	FloorSamplesMS []float64 `json:"floorSamplesMs,omitempty"`
	Ratio          float64   `json:"ratioP50"`
	// LoadedFloor: the same round trip, every 250 ms while the scenario runs (ms): the
	// API server's answer time under the scenario's load.
	LoadedFloor Stats `json:"loadedFloorMs"`

	Writes               Writes  `json:"writes"`
	CriticalPerBind      float64 `json:"criticalWritesPerBind"`
	TotalPerBind         float64 `json:"totalWritesPerBind"`
	TotalNoEventsPerBind float64 `json:"totalWritesPerBindNoEvents"`

	PodsCreated int `json:"podsCreated"`
	PodsNeeded  int `json:"podsNeeded"` // pool + binds
	OverCreated int `json:"overCreated"`

	PeakRSSMiB     float64 `json:"managerPeakRssMiB"`
	CPUSeconds     float64 `json:"managerCpuSeconds"`
	BindsPerSecond float64 `json:"bindsPerSecond"`
	// ExpiryLag: when each session was seen finished minus its true deadline (as above).
	ExpiryLag *Stats `json:"expiryLagMs,omitempty"`
	// DesignFloor: the bind's three writes issued by the benchmark, and the bind over them;
	// Breakdown: where a bind's time goes; CPU: each process's CPU per bind (issue 18).
	DesignFloor *DesignFloorStats `json:"designFloor,omitempty"`
	Breakdown   *BindBreakdown    `json:"breakdown,omitempty"`
	CPU         []ProcessCPU      `json:"cpu,omitempty"`
	Sizes       *ObjectSizes      `json:"objectBytes,omitempty"`
	WriteCosts  []WriteCost       `json:"writeCosts,omitempty"`
	// FirstOutput and Transfer are the session scenarios' own figures (issue 15).
	FirstOutput *FirstOutputStats `json:"firstOutput,omitempty"`
	Transfer    *TransferStats    `json:"transfer,omitempty"`
	// Memory is the annotations scenario's figures (issue 23).
	Memory          *MemoryStats `json:"memory,omitempty"`
	DurationSeconds float64      `json:"durationSeconds"`
	Notes           []string     `json:"notes,omitempty"`
}

// Report is a whole run.
type Report struct {
	Started time.Time `json:"started"`
	Machine string    `json:"machine"`
	Command string    `json:"command"`
	Results []*Result `json:"results"`
}

func f1(v float64) string { return fmt.Sprintf("%.1f", v) }

// Markdown renders the results as a table, then the writes by request and the notes.
func (r *Report) Markdown() string {
	var b strings.Builder
	fmt.Fprintf(&b, "| scenario | sizes | bound (warm/cold) / Ready | p50 ms | p90 ms | p99 ms | max ms | pod labelled p50 ms | floor p50 ms | p50/floor | loaded floor p50/p99 ms | writes/bind critical | writes/bind total (w/o events) | pods created/needed | double binds | binds/s | expiry lag p50/p99 ms | mgr peak RSS MiB | mgr CPU s |\n")
	fmt.Fprintf(&b, "|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|\n")
	for _, x := range r.Results {
		lag := "-"
		if x.ExpiryLag != nil {
			lag = f1(x.ExpiryLag.P50) + " / " + f1(x.ExpiryLag.P99)
			if x.EarlyExpiries > 0 {
				lag += fmt.Sprintf(" (%d early)", x.EarlyExpiries)
			}
		}
		fmt.Fprintf(&b, "| %s | %s | %d/%d (%d/%d) / %d | %s | %s | %s | %s | %s | %s | %.1fx | %s / %s | %.2f | %.2f (%.2f) | %d/%d | %d | %.0f | %s | %.0f | %.1f |\n",
			x.Scenario, x.Params, x.Bound, x.Sessions, x.Warm, x.Cold, x.Ready, f1(x.Latency.P50), f1(x.Latency.P90), f1(x.Latency.P99), f1(x.Latency.Max),
			f1(x.PodLabelled.P50), f1(x.Floor.P50), x.Ratio, f1(x.LoadedFloor.P50), f1(x.LoadedFloor.P99), x.CriticalPerBind, x.TotalPerBind, x.TotalNoEventsPerBind, x.PodsCreated, x.PodsNeeded,
			x.DoubleBinds, x.BindsPerSecond, lag, x.PeakRSSMiB, x.CPUSeconds)
	}
	b.WriteString(r.bindFloorMarkdown())
	b.WriteString(r.writeCostMarkdown())
	b.WriteString(r.sessionMarkdown())
	b.WriteString("\nAPI writes in each scenario's window, by request (all clients):\n\n")
	for _, x := range r.Results {
		parts := []string{}
		for _, k := range sortedKeys(x.Writes.ByRequest) {
			parts = append(parts, fmt.Sprintf("%s %.0f", k, x.Writes.ByRequest[k]))
		}
		fmt.Fprintf(&b, "- %s: %s\n", x.Scenario, strings.Join(parts, ", "))
	}
	for _, x := range r.Results {
		for _, n := range x.Notes {
			fmt.Fprintf(&b, "- note, %s: %s\n", x.Scenario, n)
		}
	}
	return b.String()
}

// Write stores results.md and latency-cdf.png in dir (the figures themselves are kept in
// the run's bench.json).
func (r *Report) Write(dir string) error {
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return err
	}
	md := fmt.Sprintf("# hyperpool benchmark, %s\n\nMachine: %s\n\nCommand: `%s`\n\n%s\n%s\n", r.Started.UTC().Format(time.RFC3339), r.Machine, r.Command, r.Markdown(), cdfLegend(r))
	if err := os.WriteFile(filepath.Join(dir, "results.md"), []byte(md), 0o644); err != nil {
		return err
	}
	f, err := os.Create(filepath.Join(dir, "latency-cdf.png"))
	if err != nil {
		return err
	}
	defer f.Close()
	return png.Encode(f, r.CDF(800, 500))
}

var palette = []color.RGBA{{0x1f, 0x77, 0xb4, 255}, {0xd6, 0x27, 0x28, 255}, {0x2c, 0xa0, 0x2c, 255},
	{0xff, 0x7f, 0x0e, 255}, {0x94, 0x67, 0xbd, 255}, {0x8c, 0x56, 0x4b, 255}, {0x7f, 0x7f, 0x7f, 255}}

// cdfScale is the top of the plot's logarithmic x axis: the power of ten at or above the
// largest warm-scenario max latency (at least 100 ms). The axis starts at 1 ms.
func (r *Report) cdfScale() float64 {
	top := 100.0
	for _, x := range r.Results {
		if x.mostlyWarm() {
			top = max(top, x.Latency.Max)
		}
	}
	return math.Pow(10, math.Ceil(math.Log10(top)))
}

func cdfLegend(r *Report) string {
	var b strings.Builder
	fmt.Fprintf(&b, "latency-cdf.png: bind latency CDF of the warm scenarios; x logarithmic from 1 ms to %.0f ms (grid at 1-9 x 10^n ms, darker at each power of ten), y from 0 to 1 (grid every 0.1). Colours: ", r.cdfScale())
	names := []string{"blue", "red", "green", "orange", "purple", "brown", "grey"}
	i := 0
	for _, x := range r.Results {
		if len(x.LatenciesMS) == 0 || !x.mostlyWarm() {
			continue
		}
		fmt.Fprintf(&b, "%s = %s; ", names[i%len(names)], x.Scenario)
		i++
	}
	b.WriteString("black = floor (config map round trip, first scenario).\n")
	return b.String()
}

// CDF draws each scenario's bind-latency CDF (and the floor's, in black) with no text:
// cdfLegend says what the axes and colours are.
func (r *Report) CDF(w, h int) image.Image {
	img := image.NewRGBA(image.Rect(0, 0, w, h))
	for i := range img.Pix {
		img.Pix[i] = 255
	}
	const m = 40
	pw, ph := w-2*m, h-2*m
	top := r.cdfScale()
	px := func(v float64) int {
		return m + int(math.Min(math.Log10(max(v, 1))/math.Log10(top), 1)*float64(pw))
	}
	py := func(q float64) int { return h - m - int(q*float64(ph)) }
	grid := color.RGBA{0xe8, 0xe8, 0xe8, 255}
	grid2 := color.RGBA{0xb0, 0xb0, 0xb0, 255}
	for dec := 1.0; dec < top; dec *= 10 {
		for k := 1.0; k <= 9; k++ {
			c := grid
			if k == 1 {
				c = grid2
			}
			for y := py(1); y <= py(0); y++ {
				img.Set(px(dec*k), y, c)
			}
		}
	}
	for q := 0.0; q <= 1.0001; q += 0.1 {
		for x := px(0); x <= px(top); x++ {
			img.Set(x, py(q), grid)
		}
	}
	black := color.RGBA{0, 0, 0, 255}
	for x := px(0); x <= px(top); x++ {
		img.Set(x, py(0), black)
		img.Set(x, py(0)+1, black)
	}
	for y := py(1); y <= py(0); y++ {
		img.Set(px(0), y, black)
		img.Set(px(0)-1, y, black)
	}
	line := func(v []float64, c color.RGBA) {
		s := append([]float64(nil), v...)
		sort.Float64s(s)
		lx, ly := px(0), py(0)
		for i, val := range s {
			x, y := px(val), py(float64(i+1)/float64(len(s)))
			drawLine(img, lx, ly, x, ly, c) // step: across, then up
			drawLine(img, x, ly, x, y, c)
			lx, ly = x, y
		}
		drawLine(img, lx, ly, px(top), ly, c)
	}
	i := 0
	floorDone := false
	for _, x := range r.Results {
		if !floorDone && len(x.FloorSamplesMS) > 0 {
			floorDone = true
		}
		if len(x.LatenciesMS) == 0 || !x.mostlyWarm() {
			continue
		}
		line(x.LatenciesMS, palette[i%len(palette)])
		i++
	}
	if floorDone {
		for _, x := range r.Results {
			if len(x.FloorSamplesMS) > 0 {
				line(x.FloorSamplesMS, black)
				break
			}
		}
	}
	return img
}

func drawLine(img *image.RGBA, x0, y0, x1, y1 int, c color.RGBA) {
	dx, dy := abs(x1-x0), -abs(y1-y0)
	sx, sy := 1, 1
	if x0 > x1 {
		sx = -1
	}
	if y0 > y1 {
		sy = -1
	}
	e := dx + dy
	for {
		img.Set(x0, y0, c)
		img.Set(x0, y0+1, c)
		if x0 == x1 && y0 == y1 {
			return
		}
		e2 := 2 * e
		if e2 >= dy {
			e += dy
			x0 += sx
		}
		if e2 <= dx {
			e += dx
			y0 += sy
		}
	}
}

func abs(v int) int {
	if v < 0 {
		return -v
	}
	return v
}

// mostlyWarm: a warm-pool scenario, whose few cold fallbacks (a pool briefly empty) do not
// take it off the warm CDF.
func (x *Result) mostlyWarm() bool { return x.Warm > 0 && x.Warm >= 10*x.Cold }
