package main

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	mrand "math/rand/v2"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/masflow/masflow/internal/devserver"
	"github.com/masflow/masflow/internal/mas"
	"github.com/masflow/masflow/internal/pgtest"
	"github.com/masflow/masflow/internal/sample"
	"github.com/masflow/masflow/workflows"
	"github.com/masflow/masflow/workflows/contract"
	"go.temporal.io/api/enums/v1"
	"go.temporal.io/api/history/v1"
	"go.temporal.io/api/workflowservice/v1"
	"go.temporal.io/sdk/client"
	"google.golang.org/protobuf/encoding/protojson"
)

// The end-to-end test of the durable migration: a real Temporal dev
// server, real PostgreSQL, the real worker binary. A clean run and a run
// whose worker is killed with SIGKILL at random points of the import must
// leave identical MAS databases; no secret may appear in any history.

const itUsers = 18000

func TestMigrationSurvivesWorkerKills(t *testing.T) {
	ctx := context.Background()
	admin, rolePassword := itRole(t)
	bin := buildWorker(t)
	salt := filepath.Join(t.TempDir(), "salt")
	if err := os.WriteFile(salt, []byte("integration-test-salt-0123456789"), 0o600); err != nil {
		t.Fatal(err)
	}
	clean := migrate(t, ctx, admin, bin, salt, 0, 1)
	// Two worker processes share the shards; one of them is killed three
	// times (and restarted), the other runs throughout.
	killed := migrate(t, ctx, admin, bin, salt, 3, 2)
	if killed.shardsByStable == 0 || killed.shardsByKilled == 0 {
		t.Errorf("import calls by the steady worker: %d, by the killed one: %d; both should take shards",
			killed.shardsByStable, killed.shardsByKilled)
	}
	for _, table := range mas.TargetTables {
		if clean.digests[table] != killed.digests[table] {
			t.Errorf("%s differs: clean %s, after kills %s", table, clean.digests[table], killed.digests[table])
		}
	}
	if !strings.HasPrefix(clean.digests["users"], fmt.Sprint(itUsers-itUsers/100, " ")) {
		t.Errorf("users digest %q: expected %d users written", clean.digests["users"], itUsers-itUsers/100)
	}
	if tag := os.Getenv("MASFLOW_WRITE_GOLDEN"); tag != "" {
		writeGolden(t, tag, clean.histories)
	}
	secrets := append(killed.secrets, rolePassword, "demo-pepper", "demo-shared-secret")
	for _, run := range []string{clean.scanned, killed.scanned} {
		for _, s := range secrets {
			if strings.Contains(run, s) {
				t.Fatalf("a secret (%s…) appears in the workflow history", s[:min(6, len(s))])
			}
		}
	}
	if len(killed.secrets) < 1000 || len(killed.histories) < 2 {
		t.Fatalf("vacuous secrets check: %d secrets, %d runs", len(killed.secrets), len(killed.histories))
	}
}

type outcome struct {
	digests   map[string]string
	histories []string // protojson of every run's history
	scanned   string   // every run's history as the secret scan reads it (historyText)
	secrets   []string // every token and password hash of the sample
	// ImportShard calls started by the worker that is never killed, and by
	// the other worker process(es).
	shardsByStable, shardsByKilled int
}

// migrate runs the migration of a fresh sample homeserver on a fresh dev
// server with `workers` worker processes, killing the first one `kills`
// times during the import.
func migrate(t *testing.T, ctx context.Context, admin, bin, salt string, kills, workers int) outcome {
	dir := t.TempDir()
	h, err := sample.Create(ctx, admin, filepath.Join(dir, "sample"), sample.Options{Users: itUsers, BatchSize: 50, SaltFile: salt})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { sample.Drop(admin, h) })
	c, hostPort, stopTemporal := devTemporal(t, ctx, dir)
	defer stopTemporal()
	w := startWorker(t, bin, h.Settings, hostPort, dir)
	defer func() { w.Process.Kill(); _ = w.Wait() }()
	stable := -1
	for range workers - 1 {
		o := startWorker(t, bin, h.Settings, hostPort, dir)
		stable = o.Process.Pid
		defer func() { o.Process.Kill(); _ = o.Wait() }()
	}

	run, err := c.ExecuteWorkflow(ctx, client.StartWorkflowOptions{ID: workflows.WorkflowID(sample.ServerName),
		TaskQueue: workflows.TaskQueue}, workflows.MigrationWorkflow, workflows.MigrationInput{
		Homeserver: sample.ServerName, Steps: []string{contract.StepAdvise, contract.StepImport, contract.StepReconcile},
		Import: workflows.ImportOptions{BatchSize: 50, Parallelism: 2, ShardsPerEntity: 2, ShardCallSeconds: 2,
			HeartbeatSeconds: 3, ContinueAsNewEvents: 60}.WithDefaults()}) // resolved, as the starter does
	if err != nil {
		t.Fatal(err)
	}
	seed := time.Now().UnixNano()
	rnd := mrand.New(mrand.NewPCG(uint64(seed), 0))
	for k := 0; k < kills; k++ {
		rows := waitForImport(t, ctx, c, run.GetID(), k)
		if k == 0 && workers > 1 {
			// The kills may well end every later call of this worker:
			// let it complete one first, so both workers take shards.
			waitForShardCall(t, ctx, c, run.GetID(), fmt.Sprintf("%d@", w.Process.Pid))
		}
		time.Sleep(time.Duration(100+rnd.IntN(700)) * time.Millisecond)
		t.Logf("kill %d (seed %d) after %d rows", k+1, seed, rows)
		_ = w.Process.Kill() // SIGKILL
		_ = w.Wait()
		w = startWorker(t, bin, h.Settings, hostPort, dir)
	}
	wctx, cancel := context.WithTimeout(ctx, 5*time.Minute)
	defer cancel()
	var res workflows.MigrationResult
	if err := run.Get(wctx, &res); err != nil {
		t.Fatalf("migration (kills=%d): %v", kills, err)
	}
	runs := runEvents(t, ctx, c, run.GetID())
	out := outcome{digests: pgtest.Digests(t, h.MASDSN, mas.TargetTables), histories: historiesJSON(t, runs),
		scanned: historyText(t, runs), secrets: sampleSecrets(t, ctx, h.SynapseDSN)}
	out.shardsByStable, out.shardsByKilled = shardCallsBy(runs, fmt.Sprintf("%d@", stable))
	return out
}

// shardCallsBy counts the ImportShard attempts started by workers whose
// identity starts with prefix, and by the others.
func shardCallsBy(runs [][]*history.HistoryEvent, prefix string) (mine, others int) {
	for _, events := range runs {
		shardEvents := map[int64]bool{}
		for _, e := range events {
			if a := e.GetActivityTaskScheduledEventAttributes(); a != nil && a.GetActivityType().GetName() == "ImportShard" {
				shardEvents[e.GetEventId()] = true
			}
			if a := e.GetActivityTaskStartedEventAttributes(); a != nil && shardEvents[a.GetScheduledEventId()] {
				if strings.HasPrefix(a.GetIdentity(), prefix) {
					mine++
				} else {
					others++
				}
			}
		}
	}
	return mine, others
}

// waitForShardCall waits until a worker whose identity starts with prefix
// has completed an ImportShard call.
func waitForShardCall(t *testing.T, ctx context.Context, c client.Client, id, prefix string) {
	deadline := time.Now().Add(time.Minute)
	for time.Now().Before(deadline) {
		if mine, _ := shardCallsBy(runEvents(t, ctx, c, id), prefix); mine > 0 {
			return
		}
		time.Sleep(200 * time.Millisecond)
	}
	t.Fatalf("worker %s completed no ImportShard call within a minute", prefix)
}

// waitForImport waits until the import is under way and has progressed
// since the previous kill; it fails if the import finishes first.
func waitForImport(t *testing.T, ctx context.Context, c client.Client, id string, kill int) int64 {
	deadline := time.Now().Add(2 * time.Minute)
	var first int64 = -1
	for time.Now().Before(deadline) {
		time.Sleep(200 * time.Millisecond)
		v, err := c.QueryWorkflow(ctx, id, "", workflows.QueryProgress)
		if err != nil {
			continue
		}
		var p workflows.Progress
		if v.Get(&p) != nil {
			continue
		}
		if slices.Contains(p.Done, contract.StepImport) {
			t.Fatalf("the import finished before kill %d: make it slower", kill+1)
		}
		if p.Phase != contract.StepImport {
			continue
		}
		if first < 0 {
			first = p.Rows
		} else if p.Rows > first {
			return p.Rows
		}
	}
	t.Fatalf("no import progress before kill %d", kill+1)
	return 0
}

// devTemporal starts a dev server in dir/temporal and a client of it;
// stop closes both.
func devTemporal(t *testing.T, ctx context.Context, dir string) (c client.Client, hostPort string, stop func()) {
	srv, err := devserver.Start(ctx, devserver.Options{Dir: filepath.Join(dir, "temporal"), CLI: temporalCLI(t),
		SearchAttributes: workflows.SearchAttributeKeys()})
	if err != nil {
		t.Fatal(err)
	}
	c, err = client.Dial(client.Options{HostPort: srv.HostPort})
	if err != nil {
		srv.Stop()
		t.Fatal(err)
	}
	return c, srv.HostPort, func() { c.Close(); srv.Stop() }
}

func startWorker(t *testing.T, bin, settings, hostPort, dir string) *exec.Cmd {
	cmd := exec.Command(bin, "-c", settings)
	cmd.Env = append(os.Environ(), "TEMPORAL_ADDRESS="+hostPort)
	logf, err := os.OpenFile(filepath.Join(dir, "worker.log"), os.O_CREATE|os.O_APPEND|os.O_WRONLY, 0o600)
	if err != nil {
		t.Fatal(err)
	}
	cmd.Stdout, cmd.Stderr = logf, logf
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	return cmd
}

// runEvents returns the history events of every run of the workflow
// (continue-as-new makes several).
func runEvents(t *testing.T, ctx context.Context, c client.Client, id string) [][]*history.HistoryEvent {
	resp, err := c.ListWorkflow(ctx, &workflowservice.ListWorkflowExecutionsRequest{Query: fmt.Sprintf("WorkflowId = '%s'", id)})
	if err != nil {
		t.Fatal(err)
	}
	var runs []string
	for _, e := range resp.Executions {
		runs = append(runs, e.Execution.RunId)
	}
	var out [][]*history.HistoryEvent
	for _, runID := range runs {
		it := c.GetWorkflowHistory(ctx, id, runID, false, enums.HISTORY_EVENT_FILTER_TYPE_ALL_EVENT)
		var events []*history.HistoryEvent
		for it.HasNext() {
			e, err := it.Next()
			if err != nil {
				t.Fatal(err)
			}
			events = append(events, e)
		}
		out = append(out, events)
	}
	return out
}

// historiesJSON renders each run's history as JSON.
func historiesJSON(t *testing.T, runs [][]*history.HistoryEvent) []string {
	var out []string
	for _, events := range runs {
		b, err := protojson.Marshal(&history.History{Events: events})
		if err != nil {
			t.Fatal(err)
		}
		out = append(out, string(b))
	}
	return out
}

func sampleSecrets(t *testing.T, ctx context.Context, dsn string) []string {
	conn, err := pgx.Connect(ctx, dsn)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close(ctx)
	rows, err := conn.Query(ctx, `SELECT token FROM access_tokens UNION ALL SELECT token FROM refresh_tokens
		UNION ALL SELECT password_hash FROM users WHERE password_hash IS NOT NULL`)
	if err != nil {
		t.Fatal(err)
	}
	out, err := pgx.CollectRows(rows, pgx.RowTo[string])
	if err != nil {
		t.Fatal(err)
	}
	return out
}

// writeGolden adds the histories to the golden ones, named after tag (a
// date): earlier versions' histories stay, so that they keep replaying.
func writeGolden(t *testing.T, tag string, hs []string) {
	dir := filepath.Join("..", "workflows", "testdata", "histories")
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	for i, h := range hs {
		if err := os.WriteFile(filepath.Join(dir, fmt.Sprintf("migration_%s_run%d.json", tag, i)), []byte(h), 0o644); err != nil {
			t.Fatal(err)
		}
	}
}

// itRole creates a superuser with a distinctive password, so the test can
// tell whether the DSN password leaked; it returns its admin URL.
func itRole(t *testing.T) (string, string) {
	admin, err := pgtest.AdminURL()
	if err != nil {
		t.Fatal(err)
	}
	var b [8]byte
	_, _ = rand.Read(b[:])
	role, pw := "masflow_it_"+hex.EncodeToString(b[:4]), "Pw"+hex.EncodeToString(b[:])
	pgtest.Exec(t, admin, fmt.Sprintf(`CREATE ROLE %s LOGIN SUPERUSER PASSWORD '%s'`, role, pw))
	t.Cleanup(func() {
		ctx := context.Background()
		if conn, err := pgx.Connect(ctx, admin); err == nil {
			rows, _ := conn.Query(ctx, `SELECT datname FROM pg_database d JOIN pg_roles r ON r.oid = d.datdba WHERE r.rolname = $1`, role)
			names, _ := pgx.CollectRows(rows, pgx.RowTo[string])
			for _, n := range names {
				_, _ = conn.Exec(ctx, "DROP DATABASE "+pgx.Identifier{n}.Sanitize()+" WITH (FORCE)")
			}
			_, _ = conn.Exec(ctx, "DROP ROLE IF EXISTS "+role)
			conn.Close(ctx)
		}
	})
	u, _ := url.Parse(admin)
	u.User = url.UserPassword(role, pw)
	return u.String(), pw
}

func buildWorker(t *testing.T) string {
	bin := filepath.Join(t.TempDir(), "worker")
	out, err := exec.Command("go", "build", "-o", bin, ".").CombinedOutput()
	if err != nil {
		t.Fatalf("building the worker: %v\n%s", err, out)
	}
	return bin
}

func temporalCLI(t *testing.T) string {
	p, err := filepath.Abs(filepath.Join("..", "bin", "temporal"))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(p); err != nil {
		t.Fatalf("no Temporal CLI at %s: run `make bin/temporal` (make test does)", p)
	}
	return p
}
