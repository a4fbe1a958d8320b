package cli

import (
	"context"
	"fmt"
	"io"

	"github.com/masflow/masflow/internal/advisor"
	"github.com/masflow/masflow/internal/config"
	"github.com/masflow/masflow/internal/runner"
	"github.com/spf13/pflag"
)

// openForAdvice loads the configs and opens the databases the checks need.
func openForAdvice(ctx context.Context, settingsFile string, fs *pflag.FlagSet) (*runner.Deps, error) {
	s, err := config.LoadSettings(settingsFile, fs)
	if err != nil {
		return nil, err
	}
	d, err := runner.LoadConfigs(s)
	if err != nil {
		return nil, err
	}
	return d, d.OpenDatabases(ctx, false)
}

// Advise runs the advisor: `starter advise [--output text|json] [--strict]`.
// Exit 0 without errors, 2 with errors, 3 with warnings under --strict,
// 1 when the checks could not run.
func Advise(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	fs := pflag.NewFlagSet("advise", pflag.ContinueOnError)
	fs.SetOutput(stderr)
	file := settingsFlags(fs)
	output := fs.StringP("output", "o", "text", "text or json")
	strict := fs.Bool("strict", false, "exit non-zero (3) on warnings too")
	phase := fs.String("phase", string(advisor.BeforeDowntime), "before_downtime (Synapse may run) or before_import (Synapse and MAS must be stopped)")
	if err := fs.Parse(args); err != nil {
		return ExitUsage
	}
	if *output != "text" && *output != "json" {
		fmt.Fprintf(stderr, "advise: --output must be text or json, not %q\n", *output)
		return ExitUsage
	}
	d, err := openForAdvice(ctx, *file, fs)
	if err != nil {
		fmt.Fprintln(stderr, "advise:", err)
		return ExitFail
	}
	defer d.Close()
	rep, err := advisor.Run(ctx, advisor.Input{Synapse: d.Synapse, MAS: d.MAS, SynapseDB: d.SynapseDB(), MASDB: d.MASPool,
		Phase: advisor.Phase(*phase), IgnoreMissingProviders: d.Settings.Import.IgnoreMissingProviders,
		SynapsePython: d.Settings.Homeserver.SynapsePython, Rewrites: d.Settings.Homeserver.Controller != "none"})
	if err != nil {
		fmt.Fprintln(stderr, "advise:", err)
		return ExitFail
	}
	write := rep.WriteText
	if *output == "json" {
		write = rep.WriteJSON
	}
	if err := write(stdout); err != nil {
		fmt.Fprintln(stderr, "advise:", err)
		return ExitFail
	}
	return rep.ExitCode(*strict)
}
