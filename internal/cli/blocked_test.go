package cli

import (
	"bytes"
	"context"
	"path/filepath"
	"strings"
	"testing"

	"github.com/masflow/masflow/internal/pgtest"
	"github.com/masflow/masflow/internal/sample"
)

// A PostgreSQL error only an operator can fix (here: inserting into MAS's
// users is denied, SQLSTATE 42501) blocks the migration with the message
// instead of failing it; after the fix, `starter retry` completes it with
// exactly the rows of a clean run.
func TestDeniedPrivilegeBlocksUntilFixedAndRetried(t *testing.T) {
	ctx := context.Background()
	dir := t.TempDir()
	h := sample.ForTest(t, dir, sample.Options{Users: 300})
	pgtest.Exec(t, h.MASDSN, `CREATE FUNCTION masflow_test_deny() RETURNS trigger LANGUAGE plpgsql AS $$
		BEGIN RAISE EXCEPTION 'permission denied for table users' USING ERRCODE = '42501'; END $$;
		CREATE TRIGGER masflow_test_deny BEFORE INSERT ON users FOR EACH STATEMENT EXECUTE FUNCTION masflow_test_deny()`)
	common := []string{"--dev", "--dev-default-ports=false", "--state-dir", filepath.Join(dir, "state"),
		"--temporal-cli", filepath.Join("..", "..", "bin", "temporal"), "-c", h.Settings}
	run := func(want int, args ...string) string {
		t.Helper()
		var out, errOut bytes.Buffer
		if got := Main(ctx, append(args, common...), &out, &errOut); got != want {
			t.Fatalf("%v: exit %d, want %d\n%s%s", args, got, want, out.String(), errOut.String())
		}
		return out.String() + errOut.String()
	}
	steps := "--steps=advise,approve,import,reconcile"
	followed := make(chan string, 1)
	go func() {
		var out, errOut bytes.Buffer
		Main(ctx, append([]string{"migrate", steps, "--yes", "--ack", "guests_in_database,non_email_threepids"}, common...),
			&out, &errOut)
		followed <- out.String() + errOut.String()
	}()
	waitForPhase(t, common, "blocked")
	if status := run(ExitOK, "status"); !strings.Contains(status, "42501") || !strings.Contains(status, "permission denied") {
		t.Fatalf("status of the blocked run does not show the error:\n%s", status)
	}
	pgtest.Exec(t, h.MASDSN, `DROP TRIGGER masflow_test_deny ON users`) // the operator's fix
	run(ExitOK, "retry")
	if out := <-followed; !strings.Contains(out, "completed") || !strings.Contains(out, "users                 300        297") {
		t.Fatalf("after the retry:\n%s", out)
	}
}
