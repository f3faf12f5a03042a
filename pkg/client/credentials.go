package client

import (
	"archive/tar"
	"bytes"
	"context"
	"fmt"
	"path"
	"slices"
	"strings"
	"time"

	corev1 "k8s.io/api/core/v1"

	agentsv1alpha1 "github.com/hyperpool/hyperpool/api/v1alpha1"
)

// DeliverCredentials writes the keys of the Secrets that the session names in
// spec.credentials into the sandbox, then sets the agents.hyperpool.io/credentials-delivered
// annotation, which the manager mirrors into the session's CredentialsDelivered condition.
//
// Each key arrives as the file dir/<targetDir>/<key>. dir is the session directory in the
// sandbox and must exist; empty is the working directory of the sandbox's commands.
//
// The Secrets are read with the client's own identity: a caller who cannot get one of them
// gets the API server's error, and nothing is written (every Secret and key is read before
// the first byte goes to the sandbox). The values travel as a tar archive on the exec's
// stdin, unpacked by the sandbox's tar (Options.Tar): never in exec arguments (which the
// audit log records), never in the pod spec or an environment variable. The files die with
// the sandbox's VM when the session ends. A session that names no credentials is left
// alone.
func (s *Session) DeliverCredentials(ctx context.Context, dir string) error {
	session := &agentsv1alpha1.AgentSession{}
	if err := s.client.kube.Get(ctx, keyOf(s.Namespace, s.Name), session); err != nil {
		return fmt.Errorf("credentials: get session %s: %w", s.Name, err)
	}
	if len(session.Spec.Credentials) == 0 {
		return nil
	}
	archive, names, err := s.credentialsArchive(ctx, session.Spec.Credentials)
	if err != nil {
		return err
	}
	args := []string{s.opts.Tar, "-x", "-f", "-"}
	if dir != "" {
		args = append(args, "-C", dir)
	}
	stderr := &limitedBuffer{limit: stderrLimit}
	code, err := s.Run(ctx, Command{Args: args, Stdin: bytes.NewReader(archive), Stderr: stderr})
	switch {
	case err != nil:
		return fmt.Errorf("credentials: deliver %s: %w", names, err)
	case code != 0:
		return fmt.Errorf("credentials: deliver %s into %q: %s exited with code %d: %s", names, dir, s.opts.Tar, code, strings.TrimSpace(stderr.String()))
	}
	patch := fmt.Sprintf(`{"metadata":{"annotations":{%q:%q}}}`, agentsv1alpha1.CredentialsDeliveredAnnotation, time.Now().UTC().Format(time.RFC3339))
	if err := s.client.kube.Patch(ctx, session, rawMergePatch(patch)); err != nil {
		return fmt.Errorf("credentials: delivered %s, but could not say so on session %s: %w", names, s.Name, err)
	}
	return nil
}

// credentialsArchive reads every named Secret and key and returns them as a tar archive,
// with the Secrets' names for messages.
func (s *Session) credentialsArchive(ctx context.Context, creds []agentsv1alpha1.SessionCredential) ([]byte, string, error) {
	var buf bytes.Buffer
	tw := tar.NewWriter(&buf)
	now := time.Now()
	dirs := map[string]bool{}
	names := make([]string, 0, len(creds))
	for _, c := range creds {
		names = append(names, c.SecretName)
		secret := &corev1.Secret{}
		if err := s.client.kube.Get(ctx, keyOf(s.Namespace, c.SecretName), secret); err != nil {
			return nil, "", fmt.Errorf("credentials: read Secret %s/%s as the caller (nothing was delivered): %w", s.Namespace, c.SecretName, err)
		}
		keys := c.Keys
		if len(keys) == 0 {
			for k := range secret.Data {
				keys = append(keys, k)
			}
			slices.Sort(keys)
		}
		target := path.Clean(c.TargetDir)
		if c.TargetDir == "" {
			target = ""
		}
		if target == ".." || strings.HasPrefix(target, "../") || path.IsAbs(target) || strings.ContainsAny(target, `\:`) {
			return nil, "", fmt.Errorf("credentials: Secret %s: targetDir %q leaves the session directory", c.SecretName, c.TargetDir)
		}
		// Parents first: tar creates each directory from its own entry.
		if target != "" {
			parts := strings.Split(target, "/")
			for i := range parts {
				d := strings.Join(parts[:i+1], "/")
				if d == "." || dirs[d] {
					continue
				}
				dirs[d] = true
				if err := tw.WriteHeader(&tar.Header{Typeflag: tar.TypeDir, Name: d + "/", Mode: 0o700, ModTime: now}); err != nil {
					return nil, "", err
				}
			}
		}
		for _, k := range keys {
			value, ok := secret.Data[k]
			if !ok {
				return nil, "", fmt.Errorf("credentials: Secret %s/%s has no key %q (nothing was delivered)", s.Namespace, c.SecretName, k)
			}
			if k == "." || strings.HasPrefix(k, "..") || strings.ContainsAny(k, `/\:`) {
				return nil, "", fmt.Errorf("credentials: Secret %s/%s: key %q is not a file name", s.Namespace, c.SecretName, k)
			}
			name := path.Join(target, k)
			if err := tw.WriteHeader(&tar.Header{Typeflag: tar.TypeReg, Name: name, Mode: 0o600, Size: int64(len(value)), ModTime: now}); err != nil {
				return nil, "", err
			}
			if _, err := tw.Write(value); err != nil {
				return nil, "", err
			}
		}
	}
	if err := tw.Close(); err != nil {
		return nil, "", err
	}
	return buf.Bytes(), "Secret(s) " + strings.Join(names, ", "), nil
}
