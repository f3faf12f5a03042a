//go:build !windows

// Command bench runs hyperpool's benchmark: it starts the test bed (kube-apiserver, etcd,
// kube-scheduler, kube-controller-manager, kwok), builds and starts the manager binary as
// its own process, runs the chosen scenarios, prints a Markdown table and writes
// bench.json (the kept run: test/results' envelope around the Report), results.md and
// latency-cdf.png into -out. docs/performance.md is rendered from a bench.json copied into
// docs/results (make docs).
//
//	go run ./test/bench/cmd/bench -scenarios=serial,paced,burst,poolsize,throughput,cold,expiry,scale,firstoutput,transfer -out=bin/bench-results
//
// Default sizes fit a 2-core machine in a few minutes; -full uses the sizes of issue 7
// (and of issue 15 for firstoutput and transfer, the Go client's scenarios).
package main

import (
	"context"
	"flag"
	"fmt"
	"os"
	"os/signal"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/go-logr/logr"
	"k8s.io/utils/ptr"
	ctrllog "sigs.k8s.io/controller-runtime/pkg/log"

	"github.com/hyperpool/hyperpool/test/bench"
	"github.com/hyperpool/hyperpool/test/results"
	"github.com/hyperpool/hyperpool/test/testbed"
)

func main() {
	if err := run(); err != nil {
		fmt.Fprintln(os.Stderr, "bench:", err)
		os.Exit(1)
	}
}

func run() error {
	var (
		scenarios = flag.String("scenarios", "serial,paced,burst,poolsize,throughput,cold,expiry,scale,firstoutput,transfer", "comma-separated scenarios to run, in order (poolsize: one scenario per -poolsize-pools, named pool<size>)")
		out       = flag.String("out", "bin/bench-results", "directory for bench.json, results.md, latency-cdf.png and the logs")
		full      = flag.Bool("full", false, "use the sizes of issues 7 and 15 for every size flag not given (750 at 75/s vs 1,000 on 100 nodes; 30 s; 5,000 expiries at 5/s; 10,000 sessions on 1,000 nodes at 20/s; 200 first outputs; a 50 MB file + 1,000 small files)")
		nodes     = flag.Int("nodes", 20, "simulated Windows nodes for every scenario but scale")
		floorN    = flag.Int("floor", 200, "design-floor samples interleaved with serial's and paced's binds, and config map round trips measured before each scenario")
		qps       = flag.Int("manager-qps", 200, "manager --kube-api-qps (its default)")
		burst     = flag.Int("manager-burst", 400, "manager --kube-api-burst (its default)")
		quiet     = flag.Duration("replenish-quiet-period", 0, "the pools' spec.replenish.quietPeriod (0: refill at once, the default)")
		minReady  = flag.Int("replenish-min-ready", -1, "the pools' spec.replenish.minReady with -replenish-quiet-period (-1: unset, half the pool)")
		extraArgs = flag.String("manager-args", "", "extra manager flags, space-separated, e.g. \"--pprof-bind-address=127.0.0.1:6060\"")

		serialN    = flag.Int("serial-sessions", 200, "serial: sessions (200: enough for a p99)")
		serialPool = flag.Int("serial-pool", 100, "serial: pool size")
		burstN     = flag.Int("burst-sessions", 200, "burst: sessions")
		burstRate  = flag.Float64("burst-rate", 75, "burst: sessions per second")
		burstPool  = flag.Int("burst-pool", 300, "burst: pool size")
		tpDur      = flag.Duration("throughput-duration", 15*time.Second, "throughput: duration")
		tpWorkers  = flag.Int("throughput-workers", 32, "throughput: concurrent closed-loop clients")
		tpMax      = flag.Int("throughput-max", 600, "throughput: at most this many sessions")
		tpPool     = flag.Int("throughput-pool", 600, "throughput: pool size")
		coldN      = flag.Int("cold-sessions", 20, "cold: sessions")
		coldBoot   = flag.Duration("cold-boot", 2*time.Second, "cold: simulated VM boot")
		expN       = flag.Int("expiry-sessions", 500, "expiry: sessions")
		expRate    = flag.Float64("expiry-rate", 5, "expiry: sessions per second (every one a cold start: faster than this 2-core machine starts pods, the lag measures the backlog of pod starts, not the timers)")
		expBase    = flag.Duration("expiry-base", 10*time.Second, "expiry: shortest maxLifetime")
		expStep    = flag.Duration("expiry-step", 100*time.Millisecond, "expiry: stagger step")
		expSpread  = flag.Int("expiry-spread", 50, "expiry: distinct lifetimes")
		scaleN     = flag.Int("scale-sessions", 1000, "scale: active sessions")
		scaleRate  = flag.Float64("scale-rate", 100, "scale: sessions per second")
		scaleNodes = flag.Int("scale-nodes", 50, "scale: simulated nodes")
		foN        = flag.Int("firstoutput-sessions", 50, "firstoutput: sessions opened, run (echo) and closed one at a time")
		foPool     = flag.Int("firstoutput-pool", 50, "firstoutput: pool size")
		trBigMB    = flag.Int("transfer-big-mb", 10, "transfer: size of the tree's big file, in MB (10^6 bytes)")
		trSmall    = flag.Int("transfer-small-files", 200, "transfer: small files (100 B to 8 KiB) in the tree")
		trRuns     = flag.Int("transfer-runs", 3, "transfer: runs each way per tool, alternating which tool goes first (the median counts; -full: 5)")
		pacedN     = flag.Int("paced-sessions", 200, "paced: sessions, one at a time (200: enough for a p99)")
		pacedEvery = flag.Duration("paced-interval", 500*time.Millisecond, "paced: one bind every interval")
		psPools    = flag.String("poolsize-pools", "100,1000", "poolsize: the pool sizes, comma-separated (one scenario each: pool<size>)")
		psN        = flag.Int("poolsize-sessions", 200, "poolsize: sessions bound against each pool")
		psRate     = flag.Float64("poolsize-rate", 10, "poolsize: sessions per second")
		mgrBinary  = flag.String("manager-binary", "", "run this manager binary instead of building ./cmd/manager (to compare two builds on the same machine)")
		idle       = flag.Duration("idle-window", 3*time.Second, "how long each scenario measures the processes' idle CPU before its window (taken out of CPU per bind; 0: not measured)")
		replot     = flag.String("replot", "", "only re-render results.md and latency-cdf.png into -out from this bench.json")
		dayDur     = flag.Duration("day-duration", 10*time.Minute, "day: the real time a simulated 24 h is replayed in (not in the default list: -scenarios=day)")
		daySeed    = flag.Uint64("day-seed", 16, "day: the trace's seed")
		dayBoot    = flag.Duration("day-boot", 45*time.Second, "day: the simulated VM boot, scaled with the day")
		annPods    = flag.Int("annotations-pods", 200, "annotations: warm pods whose annotations grow (not in the default list: -scenarios=annotations)")
		annKiB     = flag.Int("annotations-kib", 250, "annotations: KiB of annotation added to each pod (the API server allows 256 KiB in all)")
	)
	flag.Parse()
	ctrllog.SetLogger(logr.Discard()) // the benchmark's watches; the manager logs to its own file
	if *full {
		// The sizes, for every size flag not given on the command line. The expiry
		// and scale sessions are cold starts, created at rates this 2-core machine can
		// start pods at (~8/s with 20 nodes, fewer with 1,000): faster, the expiry lag
		// would measure the backlog of pod starts rather than the timers.
		set := map[string]bool{}
		flag.Visit(func(f *flag.Flag) { set[f.Name] = true })
		unlessSet := func(name string, apply func()) {
			if !set[name] {
				apply()
			}
		}
		unlessSet("serial-sessions", func() { *serialN = 200 })
		unlessSet("paced-sessions", func() { *pacedN = 200 })
		unlessSet("poolsize-pools", func() { *psPools = "100,1000,5000" })
		unlessSet("serial-pool", func() { *serialPool = 100 })
		unlessSet("burst-sessions", func() { *burstN = 750 })
		unlessSet("burst-rate", func() { *burstRate = 75 })
		unlessSet("burst-pool", func() { *burstPool = 1000 })
		unlessSet("nodes", func() { *nodes = 100 })
		unlessSet("throughput-duration", func() { *tpDur = 30 * time.Second })
		unlessSet("throughput-max", func() { *tpMax = 12000 })
		unlessSet("throughput-pool", func() { *tpPool = 2000 })
		unlessSet("expiry-sessions", func() { *expN = 5000 })
		unlessSet("expiry-spread", func() { *expSpread = 100 })
		unlessSet("scale-sessions", func() { *scaleN = 10000 })
		unlessSet("scale-rate", func() { *scaleRate = 20 })
		unlessSet("scale-nodes", func() { *scaleNodes = 1000 })
		unlessSet("firstoutput-sessions", func() { *foN = 200 })
		unlessSet("firstoutput-pool", func() { *foPool = 200 })
		unlessSet("transfer-big-mb", func() { *trBigMB = 50 })
		unlessSet("transfer-small-files", func() { *trSmall = 1000 })
		unlessSet("transfer-runs", func() { *trRuns = 5 })
	}
	outDir, err := filepath.Abs(*out)
	if err != nil {
		return err
	}
	if err := os.MkdirAll(outDir, 0o755); err != nil {
		return err
	}
	if *replot != "" {
		_, report, err := bench.ReadReport(*replot)
		if err != nil {
			return err
		}
		return report.Write(outDir)
	}
	record := results.Begin("bench")
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()

	logf := func(format string, args ...any) {
		fmt.Fprintf(os.Stderr, "%s bench: %s\n", time.Now().Format("15:04:05"), fmt.Sprintf(format, args...))
	}
	// The client's scenarios need pods/exec: the test bed then serves it (the other
	// scenarios do not use it).
	serveExec := false
	for _, sc := range strings.Split(*scenarios, ",") {
		if sc := strings.TrimSpace(sc); sc == "firstoutput" || sc == "transfer" {
			serveExec = true
		}
	}
	logf("starting the test bed")
	env, err := testbed.Start(ctx, testbed.Options{ServeExec: serveExec})
	if err != nil {
		return err
	}
	defer func() {
		if err := env.Stop(); err != nil {
			logf("stop test bed: %v", err)
		}
	}()
	logf("test bed up in %s; building the manager", env.StartDuration.Round(time.Millisecond))
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
	h.IdleWindow = *idle
	h.ReplenishQuietPeriod = *quiet
	if *minReady >= 0 {
		h.ReplenishMinReady = ptr.To(int32(*minReady))
	}
	defer h.Close()
	if err := h.EnsureNodes(ctx, *nodes); err != nil {
		return err
	}
	dayOpts := bench.DefaultDayOptions()
	dayOpts.Duration, dayOpts.Seed, dayOpts.Boot = *dayDur, *daySeed, *dayBoot
	managerArgs := strings.Fields(*extraArgs)
	if slices.Contains(strings.Split(strings.ReplaceAll(*scenarios, " ", ""), ","), "day") {
		managerArgs = append(bench.DayManagerArgs(dayOpts), managerArgs...) // the autoscaler on the day's clock
	}
	h.Manager, err = bench.StartManager(ctx, binary, env.KubeconfigPath, filepath.Join(outDir, "manager.log"), *qps, *burst, managerArgs...)
	if err != nil {
		return err
	}
	logf("manager up: pid %d, metrics %s, log %s", h.Manager.PID(), h.Manager.MetricsURL, h.Manager.LogPath)

	report := &bench.Report{Started: record.Started, Machine: record.Machine.String(), Command: record.Command}
	keep := func() error { // after each scenario, so a later failure keeps what ran
		if err := record.Write(filepath.Join(outDir, "bench.json"), report); err != nil {
			return err
		}
		return report.Write(outDir)
	}
	var list []string
	for _, sc := range strings.Split(*scenarios, ",") {
		if sc = strings.TrimSpace(sc); sc == "poolsize" { // one scenario per pool size
			for _, p := range strings.Split(*psPools, ",") {
				list = append(list, "pool"+strings.TrimSpace(p))
			}
		} else if sc != "" {
			list = append(list, sc)
		}
	}
	for _, sc := range list {
		logf("scenario %s", sc)
		var res *bench.Result
		switch sc {
		case "serial":
			res, err = h.Serial(ctx, *serialN, *serialPool, *floorN)
		case "paced":
			res, err = h.Paced(ctx, *pacedN, *serialPool, *floorN, *pacedEvery)
		case "burst":
			if err = h.EnsureNodes(ctx, *nodes); err == nil {
				res, err = h.Burst(ctx, *burstN, *burstRate, *burstPool, *floorN)
			}
		case "throughput":
			res, err = h.Throughput(ctx, *tpDur, *tpWorkers, *tpMax, *tpPool, *floorN)
		case "cold":
			res, err = h.Cold(ctx, *coldN, *coldBoot, *floorN)
		case "expiry":
			res, err = h.Expiry(ctx, *expN, *expRate, *expBase, *expStep, *expSpread, *floorN)
		case "scale":
			res, err = h.Scale(ctx, *scaleN, *scaleRate, *scaleNodes, *floorN)
		case "firstoutput":
			res, err = h.FirstOutput(ctx, *foN, *foPool, *floorN)
		case "day":
			var day *bench.DayReport
			if res, day, err = h.Day(ctx, dayOpts); err == nil {
				fmt.Println(day.Markdown())
				err = day.Write(outDir)
			}
		case "annotations":
			res, err = h.Annotations(ctx, *annPods, *annKiB*1024, max(*nodes, *annPods/50), *floorN)
		case "transfer":
			res, err = h.Transfer(ctx, int64(*trBigMB)*1_000_000, *trSmall, *trRuns, *floorN)
		default:
			size, convErr := strconv.Atoi(strings.TrimPrefix(sc, "pool"))
			if !strings.HasPrefix(sc, "pool") || convErr != nil {
				return fmt.Errorf("unknown scenario %q", sc)
			}
			res, err = h.PoolSize(ctx, *psN, *psRate, size, *floorN)
		}
		if err != nil {
			return fmt.Errorf("scenario %s: %w", sc, err)
		}
		report.Results = append(report.Results, res)
		logf("%s: bound %d/%d, p50 %.1f ms, p99 %.1f ms, floor p50 %.1f ms, critical writes/bind %.2f, total %.2f, over-created %d, double binds %d",
			sc, res.Bound, res.Sessions, res.Latency.P50, res.Latency.P99, res.Floor.P50, res.CriticalPerBind, res.TotalPerBind, res.OverCreated, res.DoubleBinds)
		if fo := res.FirstOutput; fo != nil {
			logf("%s: Open to first byte p50 %.1f ms, p99 %.1f ms; bind p50 %.1f, client setup p50 %.1f, exec setup p50 %.1f ms",
				sc, fo.Total.P50, fo.Total.P99, fo.Bind.P50, fo.ClientSetup.P50, fo.ExecSetup.P50)
		}
		if t := res.Transfer; t != nil {
			logf("%s: upload %.1f MB/s (kubectl cp %.1f, %.2fx), download %.1f MB/s (kubectl cp %.1f, %.2fx), mismatches %d",
				sc, t.Upload.ClientMBps, t.Upload.KubectlMBps, t.Upload.Ratio, t.Download.ClientMBps, t.Download.KubectlMBps, t.Download.Ratio, t.Mismatches)
		}
		if err := keep(); err != nil {
			return err
		}
		if err := h.DeleteNamespace(ctx, res.Namespace, 2*time.Minute); err != nil {
			logf("namespace %s not gone yet: %v", res.Namespace, err)
		}
	}
	fmt.Println(report.Markdown())
	logf("results in %s", outDir)
	return nil
}
