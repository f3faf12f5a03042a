package nodeagent

import (
	"encoding/json"
	"errors"
)

// hcsPageSize is the unit of VmMemory.AssignedMemory: 4 KiB pages, whatever the guest's
// page size (hcsshim internal/uvm/stats.go).
const hcsPageSize = 4096

// parseAssignedMemory reads VirtualMachineMemory.AssignedMemory (4 KiB pages, whatever the
// guest's page size) from a schema-2 properties document.
func parseAssignedMemory(props string) (uint64, error) {
	var doc struct {
		Memory *struct {
			VirtualMachineMemory *struct {
				AssignedMemory uint64 `json:"AssignedMemory"`
			} `json:"VirtualMachineMemory"`
		} `json:"Memory"`
	}
	if err := json.Unmarshal([]byte(props), &doc); err != nil {
		return 0, err
	}
	if doc.Memory == nil || doc.Memory.VirtualMachineMemory == nil {
		return 0, errors.New("no VirtualMachineMemory in the HCS properties")
	}
	return doc.Memory.VirtualMachineMemory.AssignedMemory * hcsPageSize, nil
}
