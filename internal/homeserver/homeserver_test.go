package homeserver

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"testing"

	"github.com/masflow/masflow/internal/config"
	"github.com/masflow/masflow/internal/pgtest"
)

// probes look at a homeserver.yaml with the given extra lines and one
// HTTP listener on port.
func probes(t *testing.T, port int, extra string) *Probes {
	dir := t.TempDir()
	hs := filepath.Join(dir, "homeserver.yaml")
	body := fmt.Sprintf("server_name: example.org\ndatabase: {name: psycopg2}\nlisteners:\n  - {port: %d, type: http, bind_addresses: ['127.0.0.1']}\n%s\n", port, extra)
	if err := os.WriteFile(hs, []byte(body), 0o600); err != nil {
		t.Fatal(err)
	}
	return &Probes{SynapsePaths: []string{hs}, MAS: writeMAS(t, dir, "")}
}

// writeMAS writes and loads dir/mas.yaml with the given extra lines.
func writeMAS(t *testing.T, dir, extra string) *config.MAS {
	masFile := filepath.Join(dir, "mas.yaml")
	if err := os.WriteFile(masFile, []byte("matrix: {homeserver: example.org}\n"+extra+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	m, err := config.LoadMAS(masFile)
	if err != nil {
		t.Fatal(err)
	}
	return m
}

func listening(t *testing.T) int {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {}))
	t.Cleanup(srv.Close)
	return srv.Listener.Addr().(*net.TCPAddr).Port
}

func closed(t *testing.T) int {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port
}

func TestNoneVerifiesEachStep(t *testing.T) {
	delegating := "matrix_authentication_service: {enabled: true, endpoint: 'http://mas:8080/', secret: s}"
	cases := []struct {
		name    string
		port    func(*testing.T) int
		extra   string
		step    func(*None, context.Context) (Report, error)
		wantErr bool
	}{
		{"stopped Synapse passes stop", closed, "", (*None).Stop, false},
		{"running Synapse fails stop", listening, "", (*None).Stop, true},
		{"running Synapse passes start", listening, "", startAll, false},
		{"stopped Synapse fails start", closed, "", startAll, true},
		{"MAS delegation configured passes reconfigure", closed, delegating, (*None).Reconfigure, false},
		{"no delegation fails reconfigure", closed, "", (*None).Reconfigure, true},
		{"delegation still on fails restore", closed, delegating, (*None).RestoreConfig, true},
		{"original config passes restore", closed, "", (*None).RestoreConfig, false},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			_, err := c.step(&None{Probes: probes(t, c.port(t), c.extra)}, context.Background())
			if (err != nil) != c.wantErr {
				t.Fatalf("err = %v, want error %v", err, c.wantErr)
			}
			if err != nil && !errors.Is(err, ErrNotYet) {
				t.Fatalf("%v is not ErrNotYet (it must be retried)", err)
			}
		})
	}
}

func startAll(n *None, ctx context.Context) (Report, error) { return n.Start(ctx, nil, nil) }

func TestStopSeesSynapseDatabaseSessions(t *testing.T) {
	dsn := pgtest.Database(t, pgtest.Synapse)
	p := probes(t, closed(t), "")
	p.SynapseDB = pgtest.Pool(t, dsn) // a pool without masflow's application_name: looks like Synapse
	if _, err := p.SynapseDB.Exec(context.Background(), "SELECT 1"); err != nil {
		t.Fatal(err)
	}
	other := pgtest.Pool(t, dsn)
	if _, err := other.Exec(context.Background(), "SELECT 1"); err != nil {
		t.Fatal(err)
	}
	if err := p.VerifyStopped(context.Background()); !errors.Is(err, ErrNotYet) {
		t.Fatalf("another session of the role is connected: got %v", err)
	}
}
