package activities

import (
	"context"
	"errors"
	"fmt"
	"github.com/masflow/masflow/workflows/contract"
	"reflect"
	"strings"
	"testing"

	"github.com/jackc/pgx/v5/pgconn"
	"github.com/masflow/masflow/internal/backup"
	"github.com/masflow/masflow/internal/engine"
	"github.com/masflow/masflow/internal/homeserver"
	"github.com/masflow/masflow/internal/mapping"
	"github.com/masflow/masflow/internal/mas"
	"github.com/masflow/masflow/internal/synapse"
	"github.com/masflow/masflow/internal/verify"
	"go.temporal.io/sdk/temporal"
)

func TestClassify(t *testing.T) {
	cases := []struct {
		name      string
		err       error
		kind      string
		retryable bool
	}{
		{"unsupported MAS schema is final", fmt.Errorf("x: %w", mas.ErrUnsupportedSchema), contract.ErrTypeUnsupportedSchema, false},
		{"non-empty MAS is final", fmt.Errorf("x: %w", mas.ErrNotEmpty), contract.ErrTypeRefused, false},
		{"half-finished reference run is final", fmt.Errorf("x: %w", mas.ErrReferenceRun), contract.ErrTypeRefused, false},
		{"bad row in strict mode is final", fmt.Errorf("x: %w", mapping.ErrBadRow), contract.ErrTypeBadRow, false},
		{"bad request is final", fmt.Errorf("x: %w", engine.ErrBadRequest), contract.ErrTypeBadRequest, false},
		{"homeserver not ready yet is retried", fmt.Errorf("x: %w", homeserver.ErrNotYet), contract.ErrTypeNotYet, true},
		{"lock held is retried", fmt.Errorf("x: %w", mas.ErrLocked), contract.ErrTypeLocked, true},
		{"a dry run's lost snapshot is not bad data; the workflow starts again", fmt.Errorf("reading users: %w: %w",
			synapse.ErrSnapshotGone, &pgconn.PgError{Code: "22023"}), contract.ErrTypeSnapshotGone, false},
		{"a batch of an older snapshot is refused the same way", fmt.Errorf("x: %w", mas.ErrSnapshotMoved),
			contract.ErrTypeSnapshotGone, false},
		{"a step with no run to open is refused", fmt.Errorf("x: %w", mas.ErrNoRun), contract.ErrTypeRefused, false},
		{"a missing or old pg_dump is final", fmt.Errorf("backup.pg_dump: %w", backup.ErrTool), contract.ErrTypeTool, false},
		{"a missing mas-cli is final", fmt.Errorf("mas.cli: %w", homeserver.ErrMissingTool), contract.ErrTypeTool, false},
		{"a config Synapse refuses is final", fmt.Errorf("x: %w", homeserver.ErrConfigRefused), contract.ErrTypeConfigRefused, false},
		{"a verification still failing after the settle is final", &homeserver.VerifyFailed{}, contract.ErrTypeVerifyFailed, false},
		{"no room for the backup is retried", fmt.Errorf("backup.dir: %w", backup.ErrNoRoom), "", true},
		{"connection errors are retried", errors.New("dial tcp: connection refused"), "", true},
		{"a revoked privilege is final", fmt.Errorf("copying into users: %w", &pgconn.PgError{Code: "42501", Message: "permission denied for table users"}), contract.ErrTypeSQL, false},
		{"a bad password is final", fmt.Errorf("connecting: %w", &pgconn.PgError{Code: "28P01"}), contract.ErrTypeSQL, false},
		{"an undefined column is final", &pgconn.PgError{Code: "42703"}, contract.ErrTypeSQL, false},
		{"a duplicate, sanitized, is final", mas.Sanitize(&pgconn.PgError{Code: "23505", Detail: "Key (access_token)=(syt_secret)"}), contract.ErrTypeSQL, false},
		{"a missing database is final", &pgconn.PgError{Code: "3D000"}, contract.ErrTypeSQL, false},
		{"a serialization failure is retried", &pgconn.PgError{Code: "40001"}, "", true},
		{"a deadlock is retried", &pgconn.PgError{Code: "40P01"}, "", true},
		{"a server shutting down is retried", &pgconn.PgError{Code: "57P01"}, "", true},
		{"a lock timeout is retried", &pgconn.PgError{Code: "55P03"}, "", true},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			var app *temporal.ApplicationError
			if !errors.As(classify(c.err), &app) {
				t.Fatalf("not an application error")
			}
			if app.Type() != c.kind || app.NonRetryable() == c.retryable || !strings.HasPrefix(app.Error(), c.err.Error()) {
				t.Fatalf("type %q non-retryable %v message %q", app.Type(), app.NonRetryable(), app.Error())
			}
		})
	}
	if classify(nil) != nil {
		t.Fatal("nil must stay nil")
	}
}

func TestImportRefusesWhileTheHomeserverRuns(t *testing.T) {
	a := &ImportActivities{Runs: &engine.Runs{VerifyStopped: func(context.Context) error {
		return fmt.Errorf("http://127.0.0.1:8008/health answers: %w", homeserver.ErrNotYet)
	}}}
	_, err := a.PrepareImport(context.Background(), contract.PrepareInput{})
	var app *temporal.ApplicationError
	if !errors.As(err, &app) || app.Type() != contract.ErrTypeHomeserverRunning || !app.NonRetryable() ||
		!strings.Contains(app.Error(), "8008/health answers") {
		t.Fatalf("got %v", err)
	}
}

// A failed verification carries every probe as its details, for the
// workflow's result.
func TestClassifyCarriesTheProbes(t *testing.T) {
	probes := []verify.Probe{{Name: "login v3", Answered: "Synapse", Detail: "404", Fix: "route /login to MAS"}, {Name: "health", OK: true}}
	var app *temporal.ApplicationError
	if !errors.As(classify(fmt.Errorf("verify: %w", &homeserver.VerifyFailed{Report: verify.Report{Probes: probes}})), &app) {
		t.Fatal("not an application error")
	}
	var got []contract.Probe
	if err := app.Details(&got); err != nil || !reflect.DeepEqual(got, probesOf(probes)) || len(got) != 2 || got[0].Fix != probes[0].Fix {
		t.Fatalf("details %+v (%v), want %+v", got, err, probes)
	}
}

// A holder whose context ends (released, its workflow done, its worker
// stopping) ends benignly — kept out of the error logs — and retryable;
// any other end is classified as usual.
func TestHolderEnd(t *testing.T) {
	done, cancel := context.WithCancel(context.Background())
	cancel()
	var app *temporal.ApplicationError
	if err := holderEnd(done, context.Canceled); !errors.As(err, &app) ||
		app.Category() != temporal.ApplicationErrorCategoryBenign || app.NonRetryable() {
		t.Fatalf("released holder: %v", err)
	}
	if err := holderEnd(context.Background(), fmt.Errorf("x: %w", synapse.ErrWriterLockLost)); !errors.As(err, &app) ||
		app.Category() == temporal.ApplicationErrorCategoryBenign {
		t.Fatalf("lost lock: %v", err)
	}
}
