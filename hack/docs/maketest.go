//go:build !windows

package main

import (
	"fmt"
	"strings"
	"time"

	"github.com/hyperpool/hyperpool/test/results"
)

// renderTestRuns renders timed make runs (hack/timetest): args are the kept files.
func renderTestRuns(args []string) (string, error) {
	if len(args) == 0 {
		return "", fmt.Errorf("want one or more hack/timetest result files")
	}
	var b strings.Builder
	b.WriteString("| run | Go build cache | beside it | wall time | passed | commit | machine |\n|---|---|---|---|---|---|---|\n")
	for _, path := range args {
		var run results.TestRun
		f, err := results.Read(path, "maketest", &run)
		if err != nil {
			return "", err
		}
		beside := run.Beside
		if beside == "" {
			beside = "nothing"
		}
		passed := "yes"
		if !run.Passed {
			passed = fmt.Sprintf("**no** (exit %d)", run.ExitCode)
		}
		fmt.Fprintf(&b, "| `%s`, %s | %s | %s | %s | %s | %s | %s |\n", run.Target, f.Started.Format("2006-01-02 15:04 UTC"), run.Cache, beside,
			(time.Duration(run.Seconds) * time.Second).String(), passed, f.ShortCommit(), f.Machine)
	}
	// Where the time went in each run: the steps make ran, each until the next began.
	for _, path := range args {
		var run results.TestRun
		if _, err := results.Read(path, "maketest", &run); err != nil || len(run.Steps) == 0 {
			continue
		}
		fmt.Fprintf(&b, "\n`%s` (%s cache) by step:", run.Target, run.Cache)
		for i, s := range run.Steps {
			end := run.Seconds
			if i+1 < len(run.Steps) {
				end = run.Steps[i+1].Began
			}
			fmt.Fprintf(&b, " `%s` %s;", s.Command, (time.Duration(end-s.Began) * time.Second).String())
		}
		b.WriteString("\n")
	}
	return b.String(), nil
}
