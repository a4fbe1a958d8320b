package cli

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"time"

	"github.com/masflow/masflow/internal/config"
	"github.com/masflow/masflow/internal/devserver"
	"github.com/masflow/masflow/internal/runner"
	"github.com/masflow/masflow/workflows"
	"github.com/spf13/pflag"
	"go.temporal.io/sdk/client"
	"go.temporal.io/sdk/log"
	"go.temporal.io/sdk/worker"
	"go.uber.org/zap"
)

// migrationFlags are the flags of every command that reaches a migration:
// where Temporal is (or the embedded mode), which homeserver, dry run or
// not, and masflow's settings.
type migrationFlags struct {
	// defaultPorts: the embedded server prefers 7233/8233 (tests turn it
	// off to run side by side).
	defaultPorts *bool
	fs           *pflag.FlagSet
	settings     *string
	address      *string
	homeserver   *string
	dev          *bool
	stateDir     *string
	cli          *string
	dryRun       *bool
}

func addMigrationFlags(fs *pflag.FlagSet) *migrationFlags {
	defaultPorts := fs.Bool("dev-default-ports", true, "embedded server on 7233/8233 when free")
	_ = fs.MarkHidden("dev-default-ports")
	return &migrationFlags{
		defaultPorts: defaultPorts,
		fs:           fs,
		settings:     settingsFlags(fs),
		address:      fs.String("address", "", "Temporal frontend host:port (default: TEMPORAL_ADDRESS / client profile)"),
		homeserver:   fs.String("homeserver", "", "server_name of the homeserver (default: read from Synapse's config)"),
		dev:          fs.Bool("dev", false, "use the embedded Temporal dev server in --state-dir (no cluster needed)"),
		stateDir:     fs.String("state-dir", ".masflow", "state directory of the embedded mode"),
		cli:          fs.String("temporal-cli", "bin/temporal", "Temporal CLI binary the embedded mode runs"),
		dryRun: fs.Bool("dry-run", false, "a dry run: import into MAS without stopping Synapse, validate, then empty "+
			"the MAS tables; dry runs have their own workflow, which status, approve and cancel reach with --dry-run"),
	}
}

// session is a connection to Temporal, and in embedded mode the dev
// server and in-process worker it started.
type session struct {
	client     client.Client
	homeserver string
	dryRun     bool
	// attached is the PID of the starter whose embedded server this
	// session uses (0: none, or our own).
	attached int
	settings config.Settings
	server   *devserver.Server
	worker   worker.Worker
	deps     *runner.Deps
	log      *zap.Logger
}

// workflowID is the ID of the homeserver's migration, or of its dry run.
func (s *session) workflowID() string {
	if s.dryRun {
		return workflows.DryRunWorkflowID(s.homeserver)
	}
	return workflows.WorkflowID(s.homeserver)
}

func (s *session) Close() {
	if s.worker != nil {
		s.worker.Stop()
	}
	if s.client != nil {
		s.client.Close()
	}
	if s.deps != nil {
		s.deps.Close()
	}
	if s.server != nil {
		s.server.Stop()
	}
}

// connect dials Temporal. With --dev and embed, it starts the dev server
// and a worker in this process; with --dev alone it dials the dev server
// a running `starter migrate --dev` started.
func (f *migrationFlags) connect(ctx context.Context, embed bool) (*session, error) {
	s := &session{dryRun: *f.dryRun}
	var err error
	if s.settings, err = config.LoadSettings(*f.settings, f.fs); err != nil {
		return nil, err
	}
	if s.log, err = runner.NewLogger(s.settings.Worker.LogLevel); err != nil {
		return nil, err
	}
	if s.homeserver = *f.homeserver; s.homeserver == "" {
		syn, err := config.LoadSynapse(s.settings.Synapse.Config...)
		if err != nil {
			return nil, err
		}
		s.homeserver = syn.ServerName
	}
	address := *f.address
	if *f.dev && embed {
		err := s.embed(ctx, f)
		var inUse *devserver.InUseError
		switch {
		case errors.As(err, &inUse):
			// Another starter runs this state directory's server (and a
			// worker): attach to it rather than start a second one.
			s.Close()
			if address, err = devAddress(*f.stateDir); err != nil || !reachable(ctx, address) {
				return nil, inUse
			}
			s = &session{dryRun: s.dryRun, settings: s.settings, log: s.log, homeserver: s.homeserver, attached: inUse.PID}
		case err != nil:
			s.Close()
			return nil, err
		default:
			address = s.server.HostPort
		}
	} else if *f.dev {
		if address, err = devAddress(*f.stateDir); err != nil {
			return nil, err
		}
		if !reachable(ctx, address) {
			// No starter is running the embedded server: run it here
			// (queries need a worker too).
			if err := s.embed(ctx, f); err != nil {
				s.Close()
				return nil, err
			}
		}
	}
	if s.client == nil {
		if s.client, err = runner.Dial(ctx, address, s.log, nil); err != nil {
			s.Close()
			return nil, err
		}
	}
	return s, nil
}

// embed starts the dev server and an in-process worker.
func (s *session) embed(ctx context.Context, f *migrationFlags) error {
	var err error
	s.server, err = devserver.Start(ctx, devserver.Options{Dir: *f.stateDir, CLI: *f.cli,
		SearchAttributes: workflows.SearchAttributeKeys(), DefaultPorts: *f.defaultPorts})
	if err != nil {
		return err
	}
	if s.client, err = runner.Dial(ctx, s.server.HostPort, s.log, nil); err != nil {
		return err
	}
	if s.deps, err = runner.OpenDeps(ctx, s.settings); err != nil {
		return err
	}
	set, err := s.deps.Activities(s.log)
	if err != nil {
		return err
	}
	s.worker = runner.NewWorker(s.client, set, s.log, 30*time.Second)
	return s.worker.Start()
}

func reachable(ctx context.Context, address string) bool {
	c, err := client.Dial(client.Options{HostPort: address, Logger: log.NewStructuredLogger(slog.New(slog.DiscardHandler))})
	if err != nil {
		return false
	}
	defer c.Close()
	_, err = c.CheckHealth(ctx, &client.CheckHealthRequest{})
	return err == nil
}

// devAddress reads the embedded server's address from the state directory.
func devAddress(dir string) (string, error) {
	b, err := os.ReadFile(filepath.Join(dir, "ports.json"))
	if err != nil {
		return "", fmt.Errorf("no embedded Temporal state in %s (start one with `starter migrate --dev`): %w", dir, err)
	}
	var p struct {
		Frontend int `json:"frontend"`
	}
	if err := json.Unmarshal(b, &p); err != nil {
		return "", err
	}
	return fmt.Sprintf("127.0.0.1:%d", p.Frontend), nil
}
