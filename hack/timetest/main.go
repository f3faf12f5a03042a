// Command timetest runs a make target (make test by default) once and keeps how long it
// took, in the envelope of test/results, for the README's times (rendered by make docs):
//
//	go run ./hack/timetest -cache=empty -out=docs/results/make-test-empty-cache.json
//
// -cache=empty runs it with a new, empty Go build cache (GOCACHE in a temporary directory,
// removed after): the first run on a fresh machine once hack/tools.sh has built bin/.
// -cache=warm uses the current cache. -beside names what ran beside it (another make test,
// for a run under load); it is recorded, not started. CI=true is set, as CI sets it.
package main

import (
	"bytes"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/exec"
	"strings"
	"time"

	"github.com/hyperpool/hyperpool/test/results"
)

func main() {
	if err := run(); err != nil {
		fmt.Fprintln(os.Stderr, "timetest:", err)
		os.Exit(1)
	}
}

// run runs the target once and keeps the run; a target that fails is an error too (after
// it is kept).
func run() error {
	target := flag.String("target", "test", "the make target to run")
	cache := flag.String("cache", "empty", "the Go build cache: empty (a new one) or warm (the current one)")
	beside := flag.String("beside", "", "what ran beside this run, if anything (recorded only)")
	out := flag.String("out", "", "where to keep the run (required)")
	flag.Parse()
	if *out == "" || (*cache != "empty" && *cache != "warm") {
		return errors.New("-out is required, -cache is empty or warm")
	}
	record := results.Begin("maketest")
	cmd := exec.Command("make", *target)
	steps := &stepRecorder{out: os.Stdout}
	cmd.Stdout, cmd.Stderr = steps, os.Stderr
	cmd.Env = append(os.Environ(), "CI=true")
	if *cache == "empty" {
		dir, err := os.MkdirTemp("", "timetest-gocache-")
		if err != nil {
			return err
		}
		defer os.RemoveAll(dir)
		cmd.Env = append(cmd.Env, "GOCACHE="+dir)
	}
	start := time.Now()
	steps.start = start
	err := cmd.Run()
	run := results.TestRun{Target: "make " + *target, Cache: *cache, Beside: *beside, Seconds: time.Since(start).Seconds(), Passed: err == nil,
		Steps: steps.steps}
	var exit *exec.ExitError
	if errors.As(err, &exit) {
		run.ExitCode = exit.ExitCode()
	} else if err != nil {
		return err
	}
	if err := record.Write(*out, run); err != nil {
		return err
	}
	fmt.Printf("timetest: make %s, %s cache: %s, passed %v; kept in %s\n", *target, *cache, time.Duration(run.Seconds*float64(time.Second)).Round(time.Second), run.Passed, *out)
	if !run.Passed {
		return fmt.Errorf("make %s failed (exit %d)", *target, run.ExitCode)
	}
	return nil
}

// stepRecorder passes make's output on and notes when each command it echoes begins: the
// Makefile's recipe lines (go ..., GOOS=... go ..., hack/...).
type stepRecorder struct {
	out     io.Writer
	start   time.Time
	partial []byte
	steps   []results.TestStep
}

func (r *stepRecorder) Write(p []byte) (int, error) {
	r.partial = append(r.partial, p...)
	for {
		i := bytes.IndexByte(r.partial, '\n')
		if i < 0 {
			break
		}
		line := string(r.partial[:i])
		r.partial = r.partial[i+1:]
		if isRecipeLine(line) {
			r.steps = append(r.steps, results.TestStep{Command: line, Began: time.Since(r.start).Seconds()})
		}
	}
	return r.out.Write(p)
}

func isRecipeLine(line string) bool {
	for _, prefix := range []string{"go ", "GOOS=", "CGO_ENABLED=", "hack/"} {
		if strings.HasPrefix(line, prefix) {
			return true
		}
	}
	return false
}
