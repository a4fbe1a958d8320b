package synapse

import (
	"context"
	"fmt"
	"maps"
	"reflect"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
)

// casesSeed has users in every relation to their key, and threepids
// naming them in other cases.
const casesSeed = `INSERT INTO users (name, creation_ts) VALUES
	('@ann:x', 1), ('@Bob:x', 2), ('@cat:x', 3), ('@Cat:x', 4), ('@Dee:x', 5), ('@DEE:x', 6);
INSERT INTO user_threepids (user_id, medium, address, validated_at, added_at) VALUES
	('@ANN:x', 'email', 'a1', 1, 1), ('@BOB:x', 'email', 'b1', 1, 1), ('@bob:x', 'email', 'b2', 1, 1),
	('@Bob:x', 'email', 'b3', 1, 1), ('@CAT:x', 'email', 'c1', 1, 1), ('@dee:x', 'email', 'd1', 1, 1),
	('@eve:x', 'email', 'e1', 1, 1)`

// TestOwnersInAnotherCase: a row's owner is its exact user, else the
// single user matching it but for case, whatever supplies the mixed-case
// names (listed per page, from users, or from user IDs), in pages of
// any size and for chosen users. A source that lacks a name leaves its
// rows unresolved: the lookup asks the source, it does not scan users.
func TestOwnersInAnotherCase(t *testing.T) {
	r, _ := openTest(t, casesSeed)
	ctx := context.Background()
	want := map[string]string{
		"a1": "@ann:x", // the user named its key
		"b1": "@Bob:x", // a mixed-case name only
		"b2": "@Bob:x",
		"b3": "@Bob:x", // exact
		"c1": "",       // the user named its key and a mixed-case one: two matches
		"d1": "",       // two mixed-case names
		"e1": "",       // no such user
	}
	listed := func(list func(context.Context, pgx.Tx) (CaseNames, error)) CaseNames {
		t.Helper()
		var names CaseNames
		if err := r.inTx(ctx, func(tx pgx.Tx) (err error) { names, err = list(ctx, tx); return err }); err != nil {
			t.Fatal(err)
		}
		return names
	}
	fromUsers := listed(UserCaseNames)
	wantNames := CaseNames{"@bob:x": {"@Bob:x"}, "@cat:x": {"@Cat:x"}, "@dee:x": {"@DEE:x", "@Dee:x"}}
	for k := range fromUsers {
		slices.Sort(fromUsers[k])
	}
	if !reflect.DeepEqual(fromUsers, wantNames) {
		t.Fatalf("UserCaseNames = %v, want %v", fromUsers, wantNames)
	}
	fromIDs := listed(func(ctx context.Context, tx pgx.Tx) (CaseNames, error) {
		return CaseNamesOf(ctx, tx, []string{"@ann:x", "@Bob:x", "@BOB:x", "@Cat:x", "@Dee:x", "@DEE:x"})
	})
	fixed := func(n CaseNames) CaseSource {
		return func(context.Context, pgx.Tx) (CaseNames, error) { return n, nil }
	}
	lacking := maps.Clone(wantNames)
	delete(lacking, "@bob:x")
	lackingWant := maps.Clone(want)
	lackingWant["b1"], lackingWant["b2"] = "", ""
	tests := []struct {
		name   string
		reader *Reader
		want   map[string]string
	}{
		{"listed per page", r, want},
		{"from users", r.WithCases(fixed(fromUsers)), want},
		{"from user IDs", r.WithCases(fixed(fromIDs)), want},
		{"a source without @Bob:x", r.WithCases(fixed(lacking)), lackingWant},
	}
	for _, tt := range tests {
		check := func(how string, page []Threepid) {
			t.Helper()
			got := map[string]string{}
			for _, tp := range page {
				got[tp.Address] = ""
				if tp.Owner.Name != nil {
					got[tp.Address] = *tp.Owner.Name
				}
			}
			if !reflect.DeepEqual(got, tt.want) {
				t.Errorf("%s, %s: owners %v, want %v", tt.name, how, got, tt.want)
			}
		}
		for _, size := range []int{1, 3, 100} {
			check(fmt.Sprintf("pages of %d", size), readAll(t, tt.reader.Threepids, size))
		}
		chosen, _, err := tt.reader.Threepids(ctx, Range{Users: []string{"@ANN:x", "@BOB:x", "@bob:x", "@Bob:x",
			"@CAT:x", "@dee:x", "@eve:x"}}, 100)
		if err != nil {
			t.Fatal(err)
		}
		check("chosen users", chosen)
	}
}

// TestCaseSourceErrorsReachTheRead: a page whose owner lookup cannot get
// its names fails, naming the table.
func TestCaseSourceErrorsReachTheRead(t *testing.T) {
	r, _ := openTest(t, casesSeed)
	failing := r.WithCases(func(context.Context, pgx.Tx) (CaseNames, error) { return nil, fmt.Errorf("names gone") })
	_, _, err := failing.Threepids(context.Background(), Range{}, 100)
	if err == nil || !strings.Contains(err.Error(), "user_threepids") || !strings.Contains(err.Error(), "names gone") {
		t.Fatalf("read with a failing source: %v", err)
	}
}

// TestAPageWaitsForItsNamesPastAnIdleTimeout: a page waiting, its
// transaction open, for names another page lists is not ended by a
// server's idle_in_transaction_session_timeout.
func TestAPageWaitsForItsNamesPastAnIdleTimeout(t *testing.T) {
	r, _ := openTest(t, casesSeed+`;
		DO $$ BEGIN EXECUTE format('ALTER DATABASE %I SET idle_in_transaction_session_timeout = ''100ms''', current_database()); END $$`)
	slow := r.WithCases(func(ctx context.Context, tx pgx.Tx) (CaseNames, error) {
		time.Sleep(400 * time.Millisecond) // another page lists them
		return CaseNames{"@bob:x": {"@Bob:x"}}, nil
	})
	page, _, err := slow.Threepids(context.Background(), Range{}, 100)
	if err != nil {
		t.Fatalf("a page that waited 0.4 s for its names: %v", err)
	}
	if len(page) != 7 {
		t.Fatalf("read %d threepids, want 7", len(page))
	}
}
