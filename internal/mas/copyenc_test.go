package mas

import (
	"context"
	"errors"
	"net/netip"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/masflow/masflow/internal/pgtest"
	"github.com/masflow/masflow/internal/secret"
)

// Every value the writer encodes by hand reads back as PostgreSQL's own
// text form of what was meant: NULLs, timestamps before PostgreSQL's 2000
// epoch and with microseconds, IPv4 and IPv6 addresses, non-ASCII text.
func TestBinaryCopyRoundTrip(t *testing.T) {
	ctx := context.Background()
	dsn := pgtest.Database(t, pgtest.MAS)
	pgtest.Exec(t, dsn, `INSERT INTO upstream_oauth_providers (upstream_oauth_provider_id, created_at)
		VALUES ('00000000-0000-0000-0000-0000000000aa', now())`)
	pool := pgtest.Pool(t, dsn)
	schema, err := DetectSchema(ctx, pool)
	if err != nil {
		t.Fatal(err)
	}
	before2000 := time.Date(1999, 12, 31, 23, 59, 59, 123456000, time.UTC)
	later := time.Date(2024, 2, 29, 12, 0, 0, 1000, time.FixedZone("x", 3600))
	device, name, agent := "DEV", "Zoë's phone", "Mozilla\t/5.0"
	rows := Rows{
		Users: []User{
			{ID: id(1), Username: "zoë", CreatedAt: before2000, DeactivatedAt: &later, CanRequestAdmin: true},
			{ID: id(2), Username: "bob", CreatedAt: later, LockedAt: &before2000, IsGuest: true},
		},
		Passwords:            []Password{{ID: id(3), UserID: id(1), Hash: secret.String("$2b$12$abc"), CreatedAt: later}},
		Emails:               []Email{{ID: id(4), UserID: id(1), Email: "zoë@example.org", CreatedAt: later}},
		UnsupportedThreepids: []UnsupportedThreepid{{UserID: id(2), Medium: "msisdn", Address: "4412345", CreatedAt: before2000}},
		Links:                []Link{{ID: id(5), ProviderID: id(0xaa), UserID: id(2), Subject: "sub-1", CreatedAt: later}},
		Sessions: []Session{
			{ID: id(6), UserID: id(1), CreatedAt: later},
			{ID: id(7), UserID: id(1), DeviceID: &device, HumanName: &name, CreatedAt: later, IsSynapseAdmin: true,
				LastActiveAt: &before2000, LastActiveIP: netip.MustParseAddr("192.0.2.1"), UserAgent: &agent},
			{ID: id(8), UserID: id(2), CreatedAt: later, LastActiveIP: netip.MustParseAddr("2001:db8::1")},
		},
		AccessTokens: []AccessToken{
			{ID: id(9), SessionID: id(6), Token: "syt_a", CreatedAt: later},
			{ID: id(10), SessionID: id(7), Token: "syt_b", CreatedAt: later, ExpiresAt: &before2000},
		},
		RefreshTokens: []RefreshToken{{ID: id(11), SessionID: id(7), AccessTokenID: id(10), Token: "syr_c", CreatedAt: before2000}},
	}
	w := NewWriter(pool, schema)
	if err := pgx.BeginFunc(ctx, pool, func(tx pgx.Tx) error { return w.copyRows(ctx, tx, &rows, false) }); err != nil {
		t.Fatal(err)
	}
	const u1, u2 = "00000000-0000-0000-0000-000000000001", "00000000-0000-0000-0000-000000000002"
	for _, c := range []struct {
		table string
		want  []string
	}{
		{"users", []string{
			"(" + u1 + ",zoë,\"1999-12-31 23:59:59.123456+00\",,t,f,\"2024-02-29 11:00:00.000001+00\")",
			"(" + u2 + ",bob,\"2024-02-29 11:00:00.000001+00\",\"1999-12-31 23:59:59.123456+00\",f,t,)",
		}},
		{"user_passwords", []string{"(00000000-0000-0000-0000-000000000003," + u1 + ",$2b$12$abc,\"2024-02-29 11:00:00.000001+00\",1)"}},
		{"user_emails", []string{"(00000000-0000-0000-0000-000000000004," + u1 + ",zoë@example.org,\"2024-02-29 11:00:00.000001+00\")"}},
		{"user_unsupported_third_party_ids", []string{"(" + u2 + ",msisdn,4412345,\"1999-12-31 23:59:59.123456+00\")"}},
		{"upstream_oauth_links", []string{"(00000000-0000-0000-0000-000000000005,00000000-0000-0000-0000-0000000000aa," + u2 + ",sub-1,\"2024-02-29 11:00:00.000001+00\")"}},
		{"compat_sessions", []string{
			"(00000000-0000-0000-0000-000000000006," + u1 + ",,,\"2024-02-29 11:00:00.000001+00\",f,,,)",
			"(00000000-0000-0000-0000-000000000007," + u1 + ",DEV,\"Zoë's phone\",\"2024-02-29 11:00:00.000001+00\",t,\"1999-12-31 23:59:59.123456+00\",192.0.2.1,\"Mozilla\t/5.0\")",
			"(00000000-0000-0000-0000-000000000008," + u2 + ",,,\"2024-02-29 11:00:00.000001+00\",f,,2001:db8::1,)",
		}},
		{"compat_access_tokens", []string{
			"(00000000-0000-0000-0000-000000000009,00000000-0000-0000-0000-000000000006,syt_a,\"2024-02-29 11:00:00.000001+00\",)",
			"(00000000-0000-0000-0000-00000000000a,00000000-0000-0000-0000-000000000007,syt_b,\"2024-02-29 11:00:00.000001+00\",\"1999-12-31 23:59:59.123456+00\")",
		}},
		{"compat_refresh_tokens", []string{"(00000000-0000-0000-0000-00000000000b,00000000-0000-0000-0000-000000000007,00000000-0000-0000-0000-00000000000a,syr_c,\"1999-12-31 23:59:59.123456+00\")"}},
	} {
		t.Run(c.table, func(t *testing.T) {
			got := writtenColumns(t, dsn, c.table, w.tables(&rows))
			if strings.Join(got, "\n") != strings.Join(c.want, "\n") {
				t.Fatalf("%s holds\n%s\nwant\n%s", c.table, strings.Join(got, "\n"), strings.Join(c.want, "\n"))
			}
		})
	}
}

// id is an ID whose last byte is b.
func id(b byte) ID { return ID{15: b} }

// writtenColumns reads the columns the writer fills, as one text row each,
// in UTC and in primary-key order.
func writtenColumns(t *testing.T, dsn, table string, tables []copyTable) []string {
	t.Helper()
	for _, tb := range tables {
		if tb.name != table {
			continue
		}
		names := make([]string, len(tb.cols))
		for i, c := range tb.cols {
			names[i] = c.name
		}
		list := strings.Join(names, ", ")
		return pgtest.QueryStrings(t, dsn+"&timezone=UTC", "SELECT ROW("+list+")::text FROM "+table+" ORDER BY 1")
	}
	t.Fatalf("no table %s", table)
	return nil
}

// A MAS schema whose columns differ from what the writer encodes is
// refused before anything is written, naming the column.
func TestDetectSchemaChecksColumnTypes(t *testing.T) {
	for _, c := range []struct {
		name, alter, want string
	}{
		{"other type", `ALTER TABLE user_passwords ALTER COLUMN version TYPE bigint`,
			"user_passwords.version is bigint where masflow writes integer"},
		{"missing column", `ALTER TABLE compat_sessions DROP COLUMN user_agent`,
			"compat_sessions lacks column user_agent"},
	} {
		t.Run(c.name, func(t *testing.T) {
			dsn := pgtest.Database(t, pgtest.MAS)
			pgtest.Exec(t, dsn, c.alter)
			_, err := DetectSchema(context.Background(), pgtest.Pool(t, dsn))
			if !errors.Is(err, ErrUnsupportedSchema) || !strings.Contains(err.Error(), c.want) {
				t.Fatalf("DetectSchema = %v, want %q", err, c.want)
			}
		})
	}
}
