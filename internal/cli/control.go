package cli

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"strings"
	"time"

	"github.com/masflow/masflow/workflows"
	"github.com/spf13/pflag"
	"go.temporal.io/api/enums/v1"
	"go.temporal.io/sdk/client"
)

// queryProgress asks the workflow for its progress.
func queryProgress(ctx context.Context, c client.Client, id string) (workflows.Progress, error) {
	var p workflows.Progress
	v, err := c.QueryWorkflow(ctx, id, "", workflows.QueryProgress)
	if err != nil {
		return p, err
	}
	return p, v.Get(&p)
}

// progressLine renders progress on one line with a bar.
func progressLine(p workflows.Progress) string {
	var read, est int64
	for _, e := range p.Entities {
		read += e.Read
		est += max(e.Estimated, 0)
	}
	bar := strings.Repeat("·", 20)
	if est > 0 {
		n := int(min(20, 20*read/est))
		bar = strings.Repeat("█", n) + strings.Repeat("·", 20-n)
	}
	state := p.Phase
	if p.Paused {
		state += " (paused)"
	}
	if p.Blocked != nil {
		state += " in " + p.Blocked.Phase + ": " + p.Blocked.Error + " (fix it, then `starter retry`)"
	}
	return fmt.Sprintf("[%s] %-12s %d/%d source rows, %d MAS rows written", bar, state, read, est, p.Rows)
}

// Status prints a migration's progress: `starter status [-o json]`.
func Status(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	fs := pflag.NewFlagSet("status", pflag.ContinueOnError)
	fs.SetOutput(stderr)
	tf := addMigrationFlags(fs)
	output := fs.StringP("output", "o", "text", "text or json")
	watch := fs.BoolP("watch", "w", false, "keep printing the progress bar until the migration ends")
	if err := fs.Parse(args); err != nil {
		return ExitUsage
	}
	return withClient(ctx, tf, stderr, func(s *session) error {
		id := s.workflowID()
		if *watch {
			return watchProgress(ctx, s.client, id, stdout)
		}
		p, err := queryProgress(ctx, s.client, id)
		if err != nil {
			return err
		}
		if *output == "json" {
			enc := json.NewEncoder(stdout)
			enc.SetIndent("", "  ")
			return enc.Encode(p)
		}
		fmt.Fprintln(stdout, progressLine(p))
		fmt.Fprint(stdout, p.Markdown())
		return nil
	})
}

// watchProgress redraws the progress line every two seconds until the
// workflow closes.
func watchProgress(ctx context.Context, c client.Client, id string, w io.Writer) error {
	for {
		p, err := queryProgress(ctx, c, id)
		if err != nil {
			return err
		}
		fmt.Fprintf(w, "\r%s", progressLine(p))
		desc, err := c.DescribeWorkflowExecution(ctx, id, "")
		if err != nil {
			return err
		}
		if desc.WorkflowExecutionInfo.GetStatus() != enums.WORKFLOW_EXECUTION_STATUS_RUNNING {
			fmt.Fprintf(w, "\n%s\n", strings.ToLower(desc.WorkflowExecutionInfo.GetStatus().String()))
			return nil
		}
		select {
		case <-ctx.Done():
			fmt.Fprintln(w)
			return nil
		case <-time.After(2 * time.Second):
		}
	}
}

// Approve records the approval (or, with --deny, the denial) of the
// downtime through the workflow's approve update.
func Approve(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	fs := pflag.NewFlagSet("approve", pflag.ContinueOnError)
	fs.SetOutput(stderr)
	tf := addMigrationFlags(fs)
	req := workflows.ApproveRequest{Approve: true}
	deny := fs.Bool("deny", false, "deny instead (the migration ends before any downtime)")
	fs.StringVar(&req.Approver, "approver", currentUser(), "who decides")
	fs.StringVar(&req.Reason, "reason", "", "why (required to deny)")
	fs.StringSliceVar(&req.Acknowledge, "ack", nil, "warning codes you accept (every warning must be listed to approve)")
	if err := fs.Parse(args); err != nil {
		return ExitUsage
	}
	req.Approve = !*deny
	return withClient(ctx, tf, stderr, func(s *session) error {
		a, err := update[workflows.Approval](ctx, s, workflows.UpdateApprove, req)
		if err == nil {
			fmt.Fprintf(stdout, "recorded: approved=%v by %s at %s\n", a.Approved, a.Approver, a.At.Format(recordedAt))
		}
		return err
	})
}

// recordedAt is how a recorded decision's time is printed.
const recordedAt = "2006-01-02 15:04:05Z07:00"

// update sends a workflow update and waits for its result.
func update[R any](ctx context.Context, s *session, name string, args ...any) (R, error) {
	var out R
	h, err := s.client.UpdateWorkflow(ctx, client.UpdateWorkflowOptions{WorkflowID: s.workflowID(),
		UpdateName: name, Args: args, WaitForStage: client.WorkflowUpdateStageCompleted})
	if err != nil {
		return out, err
	}
	return out, h.Get(ctx, &out)
}

// Cutover opens the cut-over gate after the pre-copy through the
// workflow's cutover update: the downtime starts (at once, or as soon as
// a pre-copy still running completes).
func Cutover(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	fs := pflag.NewFlagSet("cutover", pflag.ContinueOnError)
	fs.SetOutput(stderr)
	tf := addMigrationFlags(fs)
	var req workflows.CutoverRequest
	fs.StringVar(&req.Approver, "approver", currentUser(), "who starts the downtime")
	fs.StringVar(&req.Reason, "reason", "", "why now (recorded in the history)")
	if err := fs.Parse(args); err != nil {
		return ExitUsage
	}
	return withClient(ctx, tf, stderr, func(s *session) error {
		c, err := update[workflows.Cutover](ctx, s, workflows.UpdateCutover, req)
		if err == nil {
			fmt.Fprintf(stdout, "recorded: cut-over by %s at %s\n", c.Approver, c.At.Format(recordedAt))
		}
		return err
	})
}

// sessionCommand builds a command that takes only the migration flags
// and does its work on a session with the migration's Temporal.
func sessionCommand(name string, fn func(ctx context.Context, s *session, stdout io.Writer) error) func(context.Context, []string, io.Writer, io.Writer) int {
	return func(ctx context.Context, args []string, stdout, stderr io.Writer) int {
		fs := pflag.NewFlagSet(name, pflag.ContinueOnError)
		fs.SetOutput(stderr)
		tf := addMigrationFlags(fs)
		if err := fs.Parse(args); err != nil {
			return ExitUsage
		}
		return withClient(ctx, tf, stderr, func(s *session) error { return fn(ctx, s, stdout) })
	}
}

// signalCommand builds retry.
func signalCommand(name, signal string) func(context.Context, []string, io.Writer, io.Writer) int {
	return sessionCommand(name, func(ctx context.Context, s *session, stdout io.Writer) error {
		if err := s.client.SignalWorkflow(ctx, s.workflowID(), "", signal, nil); err != nil {
			return err
		}
		fmt.Fprintf(stdout, "%s sent\n", signal)
		return nil
	})
}

// pauseCommand builds pause and resume: updates, applied in the order
// sent; each prints the state it left.
func pauseCommand(name, updateName string) func(context.Context, []string, io.Writer, io.Writer) int {
	return sessionCommand(name, func(ctx context.Context, s *session, stdout io.Writer) error {
		paused, err := update[bool](ctx, s, updateName)
		if err != nil {
			return err
		}
		state := "running"
		if paused {
			state = "paused (between batches)"
		}
		fmt.Fprintf(stdout, "%s: the import is %s\n", name, state)
		return nil
	})
}

// Cancel cancels the migration; before the point of no return the
// workflow restores Synapse's config and restarts it.
func Cancel(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	return sessionCommand("cancel", func(ctx context.Context, s *session, stdout io.Writer) error {
		if err := s.client.CancelWorkflow(ctx, s.workflowID(), ""); err != nil {
			return err
		}
		fmt.Fprintln(stdout, "cancellation requested")
		return nil
	})(ctx, args, stdout, stderr)
}

func withClient(ctx context.Context, tf *migrationFlags, stderr io.Writer, fn func(*session) error) int {
	s, err := tf.connect(ctx, false)
	if err != nil {
		fmt.Fprintln(stderr, err)
		return ExitFail
	}
	defer s.Close()
	if err := fn(s); err != nil {
		fmt.Fprintln(stderr, err)
		return ExitFail
	}
	return ExitOK
}

// Serve keeps the embedded Temporal dev server and a worker running until
// interrupted: the Web UI stays up, and status/approve/pause from other
// terminals reach it.
func Serve(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	fs := pflag.NewFlagSet("serve", pflag.ContinueOnError)
	fs.SetOutput(stderr)
	tf := addMigrationFlags(fs)
	if err := fs.Parse(args); err != nil {
		return ExitUsage
	}
	if !*tf.dev {
		fmt.Fprintln(stderr, "serve: only the embedded mode (--dev) has a server to keep running; on a cluster run bin/worker")
		return ExitUsage
	}
	s, err := tf.connect(ctx, true)
	if err != nil {
		fmt.Fprintln(stderr, "serve:", err)
		return ExitFail
	}
	defer s.Close()
	fmt.Fprintf(stdout, "embedded Temporal at %s, Web UI %s; Ctrl-C stops it (state stays in %s)\n",
		s.server.HostPort, s.server.UIURL, *tf.stateDir)
	<-ctx.Done()
	return ExitOK
}
