//go:build e2e

// Package e2e migrates a real Synapse — the pinned release `make e2e`
// installs into build/synapse-venv — with the whole workflow, every step
// performed by masflow through the command controller, and checks that
// the sessions clients hold still work. MAS itself cannot be installed
// here: a stand-in (masdouble_test.go) answers Synapse's token
// introspection from the migrated MAS database.
//
// Only `go test -tags e2e` builds this package (`make e2e`).
package e2e

import (
	"github.com/masflow/masflow/internal/pgtest"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/masflow/masflow/internal/advisor"
	"github.com/masflow/masflow/internal/cli"
)

func TestMain(m *testing.M) {
	if configFile := os.Getenv(playMASEnv); configFile != "" {
		os.Exit(playMAS(configFile))
	}
	os.Exit(m.Run())
}

// The whole migration of a live homeserver: backup, stop, mas-cli config
// sync, import, reconcile, reconfigure of homeserver.yaml and conf.d
// (checked by Synapse's own parser), start, verify, finish — and
// afterwards every session that should survive works, as the same user
// and device, through MAS.
func TestMigrationOfARealSynapse(t *testing.T) {
	hs := newHomeserver(t, synapseParser, asGenerated)
	p := prepare(t, hs, populateFull)
	original := readAll(hs.synapseConf.all())
	before := countRows(t, hs.db.AdminDSN)
	// Synapse serves on while the pre-copy copies it (a login) and while
	// the cut-over waits, scheduled far away: a catch-up pass applies
	// the login; a refresh and a logout follow it. Then the operator cuts
	// over and the delta applies those.
	out := hs.migrateWith(t, p.warnings, cli.ExitOK, []string{"--cutover-at", time.Now().Add(24 * time.Hour).UTC().Format(time.RFC3339)},
		func() {
			if hs.await(t, "the pre-copy under way", precopyUnderWay) {
				p.serveDuringPrecopy(hs.api)
			}
			if hs.await(t, "the pre-copy complete", precopyDone) && hs.await(t, "a catch-up pass", caughtUp) {
				p.serveAfterCatchUp(hs.api)
			}
			hs.cutover(t)
		})
	t.Log(out)
	// Until the checks below, only the verify step asked the stand-in.
	introspected := readFile(hs.mas.log)

	t.Run("every step ran", func(t *testing.T) {
		const want = "completed: steps advise, approve, backup, sync_schema, precopy, cutover, stop, import, reconcile, " +
			"reconfigure, start, verify, finish;"
		if !strings.Contains(out, want) {
			t.Errorf("the result lacks %q:\n%s", want, out)
		}
	})
	t.Run("the verify step tried every migrated token through MAS", func(t *testing.T) {
		checkVerifyProbes(t, introspected, p)
	})
	t.Run("through the generated routes every probe passes, in the result and on demand", func(t *testing.T) {
		checkEveryProbePasses(t, hs, out)
	})
	t.Run("Synapse runs with the rewritten config", func(t *testing.T) { checkRewrite(t, hs, original) })
	t.Run("auth_metadata names the stand-in's issuer", func(t *testing.T) { checkIssuer(t, hs) })
	t.Run("tokens", func(t *testing.T) { checkFates(t, hs, p) })
	t.Run("admin rights", func(t *testing.T) { checkAdminAPI(t, hs.api.in(t), p, "after the migration") })
	t.Run("passwords verify with MAS's rule", func(t *testing.T) { checkPasswords(t, hs, p) })
	t.Run("every device of an active user is a compat session", func(t *testing.T) { checkSessions(t, hs) })
	t.Run("emails, phone numbers, SSO links and user flags", func(t *testing.T) { checkAccounts(t, hs, p) })
	t.Run("the Synapse backup restores", func(t *testing.T) { checkBackup(t, hs, before) })
	t.Run("mas-cli config sync ran", func(t *testing.T) {
		got := readFile(filepath.Join(hs.dir, "mas-cli.log"))
		if want := "--config " + hs.masFile + " config sync"; !strings.Contains(got, want) {
			t.Errorf("mas-cli was called with %q, want %q", got, want)
		}
	})
	// Last: it changes MAS's config.
	t.Run("an issuer respelled without its trailing slash fails the issuer probe with both spellings", func(t *testing.T) {
		checkIssuerRespelled(t, hs)
	})
}

// synapseParser is homeserver.synapse_python: the venv's Python.
func synapseParser(_ *testing.T, _, python string) string { return python }

// The most frequent mistake of a cut-over: the reverse proxy still sends
// the compatibility layer to Synapse. Past the point of no return the
// migration never reports success: it ends needs_human, and the result
// names the /login route and the fix.
func TestMisroutedProxyNeedsAHuman(t *testing.T) {
	hs := newHomeserver(t, synapseParser, everythingToSynapse)
	p := prepare(t, hs, populateSmall)
	out := hs.migrate(t, p.warnings, cli.ExitMigrationFailed)
	for _, want := range []string{"needs_human", "verification probes failed",
		"FAILED: login v3: [Synapse] " + hs.publicURL + "_matrix/client/v3/login answered 404 M_UNRECOGNIZED",
		"FAILED: login r0: [Synapse]", "fix: route /_matrix/client/*/login (every version, v3 and r0",
		"FAILED: refresh: [Synapse]", "fix: route /_matrix/client/*/refresh"} {
		if !strings.Contains(out, want) {
			t.Errorf("the starter's output lacks %q:\n%s", want, out)
		}
	}
	if r := hs.api.call(http.MethodGet, "/_matrix/client/v1/auth_metadata", "", nil); r.status != http.StatusOK {
		t.Errorf("auth_metadata answered %d: past the point of no return Synapse keeps delegating (%v)", r.status, r.body)
	}
}

// A failure after the stop — Synapse's parser (here wrapped with a site
// policy) refuses the rewritten config — is compensated: the original
// config byte for byte, Synapse started the old way, MAS left stopped,
// and every old session works again on Synapse's own auth.
func TestRefusedRewriteRollsBackARealSynapse(t *testing.T) {
	hs := newHomeserver(t, refusingParser, asGenerated)
	p := prepare(t, hs, populateSmall)
	original := readAll(hs.synapseConf.all())
	out := hs.migrate(t, p.warnings, cli.ExitMigrationFailed)

	for _, want := range []string{"rolled_back", "site policy refuses matrix_authentication_service"} {
		if !strings.Contains(out, want) {
			t.Errorf("the starter's output lacks %q:\n%s", want, out)
		}
	}
	for path, was := range original {
		if got := readFile(path); got != was {
			t.Errorf("%s is not the original byte for byte:\n%s", path, got)
		}
		if _, err := os.Stat(path + ".pre-mas"); !os.IsNotExist(err) {
			t.Errorf("the .pre-mas copy of %s is left behind: %v", path, err)
		}
	}
	if r := hs.api.call(http.MethodGet, "/_matrix/client/v1/auth_metadata", "", nil); r.status != http.StatusNotFound {
		t.Errorf("auth_metadata answered %d, want 404: Synapse must run without delegation (%v)", r.status, r.body)
	}
	if answers(hs.mas.health) {
		t.Error("the MAS stand-in answers: after a rollback MAS stays stopped")
	}
	p.checkSynapseAuth(t, hs.api, "after the rollback")
	checkAdminAPI(t, hs.api, p, "after the rollback")
}

// refusingParser is homeserver.synapse_python for the rollback: Synapse's
// own parser, then a site policy refusing delegation. The current config
// passes (the advisor checks it before the downtime); the rewrite fails.
func refusingParser(t *testing.T, dir, python string) string {
	path := filepath.Join(dir, "synapse-config-check")
	body := "#!/bin/sh\n# Synapse's own parser, then the site's policy.\n" + shellQuote(python) + ` "$@" || exit $?
for arg in "$@"; do
  case "$arg" in
    *.yaml) if grep -q '^matrix_authentication_service:' "$arg"; then
        echo "site policy refuses matrix_authentication_service in $arg" >&2
        exit 1
      fi ;;
  esac
done
`
	if err := os.WriteFile(path, []byte(body), 0o755); err != nil {
		t.Fatal(err)
	}
	return path
}

// prepare populates the homeserver through its APIs and checks what the
// advisor says before the downtime: with a controller that rewrites the
// config, allow_guest_access: true is a warning (the reconfigure step
// removes it), and the warnings are exactly the population's.
func prepare(t *testing.T, hs *homeserver, populate func(*testing.T, *homeserver) *population) *population {
	t.Helper()
	start := time.Now()
	p := populate(t, hs)
	t.Logf("populated %d users, %d tokens in %s", len(p.accounts), len(p.tokens), time.Since(start).Round(time.Millisecond))
	p.checkSynapseAuth(t, hs.api, "before the migration")
	checkAdminAPI(t, hs.api, p, "before the migration")
	waitNoPendingDeactivation(t, hs.db.AdminDSN)
	code, rep := hs.advise(t)
	if code != advisor.ExitOK || rep.Count(advisor.Error) != 0 || !hasFinding(rep, "guest_access_enabled", advisor.Warning) {
		t.Fatalf("advise: exit %d, want %d with guest_access_enabled a warning and no error: %+v", code, advisor.ExitOK, rep.Findings)
	}
	// MAS's public base is plain http on loopback here.
	p.warnings = append(p.warnings, "guest_access_enabled", "mas_public_base_not_https")
	var warnings []string
	for _, f := range rep.Findings {
		if f.Severity == advisor.Warning {
			warnings = append(warnings, f.Code)
		}
	}
	slices.Sort(warnings)
	if want := slices.Sorted(slices.Values(p.warnings)); !slices.Equal(warnings, want) {
		t.Fatalf("advise warns %v, want %v: %+v", warnings, want, rep.Findings)
	}
	return p
}

func hasFinding(rep advisor.Report, code string, sev advisor.Severity) bool {
	return slices.ContainsFunc(rep.Findings, func(f advisor.Finding) bool { return f.Code == code && f.Severity == sev })
}

// waitNoPendingDeactivation waits for Synapse's background job to finish
// the deactivations (the advisor warns while rows are pending).
func waitNoPendingDeactivation(t *testing.T, dsn string) {
	t.Helper()
	for deadline := time.Now().Add(time.Minute); ; time.Sleep(200 * time.Millisecond) {
		var n int
		pgtest.QueryRow(t, dsn, `SELECT count(*) FROM users_pending_deactivation`, nil, &n)
		if n == 0 {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("%d deactivations still pending after a minute", n)
		}
	}
}
