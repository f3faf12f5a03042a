//go:build !windows

package client_test

import (
	"archive/tar"
	"bytes"
	"context"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"sigs.k8s.io/controller-runtime/pkg/client"

	agentsv1alpha1 "github.com/hyperpool/hyperpool/api/v1alpha1"
	hpclient "github.com/hyperpool/hyperpool/pkg/client"
	"github.com/hyperpool/hyperpool/test/builders"
	"github.com/hyperpool/hyperpool/test/testbed"
)

// TestReadFileStopsAtLimit: the sandbox's "tar" announces a 1 GiB file, sends 100 KiB of
// it and then hangs. ReadFile must return the first 64 KiB at once, with the announced
// size, and end the exec, rather than wait for the rest.
func TestReadFileStopsAtLimit(t *testing.T) {
	t.Parallel()
	ns := newClass(t, "win", 1)
	s := open(t, ns, "win", hpclient.Options{})
	podDir := env.PodDir(ns, s.PodName)

	var hdr bytes.Buffer
	tw := tar.NewWriter(&hdr)
	if err := tw.WriteHeader(&tar.Header{Name: "endless", Typeflag: tar.TypeReg, Mode: 0o644, Size: 1 << 30}); err != nil {
		t.Fatal(err)
	}
	_ = tw.Flush() // the header alone: the body follows from the script
	mustWrite(t, filepath.Join(podDir, "endless.hdr"), hdr.Bytes())
	script := filepath.Join(podDir, "endless-tar")
	mustWrite(t, script, []byte("#!/bin/sh\ncat endless.hdr\nhead -c 102400 /dev/zero\nexec sleep 600\n"))
	if err := os.Chmod(script, 0o755); err != nil {
		t.Fatal(err)
	}
	opts := linux(hpclient.Options{})
	opts.Tar = "./endless-tar"
	evil, err := cli.Attach(t.Context(), ns, s.Name, opts)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(t.Context(), waitTimeout)
	defer cancel()
	begin := time.Now()
	head, err := evil.ReadFile(ctx, "endless", 64<<10)
	if err != nil {
		t.Fatalf("read_file of an endless file: %v", err)
	}
	if elapsed := time.Since(begin); elapsed > 20*time.Second {
		t.Errorf("ReadFile took %s: it waited for the rest of the file", elapsed)
	}
	if len(head.Data) != 64<<10 || head.Size != 1<<30 || !head.Truncated {
		t.Errorf("ReadFile: %d bytes, size %d, truncated %v; want 65536 of 1073741824, truncated", len(head.Data), head.Size, head.Truncated)
	}
	// Refused entries: a directory, a sibling name, a sparse file; and a missing file.
	wantErr := map[string]string{"a directory": "is a directory", "another name": "not under f/",
		"a sparse bomb": "is a sparse file"}
	for name, archive := range map[string][]byte{
		"a directory":   archiveOf(t, &tar.Header{Name: "f/", Typeflag: tar.TypeDir, Mode: 0o755}),
		"another name":  archiveOf(t, file("other", "x")),
		"a sparse bomb": paxSparse("f", 1<<40),
	} {
		opts.Tar = hostileTar(t, podDir, strings.ReplaceAll(name, " ", "-"), archive)
		evil, err := cli.Attach(t.Context(), ns, s.Name, opts)
		if err != nil {
			t.Fatal(err)
		}
		if head, err := evil.ReadFile(ctx, "f", 64<<10); err == nil || !strings.Contains(err.Error(), wantErr[name]) {
			t.Errorf("ReadFile of %s: %d bytes, %v; want an error with %q", name, len(head.Data), err, wantErr[name])
		} else {
			t.Logf("%s: %v", name, err)
		}
	}
	// A missing file: the sandbox's tar's own failure comes back.
	opts.Tar = "tar"
	plain, err := cli.Attach(t.Context(), ns, s.Name, opts)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := plain.ReadFile(ctx, "missing", 64<<10); err == nil || !strings.Contains(err.Error(), "exited with code") {
		t.Errorf("ReadFile of a missing file: %v; want tar's failure", err)
	}
}

// TestOpenGivesUpAtStartTimeout: with the quota full, Open with a 3 s StartTimeout
// returns within a few seconds, naming the timeout, and leaves no session behind.
func TestOpenGivesUpAtStartTimeout(t *testing.T) {
	t.Parallel()
	ns := newClass(t, "win", 1)
	if err := env.Client.Create(t.Context(), builders.AgentQuota(ns, "quota").Sessions(1).Obj()); err != nil {
		t.Fatal(err)
	}
	holder := open(t, ns, "win", hpclient.Options{})
	ctx, cancel := context.WithTimeout(t.Context(), 2*waitTimeout)
	defer cancel()
	begin := time.Now()
	s, err := cli.Open(ctx, ns, "win", linux(hpclient.Options{Name: "waiting", StartTimeout: 3 * time.Second}))
	elapsed := time.Since(begin)
	if err == nil {
		_ = s.Close(context.Background(), hpclient.CloseOptions{})
		t.Fatal("Open with the quota full succeeded")
	}
	t.Logf("after %s: %v", elapsed.Round(time.Millisecond), err)
	if elapsed > 25*time.Second {
		t.Errorf("Open with a 3 s StartTimeout returned after %s", elapsed)
	}
	if !strings.Contains(err.Error(), "StartTimeout") {
		t.Errorf("Open's error %q does not name the start timeout", err)
	}
	waitSessions(t, ns, holder.Name)
}

// waitSessions waits until the namespace's sessions are exactly names.
func waitSessions(t *testing.T, ns string, names ...string) {
	t.Helper()
	testbed.Eventually(t, waitTimeout, func(ctx context.Context) (bool, string) {
		list := &agentsv1alpha1.AgentSessionList{}
		if err := env.Client.List(ctx, list, client.InNamespace(ns)); err != nil {
			return false, err.Error()
		}
		var got []string
		for _, s := range list.Items {
			got = append(got, s.Name)
		}
		slices.Sort(got)
		return slices.Equal(got, names), fmt.Sprintf("sessions %v, want %v", got, names)
	})
}
