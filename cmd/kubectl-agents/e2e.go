package main

import (
	"context"
	"errors"
	"fmt"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/spf13/pflag"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/meta"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/wait"
	"k8s.io/utils/ptr"
	crclient "sigs.k8s.io/controller-runtime/pkg/client"

	agentsv1alpha1 "github.com/hyperpool/hyperpool/api/v1alpha1"
	"github.com/hyperpool/hyperpool/internal/capbuf"
	"github.com/hyperpool/hyperpool/internal/uvm"
	hpclient "github.com/hyperpool/hyperpool/pkg/client"
)

// e2eOptions are the flags of doctor --e2e.
type e2eOptions struct {
	enabled bool
	// build is the class's spec.windows.imageBuild; 0 takes the most common Windows build
	// of the nodes.
	build int32
	// image is the sandbox image; empty takes Server Core of the build.
	image string
	// runtimeClass is the class's spec.runtimeClassName; empty takes the manager's choice.
	runtimeClass string
}

func (e *e2eOptions) addFlags(f *pflag.FlagSet) {
	f.BoolVar(&e.enabled, "e2e", false, "run a session end to end in a throwaway class (and namespace, unless -n is given), then delete them")
	f.Int32Var(&e.build, "e2e-build", 0, "the throwaway class's Windows image build (default: the nodes' most common build, else 20348)")
	f.StringVar(&e.image, "e2e-image", "", "the throwaway class's image (default: Server Core of the build, e.g. mcr.microsoft.com/windows/servercore:ltsc2022)")
	f.StringVar(&e.runtimeClass, "e2e-runtime-class", "", "the throwaway class's spec.runtimeClassName (default: the manager's choice)")
}

// serverCoreTags are the Server Core image tags by Windows build.
var serverCoreTags = map[int32]string{17763: "ltsc2019", 20348: "ltsc2022", 26100: "ltsc2025"}

// e2eGrace is the throwaway class's terminationGracePeriodSeconds: the pod (and its VM)
// must be gone this long after the session ends, and a little more.
const (
	e2eGrace      = 30 * time.Second
	e2eGoneSlack  = 30 * time.Second
	e2eReportWait = 90 * time.Second
	cleanupWait   = time.Minute
	e2eUser       = "kubectl agents doctor --e2e"
	e2ePoll       = 500 * time.Millisecond
)

// e2eRun is one end-to-end run: what it created (for the cleanup) and what it found.
type e2eRun struct {
	o       *doctorOptions
	kube    crclient.Client
	ns      string
	results []checkResult
	// createdNamespace and class are deleted at the end.
	createdNamespace string
	class            *agentsv1alpha1.AgentSandbox
	session          *hpclient.Session
}

func (r *e2eRun) add(c checkResult) { r.results = append(r.results, c) }

// skip records the checks that cannot run after an earlier one failed.
func (r *e2eRun) skip(why string, names ...string) {
	for _, n := range names {
		r.add(notApplicable(n, why))
	}
}

func (o *doctorOptions) runE2E(ctx context.Context, namespaceGiven bool) ([]checkResult, error) {
	kube, err := o.kube()
	if err != nil {
		return nil, err
	}
	c, err := o.client()
	if err != nil {
		return nil, err
	}
	r := &e2eRun{o: o, kube: kube}
	defer r.cleanup(ctx)
	if !r.namespace(ctx, namespaceGiven) || !r.createClass(ctx) {
		r.skip("nothing to run in", "e2e session", "e2e commands", "e2e VM size", "e2e node agent VMs", "e2e end")
		return r.finish(ctx), nil
	}
	if !r.open(ctx, c) {
		r.skip("the session did not start", "e2e commands", "e2e VM size", "e2e node agent VMs", "e2e end")
		return r.finish(ctx), nil
	}
	r.commands(ctx)
	node := r.sessionNode(ctx)
	agent := r.nodeAgent(ctx, node)
	r.vmSize(ctx, agent)
	vmsBefore := r.agentVMs(ctx, node, agent)
	r.end(ctx, node, agent, vmsBefore)
	return r.finish(ctx), nil
}

// finish runs the cleanup now, so its result is part of the report.
func (r *e2eRun) finish(ctx context.Context) []checkResult {
	r.cleanup(ctx)
	return r.results
}

func (r *e2eRun) namespace(ctx context.Context, given bool) bool {
	const name = "e2e namespace"
	if given {
		ns, err := r.o.namespace()
		if err != nil {
			r.add(fail(name, err.Error(), "pass -n NAMESPACE"))
			return false
		}
		r.ns = ns
		r.add(pass(name, "using "+ns+" (-n)"))
		return true
	}
	obj := &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{GenerateName: "hyperpool-e2e-",
		Labels: map[string]string{"app.kubernetes.io/created-by": "kubectl-agents-doctor"}}}
	if err := r.kube.Create(ctx, obj); err != nil {
		r.add(fail(name, fmt.Sprintf("creating a throwaway namespace: %v", err), "pass -n NAMESPACE, a namespace where you may create classes and sessions"))
		return false
	}
	r.ns, r.createdNamespace = obj.Name, obj.Name
	r.add(pass(name, "created "+obj.Name+" (deleted at the end)"))
	return true
}

// build picks the class's Windows build: the flag's, else the nodes' most common one.
func (r *e2eRun) build(ctx context.Context) int32 {
	if r.o.e2e.build != 0 {
		return r.o.e2e.build
	}
	nodes := &corev1.NodeList{}
	count := map[int32]int{}
	if err := r.kube.List(ctx, nodes, crclient.MatchingLabels{corev1.LabelOSStable: "windows"}); err == nil {
		for _, n := range nodes.Items {
			// "10.0.20348" → 20348
			parts := strings.Split(n.Labels[windowsBuildLabel], ".")
			if b, err := strconv.ParseInt(parts[len(parts)-1], 10, 32); err == nil && b > 0 {
				count[int32(b)]++
			}
		}
	}
	best := int32(20348)
	for b, n := range count {
		if n > count[best] || (n == count[best] && b > best) {
			best = b
		}
	}
	return best
}

func (r *e2eRun) createClass(ctx context.Context) bool {
	const name = "e2e class"
	build := r.build(ctx)
	image := r.o.e2e.image
	if image == "" {
		tag, ok := serverCoreTags[build]
		if !ok {
			tag = "ltsc2022"
		}
		image = "mcr.microsoft.com/windows/servercore:" + tag
	}
	sb := &agentsv1alpha1.AgentSandbox{
		ObjectMeta: metav1.ObjectMeta{Namespace: r.ns, GenerateName: "doctor-e2e-",
			Labels: map[string]string{"app.kubernetes.io/created-by": "kubectl-agents-doctor"}},
		Spec: agentsv1alpha1.AgentSandboxSpec{
			// No warm pool: the session starts its VM cold, which is what the check is for,
			// and nothing is left booting when it ends.
			Replicas:  ptr.To[int32](0),
			Isolation: agentsv1alpha1.IsolationHyperV,
			Windows:   agentsv1alpha1.WindowsSpec{ImageBuild: build},
			Lifetime: agentsv1alpha1.LifetimeSpec{MaxLifetime: &agentsv1alpha1.Duration{Duration: 30 * time.Minute},
				IdleTimeout: &agentsv1alpha1.Duration{Duration: 10 * time.Minute}},
			Egress: agentsv1alpha1.EgressNone,
			Template: corev1.PodTemplateSpec{Spec: corev1.PodSpec{
				TerminationGracePeriodSeconds: ptr.To(int64(e2eGrace / time.Second)),
				Containers: []corev1.Container{{
					Name:    "sandbox",
					Image:   image,
					Command: []string{"powershell.exe", "-NoLogo", "-Command", "Start-Sleep -Seconds 86400"},
					Resources: corev1.ResourceRequirements{
						Requests: corev1.ResourceList{corev1.ResourceCPU: resource.MustParse("500m"), corev1.ResourceMemory: resource.MustParse("1Gi")},
						Limits:   corev1.ResourceList{corev1.ResourceCPU: resource.MustParse("1"), corev1.ResourceMemory: resource.MustParse("1Gi")},
					},
				}},
			}},
		},
	}
	if r.o.e2e.runtimeClass != "" {
		sb.Spec.RuntimeClassName = ptr.To(r.o.e2e.runtimeClass)
	}
	if err := r.kube.Create(ctx, sb); err != nil {
		r.add(fail(name, fmt.Sprintf("creating a throwaway AgentSandbox in %s: %v", r.ns, err),
			"the caller needs to create agentsandboxes in the namespace (the chart's platform-admin ClusterRole), or pass -n where it may"))
		return false
	}
	r.class = sb
	rc := "the manager's choice of RuntimeClass"
	if sb.Spec.RuntimeClassName != nil {
		rc = "RuntimeClass " + *sb.Spec.RuntimeClassName
	}
	r.add(pass(name, fmt.Sprintf("created %s: HyperV, %s, build %d, %s, no warm pool (deleted at the end)", sb.Name, image, build, rc)))
	return true
}

func (r *e2eRun) open(ctx context.Context, c *hpclient.Client) bool {
	const name = "e2e session"
	opts := hpclient.Options{User: e2eUser, MaxLifetime: 30 * time.Minute, IdleTimeout: 10 * time.Minute, StartTimeout: -1}
	if deadline, ok := ctx.Deadline(); ok {
		opts.StartTimeout = time.Until(deadline)
	}
	opts, err := r.o.sessionOptions(opts)
	if err != nil {
		r.add(fail(name, err.Error(), "--sandbox-os windows or linux"))
		return false
	}
	start := time.Now()
	s, err := c.Open(ctx, r.ns, r.class.Name, opts)
	if err != nil {
		detail := fmt.Sprintf("did not become Ready after %s: %v", time.Since(start).Round(time.Second), err)
		if why := r.classProblem(); why != "" {
			detail += "; the class says " + why
		}
		r.add(fail(name, detail, fmt.Sprintf("kubectl agents doctor -n %s shows the cluster's checks; kubectl describe agentsandbox and agentsession -n %s show the conditions and events", r.ns, r.ns)))
		return false
	}
	r.session = s
	r.add(pass(name, fmt.Sprintf("%s Ready in %s (%s start), pod %s", s.Name, time.Since(start).Round(100*time.Millisecond), s.StartType, s.PodName)))
	return true
}

// classProblem is the class's Degraded or RuntimeReady message, for a session that did
// not start.
func (r *e2eRun) classProblem() string {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	sb := &agentsv1alpha1.AgentSandbox{}
	if err := r.kube.Get(ctx, crclient.ObjectKeyFromObject(r.class), sb); err != nil {
		return ""
	}
	var why []string
	for _, t := range []string{agentsv1alpha1.SandboxDegraded, agentsv1alpha1.SandboxRuntimeReady, agentsv1alpha1.SandboxVMSizeApplied} {
		c := meta.FindStatusCondition(sb.Status.Conditions, t)
		if c != nil && ((t == agentsv1alpha1.SandboxDegraded) == (c.Status == metav1.ConditionTrue)) {
			why = append(why, fmt.Sprintf("%s=%s (%s): %s", t, c.Status, c.Reason, c.Message))
		}
	}
	return strings.Join(why, "; ")
}

// e2eMaxOutput bounds what the e2e keeps of one command's stdout and stderr: bytes from
// the sandbox, which may write without end.
const e2eMaxOutput = 64 << 10

func (r *e2eRun) commands(ctx context.Context) {
	cmds := [][]string{{"cmd", "/c", "ver"}, {"powershell", "-NoProfile", "-Command", "$PSVersionTable"}}
	note := ""
	if strings.EqualFold(r.o.sandboxOS, "linux") {
		cmds = [][]string{{"uname", "-a"}, {"sh", "-c", "echo ok"}}
		note = " (--sandbox-os linux: the simulation, in place of cmd /c ver and PowerShell)"
	}
	for _, args := range cmds {
		name := "e2e " + strings.Join(args, " ")
		stdout, stderr := capbuf.New(e2eMaxOutput), capbuf.New(e2eMaxOutput)
		code, err := r.session.Run(ctx, hpclient.Command{Args: args, Stdout: stdout, Stderr: stderr, Timeout: time.Minute})
		cut := ""
		if dropped := stdout.Dropped() + stderr.Dropped(); dropped > 0 {
			cut = fmt.Sprintf(" (the sandbox wrote %d bytes more than the %d KiB kept of each stream)", dropped, e2eMaxOutput>>10)
		}
		switch {
		case err != nil:
			r.add(fail(name, fmt.Sprintf("exec failed: %v", err), "the caller needs create and get on pods/exec; kubectl agents doctor shows your rights"))
		case code != 0:
			r.add(fail(name, fmt.Sprintf("exit %d: %s", code, firstLine(stderr.String()+stdout.String())), "run it by hand: kubectl agents exec "+r.session.Name+" -n "+r.ns+" -- "+strings.Join(args, " ")))
		default:
			r.add(pass(name, showOutput(stdout.String())+cut+note))
		}
	}
}

// showOutput is the line that says most: PowerShell's PSVersion row, else the first line.
func showOutput(out string) string {
	for _, l := range strings.Split(out, "\n") {
		if strings.HasPrefix(strings.TrimSpace(l), "PSVersion ") {
			return strings.Join(strings.Fields(l), " ")
		}
	}
	return firstLine(out)
}

func firstLine(s string) string {
	for _, l := range strings.Split(s, "\n") {
		if l = strings.TrimSpace(l); l != "" {
			const max = 160
			if len(l) > max {
				l = string(capbuf.TrimPartialRune([]byte(l[:max]))) + "…"
			}
			return l
		}
	}
	return "(no output)"
}

// sessionNode is the node the session's pod runs on, nil when it cannot be read.
func (r *e2eRun) sessionNode(ctx context.Context) *corev1.Node {
	pod := &corev1.Pod{}
	if err := r.kube.Get(ctx, crclient.ObjectKey{Namespace: r.ns, Name: r.session.PodName}, pod); err != nil || pod.Spec.NodeName == "" {
		return nil
	}
	node := &corev1.Node{}
	if err := r.kube.Get(ctx, crclient.ObjectKey{Name: pod.Spec.NodeName}, node); err != nil {
		return nil
	}
	return node
}

// nodeAgent reports whether a node agent runs on the node: it annotates its Node.
func (r *e2eRun) nodeAgent(_ context.Context, node *corev1.Node) bool {
	if node == nil {
		return false
	}
	return node.Annotations[uvmSummaryAnnotation] != "" || node.Annotations[uvm.SizesAnnotation] != ""
}

func (r *e2eRun) vmSize(ctx context.Context, agent bool) {
	const name = "e2e VM size"
	if !agent {
		r.add(notApplicable(name, "no node agent on the session's node (or you may not read the node): nothing measures the VM"))
		return
	}
	var cond *metav1.Condition
	err := r.poll(ctx, e2eReportWait, func(ctx context.Context) (bool, error) {
		sb := &agentsv1alpha1.AgentSandbox{}
		if err := r.kube.Get(ctx, crclient.ObjectKeyFromObject(r.class), sb); err != nil {
			return false, nil
		}
		cond = meta.FindStatusCondition(sb.Status.Conditions, agentsv1alpha1.SandboxVMSizeApplied)
		return cond != nil, nil
	})
	switch {
	case err != nil || cond == nil:
		r.add(fail(name, fmt.Sprintf("the class has no VMSizeApplied condition after %s: the node agent did not measure its VM", e2eReportWait),
			"check the node agent on the session's node (kubectl -n "+r.o.managerNamespace+" logs ds/hyperpool-node-agent)"))
	case cond.Status != metav1.ConditionTrue:
		r.add(fail(name, fmt.Sprintf("VMSizeApplied %s (%s): %s", cond.Status, cond.Reason, cond.Message), "the message names the fix (usually the runtime handler's pod_annotations)"))
	default:
		r.add(pass(name, "VMSizeApplied True: "+cond.Message))
	}
}

// classVMs is how many VMs of the throwaway class the node's agent reports.
func (r *e2eRun) classVMs(node *corev1.Node) int {
	reports, _ := uvm.ParseSizeReports(node.Annotations[uvm.SizesAnnotation])
	n := 0
	for _, s := range reports {
		if s.Namespace == r.ns && s.Sandbox == r.class.Name {
			n += s.VMs
		}
	}
	return n
}

// agentVMs checks that the node agent reports exactly one VM of the class, and returns
// the node's VM count (uvm-summary vms), or -1 without an agent.
func (r *e2eRun) agentVMs(ctx context.Context, node *corev1.Node, agent bool) int {
	const name = "e2e node agent VMs"
	if !agent {
		r.add(notApplicable(name, "no node agent on the session's node: nothing counts the VMs"))
		return -1
	}
	latest := node
	err := r.poll(ctx, e2eReportWait, func(ctx context.Context) (bool, error) {
		n := &corev1.Node{}
		if err := r.kube.Get(ctx, crclient.ObjectKeyFromObject(node), n); err != nil {
			return false, nil
		}
		latest = n
		return r.classVMs(n) == 1, nil
	})
	if err != nil {
		r.add(fail(name, fmt.Sprintf("node %s reports %d VMs of class %s, want 1", node.Name, r.classVMs(latest), r.class.Name),
			"check the node agent on "+node.Name+": more than one VM for one pod is a leak, none is a VM it cannot see"))
	} else {
		r.add(pass(name, fmt.Sprintf("node %s reports 1 VM of class %s", node.Name, r.class.Name)))
	}
	s, _ := parseUVMSummary(latest.Annotations[uvmSummaryAnnotation])
	return s.vms
}

func (r *e2eRun) end(ctx context.Context, node *corev1.Node, agent bool, vmsBefore int) {
	const name = "e2e end"
	podName := r.session.PodName
	ended := time.Now()
	if err := r.session.Close(ctx, hpclient.CloseOptions{}); err != nil {
		r.add(fail(name, fmt.Sprintf("ending session %s: %v", r.session.Name, err), "the caller needs delete on agentsessions"))
		return
	}
	r.session = nil
	within := e2eGrace + e2eGoneSlack
	err := r.poll(ctx, within, func(ctx context.Context) (bool, error) {
		err := r.kube.Get(ctx, crclient.ObjectKey{Namespace: r.ns, Name: podName}, &corev1.Pod{})
		return apierrors.IsNotFound(err), nil
	})
	if err != nil {
		r.add(fail(name, fmt.Sprintf("pod %s still there %s after the session ended (grace %s)", podName, within, e2eGrace),
			"kubectl describe pod "+podName+" -n "+r.ns+"; a pod stuck Terminating points at the node's kubelet or runtime"))
		return
	}
	detail := fmt.Sprintf("pod %s gone %s after the session ended (grace %s)", podName, time.Since(ended).Round(100*time.Millisecond), e2eGrace)
	if !agent || vmsBefore < 0 {
		r.add(pass(name, detail+"; no node agent counts the VMs"))
		return
	}
	after := vmsBefore
	err = r.poll(ctx, within+e2eReportWait, func(ctx context.Context) (bool, error) {
		n := &corev1.Node{}
		if err := r.kube.Get(ctx, crclient.ObjectKeyFromObject(node), n); err != nil {
			return false, nil
		}
		s, _ := parseUVMSummary(n.Annotations[uvmSummaryAnnotation])
		after = s.vms
		return r.classVMs(n) == 0 && s.vms < vmsBefore, nil
	})
	if err != nil {
		r.add(fail(name, fmt.Sprintf("%s; but node %s still reports %d VMs (%d before), its VM of class %s included", detail, node.Name, after, vmsBefore, r.class.Name),
			"the VM outlived its pod: a leak; the node agent reaps it with nodeAgent.reap=true, see its log"))
		return
	}
	r.add(pass(name, fmt.Sprintf("%s; node %s's VMs went from %d to %d", detail, node.Name, vmsBefore, after)))
}

// poll runs cond until it holds, within timeout and ctx.
func (r *e2eRun) poll(ctx context.Context, timeout time.Duration, cond wait.ConditionWithContextFunc) error {
	return wait.PollUntilContextTimeout(ctx, e2ePoll, timeout, true, cond)
}

// cleanup deletes what the run created, once, whatever happened, with its own deadline:
// the run's context may be what ran out.
func (r *e2eRun) cleanup(ctx context.Context) {
	if r.session == nil && r.class == nil && r.createdNamespace == "" {
		return
	}
	const name = "e2e cleanup"
	ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), cleanupWait)
	defer cancel()
	var deleted []string
	var errs []error
	if r.session != nil {
		if err := r.session.Close(ctx, hpclient.CloseOptions{}); err != nil {
			errs = append(errs, err)
		} else {
			deleted = append(deleted, "session "+r.session.Name)
		}
		r.session = nil
	}
	if r.class != nil {
		// The class's pods and NetworkPolicy go with it (owner references).
		err := r.kube.Delete(ctx, r.class, crclient.PropagationPolicy(metav1.DeletePropagationForeground))
		if err != nil && !apierrors.IsNotFound(err) {
			errs = append(errs, fmt.Errorf("deleting class %s: %w", r.class.Name, err))
		} else {
			deleted = append(deleted, "class "+r.class.Name)
		}
		r.class = nil
	}
	if r.createdNamespace != "" {
		ns := &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: r.createdNamespace}}
		if err := r.kube.Delete(ctx, ns); err != nil && !apierrors.IsNotFound(err) {
			errs = append(errs, fmt.Errorf("deleting namespace %s: %w", r.createdNamespace, err))
		} else {
			deleted = append(deleted, "namespace "+r.createdNamespace)
		}
		r.createdNamespace = ""
	}
	sort.Strings(deleted)
	if err := errors.Join(errs...); err != nil {
		r.add(fail(name, fmt.Sprintf("deleted %s; %v", orNothing(deleted), err), "delete them by hand: kubectl delete namespace,agentsandbox -l app.kubernetes.io/created-by=kubectl-agents-doctor -A (a class's pods go with it)"))
		return
	}
	r.add(pass(name, "deleted "+orNothing(deleted)))
}

func orNothing(items []string) string {
	if len(items) == 0 {
		return "nothing"
	}
	return strings.Join(items, ", ")
}
