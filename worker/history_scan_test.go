package main

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/masflow/masflow/internal/sample"
	"github.com/masflow/masflow/internal/temporaltest"
	"github.com/masflow/masflow/workflows"
	"github.com/masflow/masflow/workflows/contract"
	"go.temporal.io/api/history/v1"
	"go.temporal.io/sdk/client"
)

// historyText is every run's history as the secret scan reads it: its
// JSON, where payloads are base64 (a secret in an activity's result or a
// failure's details would not show), followed by the data of every
// payload, decoded (temporaltest.HistoryText).
func historyText(t *testing.T, runs [][]*history.HistoryEvent) string {
	var b strings.Builder
	for _, h := range historiesJSON(t, runs) {
		b.WriteString(temporaltest.HistoryText(h))
	}
	return b.String()
}

// Synapse's parser quotes the config values it refuses. An advise whose
// parser refuses a config holding a secret fails the migration with the
// findings as the failure's details: the secret appears nowhere in the
// history, payloads decoded.
func TestAdviseKeepsTheParsersSecretsOutOfTheHistory(t *testing.T) {
	const planted = "planted-registration-secret-8675309"
	ctx := context.Background()
	admin, rolePassword := itRole(t)
	dir := t.TempDir()
	h, err := sample.Create(ctx, admin, filepath.Join(dir, "sample"), sample.Options{Users: 20})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { sample.Drop(admin, h) })
	parser := filepath.Join(dir, "python")
	// Prints every config file it is given (the planted line last), then refuses.
	writeFile(t, parser, 0o755, `#!/bin/sh
for a; do [ -f "$a" ] && cat "$a"; done; echo 'Error in configuration'; exit 1
`)
	appendFile(t, filepath.Join(dir, "sample", "homeserver.yaml"), "registration_shared_secret: "+planted+"\n")
	appendFile(t, h.Settings, "homeserver:\n  synapse_python: "+parser+"\n")

	c, hostPort, stopTemporal := devTemporal(t, ctx, dir)
	defer stopTemporal()
	w := startWorker(t, buildWorker(t), h.Settings, hostPort, dir)
	defer func() { _ = w.Process.Kill(); _ = w.Wait() }()
	run, err := c.ExecuteWorkflow(ctx, client.StartWorkflowOptions{ID: workflows.WorkflowID(sample.ServerName),
		TaskQueue: workflows.TaskQueue}, workflows.MigrationWorkflow, workflows.MigrationInput{
		Homeserver: sample.ServerName, Steps: []string{contract.StepAdvise}})
	if err != nil {
		t.Fatal(err)
	}
	if err := run.Get(ctx, nil); err == nil || !strings.Contains(err.Error(), "synapse_parser_failed") {
		t.Fatalf("the migration must fail on the parser's refusal, got %v", err)
	}
	text := historyText(t, runEvents(t, ctx, c, run.GetID()))
	for _, s := range []string{planted, rolePassword} {
		if strings.Contains(text, s) {
			t.Fatalf("a secret (%s…) appears in the workflow history", s[:6])
		}
	}
	if !strings.Contains(text, "registration_shared_secret: [redacted] | Error in configuration") {
		t.Fatalf("vacuous scan: the parser's output is not in the decoded history:\n%s", text)
	}
}

func writeFile(t *testing.T, path string, mode os.FileMode, body string) {
	if err := os.WriteFile(path, []byte(body), mode); err != nil {
		t.Fatal(err)
	}
}

func appendFile(t *testing.T, path, line string) {
	f, err := os.OpenFile(path, os.O_APPEND|os.O_WRONLY, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	if _, err := f.WriteString(line); err != nil {
		t.Fatal(err)
	}
}
