package synapse

import (
	"context"
	"fmt"
	"slices"

	"github.com/jackc/pgx/v5"
)

// Pages of threepids, SSO links, devices and access tokens are ordered by
// user_id first, so each
// covers a narrow span of users [lo, hi]. Their owners, devices and session
// times are read as three range scans over that span (one index range
// each) and matched in Go, instead of one index probe per row: the per-row
// probes made these pages cost 13 µs per token at a million users. The
// spans of successive pages do not overlap (beyond one boundary user), so
// the whole import reads each of these rows about once; rows of the span
// that no page row asks for are dropped while scanning, keeping memory
// bounded by the page (docs/architecture.md, "Reads").

// span is the users a user-ordered page covers: the range lo..hi, or,
// for a page of chosen users (Range.Users), exactly those (users: a
// range over them would cover most of the table).
type span struct {
	lo, hi string
	users  []string
}

// args are a span query's arguments: the range's bounds, or the users.
func (sp span) args() []any {
	if sp.users != nil {
		return []any{sp.users}
	}
	return []any{sp.lo, sp.hi}
}

// pick is the range form of a span query, or the form for chosen users.
func (sp span) pick(inRange, ofUsers string) string {
	if sp.users != nil {
		return ofUsers
	}
	return inRange
}

// devKey names a device.
type devKey struct{ user, device string }

// ownersInSpanSQL reads the users of a span ($1, $2) by users_name_key,
// keyed by their own name.
const ownersInSpanSQL = `SELECT name, name, COALESCE(admin, 0) <> 0, COALESCE(is_guest, 0) <> 0,
    COALESCE(deactivated, 0) <> 0, appservice_id, creation_ts
  FROM users WHERE name >= $1 AND name <= $2`

// devicesInSpanSQL reads the devices of a span by device_uniqueness;
// devicesOfUsersSQL those of chosen users.
const (
	devicesInSpanSQL  = `SELECT user_id, device_id, hidden FROM devices WHERE user_id >= $1 AND user_id <= $2`
	devicesOfUsersSQL = `SELECT user_id, device_id, hidden FROM devices WHERE user_id = ANY($1::text[])`
)

// ownersOfUsersSQL reads chosen users by users_name_key.
const ownersOfUsersSQL = `SELECT name, name, COALESCE(admin, 0) <> 0, COALESCE(is_guest, 0) <> 0,
    COALESCE(deactivated, 0) <> 0, appservice_id, creation_ts
  FROM users WHERE name = ANY($1::text[])`

// sessionTokensSQL lists the last_validated of the tokens a device's
// session takes its created_at from (docs/mapping.md, "Devices and sessions"): its
// non-puppet, non-refreshable tokens, and the access tokens of its refresh
// pairs (same user and device) whose successor is unused. The minimum per
// device is taken in Go. Refresh lookups are LATERAL … LIMIT 1 probes:
// left to itself the planner hashes all of refresh_tokens for every page.
// The users are chosen by the WHERE clause appended.
var sessionTokensSQL = `SELECT a.user_id, a.device_id, a.last_validated
  FROM access_tokens a` + refreshLookups("a") + `
 WHERE a.device_id IS NOT NULL AND a.last_validated IS NOT NULL AND ` + sessionTokenCond("a") + ` AND `

// refreshLookups joins, for the access token aliased a, its refresh token
// "rt" and whether the successor of that refresh token was used ("su").
func refreshLookups(a string) string {
	// The IS NOT NULL tests only involve the outer row: PostgreSQL
	// evaluates them once per row and skips the index scan for the many
	// tokens without a refresh token.
	return fmt.Sprintf(`
  LEFT JOIN LATERAL (SELECT r.user_id, r.device_id, r.next_token_id FROM refresh_tokens r
      WHERE %[1]s.refresh_token_id IS NOT NULL AND r.id = %[1]s.refresh_token_id LIMIT 1) rt ON true
  LEFT JOIN LATERAL (SELECT true AS used FROM access_tokens nx
      WHERE rt.next_token_id IS NOT NULL AND nx.refresh_token_id = rt.next_token_id AND nx.used LIMIT 1) su ON true`, a)
}

// sessionTokenCond is true for the access token aliased a when it counts
// towards its session's created_at (after refreshLookups).
func sessionTokenCond(a string) string {
	return fmt.Sprintf(`((%[1]s.refresh_token_id IS NULL AND %[1]s.puppets_user_id IS NULL)
     OR (rt.user_id = %[1]s.user_id AND rt.device_id = %[1]s.device_id AND su.used IS NULL))`, a)
}

// pairedCond is true for the access token aliased a (after
// refreshLookups) when it is the one the refresh pair pass writes with
// its refresh token (refreshPairsSpec): the lowest id among the tokens
// issued with that refresh token for the refresh token's own user and
// device (docs/mapping.md, "Refresh tokens"). Another token carrying the
// same refresh token is never written.
func pairedCond(a string) string {
	return fmt.Sprintf(`(rt.user_id = %[1]s.user_id AND rt.device_id = %[1]s.device_id
     AND NOT EXISTS (SELECT 1 FROM access_tokens o WHERE o.refresh_token_id = %[1]s.refresh_token_id
       AND o.user_id = %[1]s.user_id AND o.device_id = %[1]s.device_id AND o.id < %[1]s.id))`, a)
}

// sessionTokensInSpanSQL reads them for the users of a span ($1, $2).
var sessionTokensInSpanSQL = sessionTokensSQL + `a.user_id >= $1 AND a.user_id <= $2`

// sessionTokensOfUsersSQL reads them for a few users ($1).
var sessionTokensOfUsersSQL = sessionTokensSQL + `a.user_id = ANY($1::text[])`

// fillOwners returns a fill that sets the owner of every row of a page.
func fillOwners[T any](owner func(*T) *Owner) fillFunc[T] {
	return func(ctx context.Context, tx pageTx, page []T, chosen bool) error {
		_, err := resolveOwners(ctx, tx, page, owner, chosen)
		return err
	}
}

// fillRefreshOwners sets the owner of every refresh token of a page. The
// page is in token order, its users anywhere in the table: they are
// looked up by name, as a page of chosen users is. (A probe per row,
// as before, scanned the users table twice for each token whose owner
// differs in case or is missing: 30 s for a delta of 10 000 users, some
// of them missing, at 100 000 users.)
func fillRefreshOwners(ctx context.Context, tx pageTx, page []RefreshPair, _ bool) error {
	_, err := resolveOwners(ctx, tx, page, func(p *RefreshPair) *Owner { return &p.Owner }, true)
	return err
}

// fillFunc completes a page's rows in the page's transaction; chosen says
// the page holds chosen users (Range.Users), not a range of them.
type fillFunc[T any] func(ctx context.Context, tx pageTx, page []T, chosen bool) error

// pageTx is a page's transaction with the source of mixed-case user
// names its owner lookups consult (cases.go).
type pageTx struct {
	pgx.Tx
	cases CaseSource
}

// resolveOwners sets the owner of every row of a user-ordered page and
// returns the page's span.
func resolveOwners[T any](ctx context.Context, tx pageTx, page []T, owner func(*T) *Owner, chosen bool) (span, error) {
	sp := span{lo: owner(&page[0]).RawUserID, hi: owner(&page[len(page)-1]).RawUserID}
	raws := make([]string, len(page))
	for i := range page {
		raws[i] = owner(&page[i]).RawUserID
	}
	if chosen {
		sp.users = slices.Compact(slices.Sorted(slices.Values(raws)))
	}
	found, err := ownersOf(ctx, tx, sp, raws)
	if err != nil {
		return sp, err
	}
	for i := range page {
		o := owner(&page[i])
		*o = found.of(o.RawUserID)
	}
	return sp, nil
}

// fillDevices sets the owner and session time of every device of a page.
func fillDevices(ctx context.Context, tx pageTx, page []Device, chosen bool) error {
	sp, err := resolveOwners(ctx, tx, page, func(d *Device) *Owner { return &d.Owner }, chosen)
	if err != nil {
		return err
	}
	want := make(map[devKey]bool, len(page))
	for _, d := range page {
		want[devKey{d.RawUserID, d.DeviceID}] = true
	}
	created, err := sessionTimes(ctx, tx, sp.pick(sessionTokensInSpanSQL, sessionTokensOfUsersSQL), sp.args(), want)
	if err != nil {
		return err
	}
	for i := range page {
		page[i].TokensCreatedAt = created.of(devKey{page[i].RawUserID, page[i].DeviceID})
	}
	return nil
}

// fillAccessTokens sets the owner and device of every token of a page.
func fillAccessTokens(ctx context.Context, tx pageTx, page []AccessToken, chosen bool) error {
	sp, err := resolveOwners(ctx, tx, page, func(a *AccessToken) *Owner { return &a.Owner }, chosen)
	if err != nil {
		return err
	}
	want := make(map[devKey]bool, len(page))
	for _, a := range page {
		if a.Device.DeviceID != nil {
			want[devKey{a.RawUserID, *a.Device.DeviceID}] = true
		}
	}
	devices, err := devicesOf(ctx, tx, sp, want)
	if err != nil {
		return err
	}
	created, err := tokenPageSessionTimes(ctx, tx, page, devices.present())
	if err != nil {
		return err
	}
	for i := range page {
		a := &page[i]
		if a.Device.DeviceID == nil {
			continue
		}
		k := devKey{a.RawUserID, *a.Device.DeviceID}
		hidden, ok := devices[k]
		a.Device.Exists, a.Device.Hidden = ok, hidden
		if ok {
			a.Device.TokensCreatedAt = created.of(k)
		}
	}
	return nil
}

// tokenPageSessionTimes computes the session times of the wanted devices
// of a token page. A page in (user_id, id) order holds every token of the
// users strictly inside it, so their sessions are computed from the page
// itself; only the first and the last user may have tokens outside it,
// and theirs are read.
func tokenPageSessionTimes(ctx context.Context, tx pgx.Tx, page []AccessToken, want map[devKey]bool) (sessionStarts, error) {
	first, last := page[0].RawUserID, page[len(page)-1].RawUserID
	out, err := sessionTimes(ctx, tx, sessionTokensOfUsersSQL, []any{[]string{first, last}}, want)
	if err != nil {
		return nil, err
	}
	for _, a := range page {
		if a.RawUserID == first || a.RawUserID == last || a.Device.DeviceID == nil ||
			a.LastValidated == nil || !a.countsForSession {
			continue
		}
		if k := (devKey{a.RawUserID, *a.Device.DeviceID}); want[k] {
			out.add(k, *a.LastValidated)
		}
	}
	return out, nil
}

// owners maps a dependent row's raw user_id to its resolved user.
type owners map[string]Owner

// of returns the owner of raw (Name nil when no user or several match).
func (o owners) of(raw string) Owner {
	own, ok := o[raw]
	if !ok {
		return Owner{RawUserID: raw}
	}
	own.RawUserID = raw
	return own
}

// ownersOf resolves the raw user_ids of a page: the exact users.name from
// the span's range scan, else the single case-insensitive match.
func ownersOf(ctx context.Context, tx pageTx, sp span, raws []string) (owners, error) {
	wanted := make(map[string]bool, len(raws))
	for _, r := range raws {
		wanted[r] = true
	}
	found := make(owners, len(wanted))
	err := scanOwners(ctx, tx, sp.pick(ownersInSpanSQL, ownersOfUsersSQL), sp.args(), func(name string, o Owner) {
		if wanted[name] {
			found[name] = o
		}
	})
	if err != nil {
		return nil, err
	}
	var misses []string
	for r := range wanted {
		if _, ok := found[r]; !ok {
			misses = append(misses, r)
		}
	}
	if len(misses) == 0 {
		return found, nil
	}
	matches, err := caseMatches(ctx, tx, misses)
	if err != nil {
		return nil, err
	}
	for raw, ms := range matches {
		if len(ms) == 1 {
			found[raw] = ms[0]
		}
	}
	return found, nil
}

// scanOwners runs an owner query whose rows are (key, user columns).
func scanOwners(ctx context.Context, tx pgx.Tx, sql string, args []any, each func(string, Owner)) error {
	rows, err := tx.Query(ctx, sql, args...)
	if err != nil {
		return fmt.Errorf("reading owners: %w", err)
	}
	var key, name string
	var o Owner
	_, err = pgx.ForEachRow(rows, []any{&key, &name, &o.Admin, &o.Guest, &o.Deactivated, &o.AppserviceID, &o.CreationTS},
		func() error {
			n := name
			each(key, Owner{Name: &n, Admin: o.Admin, Guest: o.Guest, Deactivated: o.Deactivated,
				AppserviceID: o.AppserviceID, CreationTS: o.CreationTS})
			return nil
		})
	if err != nil {
		return fmt.Errorf("reading owners: %w", err)
	}
	return nil
}

// deviceFlags maps the devices asked for that exist to their hidden flag.
type deviceFlags map[devKey]*bool

// present is the set of devices found.
func (d deviceFlags) present() map[devKey]bool {
	out := make(map[devKey]bool, len(d))
	for k := range d {
		out[k] = true
	}
	return out
}

// devicesOf looks up the wanted devices in the span's range scan.
func devicesOf(ctx context.Context, tx pgx.Tx, sp span, want map[devKey]bool) (deviceFlags, error) {
	out := make(deviceFlags, len(want))
	if len(want) == 0 {
		return out, nil
	}
	rows, err := tx.Query(ctx, sp.pick(devicesInSpanSQL, devicesOfUsersSQL), sp.args()...)
	if err != nil {
		return nil, fmt.Errorf("reading devices: %w", err)
	}
	var k devKey
	var hidden *bool
	_, err = pgx.ForEachRow(rows, []any{&k.user, &k.device, &hidden}, func() error {
		if want[k] {
			out[k] = hidden
		}
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("reading devices: %w", err)
	}
	return out, nil
}

// sessionStarts maps a device to its session's created_at (ms).
type sessionStarts map[devKey]int64

func (s sessionStarts) of(k devKey) *int64 {
	v, ok := s[k]
	if !ok {
		return nil
	}
	return &v
}

// add takes at into a device's minimum.
func (s sessionStarts) add(k devKey, at int64) {
	if cur, ok := s[k]; !ok || at < cur {
		s[k] = at
	}
}

// sessionTimes computes the session created_at of the wanted devices from
// a sessionTokens query.
func sessionTimes(ctx context.Context, tx pgx.Tx, sql string, args []any, want map[devKey]bool) (sessionStarts, error) {
	out := make(sessionStarts, len(want))
	if len(want) == 0 {
		return out, nil
	}
	rows, err := tx.Query(ctx, sql, args...)
	if err != nil {
		return nil, fmt.Errorf("reading session times: %w", err)
	}
	var k devKey
	var at int64
	_, err = pgx.ForEachRow(rows, []any{&k.user, &k.device, &at}, func() error {
		if want[k] {
			out.add(k, at)
		}
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("reading session times: %w", err)
	}
	return out, nil
}
