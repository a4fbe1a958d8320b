package synapse

import (
	"context"
	"errors"
	"strings"
	"testing"

	"github.com/masflow/masflow/internal/pgtest"
)

// A reader at an exported snapshot sees the database as it was when the
// snapshot was taken, whatever is written since, until its holder ends.
func TestReaderAtSnapshotIgnoresLaterWrites(t *testing.T) {
	ctx := context.Background()
	r, dsn := openTest(t, `INSERT INTO users (name, creation_ts) SELECT '@u' || g || ':example.org', g FROM generate_series(1, 10) g;
		INSERT INTO devices (user_id, device_id) SELECT '@u' || g || ':example.org', 'D' || g FROM generate_series(1, 10) g`)
	snap, err := r.ExportSnapshot(ctx)
	if err != nil {
		t.Fatal(err)
	}
	// A live homeserver goes on: registrations, logins, a deleted device.
	pgtest.Exec(t, dsn, `INSERT INTO users (name, creation_ts) VALUES ('@late:example.org', 99);
		INSERT INTO devices (user_id, device_id) VALUES ('@late:example.org', 'LATE'), ('@u1:example.org', 'NEW');
		DELETE FROM devices WHERE device_id = 'D2'`)
	at := r.At(snap.ID)
	cases := []struct {
		name       string
		reader     *Reader
		users, dev int64
	}{
		{"at the snapshot", at, 10, 10},
		{"live", r, 11, 11},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			users, err := c.reader.Count(ctx, Users)
			if err != nil || users != c.users {
				t.Fatalf("users = %d, %v; want %d", users, err, c.users)
			}
			devices, _, err := c.reader.Devices(ctx, Range{}, 100)
			if err != nil || int64(len(devices)) != c.dev {
				t.Fatalf("devices = %d, %v; want %d", len(devices), err, c.dev)
			}
			for _, d := range devices {
				if d.Owner.Name == nil {
					t.Fatalf("device %s of %s read without its owner", d.DeviceID, d.RawUserID)
				}
			}
		})
	}
	snap.Release()
	if _, err := at.Count(ctx, Users); !errors.Is(err, ErrSnapshotGone) || !strings.Contains(err.Error(), "holder is gone") {
		t.Fatalf("a read at a released snapshot: %v", err)
	}
}
