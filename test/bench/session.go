//go:build !windows

package bench

import (
	"bytes"
	"context"
	"fmt"
	"io/fs"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strings"
	"sync"
	"time"

	agentsv1alpha1 "github.com/hyperpool/hyperpool/api/v1alpha1"
	hpclient "github.com/hyperpool/hyperpool/pkg/client"
)

// The session scenarios (issue 15) measure the Go client (pkg/client) end to end on the
// test bed with pods/exec served (testbed.Options.ServeExec): the sandbox's commands are
// local processes in the pod's directory, reached through kube-apiserver.

// FirstOutputStats break the time to first output down, in ms.
type FirstOutputStats struct {
	// Total: Open called -> the first byte of the command's stdout.
	Total Stats `json:"totalMs"`
	// Bind: Open called -> Open's watch sees the session Ready (its Progress callback).
	Bind Stats `json:"bindMs"`
	// ClientSetup: Ready seen -> Open returns (the client reads the pod and the class).
	ClientSetup Stats `json:"clientSetupMs"`
	// ExecSetup: Run called -> the first byte of stdout.
	ExecSetup Stats `json:"execSetupMs"`
	// Run: Run called -> Run returns with the exit code.
	Run Stats `json:"runMs"`
	// Close: Close called -> it returns (the session deleted).
	Close     Stats     `json:"closeMs"`
	TotalsMS  []float64 `json:"totalsMs,omitempty"`
	ExitCodes int       `json:"nonZeroExits"`
	// BadOutput counts commands whose stdout was not what echo prints.
	BadOutput int `json:"badOutput"`
}

// TransferStats are the transfer scenario's throughputs, in MB/s (10^6 bytes of file
// content per second), of the client against kubectl cp.
type TransferStats struct {
	Files      int    `json:"files"`
	Bytes      int64  `json:"bytes"`
	Iterations int    `json:"iterations"`
	Kubectl    string `json:"kubectl"`
	// Upload and Download: each tool's median run.
	Upload   TransferDirection `json:"upload"`
	Download TransferDirection `json:"download"`
	// Mismatches counts copies whose tree differed from the source (must be 0).
	Mismatches int `json:"mismatches"`
}

// TransferDirection is one direction of the transfer scenario.
type TransferDirection struct {
	ClientSeconds  []float64 `json:"clientSeconds"`
	KubectlSeconds []float64 `json:"kubectlSeconds"`
	ClientMBps     float64   `json:"clientMBps"`
	KubectlMBps    float64   `json:"kubectlMBps"`
	// Ratio is ClientMBps / KubectlMBps: the goal is >= 1.
	Ratio float64 `json:"ratio"`
}

// sessionClient is a pkg/client Client as the benchmark's identity.
func (h *Harness) sessionClient() (*hpclient.Client, error) {
	if h.Env.ExecPort() == 0 {
		return nil, fmt.Errorf("the test bed does not serve pods/exec (testbed.Options.ServeExec)")
	}
	return hpclient.New(h.Env.Config)
}

// linuxOptions are the client's options for the test bed's Linux "sandboxes".
func linuxOptions(opts hpclient.Options) hpclient.Options {
	opts.Tar = "tar"
	opts.WorkDirArgs = hpclient.LinuxWorkDirArgs
	return opts
}

// firstByteWriter records when its first byte arrived, and keeps what it got.
type firstByteWriter struct {
	mu    sync.Mutex
	first time.Time
	buf   bytes.Buffer
}

func (w *firstByteWriter) Write(p []byte) (int, error) {
	now := time.Now()
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.first.IsZero() && len(p) > 0 {
		w.first = now
	}
	return w.buf.Write(p)
}

// openRecorded opens session name of the scenario's pool through the client, recording the
// call's start as the session's create time (for the bind latency the harness's watch
// sees), and returns the session with when Open's watch saw it Ready (since start).
func (r *run) openRecorded(ctx context.Context, cli *hpclient.Client, name string) (*hpclient.Session, time.Time, time.Duration, error) {
	var ready time.Duration
	opts := linuxOptions(hpclient.Options{Name: name, Progress: func(p hpclient.Progress) {
		if p.Phase == agentsv1alpha1.SessionReady {
			ready = p.Elapsed
		}
	}})
	octx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	start := time.Now()
	s, err := cli.Open(octx, r.ns, poolName, opts)
	r.mu.Lock()
	r.starts[name], r.lives[name] = start, 0
	r.order = append(r.order, name)
	r.mu.Unlock()
	if err != nil {
		r.errs.Add(1)
		return nil, start, 0, fmt.Errorf("open session %s: %w", name, err)
	}
	return s, start, ready, nil
}

// FirstOutput opens sessions one at a time against a warm pool of pool, runs `echo` in
// each and closes it: the time from Open to the first byte of stdout, with its parts.
func (h *Harness) FirstOutput(ctx context.Context, sessions, pool, floorN int) (*Result, error) {
	res := &Result{Scenario: "firstoutput", Params: fmt.Sprintf("%d sessions one at a time (Open, echo, Close), pool %d", sessions, pool)}
	cli, err := h.sessionClient()
	if err != nil {
		return nil, err
	}
	r, err := h.setup(ctx, "firstoutput", pool, floorN, 0)
	if err != nil {
		return nil, err
	}
	if err := r.begin(); err != nil {
		return nil, err
	}
	var total, bind, setup, execSetup, runs, closes []float64
	fo := &FirstOutputStats{}
	const word = "hyperpool"
	for i := range sessions {
		s, start, ready, err := r.openRecorded(ctx, cli, fmt.Sprintf("s-%04d", i))
		if err != nil {
			return nil, fmt.Errorf("firstoutput: %w", err)
		}
		opened := time.Now()
		out := &firstByteWriter{}
		runStart := time.Now()
		code, err := s.Run(ctx, hpclient.Command{Args: []string{"echo", word}, Stdout: out, Timeout: 30 * time.Second})
		runEnd := time.Now()
		closeErr := s.Close(ctx, hpclient.CloseOptions{})
		closed := time.Since(runEnd)
		if err != nil {
			return nil, fmt.Errorf("firstoutput: run in %s: %w", s.Name, err)
		}
		if closeErr != nil {
			return nil, fmt.Errorf("firstoutput: close %s: %w", s.Name, closeErr)
		}
		if code != 0 {
			fo.ExitCodes++
		}
		if out.buf.String() != word+"\n" || out.first.IsZero() {
			fo.BadOutput++
			continue
		}
		total = append(total, ms(out.first.Sub(start)))
		bind = append(bind, ms(ready))
		setup = append(setup, ms(opened.Sub(start)-ready))
		execSetup = append(execSetup, ms(out.first.Sub(runStart)))
		runs = append(runs, ms(runEnd.Sub(runStart)))
		closes = append(closes, ms(closed))
	}
	fo.Total, fo.Bind, fo.ClientSetup = percentiles(total), percentiles(bind), percentiles(setup)
	fo.ExecSetup, fo.Run, fo.Close = percentiles(execSetup), percentiles(runs), percentiles(closes)
	fo.TotalsMS = total
	res.FirstOutput = fo
	return res, r.finish(ctx, res, 2*time.Minute)
}

// TransferTree writes the transfer scenario's tree into dir/tree: one file of bigBytes
// random bytes and smallFiles files of 100 B to 8 KiB in directories of 100, and returns
// its path, its file count and its content size.
func TransferTree(dir string, bigBytes int64, smallFiles int) (string, int, int64, error) {
	root := filepath.Join(dir, "tree")
	rng := rand.New(rand.NewPCG(15, 7))
	write := func(p string, n int64) error {
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			return err
		}
		f, err := os.Create(p)
		if err != nil {
			return err
		}
		buf := make([]byte, 1<<20)
		for left := n; left > 0; {
			chunk := buf[:min(left, int64(len(buf)))]
			for i := 0; i < len(chunk); i += 8 {
				v := rng.Uint64()
				for j := 0; j < 8 && i+j < len(chunk); j++ {
					chunk[i+j] = byte(v >> (8 * j))
				}
			}
			if _, err := f.Write(chunk); err != nil {
				_ = f.Close()
				return err
			}
			left -= int64(len(chunk))
		}
		return f.Close()
	}
	files, size := 0, int64(0)
	if bigBytes > 0 {
		if err := write(filepath.Join(root, "big.bin"), bigBytes); err != nil {
			return "", 0, 0, err
		}
		files, size = 1, bigBytes
	}
	for i := range smallFiles {
		n := int64(100 + rng.IntN(8*1024-100))
		if err := write(filepath.Join(root, "small", fmt.Sprintf("d%03d", i/100), fmt.Sprintf("f%04d.txt", i)), n); err != nil {
			return "", 0, 0, err
		}
		files++
		size += n
	}
	return root, files, size, nil
}

// sameTree returns nil when got holds exactly want's files with the same bytes.
func sameTree(want, got string) error {
	count := 0
	err := filepath.WalkDir(want, func(p string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return err
		}
		rel, err := filepath.Rel(want, p)
		if err != nil {
			return err
		}
		a, err := os.ReadFile(p)
		if err != nil {
			return err
		}
		b, err := os.ReadFile(filepath.Join(got, rel))
		if err != nil {
			return err
		}
		if !bytes.Equal(a, b) {
			return fmt.Errorf("%s: %d bytes came back as %d different bytes", rel, len(a), len(b))
		}
		count++
		return nil
	})
	if err != nil {
		return err
	}
	n := 0
	err = filepath.WalkDir(got, func(_ string, d fs.DirEntry, err error) error {
		if err == nil && !d.IsDir() {
			n++
		}
		return err
	})
	if err != nil {
		return err
	}
	if n != count {
		return fmt.Errorf("%s holds %d files, want %d", got, n, count)
	}
	return nil
}

// kubectlPath is the test bed's kubectl, else the one on PATH.
func (h *Harness) kubectlPath() (string, error) {
	if p := h.Env.BinaryPath("kubectl"); p != "" {
		if _, err := os.Stat(p); err == nil {
			return p, nil
		}
	}
	return exec.LookPath("kubectl")
}

// Transfer copies a tree (one file of bigBytes plus smallFiles small ones) into one
// warm session's sandbox and back, iterations times, with the client (Upload, Download)
// and with a plain `kubectl cp` to and from the same pod, alternating which goes first.
// Every copy is compared with the source; the throughputs are each tool's median run.
func (h *Harness) Transfer(ctx context.Context, bigBytes int64, smallFiles, iterations, floorN int) (*Result, error) {
	res := &Result{Scenario: "transfer", Params: fmt.Sprintf("one %.0f MB file + %d small files, %d runs each way, client vs kubectl cp", float64(bigBytes)/1e6, smallFiles, iterations)}
	cli, err := h.sessionClient()
	if err != nil {
		return nil, err
	}
	kubectl, err := h.kubectlPath()
	if err != nil {
		return nil, fmt.Errorf("transfer: kubectl: %w", err)
	}
	local, err := os.MkdirTemp("", "hyperpool-bench-transfer-")
	if err != nil {
		return nil, err
	}
	defer os.RemoveAll(local)
	src, files, size, err := TransferTree(local, bigBytes, smallFiles)
	if err != nil {
		return nil, fmt.Errorf("transfer: write the tree: %w", err)
	}
	r, err := h.setup(ctx, "transfer", 1, floorN, 0)
	if err != nil {
		return nil, err
	}
	if err := r.begin(); err != nil {
		return nil, err
	}
	s, _, _, err := r.openRecorded(ctx, cli, "s-0000")
	if err != nil {
		return nil, fmt.Errorf("transfer: %w", err)
	}
	defer func() { _ = s.Close(context.WithoutCancel(ctx), hpclient.CloseOptions{}) }()
	ts := &TransferStats{Files: files, Bytes: size, Iterations: iterations, Kubectl: kubectl}
	kc := func(args ...string) error {
		cmd := exec.CommandContext(ctx, kubectl, append([]string{"--kubeconfig=" + h.Env.KubeconfigPath}, args...)...)
		out, err := cmd.CombinedOutput()
		if err != nil {
			return fmt.Errorf("kubectl %s: %w: %s", strings.Join(args, " "), err, bytes.TrimSpace(out))
		}
		return nil
	}
	run := func(args ...string) error {
		var stderr bytes.Buffer
		code, err := s.Run(ctx, hpclient.Command{Args: args, Stderr: &stderr})
		if err == nil && code != 0 {
			err = fmt.Errorf("%s exited with %d: %s", strings.Join(args, " "), code, bytes.TrimSpace(stderr.Bytes()))
		}
		return err
	}
	podDir := h.Env.PodDir(r.ns, s.PodName)
	base := filepath.Base(src)
	timed := func(f func() error) (float64, error) {
		start := time.Now()
		err := f()
		return time.Since(start).Seconds(), err
	}
	check := func(what, got string) {
		if err := sameTree(src, got); err != nil {
			ts.Mismatches++
			res.Notes = append(res.Notes, fmt.Sprintf("%s: %v", what, err))
		}
	}
	for i := range iterations {
		cDir, kDir := fmt.Sprintf("client-%d", i), fmt.Sprintf("kubectl-%d", i)
		if err := run("mkdir", "-p", cDir, kDir); err != nil {
			return nil, fmt.Errorf("transfer: %w", err)
		}
		clientUp := func() error { return s.Upload(ctx, src, cDir) }
		kubectlUp := func() error { return kc("cp", src, r.ns+"/"+s.PodName+":"+kDir) }
		clientDown := func() error { return s.Download(ctx, cDir+"/"+base, filepath.Join(local, cDir)) }
		kubectlDown := func() error {
			return kc("cp", r.ns+"/"+s.PodName+":"+kDir+"/"+base, filepath.Join(local, kDir, base))
		}
		steps := []struct {
			tool, dir string
			f         func() error
			out       *[]float64
		}{
			{"client", "upload", clientUp, &ts.Upload.ClientSeconds},
			{"kubectl cp", "upload", kubectlUp, &ts.Upload.KubectlSeconds},
			{"client", "download", clientDown, &ts.Download.ClientSeconds},
			{"kubectl cp", "download", kubectlDown, &ts.Download.KubectlSeconds},
		}
		if i%2 == 1 { // kubectl first on odd runs
			steps[0], steps[1] = steps[1], steps[0]
			steps[2], steps[3] = steps[3], steps[2]
		}
		for _, st := range steps {
			d, err := timed(st.f)
			if err != nil {
				return nil, fmt.Errorf("transfer: %s %s: %w", st.tool, st.dir, err)
			}
			*st.out = append(*st.out, d)
		}
		check("client upload", filepath.Join(podDir, cDir, base))
		check("kubectl cp upload", filepath.Join(podDir, kDir, base))
		check("client download", filepath.Join(local, cDir, base))
		check("kubectl cp download", filepath.Join(local, kDir, base))
		if err := run("rm", "-rf", cDir, kDir); err != nil {
			return nil, fmt.Errorf("transfer: %w", err)
		}
		for _, d := range []string{cDir, kDir} {
			if err := os.RemoveAll(filepath.Join(local, d)); err != nil {
				return nil, err
			}
		}
	}
	for _, d := range []*TransferDirection{&ts.Upload, &ts.Download} {
		d.ClientMBps, d.KubectlMBps = mbps(size, d.ClientSeconds), mbps(size, d.KubectlSeconds)
		if d.KubectlMBps > 0 {
			d.Ratio = d.ClientMBps / d.KubectlMBps
		}
	}
	res.Transfer = ts
	if err := s.Close(ctx, hpclient.CloseOptions{}); err != nil {
		return nil, fmt.Errorf("transfer: close: %w", err)
	}
	return res, r.finish(ctx, res, time.Minute)
}

// mbps is size over the median of the runs' seconds, in 10^6 bytes per second.
func mbps(size int64, seconds []float64) float64 {
	if len(seconds) == 0 {
		return 0
	}
	s := append([]float64(nil), seconds...)
	sort.Float64s(s)
	med := s[len(s)/2]
	if len(s)%2 == 0 {
		med = (s[len(s)/2-1] + s[len(s)/2]) / 2
	}
	if med <= 0 {
		return 0
	}
	return float64(size) / 1e6 / med
}

// sessionMarkdown renders the session scenarios' tables (nothing without them).
func (r *Report) sessionMarkdown() string {
	var b strings.Builder
	pair := func(s Stats) string { return f1(s.P50) + " / " + f1(s.P99) }
	for _, x := range r.Results {
		if fo := x.FirstOutput; fo != nil {
			b.WriteString("\nTime to first output (" + x.Scenario + ", " + x.Params + "), ms, p50 / p99:\n\n")
			b.WriteString("| sessions | Open to first byte | bind (Open to Ready) | client setup (Ready to Open returns) | exec setup (Run to first byte) | Run to exit | Close | non-zero exits | wrong output |\n")
			b.WriteString("|---|---|---|---|---|---|---|---|---|\n")
			fmt.Fprintf(&b, "| %d | %s | %s | %s | %s | %s | %s | %d | %d |\n", fo.Total.N, pair(fo.Total), pair(fo.Bind),
				pair(fo.ClientSetup), pair(fo.ExecSetup), pair(fo.Run), pair(fo.Close), fo.ExitCodes, fo.BadOutput)
		}
		if t := x.Transfer; t != nil {
			b.WriteString("\nTransfer (" + x.Scenario + ", " + x.Params + "), MB/s (10^6 bytes of file content per second, median run):\n\n")
			b.WriteString("| files | MB | runs | upload client | upload kubectl cp | ratio | download client | download kubectl cp | ratio | mismatches |\n")
			b.WriteString("|---|---|---|---|---|---|---|---|---|---|\n")
			fmt.Fprintf(&b, "| %d | %.1f | %d | %.1f | %.1f | %.2fx | %.1f | %.1f | %.2fx | %d |\n", t.Files, float64(t.Bytes)/1e6, t.Iterations,
				t.Upload.ClientMBps, t.Upload.KubectlMBps, t.Upload.Ratio, t.Download.ClientMBps, t.Download.KubectlMBps, t.Download.Ratio, t.Mismatches)
		}
	}
	return b.String()
}
