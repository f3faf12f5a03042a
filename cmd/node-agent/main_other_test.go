//go:build !windows

package main

import (
	"strings"
	"testing"
)

func TestNotWindows(t *testing.T) {
	var out strings.Builder
	if code := notWindows(&out); code != 2 {
		t.Errorf("exit code %d, want 2", code)
	}
	want := "hyperpool node-agent runs on Windows nodes only (it manages Hyper-V utility VMs through HCS); deploy it with the chart's nodeAgent.enabled\n"
	if out.String() != want {
		t.Errorf("message %q, want %q", out.String(), want)
	}
}
