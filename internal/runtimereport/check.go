package runtimereport

import (
	"fmt"
	"path"
	"slices"
	"strings"

	"github.com/Microsoft/hcsshim/pkg/annotations"
	toml "github.com/pelletier/go-toml/v2"
)

// SizingAnnotations are the hcsshim pod annotations hyperpool may set on a sandbox pod
// (internal/uvm.Annotations). A Hyper-V handler must pass every one to the shim.
var SizingAnnotations = []string{
	annotations.MemorySizeInMB,
	annotations.ProcessorCount,
	annotations.ProcessorLimit,
	annotations.ProcessorWeight,
	annotations.AllowOvercommit,
	annotations.StorageQoSIopsMaximum,
	annotations.StorageQoSBandwidthMaximum,
}

// MaxConfigBytes caps the configuration Check reads: containerd's effective configuration
// is a few KiB; anything this large is not one.
const MaxConfigBytes = 4 << 20

// The runhcs runtime type, and its SandboxIsolation for Hyper-V (runhcs options proto:
// PROCESS = 0, HYPERVISOR = 1).
const (
	RuntimeTypeRunHCS    = "io.containerd.runhcs.v1"
	sandboxIsolationVM   = 1
	criPluginVersion3    = "io.containerd.cri.v1.runtime"
	criPluginVersion2    = "io.containerd.grpc.v1.cri"
	criPluginVersion1    = "cri"
	versionOfUnversioned = 1
)

// Check reads containerd's effective configuration (the output of `containerd config
// dump`, TOML) and reports on each handler. It looks for a handler only where containerd
// of the configuration's version reads runtimes from: version 3 (containerd 2)
// plugins.'io.containerd.cri.v1.runtime'.containerd.runtimes, version 2 (containerd 1.x)
// plugins.'io.containerd.grpc.v1.cri'.containerd.runtimes. A handler written under the
// other version's plugin name is reported missing, with where it was found: containerd
// ignores it there. It checks the first MaxHandlers handlers by name, the ones the
// annotation can carry, so that nothing is labelled verified that the report does not list.
func Check(config []byte, handlers []string) Report {
	if len(config) > MaxConfigBytes {
		return Report{Error: fmt.Sprintf("containerd's configuration is %d bytes, more than the %d read", len(config), MaxConfigBytes)}
	}
	var doc map[string]any
	if err := toml.Unmarshal(config, &doc); err != nil {
		return Report{Error: "containerd's configuration is not TOML: " + err.Error()}
	}
	version := int64(versionOfUnversioned)
	if v, ok := doc["version"].(int64); ok {
		version = v
	}
	plugins, _ := doc["plugins"].(map[string]any)
	effective, ignored := criPluginVersion3, criPluginVersion2
	switch version {
	case 2:
		effective, ignored = criPluginVersion2, criPluginVersion3
	case versionOfUnversioned:
		effective, ignored = criPluginVersion1, criPluginVersion3
	}
	report := Report{ConfigVersion: version}
	names := slices.Compact(slices.Sorted(slices.Values(handlers)))
	for _, name := range names[:min(len(names), MaxHandlers)] {
		h := HandlerReport{Handler: name}
		runtime, found := runtimeTable(plugins, effective, name)
		switch {
		case found:
			h.Registered = true
			h.HyperV, h.PodAnnotations, h.Detail = judge(runtime)
		case hasRuntime(plugins, ignored, name):
			h.Detail = fmt.Sprintf("found under plugins.'%s', which containerd ignores in a version-%d configuration; move it to plugins.'%s'", ignored, version, effective)
		default:
			h.Detail = fmt.Sprintf("no plugins.'%s'.containerd.runtimes.%s in containerd's configuration (version %d)", effective, name, version)
		}
		report.Handlers = append(report.Handlers, h)
	}
	return report
}

// judge reads one runtime table.
func judge(runtime map[string]any) (hyperV, podAnnotations bool, detail string) {
	var why []string
	runtimeType, _ := runtime["runtime_type"].(string)
	options, _ := runtime["options"].(map[string]any)
	isolation, _ := options["SandboxIsolation"].(int64)
	hyperV = runtimeType == RuntimeTypeRunHCS && isolation == sandboxIsolationVM
	if !hyperV {
		why = append(why, fmt.Sprintf("runtime_type %q, options.SandboxIsolation %d (Hyper-V is %q and 1)", runtimeType, isolation, RuntimeTypeRunHCS))
	}
	var patterns []string
	if list, ok := runtime["pod_annotations"].([]any); ok {
		for _, p := range list {
			if s, ok := p.(string); ok {
				patterns = append(patterns, s)
			}
		}
	}
	var dropped []string
	for _, key := range SizingAnnotations {
		if !passes(patterns, key) {
			dropped = append(dropped, key)
		}
	}
	podAnnotations = len(dropped) == 0
	if !podAnnotations {
		why = append(why, fmt.Sprintf("pod_annotations %q drop %s", patterns, strings.Join(dropped, ", ")))
	}
	return hyperV, podAnnotations, strings.Join(why, "; ")
}

// passes reports whether containerd passes a pod annotation to the shim: it matches each
// pod_annotations pattern with path.Match (containerd's GetPassthroughAnnotations).
func passes(patterns []string, key string) bool {
	return slices.ContainsFunc(patterns, func(p string) bool {
		ok, err := path.Match(p, key)
		return err == nil && ok
	})
}

func runtimeTable(plugins map[string]any, plugin, handler string) (map[string]any, bool) {
	cri, _ := plugins[plugin].(map[string]any)
	containerd, _ := cri["containerd"].(map[string]any)
	runtimes, _ := containerd["runtimes"].(map[string]any)
	runtime, ok := runtimes[handler].(map[string]any)
	return runtime, ok
}

func hasRuntime(plugins map[string]any, plugin, handler string) bool {
	_, ok := runtimeTable(plugins, plugin, handler)
	return ok
}
