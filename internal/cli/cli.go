// Package cli holds the operator commands of the starter binary, so that
// starter/main.go stays a dispatcher and the commands can be tested.
package cli

import (
	"context"
	"fmt"
	"io"
	"sort"
	"strings"

	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/masflow/masflow/internal/config"
	"github.com/masflow/masflow/internal/synapse"
	"github.com/masflow/masflow/workflows"
	"github.com/spf13/pflag"
)

// Exit codes shared by the commands (advise adds its own for findings).
const (
	ExitOK    = 0
	ExitFail  = 1 // could not run: bad config, unreachable database
	ExitUsage = 64
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
		{"pause", "pause the import between batches", signalCommand("pause", workflows.SignalPause)},
		{"resume", "resume a paused import", signalCommand("resume", workflows.SignalResume)},
		{"cancel", "cancel the migration (restores Synapse before the point of no return)", Cancel},
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
		fmt.Fprintf(&b, "  %-10s %s\n", c.Name, c.Summary)
	}
	b.WriteString("\nRun `starter <command> --help` for its flags.\n")
	fmt.Fprint(stderr, b.String())
	return ExitUsage
}

// settingsFlags registers the flags every command shares.
func settingsFlags(fs *pflag.FlagSet) *string {
	return fs.StringP("config", "c", "", "masflow settings file (default: only MASFLOW_* environment)")
}

// homeserver is the loaded configuration and open databases.
type homeserver struct {
	settings config.Settings
	synapse  *config.Synapse
	mas      *config.MAS
	reader   *synapse.Reader
	masPool  *pgxpool.Pool
}

func (h *homeserver) Close() {
	if h.reader != nil {
		h.reader.Close()
	}
	if h.masPool != nil {
		h.masPool.Close()
	}
}

// openHomeserver loads the settings, Synapse's and MAS's configs, and
// connects to both databases (Synapse's read-only).
func openHomeserver(ctx context.Context, settingsFile string, fs *pflag.FlagSet) (*homeserver, error) {
	s, err := config.LoadSettings(settingsFile, fs)
	if err != nil {
		return nil, err
	}
	h := &homeserver{settings: s}
	if h.synapse, err = config.LoadSynapse(s.Synapse.Config...); err != nil {
		return nil, err
	}
	if h.mas, err = config.LoadMAS(s.MAS.Config...); err != nil {
		return nil, err
	}
	if h.synapse.Database.Name == "psycopg2" {
		pc, err := h.synapse.PoolConfig()
		if err != nil {
			return nil, err
		}
		if h.reader, err = synapse.Open(ctx, pc); err != nil {
			return nil, err
		}
	}
	mc, err := h.mas.PoolConfig()
	if err != nil {
		h.Close()
		return nil, err
	}
	mc.ConnConfig.RuntimeParams["application_name"] = "masflow"
	if h.masPool, err = pgxpool.NewWithConfig(ctx, mc); err != nil {
		h.Close()
		return nil, fmt.Errorf("connecting to the MAS database: %w", err)
	}
	return h, nil
}
