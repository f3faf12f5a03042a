package uvm

import (
	"maps"
	"math"
	"testing"

	"github.com/Microsoft/hcsshim/pkg/annotations"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/hyperpool/hyperpool/api/v1alpha1"
)

func ptr[T any](v T) *T { return &v }

// withMemoryLimit returns a container limited to the given memory quantity ("" for none).
func withMemoryLimit(limit string) corev1.Container {
	c := corev1.Container{Name: "agent"}
	if limit != "" {
		c.Resources.Limits = corev1.ResourceList{corev1.ResourceMemory: resource.MustParse(limit)}
	}
	return c
}

// assertFootprint compares footprints by value and by printed memory, which is what ends up
// in status ("1536Mi", "2Gi").
func assertFootprint(t *testing.T, what string, got v1alpha1.Footprint, wantMemory string, wantVCPUs int32) {
	t.Helper()
	want := resource.MustParse(wantMemory)
	if got.Memory.Cmp(want) != 0 || got.Memory.String() != wantMemory || got.VCPUs != wantVCPUs {
		t.Errorf("%s = {Memory: %s, VCPUs: %d}, want {Memory: %s, VCPUs: %d}",
			what, got.Memory.String(), got.VCPUs, wantMemory, wantVCPUs)
	}
}

func TestMemoryMB(t *testing.T) {
	tests := []struct {
		name       string
		vm         *v1alpha1.VMSpec
		containers []corev1.Container
		want       int64
	}{
		{name: "no containers", want: NoLimitMemoryMB},
		{name: "no limits", containers: []corev1.Container{withMemoryLimit(""), withMemoryLimit("")}, want: NoLimitMemoryMB},
		{name: "explicit memory wins", vm: &v1alpha1.VMSpec{MemoryMB: ptr[int32](4096)}, containers: []corev1.Container{withMemoryLimit("8Gi")}, want: 4096},
		{name: "vm without memory derives", vm: &v1alpha1.VMSpec{ProcessorCount: ptr[int32](4)}, containers: []corev1.Container{withMemoryLimit("1Gi")}, want: 1536},
		{name: "1Gi limit", containers: []corev1.Container{withMemoryLimit("1Gi")}, want: 1536},
		{name: "2000Mi limit", containers: []corev1.Container{withMemoryLimit("2000Mi")}, want: 2560},
		{name: "256Mi limit lands on a step", containers: []corev1.Container{withMemoryLimit("256Mi")}, want: 512},
		{name: "one byte over a MiB rounds up", containers: []corev1.Container{withMemoryLimit("1048577")}, want: 512},
		{name: "decimal 1G limit", containers: []corev1.Container{withMemoryLimit("1G")}, want: 1536}, // 953.7 MiB
		{name: "limits summed", containers: []corev1.Container{withMemoryLimit("1Gi"), withMemoryLimit("512Mi"), withMemoryLimit("")}, want: 2048},
		{name: "zero limit counts as none", containers: []corev1.Container{withMemoryLimit("0")}, want: NoLimitMemoryMB},
		{
			name: "requests only count as no limit",
			containers: []corev1.Container{{Name: "agent", Resources: corev1.ResourceRequirements{
				Requests: corev1.ResourceList{corev1.ResourceMemory: resource.MustParse("4Gi")},
			}}},
			want: NoLimitMemoryMB,
		},
		{name: "huge limit saturates instead of wrapping", containers: []corev1.Container{withMemoryLimit("16Ei"), withMemoryLimit("16Ei")}, want: 8796093022720},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := MemoryMB(tt.vm, tt.containers); got != tt.want {
				t.Errorf("MemoryMB() = %d, want %d", got, tt.want)
			}
		})
	}
}

func TestProcessorCount(t *testing.T) {
	tests := []struct {
		name string
		vm   *v1alpha1.VMSpec
		want int32
	}{
		{name: "nil vm", want: DefaultProcessorCount},
		{name: "unset", vm: &v1alpha1.VMSpec{}, want: DefaultProcessorCount},
		{name: "set", vm: &v1alpha1.VMSpec{ProcessorCount: ptr[int32](8)}, want: 8},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := ProcessorCount(tt.vm); got != tt.want {
				t.Errorf("ProcessorCount() = %d, want %d", got, tt.want)
			}
		})
	}
}

func TestAnnotations(t *testing.T) {
	fullVM := &v1alpha1.VMSpec{
		MemoryMB:        ptr[int32](2048),
		ProcessorCount:  ptr[int32](4),
		ProcessorLimit:  ptr[int32](50000),
		ProcessorWeight: ptr[int32](0),
		AllowOvercommit: ptr(false),
		StorageQoS:      &v1alpha1.StorageQoS{IOPSMaximum: ptr[int32](3000), BandwidthMaximum: ptr[int64](100 << 20)},
	}
	tests := []struct {
		name       string
		isolation  v1alpha1.IsolationMode
		vm         *v1alpha1.VMSpec
		containers []corev1.Container
		want       map[string]string
	}{
		{
			name: "process has no vm", isolation: v1alpha1.IsolationProcess, vm: fullVM,
			containers: []corev1.Container{withMemoryLimit("1Gi")}, want: nil,
		},
		{
			name: "hyperv defaults", isolation: v1alpha1.IsolationHyperV,
			want: map[string]string{annotations.MemorySizeInMB: "1024", annotations.ProcessorCount: "2"},
		},
		{
			name: "empty isolation is the API default hyperv", isolation: "",
			containers: []corev1.Container{withMemoryLimit("1Gi")},
			want:       map[string]string{annotations.MemorySizeInMB: "1536", annotations.ProcessorCount: "2"},
		},
		{
			name: "hyperv everything set", isolation: v1alpha1.IsolationHyperV, vm: fullVM,
			want: map[string]string{
				annotations.MemorySizeInMB:             "2048",
				annotations.ProcessorCount:             "4",
				annotations.ProcessorLimit:             "50000",
				annotations.ProcessorWeight:            "0",
				annotations.AllowOvercommit:            "false",
				annotations.StorageQoSIopsMaximum:      "3000",
				annotations.StorageQoSBandwidthMaximum: "104857600",
			},
		},
		{
			name: "hyperv overcommit true, empty storage qos", isolation: v1alpha1.IsolationHyperV,
			vm:         &v1alpha1.VMSpec{AllowOvercommit: ptr(true), StorageQoS: &v1alpha1.StorageQoS{}},
			containers: []corev1.Container{withMemoryLimit("2000Mi")},
			want: map[string]string{
				annotations.MemorySizeInMB:  "2560",
				annotations.ProcessorCount:  "2",
				annotations.AllowOvercommit: "true",
			},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got := Annotations(tt.isolation, tt.vm, tt.containers)
			if !maps.Equal(got, tt.want) || (got == nil) != (tt.want == nil) {
				t.Errorf("Annotations() = %v, want %v", got, tt.want)
			}
		})
	}
}

func TestFootprintOf(t *testing.T) {
	tests := []struct {
		name       string
		isolation  v1alpha1.IsolationMode
		vm         *v1alpha1.VMSpec
		containers []corev1.Container
		wantMemory string
		wantVCPUs  int32
	}{
		{name: "process is zero", isolation: v1alpha1.IsolationProcess, vm: &v1alpha1.VMSpec{MemoryMB: ptr[int32](2048)}, wantMemory: "0"},
		{name: "hyperv default", isolation: v1alpha1.IsolationHyperV, wantMemory: "1Gi", wantVCPUs: 2},
		{name: "hyperv derived", isolation: v1alpha1.IsolationHyperV, containers: []corev1.Container{withMemoryLimit("1Gi")}, wantMemory: "1536Mi", wantVCPUs: 2},
		{name: "hyperv explicit", isolation: v1alpha1.IsolationHyperV, vm: &v1alpha1.VMSpec{MemoryMB: ptr[int32](2048), ProcessorCount: ptr[int32](4)}, wantMemory: "2Gi", wantVCPUs: 4},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			assertFootprint(t, "FootprintOf()", FootprintOf(tt.isolation, tt.vm, tt.containers), tt.wantMemory, tt.wantVCPUs)
		})
	}
}

func TestFootprintFromPod(t *testing.T) {
	podWith := func(podAnnotations map[string]string) *corev1.Pod {
		return &corev1.Pod{ObjectMeta: metav1.ObjectMeta{Annotations: podAnnotations}}
	}
	tests := []struct {
		name       string
		pod        *corev1.Pod
		wantMemory string
		wantVCPUs  int32
	}{
		{name: "nil pod", wantMemory: "0"},
		{name: "no annotations (process isolation)", pod: podWith(nil), wantMemory: "0"},
		{name: "processor count without memory is still no vm", pod: podWith(map[string]string{annotations.ProcessorCount: "4"}), wantMemory: "0"},
		{
			name:       "both",
			pod:        podWith(map[string]string{annotations.MemorySizeInMB: "1536", annotations.ProcessorCount: "4"}),
			wantMemory: "1536Mi", wantVCPUs: 4,
		},
		{
			name:       "round trip of Annotations",
			pod:        podWith(Annotations(v1alpha1.IsolationHyperV, nil, []corev1.Container{withMemoryLimit("2000Mi")})),
			wantMemory: "2560Mi", wantVCPUs: 2,
		},
		{
			name:       "unparseable memory",
			pod:        podWith(map[string]string{annotations.MemorySizeInMB: "2G", annotations.ProcessorCount: "2"}),
			wantMemory: "0", wantVCPUs: 2,
		},
		{
			name:       "unparseable and negative vcpus",
			pod:        podWith(map[string]string{annotations.MemorySizeInMB: "2048", annotations.ProcessorCount: "-1"}),
			wantMemory: "2Gi",
		},
		{
			name:       "missing vcpus",
			pod:        podWith(map[string]string{annotations.MemorySizeInMB: "2048"}),
			wantMemory: "2Gi",
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			assertFootprint(t, "FootprintFromPod()", FootprintFromPod(tt.pod), tt.wantMemory, tt.wantVCPUs)
		})
	}
}

func TestAddFootprint(t *testing.T) {
	oneAndAHalf := v1alpha1.Footprint{Memory: resource.MustParse("1536Mi"), VCPUs: 2}
	half := v1alpha1.Footprint{Memory: resource.MustParse("512Mi"), VCPUs: 1}
	tests := []struct {
		name       string
		a, b       v1alpha1.Footprint
		wantMemory string
		wantVCPUs  int32
	}{
		{name: "zero plus zero", wantMemory: "0"},
		{name: "zero plus one", b: oneAndAHalf, wantMemory: "1536Mi", wantVCPUs: 2},
		{name: "one plus zero", a: oneAndAHalf, wantMemory: "1536Mi", wantVCPUs: 2},
		{name: "sum", a: oneAndAHalf, b: half, wantMemory: "2Gi", wantVCPUs: 3},
		{
			name: "vcpus saturate", a: v1alpha1.Footprint{VCPUs: math.MaxInt32}, b: v1alpha1.Footprint{VCPUs: 1},
			wantMemory: "0", wantVCPUs: math.MaxInt32,
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			aBefore := tt.a.Memory.String()
			assertFootprint(t, "AddFootprint()", AddFootprint(tt.a, tt.b), tt.wantMemory, tt.wantVCPUs)
			if tt.a.Memory.String() != aBefore {
				t.Errorf("AddFootprint modified its argument: %s, was %s", tt.a.Memory.String(), aBefore)
			}
		})
	}
}

func FuzzMemoryMB(f *testing.F) {
	f.Add(int64(1<<30), int64(0), false, int32(0))
	f.Add(int64(2000<<20), int64(1), false, int32(0))
	f.Add(int64(math.MaxInt64), int64(math.MaxInt64), false, int32(0))
	f.Add(int64(0), int64(-5), true, int32(2048))
	f.Fuzz(func(t *testing.T, firstLimitBytes, secondLimitBytes int64, explicit bool, explicitMB int32) {
		var containers []corev1.Container
		for _, limit := range []int64{firstLimitBytes, secondLimitBytes} {
			c := corev1.Container{Name: "c"}
			if limit != 0 {
				c.Resources.Limits = corev1.ResourceList{corev1.ResourceMemory: *resource.NewQuantity(limit, resource.BinarySI)}
			}
			containers = append(containers, c)
		}
		if explicit {
			vm := &v1alpha1.VMSpec{MemoryMB: &explicitMB}
			if got := MemoryMB(vm, containers); got != int64(explicitMB) {
				t.Fatalf("MemoryMB with vm.MemoryMB %d = %d, want it unchanged", explicitMB, got)
			}
			return
		}
		got := MemoryMB(nil, containers)
		if got%2 != 0 || got < 256 {
			t.Fatalf("MemoryMB(limits %d, %d) = %d, want a multiple of 2 and >= 256", firstLimitBytes, secondLimitBytes, got)
		}
		if got%memoryStepMB != 0 {
			t.Fatalf("MemoryMB(limits %d, %d) = %d, want a multiple of %d", firstLimitBytes, secondLimitBytes, got, memoryStepMB)
		}
		if firstLimitBytes <= 0 && secondLimitBytes <= 0 {
			if got != NoLimitMemoryMB {
				t.Fatalf("MemoryMB without positive limits = %d, want %d", got, NoLimitMemoryMB)
			}
			return
		}
		// The VM holds every limit plus the guest overhead, and wastes less than one step.
		total := new(resource.Quantity)
		for _, limit := range []int64{firstLimitBytes, secondLimitBytes} {
			if limit > 0 {
				total.Add(*resource.NewQuantity(limit, resource.BinarySI))
			}
		}
		needed := total.DeepCopy()
		needed.Add(*resource.NewQuantity(guestOverheadMB*mebibyte, resource.BinarySI))
		vmSize := memoryQuantity(got)
		if vmSize.Cmp(needed) < 0 && total.CmpInt64(math.MaxInt64) <= 0 {
			t.Fatalf("MemoryMB(limits %d, %d) = %d MiB, smaller than limits plus overhead %s", firstLimitBytes, secondLimitBytes, got, needed.String())
		}
		slack := vmSize.DeepCopy()
		slack.Sub(needed)
		if slack.CmpInt64(memoryStepMB*mebibyte) >= 0 {
			t.Fatalf("MemoryMB(limits %d, %d) = %d MiB, a full step or more above limits plus overhead %s", firstLimitBytes, secondLimitBytes, got, needed.String())
		}
		if fp := FootprintOf(v1alpha1.IsolationHyperV, nil, containers); fp.Memory.Cmp(vmSize) != 0 {
			t.Fatalf("FootprintOf memory %s disagrees with MemoryMB %d", fp.Memory.String(), got)
		}
	})
}
