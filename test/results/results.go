// Package results is the envelope of every kept benchmark, day and chaos run: which
// commit ran, whether its tree was clean, on what machine under what load, with which
// flags, and the run's own figures. The tables in docs/ are rendered from these files by
// `make docs` (hack/docs); `make verify` fails when a page differs from what they give.
package results

import (
	"bytes"
	"encoding/json"
	"flag"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"time"
)

// Machine is where a run ran.
type Machine struct {
	OS        string `json:"os"`
	Arch      string `json:"arch"`
	Cores     int    `json:"cores"`
	CPUModel  string `json:"cpuModel,omitempty"`
	MemoryKiB int64  `json:"memoryKiB,omitempty"`
	GoVersion string `json:"goVersion"`
	// LoadBefore and LoadAfter are /proc/loadavg's 1, 5 and 15 minute averages when the
	// run began and when it ended: a run on a busy machine says so.
	LoadBefore [3]float64 `json:"loadBefore"`
	LoadAfter  [3]float64 `json:"loadAfter"`
}

// String is one line for a page: "2 cores (model), 24.0 GiB, go1.26, load 0.4 → 1.9".
func (m Machine) String() string {
	model := ""
	if m.CPUModel != "" {
		model = " (" + m.CPUModel + ")"
	}
	return fmt.Sprintf("%s/%s, %d cores%s, %.1f GiB, %s, 1-minute load %.2f before and %.2f after",
		m.OS, m.Arch, m.Cores, model, float64(m.MemoryKiB)/(1<<20), m.GoVersion, m.LoadBefore[0], m.LoadAfter[0])
}

// File is one kept run.
type File struct {
	// Kind names what Data holds: "bench", "day" or "chaos".
	Kind string `json:"kind"`
	// Commit is HEAD when the run began; Dirty says the tree differed from it (results
	// files under docs/results aside), so the figures may not be that commit's.
	Commit  string `json:"commit"`
	Dirty   bool   `json:"dirty"`
	Command string `json:"command"`
	// Flags are all of the command's flags, given or default.
	Flags    map[string]string `json:"flags"`
	Started  time.Time         `json:"started"`
	Finished time.Time         `json:"finished"`
	Machine  Machine           `json:"machine"`
	Data     json.RawMessage   `json:"data"`
}

// ShortCommit is the commit's first 7 characters, with "+dirty" when the tree was.
func (f *File) ShortCommit() string {
	c := f.Commit
	if len(c) > 7 {
		c = c[:7]
	}
	if f.Dirty {
		c += "+dirty"
	}
	return c
}

// CommandLine is the command as a reader can run it: the program's name without the
// temporary directory `go run` builds it in.
func (f *File) CommandLine() string {
	prog, args, _ := strings.Cut(f.Command, " ")
	return strings.TrimSpace(filepath.Base(prog) + " " + args)
}

// Begin starts the record of a run of kind: the commit, the machine, the load now and
// the flags of the command line (call it after flag.Parse).
func Begin(kind string) *File {
	f := &File{Kind: kind, Command: strings.Join(os.Args, " "), Flags: map[string]string{}, Started: time.Now().UTC()}
	f.Commit, f.Dirty = gitState()
	f.Machine = machine()
	f.Machine.LoadBefore = loadAverage()
	flag.VisitAll(func(fl *flag.Flag) { f.Flags[fl.Name] = fl.Value.String() })
	return f
}

// Write stores the run with data at path: it sets the end time and the load now. It may
// be called again as the run goes on (each scenario's figures are kept as they come).
func (f *File) Write(path string, data any) error {
	raw, err := json.Marshal(data)
	if err != nil {
		return err
	}
	f.Data = raw
	f.Finished = time.Now().UTC()
	f.Machine.LoadAfter = loadAverage()
	var buf bytes.Buffer
	enc := json.NewEncoder(&buf)
	enc.SetIndent("", " ")
	if err := enc.Encode(f); err != nil {
		return err
	}
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		return err
	}
	tmp := path + ".tmp"
	if err := os.WriteFile(tmp, buf.Bytes(), 0o644); err != nil {
		return err
	}
	return os.Rename(tmp, path)
}

// Read loads the run at path, decodes its data into data and checks its kind.
func Read(path, kind string, data any) (*File, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	f := &File{}
	if err := json.Unmarshal(b, f); err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	if f.Kind != kind {
		return nil, fmt.Errorf("%s holds a %q run, not %q", path, f.Kind, kind)
	}
	if data != nil {
		if err := json.Unmarshal(f.Data, data); err != nil {
			return nil, fmt.Errorf("%s: data: %w", path, err)
		}
	}
	return f, nil
}

// gitState is HEAD and whether the work tree differs from it, kept results aside (a
// run that writes into docs/results would otherwise call its own tree dirty).
func gitState() (string, bool) {
	out, err := exec.Command("git", "rev-parse", "HEAD").Output()
	if err != nil {
		return "unknown", true
	}
	status, err := exec.Command("git", "status", "--porcelain", "--", ".", ":(exclude,top)docs/results").Output()
	return strings.TrimSpace(string(out)), err != nil || len(bytes.TrimSpace(status)) > 0
}

func machine() Machine {
	m := Machine{OS: runtime.GOOS, Arch: runtime.GOARCH, Cores: runtime.NumCPU(), GoVersion: runtime.Version()}
	if b, err := os.ReadFile("/proc/cpuinfo"); err == nil {
		for _, l := range strings.Split(string(b), "\n") {
			if k, v, ok := strings.Cut(l, ":"); ok && strings.TrimSpace(k) == "model name" {
				m.CPUModel = strings.TrimSpace(v)
				break
			}
		}
	}
	if b, err := os.ReadFile("/proc/meminfo"); err == nil {
		if fields := strings.Fields(strings.SplitN(string(b), "\n", 2)[0]); len(fields) >= 2 {
			m.MemoryKiB, _ = strconv.ParseInt(fields[1], 10, 64)
		}
	}
	return m
}

// loadAverage is /proc/loadavg's three averages (zeros where there is none).
func loadAverage() [3]float64 {
	var l [3]float64
	b, err := os.ReadFile("/proc/loadavg")
	if err != nil {
		return l
	}
	fields := strings.Fields(string(b))
	for i := 0; i < 3 && i < len(fields); i++ {
		l[i], _ = strconv.ParseFloat(fields[i], 64)
	}
	return l
}

// TestRun is one timed run of a make target (hack/timetest): the README's times.
type TestRun struct {
	Target string `json:"target"`
	// Cache is "empty" (a new Go build cache) or "warm".
	Cache string `json:"cache"`
	// Beside names what ran beside it on the same machine, if anything.
	Beside   string  `json:"beside,omitempty"`
	Seconds  float64 `json:"seconds"`
	Passed   bool    `json:"passed"`
	ExitCode int     `json:"exitCode,omitempty"`
	// Steps are the commands make ran, each with when it began (seconds since the start):
	// where the time went.
	Steps []TestStep `json:"steps,omitempty"`
}

// TestStep is one command of a timed make run.
type TestStep struct {
	Command string  `json:"command"`
	Began   float64 `json:"began"`
}
