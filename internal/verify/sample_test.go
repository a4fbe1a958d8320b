package verify

import (
	"context"
	"fmt"
	"slices"
	"sort"
	"testing"

	"github.com/masflow/masflow/internal/pgtest"
)

// masSeed is MAS after an import and a few minutes of service: the
// sessions the import wrote and one MAS issued since the start.
const masSeed = `
INSERT INTO users (user_id, username, created_at, locked_at, deactivated_at) VALUES
  ('00000000-0000-0000-0000-0000000000a1', 'alice', now(), NULL, NULL),
  ('00000000-0000-0000-0000-0000000000b0', 'bob',   now(), NULL, NULL),
  ('00000000-0000-0000-0000-0000000000c0', 'carol', now(), now(), NULL),
  ('00000000-0000-0000-0000-0000000000d0', 'dave',  now(), NULL, now()),
  ('00000000-0000-0000-0000-0000000000e0', 'erin',  now(), NULL, NULL);
INSERT INTO compat_sessions (compat_session_id, user_id, device_id, created_at, finished_at) VALUES
  ('00000000-0000-0000-0000-000000000001', '00000000-0000-0000-0000-0000000000a1', 'ALICEPHONE', now(), NULL),
  ('00000000-0000-0000-0000-000000000002', '00000000-0000-0000-0000-0000000000a1', 'OLDLAPTOP',  now(), now()),
  ('00000000-0000-0000-0000-000000000003', '00000000-0000-0000-0000-0000000000b0', NULL,         now(), NULL),
  ('00000000-0000-0000-0000-000000000004', '00000000-0000-0000-0000-0000000000b0', 'BOBTABLET',  now(), NULL),
  ('00000000-0000-0000-0000-000000000005', '00000000-0000-0000-0000-0000000000c0', 'CAROLPHONE', now(), NULL),
  ('00000000-0000-0000-0000-000000000006', '00000000-0000-0000-0000-0000000000d0', 'DAVEPHONE',  now(), NULL),
  ('00000000-0000-0000-0000-000000000007', '00000000-0000-0000-0000-0000000000a1', 'NEWLOGIN',   now(), NULL),
  ('00000000-0000-0000-0000-000000000008', '00000000-0000-0000-0000-0000000000b0', 'BOBPHONE',   now(), NULL),
  ('00000000-0000-0000-0000-000000000009', '00000000-0000-0000-0000-0000000000e0', 'ERINPHONE',  now(), NULL);
INSERT INTO compat_access_tokens (compat_access_token_id, compat_session_id, access_token, created_at, expires_at) VALUES
  ('00000000-0000-0000-0000-000000000101', '00000000-0000-0000-0000-000000000001', 'syt_alice',          now(), NULL),
  ('00000000-0000-0000-0000-000000000102', '00000000-0000-0000-0000-000000000001', 'syt_alice_expired',  now(), now() - interval '1 day'),
  ('00000000-0000-0000-0000-000000000103', '00000000-0000-0000-0000-000000000002', 'syt_alice_finished', now(), NULL),
  ('00000000-0000-0000-0000-000000000104', '00000000-0000-0000-0000-000000000003', 'syt_bob_deviceless', now(), NULL),
  ('00000000-0000-0000-0000-000000000105', '00000000-0000-0000-0000-000000000004', 'syt_bob_moved',      now(), NULL),
  ('00000000-0000-0000-0000-000000000106', '00000000-0000-0000-0000-000000000005', 'syt_carol_locked',   now(), NULL),
  ('00000000-0000-0000-0000-000000000107', '00000000-0000-0000-0000-000000000006', 'syt_dave_gone',      now(), NULL),
  ('00000000-0000-0000-0000-000000000108', '00000000-0000-0000-0000-000000000007', 'mct_issued_by_mas',  now(), NULL),
  ('00000000-0000-0000-0000-000000000109', '00000000-0000-0000-0000-000000000008', 'syt_mallory',        now(), NULL),
  ('00000000-0000-0000-0000-000000000110', '00000000-0000-0000-0000-000000000009', 'syt_erin',           now(), now() + interval '1 day');
`

// synapseSeed is Synapse's record of the same tokens before the import.
const synapseSeed = `
INSERT INTO access_tokens (id, user_id, device_id, token) VALUES
  (1, '@alice:example.org',   'ALICEPHONE', 'syt_alice'),
  (2, '@alice:example.org',   'ALICEPHONE', 'syt_alice_expired'),
  (3, '@alice:example.org',   'OLDLAPTOP',  'syt_alice_finished'),
  (4, '@bob:example.org',     NULL,         'syt_bob_deviceless'),
  (5, '@bob:example.org',     'OTHERDEV',   'syt_bob_moved'),
  (6, '@carol:example.org',   'CAROLPHONE', 'syt_carol_locked'),
  (7, '@dave:example.org',    'DAVEPHONE',  'syt_dave_gone'),
  (8, '@mallory:example.org', 'BOBPHONE',   'syt_mallory'),
  (9, '@Erin:example.org',    'ERINPHONE',  'syt_erin');
`

// sampleEnv is a MAS and a Synapse database holding the seeds.
func sampleEnv(t *testing.T) (mas, syn string) {
	mas, syn = pgtest.Database(t, pgtest.MAS), pgtest.Database(t, pgtest.Synapse)
	pgtest.Exec(t, mas, masSeed)
	pgtest.Exec(t, syn, synapseSeed)
	return mas, syn
}

// seen is a sample as the test compares it (the token revealed).
func seen(samples []Sample) []string {
	out := make([]string, len(samples))
	for i, s := range samples {
		out[i] = fmt.Sprintf("%s %s %q", s.Token.Reveal(), s.UserID, s.DeviceID)
	}
	return out
}

func TestSampleTokens(t *testing.T) {
	masDSN, synDSN := sampleEnv(t)
	masDB, synDB := pgtest.Pool(t, masDSN), pgtest.Pool(t, synDSN)
	ctx := context.Background()
	// Excluded: the expired token, the finished session, the token whose
	// Synapse row has another device, the locked and the deactivated
	// users, the token MAS issued itself, the token Synapse had for
	// another user. Erin's Synapse row spells her ID with another case:
	// the import matched her, so does the sample.
	want := []string{
		`syt_alice @alice:example.org "ALICEPHONE"`,
		`syt_bob_deviceless @bob:example.org ""`,
		`syt_erin @erin:example.org "ERINPHONE"`,
	}
	cases := []struct {
		name     string
		n, size  int // size 0: SampleTokens's own page size
		wantSize int
	}{
		{"every usable token Synapse had, in one page", 10, 0, 3},
		{"pages of two still find every usable token", 10, 2, 3},
		{"no more than asked for", 2, 2, 2},
		{"none asked, none read", 0, 1, 0},
	}
	var first []string
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			got, err := SampleTokens(ctx, masDB, synDB, "example.org", c.n)
			if c.size > 0 {
				got, err = sampleTokens(ctx, masDB, synDB, "example.org", c.n, c.size)
			}
			if err != nil {
				t.Fatal(err)
			}
			s := seen(got)
			if len(s) != c.wantSize {
				t.Fatalf("got %d samples %v, want %d", len(s), s, c.wantSize)
			}
			if first == nil {
				first = s
			}
			// The order is deterministic: a smaller sample is a prefix of
			// a larger one.
			if fmt.Sprint(s) != fmt.Sprint(first[:len(s)]) {
				t.Errorf("samples %v are not a prefix of %v", s, first)
			}
			sorted := append([]string(nil), s...)
			sort.Strings(sorted)
			if len(s) == len(want) && fmt.Sprint(sorted) != fmt.Sprint(want) {
				t.Errorf("samples = %v, want %v", sorted, want)
			}
			for _, x := range s {
				if !slices.Contains(want, x) {
					t.Errorf("unexpected sample %s", x)
				}
			}
		})
	}
}
