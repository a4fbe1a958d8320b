package cli

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"strings"

	"github.com/masflow/masflow/internal/config"
	"github.com/masflow/masflow/internal/proxyconf"
	"github.com/masflow/masflow/internal/runner"
	"github.com/masflow/masflow/internal/wellknown"
	"github.com/spf13/pflag"
)

// ExitProbesFailed is `starter verify`'s exit code when a probe failed.
const ExitProbesFailed = 2

// loadConfigs reads the settings and both configs (no database).
func loadConfigs(settingsFile string, fs *pflag.FlagSet) (*runner.Deps, error) {
	s, err := config.LoadSettings(settingsFile, fs)
	if err != nil {
		return nil, err
	}
	return runner.LoadConfigs(s)
}

// Verify runs the verify step's probes once, now: `starter verify -c …
// [-o json]`, any time after the cut-over. Exit 0 when every probe
// passes, 2 when one failed, 1 when they could not run.
func Verify(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	fs := pflag.NewFlagSet("verify", pflag.ContinueOnError)
	fs.SetOutput(stderr)
	file := settingsFlags(fs)
	output := fs.StringP("output", "o", "text", "text or json")
	if err := fs.Parse(args); err != nil {
		return ExitUsage
	}
	if *output != "text" && *output != "json" {
		fmt.Fprintf(stderr, "verify: --output must be text or json, not %q\n", *output)
		return ExitUsage
	}
	d, err := openForAdvice(ctx, *file, fs)
	if err != nil {
		fmt.Fprintln(stderr, "verify:", err)
		return ExitFail
	}
	defer d.Close()
	rep, err := d.Probes().Probe(ctx)
	if err != nil {
		fmt.Fprintln(stderr, "verify:", err)
		return ExitFail
	}
	if *output == "json" {
		enc := json.NewEncoder(stdout)
		enc.SetIndent("", "  ")
		err = enc.Encode(rep)
	} else {
		err = rep.WriteText(stdout)
	}
	switch {
	case err != nil:
		fmt.Fprintln(stderr, "verify:", err)
		return ExitFail
	case len(rep.Failed()) > 0:
		return ExitProbesFailed
	}
	return ExitOK
}

// ProxyConfig prints the reverse proxy routes of the compatibility
// layer: `starter proxy-config -c … --format nginx|caddy|traefik|haproxy`.
func ProxyConfig(_ context.Context, args []string, stdout, stderr io.Writer) int {
	fs := pflag.NewFlagSet("proxy-config", pflag.ContinueOnError)
	format := fs.String("format", "nginx", strings.Join(proxyconf.Formats, ", "))
	var o proxyconf.Options
	fs.StringVar(&o.SynapseUpstream, "synapse-upstream", "", "host:port the proxy reaches Synapse at (default: its listener with the client resource)")
	fs.StringVar(&o.MASUpstream, "mas-upstream", "", "host:port the proxy reaches MAS at (default: its listener with the compat resource)")
	fs.StringVar(&o.CertFile, "tls-cert", "", "TLS certificate of the https sites (HAProxy: one PEM with the key)")
	fs.StringVar(&o.KeyFile, "tls-key", "", "TLS key of the https sites")
	return printFromConfigs(fs, args, stdout, stderr, func(d *runner.Deps, w io.Writer) error {
		p, err := proxyconf.FromConfigs(d.Synapse, d.MAS, o)
		if err != nil {
			return err
		}
		return proxyconf.Render(w, *format, p)
	})
}

// WellKnown prints the client discovery document to publish before the
// downtime: `starter well-known -c …`; with homeserver.well_known_file
// set, that file's other keys are kept.
func WellKnown(_ context.Context, args []string, stdout, stderr io.Writer) int {
	fs := pflag.NewFlagSet("well-known", pflag.ContinueOnError)
	return printFromConfigs(fs, args, stdout, stderr, func(d *runner.Deps, w io.Writer) error {
		var existing []byte
		if path := d.Settings.Homeserver.WellKnownFile; path != "" {
			var err error
			if existing, err = os.ReadFile(path); err != nil {
				return fmt.Errorf("homeserver.well_known_file: %w", err)
			}
		}
		doc, err := wellknown.Client(existing, wellknown.BaseURL(d.Synapse))
		if err == nil {
			_, err = w.Write(doc)
		}
		return err
	})
}

// printFromConfigs runs a command that prints what it derives from the
// settings and both configs (no database).
func printFromConfigs(fs *pflag.FlagSet, args []string, stdout, stderr io.Writer, emit func(*runner.Deps, io.Writer) error) int {
	fs.SetOutput(stderr)
	file := settingsFlags(fs)
	if err := fs.Parse(args); err != nil {
		return ExitUsage
	}
	d, err := loadConfigs(*file, fs)
	if err == nil {
		err = emit(d, stdout)
	}
	if err != nil {
		fmt.Fprintf(stderr, "%s: %v\n", fs.Name(), err)
		return ExitFail
	}
	return ExitOK
}
