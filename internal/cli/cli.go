// Package cli holds the operator commands of the starter binary, so that
// starter/main.go stays a dispatcher and the commands can be tested.
package cli

import (
	"context"
	"fmt"
	"io"
	"os"
	"os/user"
	"sort"
	"strings"

	"github.com/masflow/masflow/internal/config"
	"github.com/masflow/masflow/internal/version"
	"github.com/masflow/masflow/workflows"
	"github.com/spf13/pflag"
)

// Exit codes shared by the commands (advise adds its own for findings).
const (
	ExitOK    = 0
	ExitFail  = 1 // could not run: bad config, unreachable database
	ExitUsage = 64
	// ExitMigrationFailed, ExitCancelled and ExitUnreachable: how a
	// followed migration ended (advise uses 2 and 3 for its findings).
	ExitMigrationFailed = 4
	ExitCancelled       = 5
	ExitUnreachable     = 6 // gave up reconnecting; the migration may go on
)

// Command is one starter subcommand.
type Command struct {
	Name    string
	Summary string
	Run     func(ctx context.Context, args []string, stdout, stderr io.Writer) int
}

// Commands lists the subcommands.
func Commands() []Command {
	return []Command{
		{"advise", "run every pre-flight check and print the findings", Advise},
		{"migrate", "start (or attach to) the migration; --dev runs it on an embedded Temporal", Migrate},
		{"status", "print the migration's progress", Status},
		{"approve", "approve (or --deny) the downtime", Approve},
		{"cutover", "start the downtime after the pre-copy (stop, delta, start)", Cutover},
		{"pause", "pause the import between batches", pauseCommand("pause", workflows.UpdatePause)},
		{"resume", "resume a paused import", pauseCommand("resume", workflows.UpdateResume)},
		{"retry", "run a blocked step again, once its cause is fixed", signalCommand("retry", workflows.SignalRetry)},
		{"cancel", "cancel the migration (restores Synapse before the point of no return)", Cancel},
		{"serve", "keep the embedded Temporal (--dev) and its Web UI running", Serve},
		{"version", "print masflow's release and commit", func(_ context.Context, _ []string, stdout, _ io.Writer) int {
			fmt.Fprintln(stdout, "masflow "+version.String())
			return 0
		}},
		{"verify", "probe the migrated homeserver as clients do, now (exit 0 when every probe passes)", Verify},
		{"proxy-config", "print the reverse proxy routes MAS needs (--format nginx|caddy|traefik|haproxy)", ProxyConfig},
		{"well-known", "print the client discovery document to publish", WellKnown},
	}
}

// Main dispatches to a subcommand and returns the exit code.
func Main(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	cmds := Commands()
	sort.Slice(cmds, func(i, j int) bool { return cmds[i].Name < cmds[j].Name })
	if len(args) > 0 {
		for _, c := range cmds {
			if c.Name == args[0] {
				return c.Run(ctx, args[1:], stdout, stderr)
			}
		}
	}
	var b strings.Builder
	b.WriteString("usage: starter <command> [flags]\n\ncommands:\n")
	for _, c := range cmds {
		fmt.Fprintf(&b, "  %-12s %s\n", c.Name, c.Summary)
	}
	b.WriteString("\nRun `starter <command> --help` for its flags.\n")
	fmt.Fprint(stderr, b.String())
	return ExitUsage
}

// settingsFlags registers the flags every command shares: the settings
// file and one flag per settings key.
func settingsFlags(fs *pflag.FlagSet) *string {
	config.AddSettingsFlags(fs)
	return fs.StringP("config", "c", "", "masflow settings file (default: only MASFLOW_* environment)")
}

// currentUser names the operator for approvals (recorded in history).
func currentUser() string {
	if u, err := user.Current(); err == nil && u.Username != "" {
		return u.Username
	}
	return os.Getenv("USER")
}
