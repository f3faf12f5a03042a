package framework

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"testing"

	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	utilyaml "k8s.io/apimachinery/pkg/util/yaml"
)

// DecodeManifest splits a multi-document YAML (or JSON) manifest, as helm template,
// kustomize or the release bundle write it, into objects, skipping empty documents.
func DecodeManifest(t testing.TB, manifest []byte) []*unstructured.Unstructured {
	t.Helper()
	objs, err := decodeManifest(manifest)
	if err != nil {
		t.Fatal(err)
	}
	return objs
}

func decodeManifest(manifest []byte) ([]*unstructured.Unstructured, error) {
	dec := utilyaml.NewYAMLOrJSONDecoder(bytes.NewReader(manifest), 4096)
	var objs []*unstructured.Unstructured
	for {
		u := &unstructured.Unstructured{}
		err := dec.Decode(&u.Object)
		if errors.Is(err, io.EOF) {
			return objs, nil
		}
		if err != nil {
			return objs, fmt.Errorf("decoding the manifest: %w", err)
		}
		if len(u.Object) > 0 {
			objs = append(objs, u)
		}
	}
}
