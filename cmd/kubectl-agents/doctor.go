package main

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"strings"
	"time"
	"unicode"
	"unicode/utf8"

	"github.com/spf13/cobra"
	appsv1 "k8s.io/api/apps/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/client-go/discovery"
	crclient "sigs.k8s.io/controller-runtime/pkg/client"

	agentsv1alpha1 "github.com/hyperpool/hyperpool/api/v1alpha1"
)

// checkStatus is the outcome of one doctor check.
type checkStatus string

const (
	checkPass checkStatus = "pass"
	checkFail checkStatus = "fail"
	// checkNA: the check does not apply here, or the caller may not read what it needs.
	checkNA checkStatus = "n/a"
)

// checkResult is one line of the doctor's checklist; -o json prints a list of them.
type checkResult struct {
	Name   string      `json:"name"`
	Status checkStatus `json:"status"`
	Detail string      `json:"detail"`
	// Fix says what to do about a failed check.
	Fix string `json:"fix"`
}

func pass(name, detail string) checkResult {
	return checkResult{Name: name, Status: checkPass, Detail: detail}
}

func fail(name, detail, fix string) checkResult {
	return checkResult{Name: name, Status: checkFail, Detail: detail, Fix: fix}
}

func notApplicable(name, reason string) checkResult {
	return checkResult{Name: name, Status: checkNA, Detail: reason}
}

// forbiddenResult is the n/a of a check whose caller may not read what it needs: doctor
// runs for tenants too, who see their namespace and not the cluster.
func forbiddenResult(name, verb, resource string) checkResult {
	return notApplicable(name, fmt.Sprintf("you may not %s %s; run as a cluster admin for this check", verb, resource))
}

// doctorCheck is one entry of the checklist.
type doctorCheck struct {
	name string
	run  func(ctx context.Context, d *doctorEnv) checkResult
}

// doctorChecks is the checklist, in the order it prints: the cluster first, then the
// namespace, then the caller.
var doctorChecks = []doctorCheck{
	{"API server", checkAPIServer},
	{"CRDs", checkCRDs},
	{"manager", checkManager},
	{"admission policies", checkAdmissionPolicies},
	{"Windows nodes", checkWindowsNodes},
	{"RuntimeClasses", checkRuntimeClasses},
	{"node agents", checkNodeAgents},
	{"sandbox classes", checkClasses},
	{"quota", checkQuota},
	{"your rights", checkRights},
	{"network policy", checkNetworkPolicy},
}

// doctorEnv is what the checks read, and what one check leaves for a later one.
type doctorEnv struct {
	kube      crclient.Client
	discovery discovery.DiscoveryInterface
	namespace string
	// sandbox narrows the class checks to one class (--sandbox).
	sandbox          string
	managerNamespace string

	// manager is the manager's Deployment, nil when there is none or it may not be read;
	// managerErr says which.
	manager    *appsv1.Deployment
	managerErr error
	// classes are the classes in scope; classesErr why they could not be listed.
	classes    []agentsv1alpha1.AgentSandbox
	classesErr error
	// nodes are the Windows nodes, once listed (windowsNodes).
	nodes *nodeList
	// handlers are the containerd handlers of the RuntimeClasses the classes use (filled
	// by the RuntimeClass check), for the node agents' reports.
	handlers map[string]bool
}

// fullname is the chart's prefix of the manager's objects: the Deployment is
// <fullname>-manager ("hyperpool-manager" with helm install hyperpool, and with
// config/default).
func (d *doctorEnv) fullname() string {
	if d.manager != nil {
		if name, ok := strings.CutSuffix(d.manager.Name, "-manager"); ok && name != "" {
			return name
		}
	}
	return "hyperpool"
}

// release is the Helm release of the manager's Deployment, for the fixes' helm commands.
func (d *doctorEnv) release() string {
	if d.manager != nil {
		if r := d.manager.Labels["app.kubernetes.io/instance"]; r != "" {
			return r
		}
	}
	return "hyperpool"
}

// managerArg is the value of the manager container's --name=value argument, or def.
func (d *doctorEnv) managerArg(name, def string) string {
	if d.manager == nil {
		return def
	}
	for _, c := range d.manager.Spec.Template.Spec.Containers {
		for _, a := range append(append([]string{}, c.Command...), c.Args...) {
			if v, ok := strings.CutPrefix(a, "--"+name+"="); ok && v != "" {
				return v
			}
		}
	}
	return def
}

// loadClasses lists the classes in scope once: the namespace's, or --sandbox alone.
func (d *doctorEnv) loadClasses(ctx context.Context) {
	if d.sandbox != "" {
		sb := &agentsv1alpha1.AgentSandbox{}
		err := d.kube.Get(ctx, crclient.ObjectKey{Namespace: d.namespace, Name: d.sandbox}, sb)
		if err == nil {
			d.classes = []agentsv1alpha1.AgentSandbox{*sb}
		} else if !apierrors.IsNotFound(err) {
			d.classesErr = err
		}
		return
	}
	list := &agentsv1alpha1.AgentSandboxList{}
	if err := d.kube.List(ctx, list, crclient.InNamespace(d.namespace)); err != nil {
		d.classesErr = err
		return
	}
	d.classes = list.Items
}

type doctorOptions struct {
	*rootOptions
	sandbox          string
	output           string
	managerNamespace string
	timeout          time.Duration
	e2e              e2eOptions
}

func newDoctorCommand(root *rootOptions) *cobra.Command {
	o := &doctorOptions{rootOptions: root}
	cmd := &cobra.Command{
		Use:   "doctor",
		Short: "Check that hyperpool works here, and say how to fix what does not",
		Long: `doctor runs a checklist against the cluster and the namespace: the API server's version,
the CRDs, the manager and its leader lease, the admission policies and their bindings, the
Windows nodes by build, the RuntimeClasses the classes use, the node agents' runtime and VM
size reports, the classes' conditions, the namespace's quota and queue, your own rights, and
(best effort) network policy. Each check passes (✓), fails (✗, with the fix) or does not
apply (–, with the reason; also when you may not read what it needs). It exits 1 when a
check fails.

With --e2e it also runs a session end to end: a throwaway class (Hyper-V, Server Core,
no warm pool) and a session in a throwaway namespace (or -n), a command or two in the
sandbox, the VM size and the node agent's VM count, the end of the session and the removal
of its pod (and VM); it deletes what it created, also on failure.`,
		Example: `  # The checklist for namespace agents, as a tenant or as a cluster admin
  kubectl agents doctor -n agents

  # One class, as JSON
  kubectl agents doctor -n agents --sandbox win2022 -o json

  # Run a real session end to end (creates and deletes a namespace and a class)
  kubectl agents doctor --e2e`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if o.output != "" && o.output != "json" {
				return fmt.Errorf("-o %q: want json (or nothing for the checklist)", o.output)
			}
			ctx, cancel := context.WithTimeout(cmd.Context(), o.timeout)
			defer cancel()
			var results []checkResult
			var err error
			if o.e2e.enabled {
				results, err = o.runE2E(ctx, cmd.Flags().Changed("namespace"))
			} else {
				results, err = o.runChecks(ctx)
			}
			if err != nil {
				return err
			}
			if err := o.print(results); err != nil {
				return err
			}
			for _, r := range results {
				if r.Status == checkFail {
					o.exitCode = 1
				}
			}
			return nil
		},
	}
	f := cmd.Flags()
	f.StringVar(&o.sandbox, "sandbox", "", "check this class only (default: every class of the namespace)")
	f.StringVarP(&o.output, "output", "o", "", "json: print the checks as a JSON list")
	f.StringVar(&o.managerNamespace, "manager-namespace", "hyperpool-system", "the namespace the chart is installed in")
	f.DurationVar(&o.timeout, "timeout", 5*time.Minute, "give up after this long (with --e2e: the whole run, cleanup aside)")
	o.e2e.addFlags(f)
	_ = cmd.RegisterFlagCompletionFunc("sandbox", root.completeSandboxes)
	_ = cmd.RegisterFlagCompletionFunc("output", cobra.FixedCompletions([]string{"json"}, cobra.ShellCompDirectiveNoFileComp))
	return cmd
}

// newDoctorEnv connects and reads what several checks share.
func (o *doctorOptions) newDoctorEnv(ctx context.Context) (*doctorEnv, error) {
	ns, err := o.namespace()
	if err != nil {
		return nil, err
	}
	kube, err := o.kube()
	if err != nil {
		return nil, err
	}
	cfg, err := o.config.ToRESTConfig()
	if err != nil {
		return nil, err
	}
	disc, err := discovery.NewDiscoveryClientForConfig(cfg)
	if err != nil {
		return nil, err
	}
	d := &doctorEnv{kube: kube, discovery: disc, namespace: ns, sandbox: o.sandbox, managerNamespace: o.managerNamespace}
	d.manager, d.managerErr = findManagerDeployment(ctx, kube, o.managerNamespace)
	d.loadClasses(ctx)
	return d, nil
}

func (o *doctorOptions) runChecks(ctx context.Context) ([]checkResult, error) {
	d, err := o.newDoctorEnv(ctx)
	if err != nil {
		return nil, err
	}
	results := make([]checkResult, 0, len(doctorChecks))
	for _, c := range doctorChecks {
		r := c.run(ctx, d)
		r.Name = c.name
		results = append(results, r)
	}
	return results, nil
}

func (o *doctorOptions) print(results []checkResult) error {
	if o.output == "json" {
		enc := json.NewEncoder(o.Out)
		enc.SetIndent("", "  ")
		return enc.Encode(results)
	}
	printChecklist(o.Out, results)
	return nil
}

// printChecklist writes one line per check and a summary line. Details carry text from
// the cluster and from the sandbox (the e2e's command output), so control characters are
// replaced: a sandbox must not move the cursor or rewrite the terminal's earlier lines.
func printChecklist(w io.Writer, results []checkResult) {
	counts := map[checkStatus]int{}
	for _, r := range results {
		r.Detail, r.Fix = printable(r.Detail), printable(r.Fix)
		counts[r.Status]++
		switch r.Status {
		case checkPass:
			fmt.Fprintf(w, "✓ %s: %s\n", r.Name, r.Detail)
		case checkFail:
			fmt.Fprintf(w, "✗ %s: %s\n", r.Name, r.Detail)
			if r.Fix != "" {
				fmt.Fprintf(w, "    fix: %s\n", r.Fix)
			}
		default:
			fmt.Fprintf(w, "– %s: %s\n", r.Name, r.Detail)
		}
	}
	verdict := "no check failed"
	if counts[checkFail] > 0 {
		verdict = fmt.Sprintf("%d failed", counts[checkFail])
	}
	fmt.Fprintf(w, "\n%d checks: %d passed, %d failed, %d not applicable: %s\n",
		len(results), counts[checkPass], counts[checkFail], counts[checkNA], verdict)
}

// listNames joins up to five names, and says how many more there are.
func listNames(names []string) string {
	const shown = 5
	if len(names) <= shown {
		return strings.Join(names, ", ")
	}
	return fmt.Sprintf("%s and %d more", strings.Join(names[:shown], ", "), len(names)-shown)
}

// printable replaces control characters (escape sequences, carriage returns, newlines) with
// U+FFFD, so that one check stays one line of plain text.
func printable(s string) string {
	return strings.Map(func(r rune) rune {
		if unicode.IsControl(r) {
			return utf8.RuneError
		}
		return r
	}, s)
}
