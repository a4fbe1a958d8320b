package cli

import (
	"context"
	"fmt"
	"io"

	"github.com/masflow/masflow/internal/advisor"
	"github.com/spf13/pflag"
)

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
	h, err := openHomeserver(ctx, *file, nil)
	if err != nil {
		fmt.Fprintln(stderr, "advise:", err)
		return ExitFail
	}
	defer h.Close()
	in := advisor.Input{Synapse: h.synapse, MAS: h.mas, MASDB: h.masPool, Phase: advisor.Phase(*phase),
		IgnoreMissingProviders: h.settings.Import.IgnoreMissingProviders}
	if h.reader != nil {
		in.SynapseDB = h.reader.Pool()
	}
	rep, err := advisor.Run(ctx, in)
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
