//go:build !windows

// Package framework starts what every test package that runs hyperpool needs on top of
// the test bed, once per package from its TestMain: the RuntimeClasses, and the manager
// running in-process until the test bed stops.
package framework

import (
	"context"
	"fmt"
	"os"
	"strings"
	"testing"
	"time"

	"go.uber.org/zap/zapcore"
	corev1 "k8s.io/api/core/v1"
	nodev1 "k8s.io/api/node/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/rest"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/log/zap"
	metricsserver "sigs.k8s.io/controller-runtime/pkg/metrics/server"

	agentsv1alpha1 "github.com/hyperpool/hyperpool/api/v1alpha1"
	"github.com/hyperpool/hyperpool/controllers"
	"github.com/hyperpool/hyperpool/internal/poolbook"
	"github.com/hyperpool/hyperpool/test/testbed"
)

// WarmPodReadyTimeout is the warm-pod ready deadline of the tests' managers: short, yet long
// enough for kwok to start pods on a loaded 2-core machine.
const WarmPodReadyTimeout = 8 * time.Second

// ManagerConfig is the manager configuration the test packages start from: the defaults,
// with WarmPodReadyTimeout.
func ManagerConfig() controllers.Config {
	cfg := controllers.DefaultConfig()
	cfg.WarmPodReadyTimeout = WarmPodReadyTimeout
	// The tests hold the manager's pool book, and compare it with the cache after each
	// test (checkPoolBook): the periodic audit would only repeat that.
	cfg.PoolBook = poolbook.New()
	cfg.PoolBookAuditInterval = 0
	return cfg
}

// checkPoolBook fails t when the manager's pool book, once the cache has settled, does
// not show the test's namespace as a List of its pods from the cache does
// (poolbook.Book.DiffNamespace). It runs at the end of every test (testbed.AfterEachTest).
func checkPoolBook(book *poolbook.Book, cache client.Reader) func(t testing.TB, ns string) {
	return func(t testing.TB, ns string) {
		t.Helper()
		testbed.Eventually(t, testbed.WaitTimeout, func(ctx context.Context) (bool, string) {
			pods := &corev1.PodList{}
			if err := cache.List(ctx, pods, client.InNamespace(ns), client.HasLabels{agentsv1alpha1.ClassLabel}); err != nil {
				return false, err.Error()
			}
			diffs := book.DiffNamespace(ns, pods.Items)
			return len(diffs) == 0, fmt.Sprintf("the pool book differs from the cache in namespace %s:\n%s", ns, strings.Join(diffs, "\n"))
		})
	}
}

// CreateRuntimeClasses creates the two RuntimeClasses the manager's defaults name:
// hyperv (handler runhcs-wcow-hypervisor) and process (runhcs-wcow-process).
func CreateRuntimeClasses(ctx context.Context, e *testbed.Env) error {
	for _, rc := range []struct{ name, handler string }{{"hyperv", "runhcs-wcow-hypervisor"}, {"process", "runhcs-wcow-process"}} {
		if err := e.Client.Create(ctx, &nodev1.RuntimeClass{ObjectMeta: metav1.ObjectMeta{Name: rc.name}, Handler: rc.handler}); err != nil {
			return fmt.Errorf("creating RuntimeClass %s: %w", rc.name, err)
		}
	}
	return nil
}

// StartManager runs hyperpool's controllers in-process with cfg until the test bed stops.
// as is the identity it runs as (nil: the test bed's admin). Its log is quiet unless
// HYPERPOOL_TEST_VERBOSE is set.
func StartManager(e *testbed.Env, as *rest.ImpersonationConfig, cfg controllers.Config) error {
	ctrl.SetLogger(zap.New(zap.Level(logLevel())))
	restConfig := rest.CopyConfig(e.Config)
	restConfig.QPS, restConfig.Burst = 500, 1000 // as the manager's flags default, and more
	if as != nil {
		restConfig.Impersonate = *as
	}
	mgr, err := ctrl.NewManager(restConfig, ctrl.Options{
		Scheme:                 e.Scheme,
		Metrics:                metricsserver.Options{BindAddress: "0"},
		HealthProbeBindAddress: "0",
		Cache:                  controllers.CacheOptions(),
	})
	if err != nil {
		return err
	}
	ctx, cancel := context.WithCancel(context.Background())
	if err := controllers.SetupWithManager(ctx, mgr, cfg); err != nil {
		cancel()
		return err
	}
	done := make(chan struct{})
	go func() {
		defer close(done)
		if err := mgr.Start(ctx); err != nil {
			panic(fmt.Sprintf("manager stopped: %v", err))
		}
	}()
	e.BeforeStop(func() { cancel(); <-done })
	if cfg.PoolBook != nil {
		e.AfterEachTest(checkPoolBook(cfg.PoolBook, mgr.GetClient()))
	}
	return nil
}

func logLevel() zapcore.Level {
	if os.Getenv("HYPERPOOL_TEST_VERBOSE") != "" {
		return zapcore.DebugLevel
	}
	return zapcore.DPanicLevel
}
