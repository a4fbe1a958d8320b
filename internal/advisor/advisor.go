// Package advisor runs every pre-flight check of docs/checks.md before anyone
// stops the homeserver: Synapse's config alone, Synapse's config against
// MAS's, the Synapse database, the MAS database, and what is running. Each
// finding has a stable code, a severity, a message, a count where it is
// about rows, and a hint how to fix it. Errors stop a migration before
// any downtime; warnings must be acknowledged (by code) before it may
// proceed. No finding carries a secret.
package advisor

import (
	"context"
	"fmt"
	"net/http"
	"sort"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/masflow/masflow/internal/config"
	"github.com/masflow/masflow/internal/synapse"
)

// Severity ranks a finding.
type Severity string

// Severities, most serious first.
const (
	Error   Severity = "error"
	Warning Severity = "warning"
	Info    Severity = "info"
)

// Finding is one result of a check.
type Finding struct {
	Code     string   `json:"code"`
	Severity Severity `json:"severity"`
	Message  string   `json:"message"`
	// Count is the number of rows concerned, when the finding is about rows.
	Count *int64 `json:"count,omitempty"`
	// Estimated marks a Count taken from planner statistics, not counted.
	Estimated bool   `json:"estimated,omitempty"`
	Hint      string `json:"hint,omitempty"`
}

// Phase says when the advisor runs: runtime checks are errors only once
// the homeserver should be down.
type Phase string

// Phases of a migration.
const (
	// BeforeDowntime: Synapse is expected to be running; MAS may be.
	BeforeDowntime Phase = "before_downtime"
	// BeforeImport: Synapse and MAS must be stopped.
	BeforeImport Phase = "before_import"
)

// Input is what the checks look at. Nil databases skip their checks
// (with an info finding saying so).
type Input struct {
	Synapse   *config.Synapse
	MAS       *config.MAS
	SynapseDB *pgxpool.Pool
	MASDB     *pgxpool.Pool
	Phase     Phase
	// IgnoreMissingProviders lowers "provider missing in Synapse" to a
	// warning, as the import will skip such links.
	IgnoreMissingProviders bool
	// HTTP probes listeners; nil uses liveness.Client(nil).
	HTTP *http.Client
	// SynapsePython, when set, runs Synapse's own config parser.
	SynapsePython string
	// Rewrites: the reconfigure step rewrites Synapse's config (a
	// controller other than none), removing the keys Synapse refuses
	// alongside MAS; they are warnings then, not errors.
	Rewrites bool
	// LongTransaction is the age from which an open transaction is
	// reported (long_transactions); zero means ten minutes.
	LongTransaction time.Duration
	// MinDeltaVersion is the oldest PostgreSQL release (as
	// server_version_num) of Synapse's database on which a pre-copy's
	// delta finds the changes; zero means synapse.MinDeltaVersion.
	MinDeltaVersion int
}

// minDeltaVersion is MinDeltaVersion or its default.
func (in Input) minDeltaVersion() int {
	if in.MinDeltaVersion > 0 {
		return in.MinDeltaVersion
	}
	return synapse.MinDeltaVersion
}

// longTransaction is LongTransaction or its default.
func (in Input) longTransaction() time.Duration {
	if in.LongTransaction > 0 {
		return in.LongTransaction
	}
	return 10 * time.Minute
}

// Report is the advisor's result.
type Report struct {
	Phase    Phase     `json:"phase"`
	Findings []Finding `json:"findings"`
}

// Count returns how many findings have the severity.
func (r Report) Count(s Severity) int {
	n := 0
	for _, f := range r.Findings {
		if f.Severity == s {
			n++
		}
	}
	return n
}

// Codes returns the codes of the findings with the severity.
func (r Report) Codes(s Severity) []string {
	var out []string
	for _, f := range r.Findings {
		if f.Severity == s {
			out = append(out, f.Code)
		}
	}
	return out
}

// Unacknowledged returns the warnings whose codes are not in acked.
func (r Report) Unacknowledged(acked []string) []string {
	ok := map[string]bool{}
	for _, c := range acked {
		ok[c] = true
	}
	var out []string
	for _, c := range r.Codes(Warning) {
		if !ok[c] {
			out = append(out, c)
		}
	}
	return out
}

// group is a set of checks sharing their inputs.
type group func(ctx context.Context, in Input, add func(Finding)) error

// Run runs every check. An error means a check could not run (e.g. a
// database is unreachable); findings are what the checks found.
func Run(ctx context.Context, in Input) (Report, error) {
	if in.Phase == "" {
		in.Phase = BeforeDowntime
	}
	rep := Report{Phase: in.Phase}
	add := func(f Finding) { rep.Findings = append(rep.Findings, f) }
	for _, g := range []group{synapseConfigChecks, parserCheck, crossConfigChecks, cutoverChecks, synapseDBChecks, masDBChecks, runtimeChecks} {
		if err := g(ctx, in, add); err != nil {
			return rep, err
		}
	}
	sort.SliceStable(rep.Findings, func(i, j int) bool {
		return rank(rep.Findings[i].Severity) < rank(rep.Findings[j].Severity)
	})
	return rep, nil
}

func rank(s Severity) int {
	switch s {
	case Error:
		return 0
	case Warning:
		return 1
	}
	return 2
}

func count(n int64) *int64 { return &n }

// finding builds a Finding with a formatted message.
func finding(code string, sev Severity, hint, format string, args ...any) Finding {
	return Finding{Code: code, Severity: sev, Message: fmt.Sprintf(format, args...), Hint: hint}
}
