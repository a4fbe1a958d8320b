// Package mapping turns Synapse rows into MAS rows (docs/mapping.md). It is
// pure: the run's fixed "now", its salt and the provider map are inputs,
// and nothing here reads a clock, a database or a random source.
package mapping

import (
	"errors"
	"fmt"
	"time"

	"github.com/masflow/masflow/internal/mas"
)

// Source table names, as they appear in findings.
const (
	TableUsers         = "users"
	TableThreepids     = "user_threepids"
	TableExternalIDs   = "user_external_ids"
	TableDevices       = "devices"
	TableAccessTokens  = "access_tokens"
	TableRefreshTokens = "refresh_tokens"
	guestDeviceID      = "guest_device"
	mediumEmail        = "email"
	kindUser           = "user"
	kindPassword       = "user_password"
	kindEmail          = "user_email"
	kindLink           = "upstream_oauth_link"
	kindSession        = "compat_session"
	kindDevicelessSess = "compat_session_deviceless"
	kindAccessToken    = "compat_access_token"
	kindRefreshToken   = "compat_refresh_token"
)

// Run holds what is fixed for a whole migration run.
type Run struct {
	// ServerName is Synapse's server_name (= MAS matrix.homeserver).
	ServerName string
	// Now is the run's single "now", recorded when the run started.
	Now time.Time
	// Salt keys the hash that makes IDs deterministic.
	Salt []byte
	// Providers maps a Synapse auth_provider (e.g. "oidc-google") to the
	// MAS upstream provider ID configured with that synapse_idp_id.
	Providers map[string]mas.ID
	// IgnoreMissingProviders skips links of unmapped providers instead of
	// failing.
	IgnoreMissingProviders bool
	// Strict aborts on the first bad row instead of skipping it.
	Strict bool
}

// ErrBadRow is wrapped by every error that aborts a batch because of one
// source row; errors.Is(err, ErrBadRow) classifies it as not retryable.
var ErrBadRow = errors.New("inconsistent source row")

// Mapper applies the mapping rules for one run.
type Mapper struct {
	run Run
	ids *ids
}

// New validates the run constants and returns a Mapper.
func New(run Run) (*Mapper, error) {
	switch {
	case run.ServerName == "":
		return nil, errors.New("mapping: server name is empty (set server_name in homeserver.yaml)")
	case run.Now.IsZero():
		return nil, errors.New("mapping: the run's fixed \"now\" is not set")
	case len(run.Salt) < 16:
		return nil, errors.New("mapping: the run's ID salt must be at least 16 bytes")
	}
	return &Mapper{run: run, ids: newIDs(run.Salt)}, nil
}

// Batch accumulates the output of mapping one batch of source rows.
type Batch struct {
	Rows     mas.Rows
	Findings []mas.Finding
	// Read counts the source rows given to the mapper.
	Read int
	// Elsewhere counts, per reason, rows another entity's pass writes (no
	// report line: nothing is lost or changed), so that every row read is
	// still accounted for.
	Elsewhere map[Reason]int64
}

// elsewhere counts a row that another entity's pass writes.
func (b *Batch) elsewhere(r Reason) error {
	if b.Elsewhere == nil {
		b.Elsewhere = map[Reason]int64{}
	}
	b.Elsewhere[r]++
	return nil
}

// skip records a skipped row; in strict mode a bad row aborts instead.
func (m *Mapper) skip(b *Batch, table, key string, r Reason) error {
	if m.run.Strict && r.Bad() {
		return fmt.Errorf("%s row %s: %s (strict mode: fix the row in Synapse or run without strict mode to skip it): %w",
			table, key, r, ErrBadRow)
	}
	b.Findings = append(b.Findings, mas.Finding{SourceTable: table, Key: key, Reason: string(r), Skipped: true})
	return nil
}

// notice records a row written with a reported fallback.
func (b *Batch) notice(table, key string, r Reason) {
	b.Findings = append(b.Findings, mas.Finding{SourceTable: table, Key: key, Reason: string(r)})
}

// creation converts users.creation_ts (seconds, nullable) to a time,
// falling back to the run's "now".
func (m *Mapper) creation(ts *int64) time.Time {
	if ts == nil {
		return m.run.Now
	}
	return time.Unix(*ts, 0).UTC()
}

// millis converts a nullable Synapse millisecond timestamp, with fallback.
func millis(ms *int64, fallback time.Time) time.Time {
	if ms == nil {
		return fallback
	}
	return time.UnixMilli(*ms).UTC()
}

// millisPtr converts a nullable millisecond timestamp to a nullable time.
func millisPtr(ms *int64) *time.Time {
	if ms == nil {
		return nil
	}
	t := time.UnixMilli(*ms).UTC()
	return &t
}

// userID is the MAS ID of the user with this localpart and creation time.
func (m *Mapper) userID(localpart string, created time.Time) mas.ID {
	return m.ids.id(created, kindUser, localpart)
}

// localOf checks an MXID belongs to this homeserver and returns its
// localpart, or the reason it does not.
func (m *Mapper) localOf(mxid string) (string, Reason) {
	local, server, err := ParseMXID(mxid)
	if err != nil {
		return "", ReasonInvalidMXID
	}
	if server != m.run.ServerName {
		return "", ReasonForeignServer
	}
	return local, ""
}
