//go:build !windows

package bench

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"sync"
	"syscall"
	"time"

	"github.com/prometheus/procfs"
	"k8s.io/apimachinery/pkg/util/wait"
)

// BuildManager builds cmd/manager of the repository at root into out, with the release
// images' flags (static, -trimpath: hack/release): the binary a cluster runs, and the
// compiled packages shared with make test-programs and test/images instead of one more compile of
// the whole dependency tree.
func BuildManager(ctx context.Context, root, out string) error {
	cmd := exec.CommandContext(ctx, "go", "build", "-trimpath", "-o", out, "./cmd/manager")
	cmd.Env = append(os.Environ(), "CGO_ENABLED=0")
	cmd.Dir = root
	if b, err := cmd.CombinedOutput(); err != nil {
		return fmt.Errorf("go build ./cmd/manager: %w\n%s", err, b)
	}
	return nil
}

// Manager is the manager binary running as its own process.
type Manager struct {
	MetricsURL string
	LogPath    string
	cmd        *exec.Cmd
	done       chan struct{}
	waitErr    error
	stopOnce   sync.Once
}

// StartManager runs binary against kubeconfig with the given QPS and burst, logging to
// logPath, and returns once /readyz answers.
func StartManager(ctx context.Context, binary, kubeconfig, logPath string, qps, burst int, extra ...string) (*Manager, error) {
	metricsPort, err := freePort()
	if err != nil {
		return nil, err
	}
	probePort, err := freePort()
	if err != nil {
		return nil, err
	}
	logFile, err := os.Create(logPath)
	if err != nil {
		return nil, err
	}
	args := append([]string{
		"--kubeconfig=" + kubeconfig,
		fmt.Sprintf("--metrics-bind-address=127.0.0.1:%d", metricsPort),
		fmt.Sprintf("--health-probe-bind-address=127.0.0.1:%d", probePort),
		fmt.Sprintf("--kube-api-qps=%d", qps),
		fmt.Sprintf("--kube-api-burst=%d", burst),
	}, extra...)
	cmd := exec.Command(binary, args...)
	cmd.Stdout, cmd.Stderr = logFile, logFile
	cmd.SysProcAttr = sysProcAttr()
	if err := cmd.Start(); err != nil {
		logFile.Close()
		return nil, err
	}
	m := &Manager{MetricsURL: fmt.Sprintf("http://127.0.0.1:%d/metrics", metricsPort), LogPath: logPath,
		cmd: cmd, done: make(chan struct{})}
	go func() { m.waitErr = cmd.Wait(); logFile.Close(); close(m.done) }()
	readyz := fmt.Sprintf("http://127.0.0.1:%d/readyz", probePort)
	err = wait.PollUntilContextTimeout(ctx, 100*time.Millisecond, 60*time.Second, true, func(context.Context) (bool, error) {
		select {
		case <-m.done:
			return false, fmt.Errorf("manager exited: %w (log %s)", m.waitErr, logPath)
		default:
		}
		resp, err := http.Get(readyz)
		if err != nil {
			return false, nil
		}
		_, _ = io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		return resp.StatusCode == http.StatusOK, nil
	})
	if err != nil {
		return nil, errors.Join(err, m.Stop())
	}
	return m, nil
}

// Stop sends SIGTERM to the manager (by its PID) and waits, then SIGKILL after 15 s.
func (m *Manager) Stop() error {
	m.stopOnce.Do(func() {
		_ = m.cmd.Process.Signal(syscall.SIGTERM)
		select {
		case <-m.done:
		case <-time.After(15 * time.Second):
			_ = m.cmd.Process.Kill()
			<-m.done
		}
	})
	return nil
}

// Sample reads the manager's resident memory (bytes) and CPU time (seconds) from /proc, as
// its process_resident_memory_bytes and process_cpu_seconds_total do. Not from its
// /metrics: a scrape runs the manager's collectors (one lists every session), and sampling
// four times a second would cost the manager more than Prometheus's scrapes do.
func (m *Manager) Sample() (rss, cpu float64, err error) {
	p, err := procfs.NewProc(m.PID())
	if err != nil {
		return 0, 0, err
	}
	stat, err := p.Stat()
	if err != nil {
		return 0, 0, err
	}
	return float64(stat.ResidentMemory()), stat.CPUTime(), nil
}

// sampler records the manager's peak RSS while a scenario runs.
type sampler struct {
	m        *Manager
	stop     chan struct{}
	done     chan struct{}
	peak     float64
	cpuStart float64
}

func (m *Manager) startSampler() *sampler {
	s := &sampler{m: m, stop: make(chan struct{}), done: make(chan struct{})}
	rss, cpu, _ := m.Sample()
	s.peak, s.cpuStart = rss, cpu
	go func() {
		defer close(s.done)
		t := time.NewTicker(250 * time.Millisecond)
		defer t.Stop()
		for {
			select {
			case <-s.stop:
				return
			case <-t.C:
				if rss, _, err := m.Sample(); err == nil && rss > s.peak {
					s.peak = rss
				}
			}
		}
	}()
	return s
}

// finish stops sampling and returns the peak RSS in MiB and the CPU seconds used.
func (s *sampler) finish() (peakMiB, cpuSeconds float64) {
	close(s.stop)
	<-s.done
	rss, cpu, err := s.m.Sample()
	if err == nil && rss > s.peak {
		s.peak = rss
	}
	return s.peak / (1 << 20), cpu - s.cpuStart
}

func freePort() (int, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, err
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port, nil
}

// ManagerBinaryPath is where the benchmark builds the manager: bin/ of the repository.
func ManagerBinaryPath(root string) string { return filepath.Join(root, "bin", "bench-manager") }

// PID is the manager process's id.
func (m *Manager) PID() int { return m.cmd.Process.Pid }

// Kill sends SIGKILL to the manager (by its PID), as a crash would end it, and waits until
// it has exited. The chaos test kills the leader this way.
func (m *Manager) Kill() error {
	if err := m.cmd.Process.Signal(syscall.SIGKILL); err != nil && !errors.Is(err, os.ErrProcessDone) {
		return fmt.Errorf("send SIGKILL to manager (pid %d): %w", m.PID(), err)
	}
	<-m.done
	return nil
}
