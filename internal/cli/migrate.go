package cli

import (
	"context"
	"errors"
	"fmt"
	"io"
	"slices"
	"strings"
	"time"

	"github.com/masflow/masflow/internal/runner"
	"github.com/masflow/masflow/internal/verify"
	"github.com/masflow/masflow/workflows"
	"github.com/masflow/masflow/workflows/contract"
	"github.com/spf13/pflag"
	"go.temporal.io/api/enums/v1"
	"go.temporal.io/api/serviceerror"
	"go.temporal.io/sdk/client"
	"go.temporal.io/sdk/converter"
	"go.temporal.io/sdk/temporal"
)

// Migrate starts the migration of the homeserver, or attaches to the one
// running; for one already completed it prints its result and exits 0.
func Migrate(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	fs := pflag.NewFlagSet("migrate", pflag.ContinueOnError)
	fs.SetOutput(stderr)
	tf := addMigrationFlags(fs)
	steps := fs.StringSlice("steps", nil, "run only these steps, e.g. advise,import,reconcile (default: all)")
	yes := fs.Bool("yes", false, "approve the downtime now (every warning must be listed in --ack); "+
		"without --cutover-at the cut-over after the pre-copy follows at once")
	cutoverAt := fs.String("cutover-at", "", "start the downtime after the pre-copy at this time (RFC 3339, "+
		"e.g. 2026-12-10T02:00:00Z); `starter cutover` may start it earlier")
	ack := fs.StringSlice("ack", nil, "warning codes to acknowledge with --yes")
	approver := fs.String("approver", currentUser(), "who approves (recorded in the history)")
	detach := fs.Bool("detach", false, "start and return at once instead of following progress")
	register := fs.Bool("register-search-attributes", false,
		"create masflow's search attributes on the namespace when missing (needs operator rights)")
	if err := fs.Parse(args); err != nil {
		return ExitUsage
	}
	dryRun := tf.dryRun
	if err := workflows.ValidateSteps(*dryRun, *steps); err != nil {
		fmt.Fprintln(stderr, "migrate: --steps:", err)
		return ExitUsage
	}
	at, err := parseCutoverAt(*cutoverAt, *dryRun)
	if err != nil {
		fmt.Fprintln(stderr, "migrate: --cutover-at:", err)
		return ExitUsage
	}
	s, err := tf.connect(ctx, true)
	if err != nil {
		fmt.Fprintln(stderr, "migrate:", err)
		return ExitFail
	}
	defer s.Close()
	if s.server != nil {
		fmt.Fprintf(stdout, "embedded Temporal at %s, Web UI %s\n", s.server.HostPort, s.server.UIURL)
	}
	if s.attached != 0 {
		fmt.Fprintf(stdout, "attached to the embedded Temporal that starter process %d runs\n", s.attached)
	}
	if !*tf.dev {
		if err := ensureSearchAttributes(ctx, s.client, namespace(), *register); err != nil {
			fmt.Fprintln(stderr, "migrate:", err)
			return ExitFail
		}
	}
	in := workflows.MigrationInput{Homeserver: s.homeserver, DryRun: *dryRun, Steps: *steps, PreApproved: *yes,
		Approver: *approver, AcknowledgedWarnings: *ack, Import: runner.ImportOptions(s.settings),
		HostTaskQueue: s.settings.Worker.HostTaskQueue, CutoverAt: at}
	run, err := startOrAttach(ctx, s, in)
	if err != nil {
		fmt.Fprintln(stderr, "migrate:", err)
		return ExitFail
	}
	fmt.Fprintf(stdout, "workflow %s (run %s)\n", run.GetID(), run.GetRunID())
	code := ExitOK
	if !*detach {
		code = follow(ctx, s, run, stdout, stderr)
	}
	if s.server != nil {
		fmt.Fprintln(stdout, "the embedded Temporal stops with this command; `starter serve --dev` keeps its Web UI up")
	}
	return code
}

// startOrAttach starts the workflow under the homeserver's ID (its dry
// run's with --dry-run): a running one is attached to, and a completed
// migration of the same steps is returned as is (running the same command
// again prints its result). Anything else closed — failed, cancelled, a
// completed run of other steps, a completed dry run — makes way for the
// new run.
func startOrAttach(ctx context.Context, s *session, in workflows.MigrationInput) (client.WorkflowRun, error) {
	id := s.workflowID()
	if done, err := completedMigration(ctx, s, id, in.Steps); err != nil || done != nil {
		return done, err
	}
	opts := client.StartWorkflowOptions{
		ID:                       id,
		TaskQueue:                workflows.TaskQueue,
		WorkflowIDReusePolicy:    enums.WORKFLOW_ID_REUSE_POLICY_ALLOW_DUPLICATE,
		WorkflowIDConflictPolicy: enums.WORKFLOW_ID_CONFLICT_POLICY_USE_EXISTING,
		Memo:                     map[string]any{workflows.MemoSteps: in.Steps},
		StaticSummary:            fmt.Sprintf("Migrate %s from Synapse auth to MAS", in.Homeserver),
		StaticDetails:            staticDetails(in),
	}
	if in.DryRun {
		opts.StaticSummary = fmt.Sprintf("Dry run: import %s into MAS, validate, discard", in.Homeserver)
	}
	run, err := s.client.ExecuteWorkflow(ctx, opts, workflows.MigrationWorkflow, in)
	var started *serviceerror.WorkflowExecutionAlreadyStarted
	if errors.As(err, &started) {
		return s.client.GetWorkflow(ctx, id, ""), nil
	}
	return run, err
}

// completedMigration returns the last run under id when it is a completed
// real migration of the same steps (nil otherwise).
func completedMigration(ctx context.Context, s *session, id string, steps []string) (client.WorkflowRun, error) {
	if s.dryRun {
		return nil, nil
	}
	desc, err := s.client.DescribeWorkflowExecution(ctx, id, "")
	var notFound *serviceerror.NotFound
	if errors.As(err, &notFound) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("looking up workflow %s: %w", id, err)
	}
	info := desc.GetWorkflowExecutionInfo()
	if info.GetStatus() != enums.WORKFLOW_EXECUTION_STATUS_COMPLETED {
		return nil, nil
	}
	var ran []string // no memo: started without --steps (by another client), taken as all steps
	if p, ok := info.GetMemo().GetFields()[workflows.MemoSteps]; ok {
		if err := converter.GetDefaultDataConverter().FromPayload(p, &ran); err != nil {
			return nil, fmt.Errorf("reading the steps of workflow %s: %w", id, err)
		}
	}
	if !sameSteps(ran, steps) {
		return nil, nil
	}
	return s.client.GetWorkflow(ctx, id, info.GetExecution().GetRunId()), nil
}

// parseCutoverAt reads --cutover-at: a time with its zone, for a
// migration (a dry run has no cut-over).
func parseCutoverAt(v string, dryRun bool) (time.Time, error) {
	if v == "" {
		return time.Time{}, nil
	}
	if dryRun {
		return time.Time{}, fmt.Errorf("a dry run has no cut-over")
	}
	at, err := time.Parse(time.RFC3339, v)
	if err != nil {
		return time.Time{}, fmt.Errorf("%q is not an RFC 3339 time with its zone (e.g. 2026-12-10T02:00:00Z): %w", v, err)
	}
	return at.UTC(), nil
}

// sameSteps compares two --steps lists as sets (empty: all steps).
func sameSteps(a, b []string) bool {
	a, b = slices.Clone(a), slices.Clone(b)
	slices.Sort(a)
	slices.Sort(b)
	return slices.Equal(slices.Compact(a), slices.Compact(b))
}

func staticDetails(in workflows.MigrationInput) string {
	steps := "all"
	if len(in.Steps) > 0 {
		steps = strings.Join(in.Steps, ", ")
	}
	return fmt.Sprintf("| option | value |\n|---|---|\n| homeserver | %s |\n| dry run | %v |\n| steps | %s |\n"+
		"| pre-approved | %v by %s |\n| batch size | %d |\n| parallelism | %d |\n",
		in.Homeserver, in.DryRun, steps, in.PreApproved, in.Approver, in.Import.BatchSize, in.Import.Parallelism)
}

// follow prints progress until the workflow ends, then its result, and
// returns the exit code of its outcome. Losing the Temporal server is not
// a failed migration: it says so and reconnects with backoff, for up to
// reconnectFor, and only then gives up (ExitUnreachable).
func follow(ctx context.Context, s *session, run client.WorkflowRun, stdout, stderr io.Writer) int {
	var lostSince time.Time
	backoff := time.Second
	for {
		var res workflows.MigrationResult
		err := watch(ctx, s, run, &res, stdout)
		switch kind := outcomeOf(ctx, err); kind {
		case outcomeCompleted:
			printResult(stdout, res)
			return ExitOK
		case outcomeInterrupted:
			fmt.Fprintln(stderr, "interrupted: the migration goes on in Temporal; run the same command to follow it again")
			return ExitFail
		case outcomeCancelled:
			fmt.Fprintln(stderr, "migration cancelled:", err)
			fmt.Fprintln(stderr, homeserverAfter(ctx, s, run.GetID()))
			return ExitCancelled
		case outcomeFailed:
			fmt.Fprintln(stderr, "migration failed:", err)
			fmt.Fprintln(stderr, homeserverAfter(ctx, s, run.GetID()))
			return ExitMigrationFailed
		}
		if lostSince.IsZero() {
			lostSince = time.Now()
		}
		if time.Since(lostSince) > reconnectFor {
			fmt.Fprintf(stderr, "the Temporal server has been unreachable for %s (%v); the migration may well go on: "+
				"run the same command to follow it again\n", reconnectFor, err)
			return ExitUnreachable
		}
		fmt.Fprintf(stderr, "lost the Temporal server (%v); the migration goes on there; reconnecting in %s\n", err, backoff)
		select {
		case <-ctx.Done():
			return ExitUnreachable
		case <-time.After(backoff):
		}
		backoff = min(2*backoff, 30*time.Second)
		run = s.client.GetWorkflow(ctx, run.GetID(), run.GetRunID())
	}
}

// reconnectFor bounds how long follow keeps reconnecting.
const reconnectFor = time.Hour

// Outcomes of following a workflow.
const (
	outcomeCompleted = iota
	outcomeFailed
	outcomeCancelled
	outcomeInterrupted
	outcomeUnreachable
)

// outcomeOf tells a migration's end (completed, failed, cancelled) from
// an interruption of ours and from a lost connection.
func outcomeOf(ctx context.Context, err error) int {
	var ended *temporal.WorkflowExecutionError
	var cancelled *temporal.CanceledError
	switch {
	case err == nil:
		return outcomeCompleted
	case ctx.Err() != nil:
		return outcomeInterrupted
	case errors.As(err, &ended) && errors.As(err, &cancelled):
		return outcomeCancelled
	case errors.As(err, &ended):
		return outcomeFailed
	}
	return outcomeUnreachable
}

// watch prints progress lines until the workflow ends (or the wait
// fails) and returns Get's error.
func watch(ctx context.Context, s *session, run client.WorkflowRun, res *workflows.MigrationResult, stdout io.Writer) error {
	done := make(chan error, 1)
	go func() { done <- run.Get(ctx, res) }()
	tick := time.NewTicker(2 * time.Second)
	defer tick.Stop()
	last := ""
	for {
		select {
		case err := <-done:
			return err
		case <-tick.C:
			if p, err := queryProgress(ctx, s.client, run.GetID()); err == nil {
				if line := progressLine(p); line != last {
					fmt.Fprintln(stdout, line)
					if p.Phase == contract.StepApprove {
						fmt.Fprintf(stdout, "waiting for approval: starter approve --approver NAME --reason WHY --ack %s (or --deny)\n",
							strings.Join(p.Warnings, ","))
					}
					last = line
				}
			}
		}
	}
}

func printResult(w io.Writer, r workflows.MigrationResult) {
	mode := ""
	if r.DryRun {
		mode = " (dry run)"
	}
	fmt.Fprintf(w, "migration of %s completed%s: steps %s; %d MAS rows written\n", r.Homeserver, mode,
		strings.Join(r.Steps, ", "), r.Rows)
	fmt.Fprintf(w, "  %-14s %10s %10s %10s %10s %10s\n", "entity", "read", "migrated", "skipped", "other pass", "MAS rows")
	for _, e := range r.Entities {
		fmt.Fprintf(w, "  %-14s %10d %10d %10d %10d %10d\n", e.Entity, e.Read, e.Migrated, e.Skipped, e.Elsewhere, e.Written)
	}
	fmt.Fprintln(w, "  read = migrated + skipped + other pass (refreshable tokens go with their refresh token);"+
		" MAS rows fan out: a user is a user and a password, a deviceless token a session and a token")
	if r.Approval != nil {
		fmt.Fprintf(w, "  approved by %s: %s\n", r.Approval.Approver, r.Approval.Reason)
	}
	if r.Report != "" {
		fmt.Fprintf(w, "  findings report (skipped and noted rows): %s\n", r.Report)
	}
	if len(r.Verification) > 0 {
		fmt.Fprintf(w, "  verification (%d probes, docs/homeserver.md):\n", len(r.Verification))
		for _, p := range r.Verification {
			fmt.Fprintf(w, "    %s\n", verify.Probe(p).Line())
		}
	}
}

// homeserverAfter says in what state a failed or cancelled migration left
// the homeserver, from its last MasflowPhase.
func homeserverAfter(ctx context.Context, s *session, id string) string {
	desc, err := s.client.DescribeWorkflowExecution(ctx, id, "")
	if err != nil {
		return "homeserver state unknown (" + err.Error() + "): run `starter status`"
	}
	phase := ""
	if p, ok := desc.GetWorkflowExecutionInfo().GetSearchAttributes().GetIndexedFields()[workflows.SAPhase.GetName()]; ok {
		_ = converter.GetDefaultDataConverter().FromPayload(p, &phase)
	}
	switch phase {
	case "rolled_back":
		return "homeserver: rolled_back — Synapse's original config is restored and Synapse is running the old way"
	case "needs_human":
		return "homeserver: needs_human — a step could not be undone automatically; follow docs/runbook.md, \"needs_human\""
	}
	return "homeserver: untouched (phase " + phase + "): the migration failed before Synapse was stopped"
}
