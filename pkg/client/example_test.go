// The example in docs/client.md, compiled (not run) with the tests.

package client_test

import (
	"context"
	"errors"
	"log"
	"os"
	"time"

	"k8s.io/client-go/tools/clientcmd"

	"github.com/hyperpool/hyperpool/pkg/client"
)

// Example_agentBackend is the agent backend of docs/client.md.
func Example_agentBackend() {
	ctx := context.Background()
	config, err := clientcmd.BuildConfigFromFlags("", os.Getenv("KUBECONFIG"))
	if err != nil {
		log.Fatal(err)
	}
	c, err := client.New(config)
	if err != nil {
		log.Fatal(err)
	}

	// Open waits (on a watch) until the session is Ready; ctx bounds the wait, and if it
	// ends first the session is deleted.
	openCtx, cancel := context.WithTimeout(ctx, 5*time.Minute)
	s, err := c.Open(openCtx, "agents", "win2022", client.Options{
		IdleTimeout: 10 * time.Minute,
		MaxLifetime: 2 * time.Hour,
		User:        "build-bot",
		Progress: func(p client.Progress) {
			log.Printf("session %s: %s %s %s (%s)", p.Session, p.Phase, p.Reason, p.StartType, p.Elapsed)
		},
	})
	cancel() // the wait is over; the session lives on
	var serr *client.SessionError
	if errors.As(err, &serr) {
		log.Fatalf("no sandbox: %s (%s)", serr.Reason, serr.Message) // ExceedsQuota, NoCompatibleNodes, ...
	}
	if err != nil {
		log.Fatal(err)
	}

	// Copy a repository in: it arrives as C:\work\repo.
	if err := s.Upload(ctx, "./repo", `C:\work`); err != nil {
		log.Fatal(err)
	}

	// Run a build. Args are exec arguments, never a shell string; the exit code comes back.
	code, err := s.Run(ctx, client.Command{
		Args:    []string{"cmd.exe", "/c", "build.cmd", "--release"},
		WorkDir: `C:\work\repo`,
		Stdout:  os.Stdout,
		Stderr:  os.Stderr,
		Timeout: 30 * time.Minute,
	})
	if err != nil {
		log.Fatal(err)
	}
	log.Printf("build exited with %d", code)

	// Take the results out, then end the session (the sandbox is destroyed). An export
	// that fails is reported, and the session is deleted all the same. A long-running
	// agent would also watch s.Expiring(), which fires a minute before the hard deadline
	// (Options.ExpiryWarning), and export then.
	err = s.Close(ctx, client.CloseOptions{Export: []client.ExportSpec{
		{RemotePath: `C:\work\repo\out`, LocalDir: "./results"},
	}})
	if err != nil {
		log.Print(err)
	}
}
