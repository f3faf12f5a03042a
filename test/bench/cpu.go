//go:build !windows

package bench

import (
	"sort"
	"time"

	"github.com/prometheus/procfs"
)

// cpuTimes is CPU seconds (user + system) by process: the manager and each test-bed
// component (kube-apiserver, etcd, kube-scheduler, kube-controller-manager, kwok).
type cpuTimes map[string]float64

func (a cpuTimes) sub(b cpuTimes) cpuTimes {
	out := cpuTimes{}
	for k, v := range a {
		out[k] = v - b[k]
	}
	return out
}

func (a cpuTimes) add(b cpuTimes) {
	for k, v := range b {
		a[k] += v
	}
}

// processes reads the CPU time of the manager and the test bed's components from /proc,
// as their process_cpu_seconds_total would (without a scrape, which costs the scraped).
type processes struct {
	pids map[string]int
}

func (h *Harness) processes() *processes {
	pids := h.Env.PIDs()
	if h.Manager != nil {
		pids["manager"] = h.Manager.PID()
	}
	return &processes{pids: pids}
}

func (p *processes) read() cpuTimes {
	out := cpuTimes{}
	if p == nil {
		return out
	}
	for name, pid := range p.pids {
		proc, err := procfs.NewProc(pid)
		if err != nil {
			continue
		}
		st, err := proc.Stat()
		if err != nil {
			continue
		}
		out[name] = st.CPUTime()
	}
	return out
}

// ProcessCPU is one process's CPU over a scenario's window, split between the binds and the
// design floor's samples, with its idle rate taken out.
type ProcessCPU struct {
	Process string `json:"process"`
	// WindowSeconds: CPU seconds over the whole window.
	WindowSeconds float64 `json:"windowSeconds"`
	// IdlePerSecond: CPU seconds per second in the idle window before the scenario (node
	// leases and statuses, the components' own loops): taken out of both figures below.
	IdlePerSecond float64 `json:"idlePerSecond"`
	// FloorSeconds: CPU seconds while design-floor samples ran (inline samples only).
	FloorSeconds float64 `json:"floorSeconds"`
	// PerBindMS: (window - floor samples - idle rate x the rest of the window) / binds.
	PerBindMS float64 `json:"perBindMs"`
	// PerFloorMS: (floor samples - idle rate x their time) / samples.
	PerFloorMS float64 `json:"perFloorMs,omitempty"`
}

// cpuAccount turns the window's readings into ProcessCPU rows, sorted by name.
func cpuAccount(window, idleRate, floor cpuTimes, windowSec, floorSec float64, binds, floors int) []ProcessCPU {
	var out []ProcessCPU
	for name, w := range window {
		pc := ProcessCPU{Process: name, WindowSeconds: w, IdlePerSecond: idleRate[name], FloorSeconds: floor[name]}
		if binds > 0 {
			pc.PerBindMS = max(0, w-floor[name]-idleRate[name]*(windowSec-floorSec)) * 1000 / float64(binds)
		}
		if floors > 0 {
			pc.PerFloorMS = max(0, floor[name]-idleRate[name]*floorSec) * 1000 / float64(floors)
		}
		out = append(out, pc)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Process < out[j].Process })
	return out
}

// idleRate measures each process's CPU per second over d with nothing running but the
// test bed's own loops. The wait is the measurement's window, not a synchronisation.
func (p *processes) idleRate(d time.Duration) cpuTimes {
	a := p.read()
	time.Sleep(d)
	rate := p.read().sub(a)
	for k := range rate {
		rate[k] /= d.Seconds()
	}
	return rate
}
