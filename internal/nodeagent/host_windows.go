//go:build windows

package nodeagent

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"time"
	"unsafe"

	winprocess "github.com/Microsoft/go-winio/pkg/process"
	"github.com/Microsoft/hcsshim"
	"golang.org/x/sys/windows"
)

// RunhcsShimOwner is the HCS owner of the compute systems the containerd runhcs shim creates
// (hcsshim sets it to the shim's executable name).
const RunhcsShimOwner = "containerd-shim-runhcs-v1.exe"

// DefaultContainerdRoot is containerd's root directory on Windows.
const DefaultContainerdRoot = `C:\ProgramData\containerd\root`

// HCSHost is the Host of a Windows node: the Host Compute Service through hcsshim. It needs
// the host (a HostProcess container running as SYSTEM).
type HCSHost struct {
	// Owners are the HCS owners whose VirtualMachine compute systems are listed; empty means
	// RunhcsShimOwner.
	Owners []string
	// ContainerdRoot is containerd's root directory, where the windows snapshotter keeps the
	// pod sandboxes' scratch layers; empty means DefaultContainerdRoot.
	ContainerdRoot string
	// TerminateTimeout bounds the wait for a terminated VM to stop; 0 means 2 minutes.
	TerminateTimeout time.Duration
}

var _ Host = (*HCSHost)(nil)
var _ ScratchReporter = (*HCSHost)(nil)

// ListUtilityVMs lists the VirtualMachine compute systems of the runhcs shim with their
// start time (hcsshim Statistics) and assigned memory (the HCS "Memory" property).
func (h *HCSHost) ListUtilityVMs(ctx context.Context) ([]UtilityVM, error) {
	owners := h.Owners
	if len(owners) == 0 {
		owners = []string{RunhcsShimOwner}
	}
	systems, err := hcsshim.GetContainers(hcsshim.ComputeSystemQuery{Types: []string{"VirtualMachine"}, Owners: owners})
	if err != nil {
		return nil, fmt.Errorf("HCS: listing compute systems: %w", err)
	}
	// One pass over the host's processes per round finds every VM's vmmem process.
	workingSets, wsErr := hostVMMemWorkingSets()
	vms := make([]UtilityVM, 0, len(systems))
	for _, cs := range systems {
		if err := ctx.Err(); err != nil {
			return nil, err
		}
		vm := UtilityVM{ID: cs.ID, Owner: cs.Owner, State: cs.State}
		runtimeID, err := h.inspect(&vm)
		if err == nil && wsErr == nil {
			vm.HostMemoryBytes = workingSets[runtimeID]
		}
		if err != nil {
			if hcsshim.IsNotExist(err) {
				continue // gone since the listing
			}
			// Keep the VM in the inventory with what is known; a zero Created means it is
			// never judged leaked on this data.
			vm.Created = time.Time{}
		}
		vms = append(vms, vm)
	}
	return vms, nil
}

// inspect fills in the start time and memory of a VM, and returns its runtime ID.
func (h *HCSHost) inspect(vm *UtilityVM) (string, error) {
	c, err := hcsshim.OpenContainer(vm.ID)
	if err != nil {
		return "", err
	}
	defer c.Close()
	stats, err := c.Statistics()
	if err != nil {
		return "", err
	}
	switch {
	case !stats.ContainerStartTime.IsZero():
		vm.Created = stats.ContainerStartTime
	case !stats.Timestamp.IsZero() && stats.Uptime100ns > 0:
		vm.Created = stats.Timestamp.Add(-time.Duration(stats.Uptime100ns) * 100) //nolint:gosec // uptime fits
	}
	// hcsshim's public API only has schema-1 statistics, whose memory counters are the
	// VM worker's commit; the memory the hypervisor assigned to the VM is the schema-2
	// "Memory" property (VirtualMachineMemory.AssignedMemory, in 4 KiB pages), which is what
	// hcsshim's own UVM stats read (internal/uvm/stats.go).
	props, err := vmPropertiesOf(vm.ID)
	if err == nil && props.AssignedBytes > 0 {
		vm.MemoryAssignedBytes = props.AssignedBytes
	} else {
		vm.MemoryAssignedBytes = stats.Memory.UsageCommitBytes
	}
	return props.RuntimeID, nil
}

// TerminateUtilityVM hard-stops the VM and waits until it is gone.
func (h *HCSHost) TerminateUtilityVM(ctx context.Context, id string) error {
	c, err := hcsshim.OpenContainer(id)
	if err != nil {
		if hcsshim.IsNotExist(err) {
			return nil
		}
		return err
	}
	defer c.Close()
	err = c.Terminate()
	switch {
	case err == nil, hcsshim.IsAlreadyStopped(err), hcsshim.IsNotExist(err):
		return nil
	case !hcsshim.IsPending(err):
		return err
	}
	timeout := h.TerminateTimeout
	if timeout <= 0 {
		timeout = 2 * time.Minute
	}
	if dl, ok := ctx.Deadline(); ok && time.Until(dl) < timeout {
		timeout = time.Until(dl)
	}
	if err := c.WaitTimeout(timeout); err != nil && !hcsshim.IsAlreadyStopped(err) && !hcsshim.IsNotExist(err) {
		// A VM that was terminated exits with an error code: that is success here.
		var cerr *hcsshim.ContainerError
		if hcsshim.IsTimeout(err) || !errors.As(err, &cerr) {
			return fmt.Errorf("waiting for VM %s to stop: %w", id, err)
		}
	}
	return nil
}

// ScratchDiskBytes is the size on disk of every pod UVM scratch disk on the node. The runhcs
// shim keeps a pod UVM's scratch VHDX in the "vm" folder of the pod sandbox's scratch layer
// (hcsshim internal/layers/wcow_parse.go), which containerd's windows snapshotter places
// under <root>\io.containerd.snapshotter.v1.windows\snapshots\<n>. Which snapshot belongs to
// which VM only containerd's metadata store knows, so this is a node total: it includes
// the scratch of VMs that leaked, which is disk they still cost.
func (h *HCSHost) ScratchDiskBytes(context.Context) (uint64, error) {
	root := h.ContainerdRoot
	if root == "" {
		root = DefaultContainerdRoot
	}
	matches, err := filepath.Glob(filepath.Join(root, "io.containerd.snapshotter.v1.windows", "snapshots", "*", "vm", "sandbox.vhdx"))
	if err != nil {
		return 0, err
	}
	var total uint64
	for _, m := range matches {
		fi, err := os.Stat(m)
		if err != nil {
			if errors.Is(err, fs.ErrNotExist) {
				continue
			}
			return 0, err
		}
		total += uint64(fi.Size()) //nolint:gosec // file sizes are non-negative
	}
	return total, nil
}

var (
	modvmcompute                      = windows.NewLazySystemDLL("vmcompute.dll")
	procHcsOpenComputeSystem          = modvmcompute.NewProc("HcsOpenComputeSystem")
	procHcsGetComputeSystemProperties = modvmcompute.NewProc("HcsGetComputeSystemProperties")
	procHcsCloseComputeSystem         = modvmcompute.NewProc("HcsCloseComputeSystem")
)

// hresult turns an HCS return value into an error, as hcsshim's generated syscalls do.
func hresult(r uintptr) error {
	if int32(r) >= 0 { //nolint:gosec // HRESULTs are 32-bit
		return nil
	}
	if r&0x1fff0000 == 0x00070000 {
		r &= 0xffff
	}
	return windows.Errno(r)
}

func takeCoTaskMemString(p *uint16) string {
	if p == nil {
		return ""
	}
	s := windows.UTF16PtrToString(p)
	windows.CoTaskMemFree(unsafe.Pointer(p))
	return s
}

// assignedMemory reads the HCS schema-2 "Memory" property of a VM: the bytes the hypervisor
// has assigned to it. hcsshim does not export schema-2 property queries, hence the direct
// vmcompute.dll calls (the same three hcsshim's internal/vmcompute makes).
func vmPropertiesOf(id string) (vmProperties, error) {
	for _, p := range []*windows.LazyProc{procHcsOpenComputeSystem, procHcsGetComputeSystemProperties, procHcsCloseComputeSystem} {
		if err := p.Find(); err != nil {
			return vmProperties{}, err
		}
	}
	idp, err := windows.UTF16PtrFromString(id)
	if err != nil {
		return vmProperties{}, err
	}
	var (
		handle  uintptr
		resultp *uint16
	)
	r, _, _ := procHcsOpenComputeSystem.Call(uintptr(unsafe.Pointer(idp)), uintptr(unsafe.Pointer(&handle)), uintptr(unsafe.Pointer(&resultp)))
	result := takeCoTaskMemString(resultp)
	if err := hresult(r); err != nil {
		return vmProperties{}, fmt.Errorf("HcsOpenComputeSystem %s: %w %s", id, err, result)
	}
	defer procHcsCloseComputeSystem.Call(handle) //nolint:errcheck // nothing to do about it

	query, err := windows.UTF16PtrFromString(`{"PropertyTypes":["Memory"]}`)
	if err != nil {
		return vmProperties{}, err
	}
	var propsp *uint16
	resultp = nil
	r, _, _ = procHcsGetComputeSystemProperties.Call(handle, uintptr(unsafe.Pointer(query)), uintptr(unsafe.Pointer(&propsp)), uintptr(unsafe.Pointer(&resultp)))
	props, result := takeCoTaskMemString(propsp), takeCoTaskMemString(resultp)
	if err := hresult(r); err != nil {
		return vmProperties{}, fmt.Errorf("HcsGetComputeSystemProperties %s: %w %s", id, err, result)
	}
	return parseVMProperties(props)
}

// hostVMMemWorkingSets returns the working set of every VM's vmmem process, by the VM's
// runtime ID (vmmemWorkingSets). A process that exits or cannot be opened meanwhile is
// skipped, as hcsshim's lookupVMMEM skips it.
func hostVMMemWorkingSets() (map[string]uint64, error) {
	pids, err := winprocess.EnumProcesses()
	if err != nil {
		return nil, fmt.Errorf("enumerating processes: %w", err)
	}
	var procs []vmmemProcess
	for _, pid := range pids {
		if p, ok := inspectProcess(pid); ok {
			procs = append(procs, p)
		}
	}
	return vmmemWorkingSets(procs), nil
}

// inspectProcess reads the image name, account and working set of a process named vmmem;
// false for any other process or one it cannot read.
func inspectProcess(pid uint32) (vmmemProcess, bool) {
	h, err := windows.OpenProcess(windows.PROCESS_QUERY_LIMITED_INFORMATION|windows.PROCESS_VM_READ, false, pid)
	if err != nil {
		return vmmemProcess{}, false
	}
	defer windows.CloseHandle(h) //nolint:errcheck // nothing to do about it
	// Querying vmmem's image name as a Win32 path fails (ERROR_GEN_FAILURE, says hcsshim),
	// so it is read as an NT path.
	name, err := winprocess.QueryFullProcessImageName(h, winprocess.ImageNameFormatNTPath)
	if err != nil || !isVMMemImage(name) {
		return vmmemProcess{}, false
	}
	var token windows.Token
	if err := windows.OpenProcessToken(h, windows.TOKEN_QUERY, &token); err != nil {
		return vmmemProcess{}, false
	}
	defer token.Close() //nolint:errcheck // nothing to do about it
	user, err := token.GetTokenUser()
	if err != nil {
		return vmmemProcess{}, false
	}
	account, domain, _, err := user.User.Sid.LookupAccount("")
	if err != nil {
		return vmmemProcess{}, false
	}
	counters, err := winprocess.GetProcessMemoryInfo(h)
	if err != nil {
		return vmmemProcess{}, false
	}
	return vmmemProcess{ImageName: name, Domain: domain, User: account, WorkingSet: uint64(counters.WorkingSetSize)}, true
}
