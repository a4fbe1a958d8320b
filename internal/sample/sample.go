// Package sample creates a sample homeserver for the demo and the
// integration tests: a Synapse database filled by the synthetic
// generator, an empty MAS database (masflow's fixture of the MAS schema:
// MAS itself cannot run here), and the three config files masflow reads.
package sample

import (
	"context"
	"fmt"
	"net"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/masflow/masflow/internal/engine"
	"github.com/masflow/masflow/internal/localrun"
	"github.com/masflow/masflow/internal/mas"
	"github.com/masflow/masflow/internal/pgtest"
	"github.com/masflow/masflow/internal/synapse"
	"github.com/masflow/masflow/internal/synthetic"
	"github.com/masflow/masflow/internal/ulid"
	"github.com/masflow/masflow/workflows"
)

// ServerName is the sample homeserver's name.
const ServerName = "demo.example"

// ProviderULID is the MAS upstream provider the sample's SSO links map to.
const ProviderULID = "01JAYS74TCG3BTWKADN5Q4518C"

// Homeserver is a created sample.
type Homeserver struct {
	Settings           string // path of masflow.yaml
	SynapseDSN, MASDSN string
	Stats              synthetic.Stats
}

// Options size and tune the sample.
type Options struct {
	Users     int
	BatchSize int    // import.batch_size (default 2000)
	SaltFile  string // import.salt_file (default: none, random salt)
	// HeartbeatSeconds is import.heartbeat_seconds (default 10).
	HeartbeatSeconds int
}

// Create makes the sample in dir, or returns the one already there (so a
// second `make demo` resumes the same migration).
func Create(ctx context.Context, admin, dir string, o Options) (Homeserver, error) {
	h := Homeserver{Settings: filepath.Join(dir, "masflow.yaml")}
	if b, err := os.ReadFile(filepath.Join(dir, "databases")); err == nil {
		parts := strings.Fields(string(b))
		if len(parts) == 2 {
			h.SynapseDSN, h.MASDSN = parts[0], parts[1]
			return h, nil
		}
	}
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return h, err
	}
	var err error
	if h.SynapseDSN, _, err = pgtest.CreateDatabase(ctx, admin, pgtest.Synapse); err != nil {
		return h, err
	}
	if h.MASDSN, _, err = pgtest.CreateDatabase(ctx, admin, pgtest.MAS); err != nil {
		return h, err
	}
	if h.Stats, err = Populate(ctx, h.SynapseDSN, h.MASDSN, o.Users); err != nil {
		return h, err
	}
	if err := writeConfigs(dir, h, o); err != nil {
		return h, err
	}
	return h, os.WriteFile(filepath.Join(dir, "databases"), []byte(h.SynapseDSN+" "+h.MASDSN+"\n"), 0o600)
}

// Drop drops the sample's two databases (tests drop theirs; the demo
// keeps its own for the next `make demo`).
func Drop(admin string, h Homeserver) {
	pgtest.DropDatabase(admin, pgtest.DatabaseName(h.SynapseDSN))
	pgtest.DropDatabase(admin, pgtest.DatabaseName(h.MASDSN))
}

// Populate generates the sample's users into an empty Synapse database and
// creates, in an empty MAS database, the upstream provider their SSO links
// map to (what `mas-cli config sync` would do).
func Populate(ctx context.Context, synapseDSN, masDSN string, users int) (synthetic.Stats, error) {
	stats, err := Generate(ctx, synapseDSN, synthetic.Shape{Users: users})
	if err != nil {
		return nil, err
	}
	return stats, CreateProvider(ctx, masDSN)
}

// Generate fills an empty Synapse database with the sample's users, in
// the given shape (its server name is the sample's).
func Generate(ctx context.Context, synapseDSN string, shape synthetic.Shape) (synthetic.Stats, error) {
	conn, err := pgx.Connect(ctx, synapseDSN)
	if err != nil {
		return nil, fmt.Errorf("connecting to the sample Synapse database: %w", err)
	}
	defer conn.Close(ctx)
	shape.ServerName = ServerName
	return synthetic.Generate(ctx, conn, shape)
}

// CreateProvider creates, in an empty MAS database, the upstream provider
// the sample's SSO links map to (what `mas-cli config sync` would do).
func CreateProvider(ctx context.Context, masDSN string) error {
	m, err := pgx.Connect(ctx, masDSN)
	if err != nil {
		return fmt.Errorf("connecting to the sample MAS database: %w", err)
	}
	defer m.Close(ctx)
	if _, err := m.Exec(ctx, `INSERT INTO upstream_oauth_providers (upstream_oauth_provider_id, created_at) VALUES ($1, now())`,
		[16]byte(ProviderID())); err != nil {
		return fmt.Errorf("creating the sample's upstream provider in MAS: %w", err)
	}
	return nil
}

// WriteConfigs writes the three config files of a sample whose databases
// exist already (the benchmark creates a fresh MAS database per run) into
// dir, and returns the path of the masflow settings file.
func WriteConfigs(dir, synapseDSN, masDSN string, o Options) (string, error) {
	h := Homeserver{Settings: filepath.Join(dir, "masflow.yaml"), SynapseDSN: synapseDSN, MASDSN: masDSN}
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return "", fmt.Errorf("creating the sample's config directory: %w", err)
	}
	return h.Settings, writeConfigs(dir, h, o)
}

// ProviderID is ProviderULID as a MAS ID.
func ProviderID() mas.ID {
	id, _ := ulid.Parse(ProviderULID) // a valid constant
	return id
}

func writeConfigs(dir string, h Homeserver, o Options) error {
	u, err := url.Parse(h.SynapseDSN)
	if err != nil {
		return err
	}
	pw, _ := u.User.Password()
	files := map[string]string{
		"homeserver.yaml": fmt.Sprintf(`server_name: %s
database:
  name: psycopg2
  args:
    user: %s
    password: %s
    dbname: %s
    host: %s
    port: %s
    sslmode: disable
password_config:
  pepper: demo-pepper
oidc_providers:
  - idp_id: oidc
    issuer: https://sso.demo.example/
listeners:
  - {port: %d, type: http, bind_addresses: ['127.0.0.1'], resources: [{names: [client]}]}
`, ServerName, u.User.Username(), pw, strings.TrimPrefix(u.Path, "/"), u.Hostname(), u.Port(), closedPort()),
		"mas.yaml": fmt.Sprintf(`matrix:
  homeserver: %s
  secret: demo-shared-secret
http:
  public_base: https://auth.demo.example/
database:
  uri: %s
passwords:
  schemes:
    - {version: 1, algorithm: bcrypt, unicode_normalization: true, secret: demo-pepper}
    - {version: 2, algorithm: argon2id, unicode_normalization: true}
upstream_oauth2:
  providers:
    - {id: %s, synapse_idp_id: oidc}
`, ServerName, h.MASDSN, ProviderULID),
	}
	if o.BatchSize == 0 {
		o.BatchSize = 2000
	}
	if o.HeartbeatSeconds == 0 {
		o.HeartbeatSeconds = 10
	}
	files["masflow.yaml"] = fmt.Sprintf("synapse:\n  config: [%s]\nmas:\n  config: [%s]\n"+
		"import:\n  batch_size: %d\n  parallelism: 2\n  salt_file: %q\n  heartbeat_seconds: %d\n  report_dir: %q\n"+
		"worker:\n  log_level: warn\n",
		filepath.Join(dir, "homeserver.yaml"), filepath.Join(dir, "mas.yaml"), o.BatchSize, o.SaltFile, o.HeartbeatSeconds, dir)
	for name, body := range files {
		if err := os.WriteFile(filepath.Join(dir, name), []byte(body), 0o600); err != nil {
			return err
		}
	}
	return nil
}

// closedPort is a loopback port nothing listens on: the sample's Synapse
// is not running.
func closedPort() int {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 1
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port
}

// ForTest creates a sample homeserver in dir/sample on the test
// PostgreSQL (pgtest.AdminURL), failing the test when it cannot; its
// databases are dropped when the test ends.
func ForTest(t testing.TB, dir string, o Options) Homeserver {
	t.Helper()
	admin, err := pgtest.AdminURL()
	if err != nil {
		t.Fatal(err)
	}
	h, err := Create(context.Background(), admin, filepath.Join(dir, "sample"), o)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { Drop(admin, h) })
	return h
}

// Runs opens the import runs from the Synapse database at synapseDSN into
// the MAS pool, with the sample's provider mapping and the given salt (nil:
// a random one per run); close releases the Synapse connections.
func Runs(ctx context.Context, synapseDSN string, masPool *pgxpool.Pool, salt []byte) (runs *engine.Runs, close func(), err error) {
	cfg, err := pgxpool.ParseConfig(synapseDSN)
	if err != nil {
		return nil, nil, err
	}
	reader, err := synapse.Open(ctx, cfg)
	if err != nil {
		return nil, nil, err
	}
	return &engine.Runs{Reader: reader, MAS: masPool, ServerName: ServerName, Salt: salt,
		Providers: map[string]mas.ID{"oidc": ProviderID()}}, reader.Close, nil
}

// CleanImport imports the Synapse database at synapseDSN as it is now into
// the (empty, provider created) MAS database at masDSN, in this process
// and nothing killed, with the salt and "now" of the run it stands for:
// what that run's MAS database must equal.
func CleanImport(ctx context.Context, synapseDSN, masDSN string, salt []byte, now time.Time, o workflows.ImportOptions) error {
	pool, err := pgxpool.New(ctx, masDSN)
	if err != nil {
		return err
	}
	defer pool.Close()
	runs, closeRuns, err := Runs(ctx, synapseDSN, pool, salt)
	if err != nil {
		return err
	}
	defer closeRuns()
	if _, err := localrun.Import(localrun.Options{Runs: runs, Now: now, Import: o}); err != nil {
		return fmt.Errorf("the clean import: %w", err)
	}
	return nil
}
