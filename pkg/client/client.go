// Package client opens hyperpool sessions and uses their sandboxes from Go: run commands,
// copy files in and out, keep the session from idling out while it is used, and end it.
//
// Everything goes through the Kubernetes API with the caller's own identity: the session is
// an AgentSession object, commands and files go through pods/exec (client-go's
// remotecommand, WebSocket with SPDY fallback, as kubectl exec does), and files travel as a
// tar stream over the exec's stdin and stdout. Nothing runs in the sandbox but the
// commands themselves; the image needs tar.exe for Upload and Download.
//
//	c, _ := client.New(restConfig)
//	s, err := c.Open(ctx, "agents", "win2022", client.Options{IdleTimeout: 10 * time.Minute})
//	...
//	code, err := s.Run(ctx, client.Command{Args: []string{"cmd.exe", "/c", "ver"}, Stdout: os.Stdout})
//	...
//	err = s.Close(ctx, client.CloseOptions{Export: []client.ExportSpec{{RemotePath: `C:\work\out`, LocalDir: "results"}}})
//
// The identity needs the hyperpool-session-user role in the namespace, create and get on
// pods/exec (an exec over WebSocket is a GET), and get on pods (to find a multi-container
// sandbox's main container).
package client

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"time"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/fields"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/watch"
	clientgoscheme "k8s.io/client-go/kubernetes/scheme"
	"k8s.io/client-go/rest"
	crclient "sigs.k8s.io/controller-runtime/pkg/client"

	agentsv1alpha1 "github.com/hyperpool/hyperpool/api/v1alpha1"
)

// DefaultContainerAnnotation names a pod's main container, as kubectl reads it.
const DefaultContainerAnnotation = "kubectl.kubernetes.io/default-container"

// DefaultTar is the tar command in the sandbox: Windows ships tar.exe (bsdtar) from
// Windows Server 2019 on.
const DefaultTar = "tar.exe"

// DefaultStartTimeout is Open's default bound (Options.StartTimeout): a cold start of a
// Windows sandbox takes a few minutes, a quota queue may take longer; past 10 minutes
// the caller should hear about it rather than wait on.
const DefaultStartTimeout = 10 * time.Minute

// maxSpecStartTimeout is the longest spec.startTimeout the API accepts.
const maxSpecStartTimeout = 168 * time.Hour

// deleteTimeout bounds the deletion of a session whose Open was cancelled.
const deleteTimeout = 10 * time.Second

// Client opens and attaches to sessions. It is safe for concurrent use.
type Client struct {
	config *rest.Config
	kube   crclient.WithWatch
}

// New returns a Client that talks to the API server of config, as config's identity.
func New(config *rest.Config) (*Client, error) {
	scheme := runtime.NewScheme()
	if err := clientgoscheme.AddToScheme(scheme); err != nil {
		return nil, err
	}
	if err := agentsv1alpha1.AddToScheme(scheme); err != nil {
		return nil, err
	}
	kube, err := crclient.NewWithWatch(config, crclient.Options{Scheme: scheme})
	if err != nil {
		return nil, fmt.Errorf("client for %s: %w", config.Host, err)
	}
	return &Client{config: rest.CopyConfig(config), kube: kube}, nil
}

// Options configure a session and how the client uses it. The zero value takes the class's
// lifetimes, PreferWarm, and Windows command names.
type Options struct {
	// MaxLifetime and IdleTimeout request the session's limits (spec.maxLifetime and
	// spec.idleTimeout); 0 takes the class's. The class caps both.
	MaxLifetime time.Duration
	IdleTimeout time.Duration
	// User is free text for the audit trail (spec.user).
	User string
	// StartPolicy is PreferWarm (the default) or RequireWarm.
	StartPolicy agentsv1alpha1.StartPolicy
	// Name of the session; empty generates one from the sandbox's name.
	Name string
	// Credentials name the Secrets of the namespace (and their keys) the session gets
	// (spec.credentials). Open delivers them once the session is Ready, into
	// CredentialsDir, with the client's own identity (see Session.DeliverCredentials); a
	// failed delivery fails Open and deletes the session.
	Credentials []agentsv1alpha1.SessionCredential
	// CredentialsDir is the session directory in the sandbox the credentials go to; it must
	// exist. Empty: the working directory of the sandbox's commands.
	CredentialsDir string

	// Progress, if set, is called from Open on every change of the session's state until
	// it is Ready: Queued (with the quota's reason and message), Pending, Starting (a cold
	// start) and Ready (warm or cold).
	Progress func(Progress)

	// ExpiryWarning is how long before the session's hard deadline (status.expiryTime)
	// Expiring fires. Default 1 minute.
	ExpiryWarning time.Duration

	// StartTimeout bounds Open: how long it waits for the session to be Ready (and to
	// deliver its credentials), and the session's spec.startTimeout, so the manager gives
	// up its place in the quota queue at the same time (the class's
	// spec.lifetime.startTimeout caps it; the tighter of the two ends the wait). Default
	// DefaultStartTimeout; negative: no limit from the client, only ctx and the class's.
	StartTimeout time.Duration

	// MaxDownloadBytes and MaxDownloadEntries cap what one Download (or export, or
	// ReadFile) unpacks from the sandbox, which is untrusted: past either, it stops with a
	// *LimitError. Default DefaultMaxDownloadBytes (1 GiB) and DefaultMaxDownloadEntries
	// (100,000).
	MaxDownloadBytes   int64
	MaxDownloadEntries int

	// Tar is the tar command in the sandbox. Default DefaultTar (tar.exe); "tar" on Linux.
	Tar string
	// WorkDirArgs builds the exec arguments that run args in directory dir, for
	// Command.WorkDir (exec itself has no working directory). Default WindowsWorkDirArgs;
	// LinuxWorkDirArgs for Linux sandboxes and the test bed.
	WorkDirArgs func(dir string, args []string) []string
}

// Progress is a step of Open's wait.
type Progress struct {
	// Session is the session's name.
	Session string
	// Phase is the session's phase: Pending, Queued, Starting or Ready.
	Phase agentsv1alpha1.SessionPhase
	// Reason and Message say why it waits (e.g. WaitingForQuota and the quota's
	// arithmetic; the manager does not publish a session's place in the queue, the
	// AgentQuota's status shows the queue's length and head).
	Reason, Message string
	// QueuePosition is the session's place in its namespace's FIFO quota queue while it is
	// Queued (1: admitted next), counted when the step is reported; 0 otherwise, or when
	// the caller cannot list the namespace's sessions. The manager does not write positions
	// into sessions (each admission would rewrite every waiting one): the client counts
	// them, in the manager's order (creation time, then name).
	QueuePosition int
	// StartType is Warm or Cold once bound.
	StartType agentsv1alpha1.StartType
	// Elapsed is the time since Open began.
	Elapsed time.Duration
}

// SessionError is a session that cannot be used: it ended (Phase Expired, Failed or
// Terminated, Reason its status.endReason) or waits for something that a wait will not
// fix (Reason ExceedsQuota, NoCompatibleNodes, SandboxNotFound, InvalidSpec).
type SessionError struct {
	Session string
	Phase   agentsv1alpha1.SessionPhase
	Reason  string
	Message string
}

func (e *SessionError) Error() string {
	return fmt.Sprintf("session %s: %s %s: %s", e.Session, e.Phase, e.Reason, e.Message)
}

// failFastReasons are waiting reasons that Open does not wait out: they need a person
// (a bigger quota, a compatible node, the class created or fixed).
var failFastReasons = map[string]bool{
	agentsv1alpha1.ReasonExceedsQuota:      true,
	agentsv1alpha1.ReasonNoCompatibleNodes: true,
	agentsv1alpha1.ReasonSandboxNotFound:   true,
	agentsv1alpha1.ReasonInvalidSpec:       true,
}

// Open creates a session of the class sandboxName in namespace and waits, on a watch, until
// it is Ready. It fails fast with a *SessionError when the session ends or waits for a
// reason that needs a person. When ctx ends first, or on any error, it deletes the session
// it created. The session is the caller's to Close.
func (c *Client) Open(ctx context.Context, namespace, sandboxName string, opts Options) (*Session, error) {
	begin := time.Now()
	startTimeout := opts.StartTimeout
	if startTimeout == 0 {
		startTimeout = DefaultStartTimeout
	}
	if startTimeout > 0 {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeoutCause(ctx, startTimeout, fmt.Errorf(
			"the session was not Ready within the start timeout of %s (Options.StartTimeout; kubectl agents --timeout): %w",
			startTimeout, context.DeadlineExceeded))
		defer cancel()
	}
	s := &agentsv1alpha1.AgentSession{
		ObjectMeta: metav1.ObjectMeta{Namespace: namespace, Name: opts.Name},
		Spec: agentsv1alpha1.AgentSessionSpec{
			SandboxName: sandboxName,
			User:        opts.User,
			StartPolicy: opts.StartPolicy,
			Credentials: opts.Credentials,
		},
	}
	if opts.Name == "" {
		s.GenerateName = sandboxName + "-"
	}
	if opts.MaxLifetime > 0 {
		s.Spec.MaxLifetime = &agentsv1alpha1.Duration{Duration: opts.MaxLifetime}
	}
	if opts.IdleTimeout > 0 {
		s.Spec.IdleTimeout = &agentsv1alpha1.Duration{Duration: opts.IdleTimeout}
	}
	if startTimeout > 0 {
		// The API takes at most 168h; a longer client bound leaves the rest to the class.
		s.Spec.StartTimeout = &agentsv1alpha1.Duration{Duration: min(startTimeout, maxSpecStartTimeout)}
	}
	if err := c.kube.Create(ctx, s); err != nil {
		return nil, fmt.Errorf("create session of %s/%s: %w", namespace, sandboxName, err)
	}
	ready, err := c.waitReady(ctx, s, opts, begin)
	var sess *Session
	if err == nil {
		sess, err = c.newSession(ctx, ready, opts)
	}
	if err == nil && len(opts.Credentials) > 0 {
		if err = sess.DeliverCredentials(ctx, opts.CredentialsDir); err != nil {
			sess.heartbeat.stop()
		}
	}
	if err != nil {
		// The caller never gets the session: delete it, even though ctx may be done.
		dctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), deleteTimeout)
		defer cancel()
		if derr := c.kube.Delete(dctx, s); derr != nil && !apierrors.IsNotFound(derr) {
			err = errors.Join(err, fmt.Errorf("delete session %s: %w", s.Name, derr))
		}
		return nil, err
	}
	return sess, nil
}

// Attach returns a Session for an existing session that is Ready, for example one opened
// by another process. Close ends it as if this client had opened it.
func (c *Client) Attach(ctx context.Context, namespace, name string, opts Options) (*Session, error) {
	s := &agentsv1alpha1.AgentSession{}
	if err := c.kube.Get(ctx, crclient.ObjectKey{Namespace: namespace, Name: name}, s); err != nil {
		return nil, fmt.Errorf("get session %s/%s: %w", namespace, name, err)
	}
	if s.Status.Phase != agentsv1alpha1.SessionReady {
		if err := sessionProblem(s); err != nil {
			return nil, err
		}
		return nil, &SessionError{Session: name, Phase: s.Status.Phase, Reason: "NotReady",
			Message: "the session is not Ready yet; wait for it or Open a new one"}
	}
	return c.newSession(ctx, s, opts)
}

// waitReady watches the session until it is Ready, reporting progress, and returns it.
func (c *Client) waitReady(ctx context.Context, s *agentsv1alpha1.AgentSession, opts Options, begin time.Time) (*agentsv1alpha1.AgentSession, error) {
	var last Progress
	report := func(cur *agentsv1alpha1.AgentSession) {
		p := progressOf(cur)
		p.Elapsed = time.Since(begin)
		if p.Phase == agentsv1alpha1.SessionQueued && opts.Progress != nil {
			p.QueuePosition = c.queuePosition(ctx, cur)
		}
		if opts.Progress != nil && (p.Phase != last.Phase || p.Reason != last.Reason || p.StartType != last.StartType ||
			p.QueuePosition != last.QueuePosition) {
			opts.Progress(p)
		}
		last = p
	}
	cur := s
	for {
		if done, err := c.readyOrFailed(ctx, cur); done || err != nil {
			if err == nil {
				report(cur)
			}
			return cur, err
		}
		report(cur)
		w, err := c.kube.Watch(ctx, &agentsv1alpha1.AgentSessionList{}, crclient.InNamespace(s.Namespace),
			&crclient.ListOptions{FieldSelector: fields.OneTermEqualSelector("metadata.name", s.Name),
				Raw: &metav1.ListOptions{ResourceVersion: cur.ResourceVersion, AllowWatchBookmarks: true}})
		if err != nil {
			if ctx.Err() != nil {
				return nil, fmt.Errorf("wait for session %s: %w", s.Name, context.Cause(ctx))
			}
			return nil, fmt.Errorf("watch session %s: %w", s.Name, err)
		}
		next, err := c.watchUntilReady(ctx, w, cur, report)
		w.Stop()
		if err != nil {
			return nil, err
		}
		cur = next
	}
}

// watchUntilReady reads events until the session is Ready or the watch ends, and returns
// the last version seen (waitReady then returns it, or watches again from it); or an
// error when the session fails or is deleted, or ctx ends.
func (c *Client) watchUntilReady(ctx context.Context, w watch.Interface, cur *agentsv1alpha1.AgentSession,
	report func(*agentsv1alpha1.AgentSession)) (*agentsv1alpha1.AgentSession, error) {
	ended := func() error {
		return fmt.Errorf("wait for session %s (phase %s): %w", cur.Name, cur.Status.Phase, context.Cause(ctx))
	}
	for {
		select {
		case <-ctx.Done():
			return nil, ended()
		case ev, ok := <-w.ResultChan():
			// A watch that ctx ends may first deliver an error event of its own ("unable to
			// decode an event from the watch stream: context canceled"): ctx is the answer.
			if ctx.Err() != nil {
				return nil, ended()
			}
			if !ok {
				return cur, nil // re-watch from cur's version
			}
			switch ev.Type {
			case watch.Error:
				if status, ok := ev.Object.(*metav1.Status); ok && status.Code == 410 {
					// The version is too old: read the session again and go on from there.
					fresh := &agentsv1alpha1.AgentSession{}
					if err := c.kube.Get(ctx, crclient.ObjectKeyFromObject(cur), fresh); err != nil {
						return nil, fmt.Errorf("get session %s: %w", cur.Name, err)
					}
					return fresh, nil
				}
				return nil, fmt.Errorf("watch session %s: %w", cur.Name, apierrors.FromObject(ev.Object))
			case watch.Deleted:
				return nil, &SessionError{Session: cur.Name, Phase: cur.Status.Phase, Reason: "Deleted",
					Message: "the session was deleted before it was Ready"}
			case watch.Added, watch.Modified:
				s, ok := ev.Object.(*agentsv1alpha1.AgentSession)
				if !ok {
					continue
				}
				cur = s
				done, err := c.readyOrFailed(ctx, cur)
				if err != nil || done {
					return cur, err
				}
				report(cur)
			case watch.Bookmark:
				if s, ok := ev.Object.(*agentsv1alpha1.AgentSession); ok {
					cur = cur.DeepCopy()
					cur.ResourceVersion = s.ResourceVersion
				}
			}
		}
	}
}

// readyOrFailed says whether the session is Ready, or why it never will be.
func (c *Client) readyOrFailed(ctx context.Context, s *agentsv1alpha1.AgentSession) (bool, error) {
	if err := sessionProblem(s); err != nil {
		var serr *SessionError
		if errors.As(err, &serr) && serr.Reason == agentsv1alpha1.ReasonSandboxNotFound && c.sandboxExists(ctx, s) {
			// The manager has not seen a class created a moment ago yet; it binds once it has.
			return false, nil
		}
		return false, err
	}
	return s.Status.Phase == agentsv1alpha1.SessionReady && s.Status.PodName != "", nil
}

// sandboxExists reports whether the session's class exists, read with the caller's identity.
func (c *Client) sandboxExists(ctx context.Context, s *agentsv1alpha1.AgentSession) bool {
	sb := &agentsv1alpha1.AgentSandbox{}
	err := c.kube.Get(ctx, keyOf(s.Namespace, s.Spec.SandboxName), sb)
	return err == nil && sb.DeletionTimestamp.IsZero()
}

// sessionProblem returns a *SessionError when the session ended or waits for a person.
func sessionProblem(s *agentsv1alpha1.AgentSession) error {
	if s.Status.Phase.IsFinished() {
		msg := ""
		if c := meta.FindStatusCondition(s.Status.Conditions, agentsv1alpha1.SessionReadyCondition); c != nil {
			msg = c.Message
		}
		return &SessionError{Session: s.Name, Phase: s.Status.Phase, Reason: s.Status.EndReason, Message: msg}
	}
	for _, t := range []string{agentsv1alpha1.QuotaReserved, agentsv1alpha1.SessionReadyCondition} {
		if c := meta.FindStatusCondition(s.Status.Conditions, t); c != nil && c.Status == metav1.ConditionFalse && failFastReasons[c.Reason] {
			return &SessionError{Session: s.Name, Phase: s.Status.Phase, Reason: c.Reason, Message: c.Message}
		}
	}
	return nil
}

// queuePosition counts the session's place among its namespace's sessions waiting for the
// quota, in the manager's FIFO order; 0 when it cannot tell.
func (c *Client) queuePosition(ctx context.Context, s *agentsv1alpha1.AgentSession) int {
	list := &agentsv1alpha1.AgentSessionList{}
	if err := c.kube.List(ctx, list, crclient.InNamespace(s.Namespace)); err != nil {
		return 0
	}
	var waiting []*agentsv1alpha1.AgentSession
	for i := range list.Items {
		w := &list.Items[i]
		admitted := w.Status.PodName != "" || meta.IsStatusConditionTrue(w.Status.Conditions, agentsv1alpha1.QuotaReserved)
		if !admitted && !w.Status.Phase.IsFinished() && w.DeletionTimestamp.IsZero() {
			waiting = append(waiting, w)
		}
	}
	slices.SortFunc(waiting, func(a, b *agentsv1alpha1.AgentSession) int {
		if c := a.CreationTimestamp.Compare(b.CreationTimestamp.Time); c != 0 {
			return c
		}
		return strings.Compare(a.Name, b.Name)
	})
	return slices.IndexFunc(waiting, func(w *agentsv1alpha1.AgentSession) bool { return w.UID == s.UID }) + 1
}

// progressOf describes where the session is.
func progressOf(s *agentsv1alpha1.AgentSession) Progress {
	p := Progress{Session: s.Name, Phase: s.Status.Phase, StartType: s.Status.StartType}
	if p.Phase == "" {
		p.Phase = agentsv1alpha1.SessionPending
	}
	condition := agentsv1alpha1.SessionReadyCondition
	if p.Phase == agentsv1alpha1.SessionQueued {
		condition = agentsv1alpha1.QuotaReserved
	}
	if c := meta.FindStatusCondition(s.Status.Conditions, condition); c != nil {
		p.Reason, p.Message = c.Reason, c.Message
	}
	return p
}

// mainContainer is the container commands run in: the pod's
// kubectl.kubernetes.io/default-container, else its first. Without read access to the
// pod it is left empty, which the API server accepts for a pod of one container.
func (c *Client) mainContainer(ctx context.Context, namespace, pod string) (string, error) {
	p := &corev1.Pod{}
	if err := c.kube.Get(ctx, crclient.ObjectKey{Namespace: namespace, Name: pod}, p); err != nil {
		if apierrors.IsForbidden(err) {
			return "", nil
		}
		return "", fmt.Errorf("get sandbox pod %s: %w", pod, err)
	}
	if name := p.Annotations[DefaultContainerAnnotation]; name != "" {
		return name, nil
	}
	if len(p.Spec.Containers) == 0 {
		return "", fmt.Errorf("sandbox pod %s has no containers", pod)
	}
	return p.Spec.Containers[0].Name, nil
}
