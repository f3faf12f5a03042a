package nodeagent

import (
	"testing"
)

// A VM's properties as HCS returns them for PropertyTypes ["Memory"], with the field names of
// hcsshim's internal/hcs/schema2 Properties and MemoryInformationForVm (v0.15.0): a 1536 MiB
// VM backed by virtual memory, AssignedMemory in 4 KiB pages.
const recordedVMProperties = `{"Id":"0a1b2c@vm","SystemType":"VirtualMachine","RuntimeOsType":"Windows",` +
	`"Owner":"containerd-shim-runhcs-v1.exe","RuntimeId":"5f0e3c9a-7d1b-4c2e-9a8f-0b1c2d3e4f50","State":"Running",` +
	`"Memory":{"VirtualNodeCount":1,"VirtualMachineMemory":{"AvailableMemory":1210,"AvailableMemoryBuffer":30,` +
	`"ReservedMemory":0,"AssignedMemory":393216,"SlpActive":false,"BalancingEnabled":false,"DmOperationInProgress":false}}}`

func TestParseVMProperties(t *testing.T) {
	t.Parallel()
	got, err := parseVMProperties(recordedVMProperties)
	want := vmProperties{AssignedBytes: 1536 << 20, RuntimeID: "5F0E3C9A-7D1B-4C2E-9A8F-0B1C2D3E4F50"}
	if err != nil || got != want {
		t.Errorf("parseVMProperties = %+v, %v; want %+v", got, err, want)
	}
	braced, err := parseVMProperties(`{"RuntimeId":"{5f0e3c9a-7d1b-4c2e-9a8f-0b1c2d3e4f50}","Memory":{"VirtualMachineMemory":{"AssignedMemory":1}}}`)
	if err != nil || braced.RuntimeID != want.RuntimeID || braced.AssignedBytes != hcsPageSize {
		t.Errorf("braced GUID: %+v, %v", braced, err)
	}
	for _, bad := range []string{`{}`, `{"Memory":{}}`, `not json`} {
		if _, err := parseVMProperties(bad); err == nil {
			t.Errorf("parseVMProperties(%s) accepted", bad)
		}
	}
}

// The vmmem process of a VM is the one named vmmem that runs as NT VIRTUAL MACHINE\<its
// runtime ID>; other processes, or vmmem of another account, are not.
func TestVMMemWorkingSets(t *testing.T) {
	t.Parallel()
	const vm = "5F0E3C9A-7D1B-4C2E-9A8F-0B1C2D3E4F50"
	got := vmmemWorkingSets([]vmmemProcess{
		{ImageName: "vmmem", Domain: "NT VIRTUAL MACHINE", User: "5f0e3c9a-7d1b-4c2e-9a8f-0b1c2d3e4f50", WorkingSet: 700 << 20},
		{ImageName: `\Device\HarddiskVolume3\Windows\System32\vmmem.exe`, Domain: "nt virtual machine", User: "11111111-2222-3333-4444-555555555555", WorkingSet: 300 << 20},
		{ImageName: "vmmem", Domain: "NT AUTHORITY", User: "SYSTEM", WorkingSet: 1 << 30},                                     // not a VM's
		{ImageName: `\Device\HarddiskVolume3\evil\notvmmem.exe`, Domain: "NT VIRTUAL MACHINE", User: vm, WorkingSet: 1 << 30}, // not vmmem
		{ImageName: "vmmem", Domain: "NT VIRTUAL MACHINE", User: "", WorkingSet: 1 << 30},                                     // no account
	})
	want := map[string]uint64{vm: 700 << 20, "11111111-2222-3333-4444-555555555555": 300 << 20}
	if len(got) != len(want) {
		t.Fatalf("vmmemWorkingSets = %v, want %v", got, want)
	}
	for k, v := range want {
		if got[k] != v {
			t.Errorf("working set of %s = %d, want %d", k, got[k], v)
		}
	}
}
