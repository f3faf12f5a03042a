package main

import (
	"fmt"
	"strings"

	"github.com/spf13/pflag"

	agentsv1alpha1 "github.com/hyperpool/hyperpool/api/v1alpha1"
	hpclient "github.com/hyperpool/hyperpool/pkg/client"
)

// credentialFlags are the --credential and --credentials-dir flags of the commands that open
// a session (open, mcp): the Secrets the session names, delivered by the client once it is
// Ready, with the caller's own identity.
type credentialFlags struct {
	specs []string
	dir   string
}

func (c *credentialFlags) addFlags(f *pflag.FlagSet) {
	f.StringArrayVar(&c.specs, "credential", nil, "a Secret of the namespace the session gets, as SECRET[:KEY,KEY...][@DIR] "+
		"(all its keys unless listed, into DIR under --credentials-dir); repeatable. The values are read with your "+
		"identity and sent on the exec's stdin, never in arguments or the pod spec")
	f.StringVar(&c.dir, "credentials-dir", "", "the session directory in the sandbox the credentials go to; it must exist "+
		"(default: the working directory of the sandbox's commands)")
}

// apply puts the credentials into the client's options.
func (c *credentialFlags) apply(opts *hpclient.Options) error {
	for _, spec := range c.specs {
		cred, err := parseCredential(spec)
		if err != nil {
			return err
		}
		opts.Credentials = append(opts.Credentials, cred)
	}
	opts.CredentialsDir = c.dir
	return nil
}

// parseCredential reads SECRET[:KEY,KEY...][@DIR]. The API server checks the names and the
// directory (no "..", not absolute) when the session is created.
func parseCredential(spec string) (agentsv1alpha1.SessionCredential, error) {
	rest, dir, hasDir := strings.Cut(spec, "@")
	secret, keys, hasKeys := strings.Cut(rest, ":")
	cred := agentsv1alpha1.SessionCredential{SecretName: secret, TargetDir: dir}
	switch {
	case secret == "":
		return cred, fmt.Errorf("--credential %q: no Secret name; write SECRET[:KEY,KEY...][@DIR], e.g. git-token:token@git", spec)
	case hasDir && dir == "":
		return cred, fmt.Errorf("--credential %q: empty directory after @; leave out @ for the session directory itself", spec)
	case hasKeys && keys == "":
		return cred, fmt.Errorf("--credential %q: empty key list after :; leave out : for all of the Secret's keys", spec)
	}
	if hasKeys {
		for _, k := range strings.Split(keys, ",") {
			if k = strings.TrimSpace(k); k == "" {
				return cred, fmt.Errorf("--credential %q: an empty key in %q", spec, keys)
			}
			cred.Keys = append(cred.Keys, strings.TrimSpace(k))
		}
	}
	return cred, nil
}
