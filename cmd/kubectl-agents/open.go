package main

import (
	"context"
	"fmt"
	"io"
	"os"
	"os/signal"
	"strings"
	"sync"
	"time"

	"github.com/spf13/cobra"
	"golang.org/x/term"
	crclient "sigs.k8s.io/controller-runtime/pkg/client"

	agentsv1alpha1 "github.com/hyperpool/hyperpool/api/v1alpha1"
	hpclient "github.com/hyperpool/hyperpool/pkg/client"
)

type openOptions struct {
	*rootOptions
	name        string
	user        string
	maxLifetime time.Duration
	idleTimeout time.Duration
	requireWarm bool
	timeout     time.Duration
	credentials credentialFlags
}

func newOpenCommand(root *rootOptions) *cobra.Command {
	o := &openOptions{rootOptions: root}
	cmd := &cobra.Command{
		Use:   "open SANDBOX",
		Short: "Open a session of a sandbox class and print its name",
		Long: `open creates an AgentSession of the sandbox class SANDBOX and waits, on a watch, until
it is Ready. Progress goes to stderr: the phase, why it waits (e.g. the quota), warm or
cold, and the time so far; on a terminal as one live line with a spinner. The session's
name goes to stdout.

It fails fast with the session's reason when waiting will not help (ExceedsQuota,
NoCompatibleNodes, SandboxNotFound). On Ctrl-C or --timeout it deletes the session.
The session then lives until "kubectl agents end", its idle timeout or its max lifetime.`,
		Example: `  # Open a session and keep its name
  S=$(kubectl agents open win2022 -n agents)

  # Only a warm sandbox, with a 15 minute idle timeout
  kubectl agents open win2022 --require-warm --idle-timeout 15m

  # With the token of Secret git-token as C:\session\git\token (read with your identity)
  kubectl agents open win2022 --credential git-token:token@git --credentials-dir 'C:\session'`,
		Args:              cobra.ExactArgs(1),
		ValidArgsFunction: root.completeSandboxes,
		RunE: func(cmd *cobra.Command, args []string) error {
			return o.run(cmd.Context(), args[0])
		},
	}
	f := cmd.Flags()
	f.StringVar(&o.name, "name", "", "the session's name (default: generated from the sandbox's)")
	f.StringVar(&o.user, "user", "", "free text for the audit trail (spec.user)")
	f.DurationVar(&o.maxLifetime, "max-lifetime", 0, "the session's max lifetime (default: the class's; the class caps it)")
	f.DurationVar(&o.idleTimeout, "idle-timeout", 0, "the session's idle timeout (default: the class's; the class caps it)")
	f.BoolVar(&o.requireWarm, "require-warm", false, "wait for a warm sandbox rather than start a cold one")
	f.DurationVar(&o.timeout, "timeout", hpclient.DefaultStartTimeout,
		"give up (and delete the session) when it is not Ready after this long; also its spec.startTimeout. 0: no limit but the class's")
	o.credentials.addFlags(f)
	return cmd
}

func (o *openOptions) run(ctx context.Context, sandbox string) error {
	ctx, stop := signal.NotifyContext(ctx, os.Interrupt)
	defer stop()
	ns, err := o.namespace()
	if err != nil {
		return err
	}
	c, err := o.client()
	if err != nil {
		return err
	}
	p := newProgressPrinter(o.ErrOut, sandbox)
	p.queue = o.queueInfo(ns)
	defer p.stop()
	opts := hpclient.Options{Name: o.name, User: o.user, MaxLifetime: o.maxLifetime,
		IdleTimeout: o.idleTimeout, Progress: p.update, StartTimeout: o.timeout}
	if o.timeout <= 0 {
		opts.StartTimeout = -1 // no limit from the client
	}
	if o.requireWarm {
		opts.StartPolicy = agentsv1alpha1.RequireWarm
	}
	if opts, err = o.sessionOptions(opts); err != nil {
		return err
	}
	if err := o.credentials.apply(&opts); err != nil {
		return err
	}
	s, err := c.Open(ctx, ns, sandbox, opts)
	p.stop()
	if err != nil {
		return err
	}
	// The session outlives this process: no Close.
	fmt.Fprintln(o.Out, s.Name)
	return nil
}

// progressPrinter shows Open's progress on stderr: a line per change (and per move of
// the quota's queue), or on a terminal one line redrawn with a spinner and the elapsed
// time.
type progressPrinter struct {
	w       io.Writer
	sandbox string
	tty     bool
	begin   time.Time
	// queue, if set, describes the namespace's quota queue while the session is Queued.
	queue func(session string) string

	mu        sync.Mutex
	last      hpclient.Progress
	queueLine string
	started   bool
	done      chan struct{}
	once      sync.Once
	wg        sync.WaitGroup
}

func newProgressPrinter(w io.Writer, sandbox string) *progressPrinter {
	f, ok := w.(*os.File)
	return startProgressPrinter(w, sandbox, ok && term.IsTerminal(int(f.Fd())))
}

func startProgressPrinter(w io.Writer, sandbox string, tty bool) *progressPrinter {
	p := &progressPrinter{w: w, sandbox: sandbox, tty: tty, begin: time.Now(), done: make(chan struct{})}
	p.wg.Add(1)
	go p.spin()
	return p
}

func (p *progressPrinter) update(pr hpclient.Progress) {
	queue := p.queueOf(pr)
	p.mu.Lock()
	defer p.mu.Unlock()
	p.last, p.started, p.queueLine = pr, true, queue
	if !p.tty {
		fmt.Fprintln(p.w, describeProgress(pr, pr.Elapsed)+queue)
	}
}

// queueOf is the quota queue's state for a Queued session, else "".
func (p *progressPrinter) queueOf(pr hpclient.Progress) string {
	if p.queue == nil || pr.Phase != agentsv1alpha1.SessionQueued {
		return ""
	}
	return p.queue(pr.Session)
}

var spinner = []string{"⠋", "⠙", "⠹", "⠸", "⠼", "⠴", "⠦", "⠧", "⠇", "⠏"}

func (p *progressPrinter) spin() {
	defer p.wg.Done()
	t := time.NewTicker(100 * time.Millisecond)
	defer t.Stop()
	for i := 0; ; i++ {
		select {
		case <-p.done:
			p.mu.Lock()
			if p.tty && p.started {
				fmt.Fprintf(p.w, "\r\033[K%s\n", describeProgress(p.last, time.Since(p.begin))+p.queueLine)
			}
			p.mu.Unlock()
			return
		case <-t.C:
		}
		if i%20 == 19 { // refresh the queue's state every 2s
			p.mu.Lock()
			last := p.last
			p.mu.Unlock()
			if q := p.queueOf(last); q != "" {
				p.mu.Lock()
				if !p.tty && q != p.queueLine && p.last == last {
					// Without a terminal, a line when the queue moves.
					fmt.Fprintln(p.w, describeProgress(last, time.Since(p.begin))+q)
				}
				p.queueLine = q
				p.mu.Unlock()
			}
		}
		if !p.tty {
			continue
		}
		p.mu.Lock()
		line := "Creating session of " + p.sandbox
		if p.started {
			line = describeProgress(p.last, time.Since(p.begin)) + p.queueLine
		}
		fmt.Fprintf(p.w, "\r\033[K%s %s", spinner[i%len(spinner)], line)
		p.mu.Unlock()
	}
}

// stop ends the spinner; it may be called more than once.
func (p *progressPrinter) stop() {
	p.once.Do(func() { close(p.done) })
	p.wg.Wait()
}

// queueInfo describes the namespace's quota queue (the manager publishes its length and
// head, not each session's place): " (queue: 3 waiting, next: s1)" or "(..., this session is next)".
func (o *rootOptions) queueInfo(ns string) func(session string) string {
	return func(session string) string {
		kube, err := o.kube()
		if err != nil {
			return ""
		}
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
		defer cancel()
		quotas := &agentsv1alpha1.AgentQuotaList{}
		if err := kube.List(ctx, quotas, crclient.InNamespace(ns)); err != nil {
			return ""
		}
		var parts []string
		for _, q := range quotas.Items {
			if q.Status.Queued == 0 {
				continue
			}
			next := q.Status.QueueHead
			if next == session {
				next = "this session"
			}
			part := fmt.Sprintf("%s: %d waiting", q.Name, q.Status.Queued)
			if next != "" {
				part += ", next: " + next
			}
			parts = append(parts, part)
		}
		if len(parts) == 0 {
			return ""
		}
		return " (queue " + strings.Join(parts, "; ") + ")"
	}
}

// describeProgress is one line: session, phase, reason, warm or cold, elapsed.
func describeProgress(pr hpclient.Progress, elapsed time.Duration) string {
	var b strings.Builder
	fmt.Fprintf(&b, "%s: %s", pr.Session, pr.Phase)
	if pr.QueuePosition > 0 {
		fmt.Fprintf(&b, " #%d in the queue", pr.QueuePosition)
	}
	if pr.StartType != "" {
		fmt.Fprintf(&b, " (%s)", strings.ToLower(string(pr.StartType)))
	}
	if pr.Reason != "" {
		fmt.Fprintf(&b, " %s", pr.Reason)
		if pr.Message != "" {
			fmt.Fprintf(&b, ": %s", pr.Message)
		}
	}
	fmt.Fprintf(&b, " [%s]", elapsed.Round(100*time.Millisecond))
	return b.String()
}
