package homeserver

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"

	"github.com/masflow/masflow/internal/backup"
	"github.com/masflow/masflow/internal/config"
	"github.com/masflow/masflow/internal/secret"
	"github.com/masflow/masflow/internal/synapseconf"
	"github.com/masflow/masflow/internal/wellknown"
)

// HostSteps performs backup, reconfigure and restore for the controllers
// that act (Managed.Steps). Its reports and errors can quote a program's
// output: they leave through Managed, which hides the configs' secrets in
// them.
type HostSteps struct {
	// Probes read the configs as they are now and reach the databases.
	Probes *Probes
	// Backup says where the backup goes; its Prefix, with the run's tag,
	// names the files.
	Backup backup.Options
	// MASEndpoint and MASSecretPath override where Synapse reaches MAS
	// and the file it reads the shared secret from.
	MASEndpoint, MASSecretPath string
	// SynapsePython, when set, checks the rewritten config with
	// Synapse's own parser before anything restarts.
	SynapsePython string
	// WellKnownFile, when set, is the client discovery document the web
	// server serves (homeserver.well_known_file): the reconfigure step
	// rewrites it, the restore puts it back.
	WellKnownFile string
	// Runner runs Synapse's config check.
	Runner runner
}

// TakeBackup dumps both databases and copies Synapse's config files under
// names of the run.
func (h *HostSteps) TakeBackup(ctx context.Context, run string, progress func(string)) (Report, error) {
	syn, err := h.Probes.synapse()
	if err != nil {
		return Report{}, err
	}
	dbs, err := h.databases(syn)
	if err != nil {
		return Report{}, err
	}
	o := h.Backup
	o.Prefix += "-" + run
	o.ConfigFiles = syn.Files
	o.Progress = func(p backup.Progress) { progress(fmt.Sprintf("dumping %s: %d bytes", p.Label, p.Bytes)) }
	res, err := backup.Run(ctx, o, dbs...)
	if err != nil {
		return Report{}, err
	}
	rep := Report{Note: fmt.Sprintf("%d files in %s, each verified and hashed", len(res.Artifacts), o.Dir)}
	for _, a := range res.Artifacts {
		reused := ""
		if a.Reused {
			reused = " (reused)"
		}
		rep.Details = append(rep.Details, fmt.Sprintf("%s: %s, %d bytes, sha256 %s%s", a.Label, a.Path, a.Bytes, a.SHA256, reused))
	}
	return rep, nil
}

// databases are Synapse's and MAS's, as pg_dump reaches them.
func (h *HostSteps) databases(syn *config.Synapse) ([]backup.Database, error) {
	sc, err := syn.PoolConfig()
	if err != nil {
		return nil, err
	}
	mc, err := h.Probes.MAS.PoolConfig()
	if err != nil {
		return nil, err
	}
	return []backup.Database{{Label: "synapse", ConnString: secret.String(sc.ConnString())},
		{Label: "mas", ConnString: secret.String(mc.ConnString())}}, nil
}

// Reconfigure writes the shared secret where Synapse will read it and
// rewrites Synapse's config for delegation; with SynapsePython it checks
// the result with Synapse's parser and puts the originals back when
// Synapse would refuse it.
func (h *HostSteps) Reconfigure(ctx context.Context) (Report, error) {
	syn, err := h.Probes.synapse()
	if err != nil {
		return Report{}, err
	}
	endpoint := cmp.Or(h.MASEndpoint, h.Probes.MAS.PublicBase)
	if endpoint == "" {
		return Report{}, fmt.Errorf("%v: MAS has no http.public_base: set homeserver.mas_endpoint to where Synapse reaches MAS", h.Probes.MAS.Files)
	}
	// The discovery document is checked before anything is written.
	doc, err := h.wellKnownDoc(syn)
	if err != nil {
		return Report{}, err
	}
	secretPath, wrote, err := h.sharedSecret(syn)
	if err != nil {
		return Report{}, err
	}
	changes, err := synapseconf.Rewrite(h.Probes.SynapsePaths, synapseconf.Delegation{Endpoint: endpoint, SecretPath: secretPath})
	if err != nil {
		return Report{}, err
	}
	rep := Report{Note: fmt.Sprintf("Synapse delegates to MAS at %s (%d changes)", endpoint, len(changes))}
	if wrote {
		rep.Details = append(rep.Details, "wrote MAS's shared secret to "+secretPath)
	}
	for _, c := range changes {
		rep.Details = append(rep.Details, c.String())
	}
	if err := h.writeWellKnown(doc, &rep); err != nil {
		return Report{}, err
	}
	if err := h.checkConfig(ctx); err != nil {
		if !errors.Is(err, ErrConfigRefused) {
			return Report{}, err // no verdict: the retry checks the rewrite again
		}
		if _, rerr := synapseconf.Restore(h.Probes.SynapsePaths); rerr != nil {
			return Report{}, fmt.Errorf("%w; putting the original config back failed too: %v", err, rerr)
		}
		return Report{}, fmt.Errorf("%w (the original config is back in place)", err)
	}
	return rep, nil
}

// sharedSecret is the file secret_path names: homeserver.mas_secret_path
// (written by masflow), else MAS's own matrix.secret_file, else
// mas_secret beside Synapse's first config file (written by masflow).
func (h *HostSteps) sharedSecret(syn *config.Synapse) (string, bool, error) {
	path := h.MASSecretPath
	if path == "" && h.Probes.MAS.SecretFile != "" {
		// Synapse must read it at start: a missing file would leave the
		// homeserver down behind a retried start.
		if _, err := os.Stat(h.Probes.MAS.SecretFile); err != nil {
			return "", false, fmt.Errorf("MAS's matrix.secret_file %s, which Synapse would read: %w; make it readable here "+
				"or set homeserver.mas_secret_path", h.Probes.MAS.SecretFile, err)
		}
		return h.Probes.MAS.SecretFile, false, nil
	}
	value, err := h.Probes.MAS.SharedSecret()
	if err != nil {
		return "", false, err
	}
	if path == "" {
		path = filepath.Join(filepath.Dir(syn.Files[0]), "mas_secret")
	}
	wrote, err := synapseconf.WriteSecret(path, value, syn.Files[0])
	return path, wrote, err
}

// checkConfig runs Synapse's own config parser over the rewritten files.
func (h *HostSteps) checkConfig(ctx context.Context) error {
	if h.SynapsePython == "" {
		return nil
	}
	argv := []string{h.SynapsePython, "-m", "synapse.config"}
	for _, p := range h.Probes.SynapsePaths {
		argv = append(argv, "-c", p)
	}
	_, err := h.Runner.run(ctx, "homeserver.synapse_python", argv...)
	var exit *exec.ExitError
	switch {
	case err == nil:
		return nil
	case errors.As(err, &exit):
		return fmt.Errorf("%w: %w", ErrConfigRefused, err)
	}
	// Not a verdict on the config (a timeout, a cancelled attempt, a
	// missing Python): the caller leaves the files as they are.
	return err
}

// wellKnownDoc is the discovery document for MAS, from the file served
// today (nil without homeserver.well_known_file).
func (h *HostSteps) wellKnownDoc(syn *config.Synapse) ([]byte, error) {
	if h.WellKnownFile == "" {
		return nil, nil
	}
	old, err := os.ReadFile(h.WellKnownFile)
	if err != nil {
		return nil, fmt.Errorf("homeserver.well_known_file: %w; create it (the file served at "+
			"https://<server_name>/.well-known/matrix/client), or unset the key", err)
	}
	doc, err := wellknown.Client(old, wellknown.BaseURL(syn))
	if err != nil {
		return nil, fmt.Errorf("homeserver.well_known_file %s: %w", h.WellKnownFile, err)
	}
	return doc, nil
}

// writeWellKnown writes the discovery document, keeping its original as
// <file>.pre-mas like Synapse's config.
func (h *HostSteps) writeWellKnown(doc []byte, rep *Report) error {
	if h.WellKnownFile == "" {
		return nil
	}
	changed, err := synapseconf.Replace(h.WellKnownFile, doc)
	if changed {
		rep.Details = append(rep.Details, h.WellKnownFile+": the client discovery document for MAS (original in "+
			h.WellKnownFile+".pre-mas)")
	}
	return err
}

// RestoreConfig puts back every file Reconfigure changed, byte for byte.
func (h *HostSteps) RestoreConfig(context.Context) (Report, error) {
	files, err := synapseconf.Restore(h.Probes.SynapsePaths)
	if err == nil && h.WellKnownFile != "" {
		var wk []string
		wk, err = synapseconf.Restore([]string{h.WellKnownFile})
		files = append(files, wk...)
	}
	if err != nil {
		return Report{}, err
	}
	return Report{Note: fmt.Sprintf("%d config files restored from their .pre-mas copies", len(files)), Details: files}, nil
}
