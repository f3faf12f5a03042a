package controllers

import (
	"context"
	"slices"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"

	agentsv1alpha1 "github.com/hyperpool/hyperpool/api/v1alpha1"
	"github.com/hyperpool/hyperpool/test/builders"
)

// poolPod is a pod of the class "pool", bound to session (none: warm) and scheduled on node
// (none: not yet).
func poolPod(session, node string) *builders.PodWrapper {
	p := builders.Pod("", "p").Label(agentsv1alpha1.ClassLabel, "pool").Node(node)
	if session != "" {
		p.Label(agentsv1alpha1.SessionLabel, session)
	}
	return p
}

func TestPodIndexesKeepBoundPodsApartFromTheWarmOnes(t *testing.T) {
	indexes := recordingIndexer{}
	if err := RegisterIndexes(context.Background(), indexes); err != nil {
		t.Fatal(err)
	}
	unlabelled := builders.Pod("", "other").Node("win-0").Obj()
	tests := []struct {
		name                   string
		pod                    *corev1.Pod
		warm, bound, boundNode []string
	}{
		{"warm", poolPod("", "win-0").Obj(), []string{"pool"}, nil, nil},
		{"warm, terminating", poolPod("", "win-0").Terminating(time.Now()).Obj(), []string{"pool"}, nil, nil},
		{"bound", poolPod("s1", "win-0").Obj(), nil, []string{"pool"}, []string{"pool/win-0"}},
		{"bound, not scheduled yet", poolPod("s1", "").Obj(), nil, []string{"pool"}, nil},
		{"bound, terminating: no load on its node", poolPod("s1", "win-0").Terminating(time.Now()).Obj(), nil, []string{"pool"}, nil},
		{"not hyperpool's", unlabelled, nil, nil, nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			for field, want := range map[string][]string{podWarmIndex: tt.warm, podBoundIndex: tt.bound, podBoundNodeIndex: tt.boundNode} {
				if got := indexes[field](tt.pod); !slices.Equal(got, want) {
					t.Errorf("%s = %q, want %q", field, got, want)
				}
			}
		})
	}
}
