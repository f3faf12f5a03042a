//go:build windows

package main

import (
	"context"
	"flag"
	"fmt"
	"os"

	"k8s.io/apimachinery/pkg/runtime"
	utilruntime "k8s.io/apimachinery/pkg/util/runtime"
	clientgoscheme "k8s.io/client-go/kubernetes/scheme"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/log/zap"
	"sigs.k8s.io/controller-runtime/pkg/manager"
	ctrlmetrics "sigs.k8s.io/controller-runtime/pkg/metrics"
	metricsserver "sigs.k8s.io/controller-runtime/pkg/metrics/server"

	"github.com/hyperpool/hyperpool/internal/nodeagent"
	"github.com/hyperpool/hyperpool/internal/version"
)

func main() {
	opts := bindFlags(flag.CommandLine)
	flag.Parse()
	if opts.version {
		fmt.Println(version.String("hyperpool-node-agent"))
		return
	}
	if err := opts.validate(); err != nil {
		fmt.Fprintln(os.Stderr, "hyperpool node-agent:", err)
		os.Exit(2)
	}
	ctrl.SetLogger(zap.New(zap.UseFlagOptions(&opts.zap)))
	if err := run(ctrl.SetupSignalHandler(), opts); err != nil {
		fmt.Fprintln(os.Stderr, "hyperpool node-agent:", err)
		os.Exit(1)
	}
}

func run(ctx context.Context, opts *options) error {
	log := ctrl.Log.WithName("node-agent")
	scheme := runtime.NewScheme()
	utilruntime.Must(clientgoscheme.AddToScheme(scheme))

	restConfig, err := ctrl.GetConfig()
	if err != nil {
		return fmt.Errorf("loading kubeconfig: %w", err)
	}
	restConfig.UserAgent = "hyperpool-node-agent"
	// One node's agent makes a handful of requests per interval.
	restConfig.QPS, restConfig.Burst = 5, 10

	mgr, err := ctrl.NewManager(restConfig, ctrl.Options{
		Scheme:  scheme,
		Metrics: metricsserver.Options{BindAddress: opts.metricsAddr},
		// No leader election and no informers: every read goes through the APIReader.
	})
	if err != nil {
		return fmt.Errorf("creating the manager: %w", err)
	}

	nodeUID, err := nodeagent.CheckNode(ctx, mgr.GetAPIReader(), opts.agent.NodeName)
	if err != nil {
		return err
	}
	cri, conn, err := nodeagent.DialCRI(opts.criEndpoint)
	if err != nil {
		return fmt.Errorf("CRI endpoint %s: %w", opts.criEndpoint, err)
	}
	defer conn.Close()

	node := nodeagent.KubeNode{Reader: mgr.GetAPIReader(), Client: mgr.GetClient(),
		Recorder: mgr.GetEventRecorder("hyperpool-node-agent"), NodeName: opts.agent.NodeName, NodeUID: nodeUID}
	metrics := nodeagent.NewMetrics(ctrlmetrics.Registry)
	agent := &nodeagent.Agent{
		Config:   opts.agent,
		Host:     &nodeagent.HCSHost{},
		Resolver: nodeagent.CRIResolver{Client: cri},
		Pods:     nodeagent.APIPodLister{Reader: mgr.GetAPIReader(), NodeName: opts.agent.NodeName},
		Node:     node,
		Metrics:  metrics,
		Log:      log,
	}
	if err := mgr.Add(manager.Runnable(agent)); err != nil {
		return err
	}
	// The runtime check runs beside the inventory, on its own interval and state: a node
	// whose HCS fails still has its runtime checked. KubeNode and the metrics are safe for
	// both.
	runtimeCheck := &nodeagent.RuntimeCheck{
		NodeName: opts.agent.NodeName,
		Interval: opts.runtimeCheckInterval,
		Config:   nodeagent.ContainerdConfig{Path: opts.containerdPath, ConfigPath: opts.containerdConfig},
		Classes:  nodeagent.APIRuntimeClassLister{Reader: mgr.GetAPIReader()},
		Node:     node,
		Metrics:  metrics,
		Log:      log.WithName("runtime"),
	}
	if err := mgr.Add(manager.Runnable(runtimeCheck)); err != nil {
		return err
	}
	log.Info("starting", "node", opts.agent.NodeName, "reap", opts.agent.Reap, "gracePeriod", opts.agent.GracePeriod,
		"interval", opts.agent.Interval, "criEndpoint", opts.criEndpoint, "metrics", opts.metricsAddr,
		"runtimeCheckInterval", opts.runtimeCheckInterval, "containerd", opts.containerdPath, "containerdConfig", opts.containerdConfig)
	return mgr.Start(ctx)
}
