//go:build !windows

// Command day replays a simulated day of demand once per seed against a ladder of fixed
// pools and autoscaled pools at several warmHitTargets, all in one test bed with one
// manager, and keeps every day in one result file (test/results' envelope, kind "day").
// docs/autoscaling.md's tables are rendered from that file (make docs); its plot by
// -replot.
//
//	go run ./test/bench/cmd/day -seeds=16,17,18,19,20 -result=docs/results/day.json -png=docs/autoscaling-day.png
//	go run ./test/bench/cmd/day -replot -result=docs/results/day.json -png=docs/autoscaling-day.png
package main

import (
	"context"
	"flag"
	"fmt"
	"os"
	"os/signal"
	"path/filepath"
	"strings"
	"syscall"
	"time"

	"github.com/go-logr/logr"
	ctrllog "sigs.k8s.io/controller-runtime/pkg/log"

	"github.com/hyperpool/hyperpool/test/bench"
	"github.com/hyperpool/hyperpool/test/testbed"
)

func main() {
	if err := run(); err != nil {
		fmt.Fprintln(os.Stderr, "day:", err)
		os.Exit(1)
	}
}

func run() error {
	def := bench.DefaultDayOptions()
	var (
		out       = flag.String("out", "bin/day-results", "directory for the logs and day.md")
		result    = flag.String("result", "", "the result file (default: day.json in -out)")
		png       = flag.String("png", "", "the cost-curve plot, rendered from -result (default: day.png in -out)")
		replot    = flag.Bool("replot", false, "only render -png from -result (no run)")
		seeds     = flag.String("seeds", "16,17,18,19,20", "the days' seeds, one day each, replayed one after the other")
		duration  = flag.Duration("duration", def.Duration, "the real time each simulated 24 h is replayed in")
		boot      = flag.Duration("boot", def.Boot, "the simulated VM boot, scaled with the day for kwok's ready delay")
		lifetime  = flag.Duration("lifetime", def.Lifetime, "the sessions' mean lifetime (simulated)")
		ladder    = flag.String("ladder", joinInts(def.Ladder), "the fixed pools' sizes, one pool each")
		targets   = flag.String("targets", joinFloats(def.Targets), "the autoscaled pools' warmHitTarget, one pool each")
		sizing    = flag.Float64("sizing-target", def.SizingTarget, "the warm-hit target fixed-peak and fixed-average are picked from the ladder for")
		scaleDown = flag.Duration("scale-down-delay", def.ScaleDownDelay, "the autoscaled pools' scaleDownDelay (simulated)")
		maxRep    = flag.Int("max-replicas", int(def.MaxReplicas), "the autoscaled pools' maxReplicas")
		nodes     = flag.Int("nodes", 20, "simulated Windows nodes")
		qps       = flag.Int("manager-qps", 200, "manager --kube-api-qps (its default)")
		burst     = flag.Int("manager-burst", 400, "manager --kube-api-burst (its default)")
		mgrBinary = flag.String("manager-binary", "", "run this manager binary instead of building ./cmd/manager")
	)
	flag.Parse()
	ctrllog.SetLogger(logr.Discard()) // the benchmark's watches; the manager logs to its own file
	outDir, err := filepath.Abs(*out)
	if err != nil {
		return err
	}
	if err := os.MkdirAll(outDir, 0o755); err != nil {
		return err
	}
	ro := bench.DayRunOptions{ResultPath: *result, PlotPath: *png, MarkdownPath: filepath.Join(outDir, "day.md")}
	if ro.ResultPath == "" {
		ro.ResultPath = filepath.Join(outDir, "day.json")
	}
	if ro.PlotPath == "" {
		ro.PlotPath = filepath.Join(outDir, "day.png")
	}
	if *replot {
		return bench.WriteDayPlotFile(ro.ResultPath, ro.PlotPath)
	}
	o := def
	o.Duration, o.Boot, o.Lifetime, o.SizingTarget, o.ScaleDownDelay, o.MaxReplicas = *duration, *boot, *lifetime, *sizing, *scaleDown, int32(*maxRep)
	if ro.Seeds, err = bench.ParseDayList[uint64](*seeds); err != nil {
		return fmt.Errorf("-seeds: %w", err)
	}
	if o.Ladder, err = bench.ParseDayList[int32](*ladder); err != nil {
		return fmt.Errorf("-ladder: %w", err)
	}
	if o.Targets, err = bench.ParseDayList[float64](*targets); err != nil {
		return fmt.Errorf("-targets: %w", err)
	}

	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	logf := func(format string, args ...any) {
		fmt.Fprintf(os.Stderr, "%s day: %s\n", time.Now().Format("15:04:05"), fmt.Sprintf(format, args...))
	}
	logf("starting the test bed")
	env, err := testbed.Start(ctx, testbed.Options{})
	if err != nil {
		return err
	}
	defer func() {
		if err := env.Stop(); err != nil {
			logf("stop test bed: %v", err)
		}
	}()
	binary := *mgrBinary
	if binary == "" {
		binary = bench.ManagerBinaryPath(env.RepoRoot)
		if err := bench.BuildManager(ctx, env.RepoRoot, binary); err != nil {
			return err
		}
	}
	h, err := bench.NewHarness(ctx, env)
	if err != nil {
		return err
	}
	h.Logf = logf
	defer h.Close()
	if err := h.EnsureNodes(ctx, *nodes); err != nil {
		return err
	}
	// The autoscaler on the day's clock.
	h.Manager, err = bench.StartManager(ctx, binary, env.KubeconfigPath, filepath.Join(outDir, "manager.log"), *qps, *burst, bench.DayManagerArgs(o)...)
	if err != nil {
		return err
	}
	logf("manager up: pid %d, log %s", h.Manager.PID(), h.Manager.LogPath)
	res, err := h.Days(ctx, o, ro)
	if err != nil {
		return err
	}
	for _, n := range res.Notes {
		logf("%s", n)
	}
	logf("kept in %s; plot %s; tables %s", ro.ResultPath, ro.PlotPath, ro.MarkdownPath)
	return nil
}

func joinFloats(v []float64) string {
	s := make([]string, len(v))
	for i, x := range v {
		s[i] = fmt.Sprint(x)
	}
	return strings.Join(s, ",")
}

func joinInts(v []int32) string {
	s := make([]string, len(v))
	for i, n := range v {
		s[i] = fmt.Sprint(n)
	}
	return strings.Join(s, ",")
}
