package main

import (
	"reflect"
	"testing"

	agentsv1alpha1 "github.com/hyperpool/hyperpool/api/v1alpha1"
)

func TestParseCredential(t *testing.T) {
	tests := []struct {
		spec    string
		want    agentsv1alpha1.SessionCredential
		wantErr bool
	}{
		{"git-token", agentsv1alpha1.SessionCredential{SecretName: "git-token"}, false},
		{"git-token:token", agentsv1alpha1.SessionCredential{SecretName: "git-token", Keys: []string{"token"}}, false},
		{"cloud:config, key@cloud/aws", agentsv1alpha1.SessionCredential{SecretName: "cloud", Keys: []string{"config", "key"}, TargetDir: "cloud/aws"}, false},
		{"git-token@git", agentsv1alpha1.SessionCredential{SecretName: "git-token", TargetDir: "git"}, false},
		{"", agentsv1alpha1.SessionCredential{}, true},
		{":token", agentsv1alpha1.SessionCredential{}, true},
		{"git-token:", agentsv1alpha1.SessionCredential{}, true},
		{"git-token:a,,b", agentsv1alpha1.SessionCredential{}, true},
		{"git-token@", agentsv1alpha1.SessionCredential{}, true},
	}
	for _, tt := range tests {
		t.Run(tt.spec, func(t *testing.T) {
			got, err := parseCredential(tt.spec)
			if (err != nil) != tt.wantErr {
				t.Fatalf("parseCredential(%q) error %v, want error %v", tt.spec, err, tt.wantErr)
			}
			if err == nil && !reflect.DeepEqual(got, tt.want) {
				t.Errorf("parseCredential(%q) = %+v, want %+v", tt.spec, got, tt.want)
			}
		})
	}
}
