package nodeagent

import (
	"encoding/json"
	"errors"
	"path"
	"strings"
)

// hcsPageSize is the unit of VmMemory.AssignedMemory: 4 KiB pages, whatever the guest's
// page size (hcsshim internal/uvm/stats.go).
const hcsPageSize = 4096

// vmProperties is what the agent reads of a VM's HCS schema-2 properties document (hcsshim
// internal/hcs/schema2 Properties, queried with PropertyTypes ["Memory"]).
type vmProperties struct {
	// AssignedBytes is VirtualMachineMemory.AssignedMemory in bytes: the VM's memory size as
	// the hypervisor configured it, which hcsshim's tests compare with the requested size.
	AssignedBytes uint64
	// RuntimeID is the VM's runtime GUID, upper case: the account its vmmem process runs as
	// ("NT VIRTUAL MACHINE\<RuntimeId>"), which is how the process is found.
	RuntimeID string
}

// parseVMProperties reads a schema-2 properties document.
func parseVMProperties(props string) (vmProperties, error) {
	var doc struct {
		RuntimeID string `json:"RuntimeId"`
		Memory    *struct {
			VirtualMachineMemory *struct {
				AssignedMemory uint64 `json:"AssignedMemory"`
			} `json:"VirtualMachineMemory"`
		} `json:"Memory"`
	}
	if err := json.Unmarshal([]byte(props), &doc); err != nil {
		return vmProperties{}, err
	}
	if doc.Memory == nil || doc.Memory.VirtualMachineMemory == nil {
		return vmProperties{}, errors.New("no VirtualMachineMemory in the HCS properties")
	}
	return vmProperties{AssignedBytes: doc.Memory.VirtualMachineMemory.AssignedMemory * hcsPageSize,
		RuntimeID: strings.ToUpper(strings.Trim(doc.RuntimeID, "{}"))}, nil
}

// vmmemDomain is the account domain of every VM worker memory process.
const vmmemDomain = "NT VIRTUAL MACHINE"

// vmmemProcess is one process of the host as the agent sees it when it looks for the
// vmmem processes: its NT image name and the account it runs as.
type vmmemProcess struct {
	ImageName    string // e.g. "vmmem", or \Device\...\vmmem.exe
	Domain, User string
	WorkingSet   uint64
}

// vmmemWorkingSets returns the working set of each VM's vmmem process, by the VM's runtime
// GUID (upper case). hcsshim finds a VM's vmmem the same way (internal/uvm/stats.go
// lookupVMMEM): a process named vmmem running as NT VIRTUAL MACHINE\<runtime ID>. Its
// working set is the host memory the VM holds; for a VM backed by virtual memory
// (AllowOvercommit, the default) it is not the VM's size, and it is what hcsshim reports as
// the VM's working set.
func vmmemWorkingSets(procs []vmmemProcess) map[string]uint64 {
	sets := map[string]uint64{}
	for _, p := range procs {
		if !isVMMemImage(p.ImageName) || !strings.EqualFold(p.Domain, vmmemDomain) || p.User == "" {
			continue
		}
		sets[strings.ToUpper(p.User)] += p.WorkingSet
	}
	return sets
}

// isVMMemImage reports whether a process's image name (NT path or bare) is vmmem's.
func isVMMemImage(imageName string) bool {
	name := strings.ToLower(path.Base(strings.ReplaceAll(imageName, `\`, "/")))
	return name == "vmmem" || name == "vmmem.exe"
}
