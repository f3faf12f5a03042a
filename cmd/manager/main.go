// Command manager runs the hyperpool controllers: warm pools of Hyper-V-isolated Windows
// sandboxes (AgentSandbox), sessions bound to them (AgentSession), and quotas (AgentQuota).
package main

import (
	"flag"
	"fmt"
	"os"
	"strconv"
	"strings"
	"time"

	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/apimachinery/pkg/runtime"
	utilruntime "k8s.io/apimachinery/pkg/util/runtime"
	clientgoscheme "k8s.io/client-go/kubernetes/scheme"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/healthz"
	"sigs.k8s.io/controller-runtime/pkg/log/zap"
	metricsserver "sigs.k8s.io/controller-runtime/pkg/metrics/server"

	agentsv1alpha1 "github.com/hyperpool/hyperpool/api/v1alpha1"
	"github.com/hyperpool/hyperpool/controllers"
	"github.com/hyperpool/hyperpool/internal/version"
)

func main() {
	if err := run(); err != nil {
		fmt.Fprintln(os.Stderr, "hyperpool manager:", err)
		os.Exit(1)
	}
}

func run() error {
	cfg := controllers.DefaultConfig()
	var (
		metricsAddr    string
		probeAddr      string
		leaderElect    bool
		leaderElectNS  string
		kubeAPIQPS     float64
		kubeAPIBurst   int
		defaultQuota   string
		defaultQuotaNS string
		pprofAddr      string
		leaseDuration  time.Duration
		renewDeadline  time.Duration
		retryPeriod    time.Duration
	)
	flag.StringVar(&metricsAddr, "metrics-bind-address", ":8080", "Address the Prometheus metrics endpoint binds to; \"0\" turns it off.")
	flag.StringVar(&probeAddr, "health-probe-bind-address", ":8081", "Address the /healthz and /readyz endpoints bind to.")
	flag.BoolVar(&leaderElect, "leader-elect", false, "Elect a leader among manager replicas, so only one acts at a time. On in the Helm chart.")
	flag.DurationVar(&leaseDuration, "leader-elect-lease-duration", 15*time.Second, "How long a standby waits, after the leader's last renewal, before taking over.")
	flag.DurationVar(&renewDeadline, "leader-elect-renew-deadline", 10*time.Second, "How long the leader keeps retrying a renewal before it gives up leadership (and exits).")
	flag.DurationVar(&retryPeriod, "leader-elect-retry-period", 2*time.Second, "How often leader-election clients retry acquiring or renewing the Lease.")
	flag.StringVar(&leaderElectNS, "leader-election-namespace", "", "Namespace of the leader-election Lease (default: the manager's own namespace).")
	flag.StringVar(&cfg.HyperVRuntimeClass, "hyperv-runtime-class", cfg.HyperVRuntimeClass, "RuntimeClass of HyperV-isolated sandboxes whose AgentSandbox names none (handler runhcs-wcow-hypervisor).")
	flag.StringVar(&cfg.ProcessRuntimeClass, "process-runtime-class", cfg.ProcessRuntimeClass, "RuntimeClass of Process-isolated sandboxes whose AgentSandbox names none (handler runhcs-wcow-process).")
	flag.DurationVar(&cfg.WarmPodReadyTimeout, "warm-pod-ready-timeout", cfg.WarmPodReadyTimeout, "How long a warm pod may take to become Ready before it is replaced (doubling per consecutive timeout, up to 16x).")
	flag.Func("max-queued-sessions", fmt.Sprintf("How many sessions may wait for a namespace's quota when its AgentQuota sets no spec.maxQueued, or under --default-quota; one more ends Failed with reason QueueFull (0: none waits; default %d).", cfg.MaxQueuedSessions), func(v string) error {
		n, err := strconv.ParseInt(v, 10, 32)
		if err != nil || n < 0 {
			return fmt.Errorf("%q must be a whole number >= 0", v)
		}
		cfg.MaxQueuedSessions = int32(n)
		return nil
	})
	flag.DurationVar(&cfg.AutoscaleRateWindow, "autoscale-rate-window", time.Minute, "Time constant of the autoscaler's fast bind-rate average (the slow one's is 20 times longer); shorter follows bursts sooner and noisier. Pools with spec.autoscaling only.")
	flag.DurationVar(&cfg.AutoscaleDefaultRefillTime, "autoscale-default-refill-time", 20*time.Second, "Refill time (warm pod created to Ready) the autoscaler assumes for a class until it has measured one of its pods.")
	flag.IntVar(&cfg.SessionWorkers, "session-workers", cfg.SessionWorkers, "Concurrent AgentSession reconciles.")
	flag.IntVar(&cfg.SandboxWorkers, "sandbox-workers", cfg.SandboxWorkers, "Concurrent AgentSandbox reconciles.")
	flag.DurationVar(&cfg.PoolBookAuditInterval, "pool-book-audit-interval", cfg.PoolBookAuditInterval, "How often the pool book (the pod counts kept from events) is compared with a list of every sandbox pod; 0 turns the audit off.")
	flag.Float64Var(&kubeAPIQPS, "kube-api-qps", 200, "Sustained requests per second to the API server.")
	flag.IntVar(&kubeAPIBurst, "kube-api-burst", 400, "Burst of requests to the API server.")
	flag.StringVar(&pprofAddr, "pprof-bind-address", "", "Address to serve net/http/pprof on, e.g. 127.0.0.1:6060; empty: off.")
	flag.StringVar(&defaultQuota, "default-quota", "", "Quota for namespaces without an AgentQuota, e.g. \"sessions=20,warmSandboxes=10,memory=64Gi,cpu=32\"; \"sessions=0\" denies by default; empty: no limit.")
	flag.StringVar(&defaultQuotaNS, "default-quota-namespace-selector", "", "Label selector of the namespaces --default-quota applies to (empty: all).")
	internetExcept := strings.Join(cfg.InternetEgressExcept, ",")
	flag.StringVar(&internetExcept, "internet-egress-except", internetExcept, "Comma-separated CIDRs (IPv4 and IPv6) that classes with egress Internet may not reach: cluster networks, cloud metadata and platform addresses. Replaces the default list.")
	showVersion := flag.Bool("version", false, "Print the version and the source revision, then exit.")
	zapOpts := zap.Options{}
	zapOpts.BindFlags(flag.CommandLine)
	flag.Parse()
	if *showVersion {
		fmt.Println(version.String("hyperpool-manager"))
		return nil
	}
	ctrl.SetLogger(zap.New(zap.UseFlagOptions(&zapOpts)))
	var err error
	if cfg.InternetEgressExcept, err = controllers.ParseCIDRs(internetExcept); err != nil {
		return fmt.Errorf("--internet-egress-except: %w", err)
	}
	if cfg.DefaultQuota, err = controllers.ParseQuotaLimits(defaultQuota); err != nil {
		return fmt.Errorf("--default-quota: %w", err)
	}
	if cfg.DefaultQuotaNamespaces, err = labels.Parse(defaultQuotaNS); err != nil {
		return fmt.Errorf("--default-quota-namespace-selector %q: %w", defaultQuotaNS, err)
	}

	scheme := runtime.NewScheme()
	utilruntime.Must(clientgoscheme.AddToScheme(scheme))
	utilruntime.Must(agentsv1alpha1.AddToScheme(scheme))

	restConfig, err := ctrl.GetConfig()
	if err != nil {
		return fmt.Errorf("loading kubeconfig: %w", err)
	}
	restConfig.QPS, restConfig.Burst = float32(kubeAPIQPS), kubeAPIBurst
	restConfig.UserAgent = "hyperpool-manager"

	mgr, err := ctrl.NewManager(restConfig, ctrl.Options{
		Scheme:                        scheme,
		Metrics:                       metricsserver.Options{BindAddress: metricsAddr},
		HealthProbeBindAddress:        probeAddr,
		PprofBindAddress:              pprofAddr,
		LeaderElection:                leaderElect,
		LeaderElectionID:              "hyperpool-manager.agents.hyperpool.io",
		LeaderElectionNamespace:       leaderElectNS,
		LeaderElectionReleaseOnCancel: true,
		LeaseDuration:                 &leaseDuration,
		RenewDeadline:                 &renewDeadline,
		RetryPeriod:                   &retryPeriod,
		Cache:                         controllers.CacheOptions(),
	})
	if err != nil {
		return fmt.Errorf("creating the manager: %w", err)
	}
	ctx := ctrl.SetupSignalHandler()
	if err := controllers.SetupWithManager(ctx, mgr, cfg); err != nil {
		return err
	}
	if err := mgr.AddHealthzCheck("healthz", healthz.Ping); err != nil {
		return err
	}
	if err := mgr.AddReadyzCheck("readyz", healthz.Ping); err != nil {
		return err
	}
	ctrl.Log.WithName("setup").Info("starting the hyperpool manager", "hypervRuntimeClass", cfg.HyperVRuntimeClass,
		"processRuntimeClass", cfg.ProcessRuntimeClass, "leaderElection", leaderElect)
	return mgr.Start(ctx)
}
