//go:build cluster

package clustertest

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"log/slog"
	mrand "math/rand/v2"
	"net"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/masflow/masflow/workflows"
	"go.temporal.io/sdk/client"
	"go.temporal.io/sdk/log"
)

// Where `make cluster-test` says the pinned Temporal server is.
const (
	// serverVersionEnv is the release of go.temporal.io/server the
	// binaries were built from (its module holds the SQL schema).
	serverVersionEnv = "MASFLOW_CLUSTER_SERVER_VERSION"
	// serverBinEnv is the directory holding its `server` and `sql`
	// (temporal-sql-tool) binaries.
	serverBinEnv = "MASFLOW_CLUSTER_SERVER_BIN"
)

// namespace is the cluster's namespace for masflow: not "default", so
// the test proves that every process takes it from TEMPORAL_NAMESPACE.
const namespace = "masflow"

// temporalServer is a Temporal server of the pinned release run as an
// operator would: one process with every service (frontend, history,
// matching, worker), persistence and visibility on PostgreSQL (schemas
// created by the release's own schema tool), masflow's namespace and
// search attributes created with the `temporal` CLI.
type temporalServer struct {
	t        *testing.T
	bin      string // the server binary
	config   string // its config file
	log      string
	HostPort string // frontend gRPC
	proc     *process
}

// startCluster creates the two databases and their schemas, writes the
// server's config, starts it and registers masflow's namespace and
// search attributes.
func startCluster(t *testing.T, ctx context.Context, admin, dir string) *temporalServer {
	t.Helper()
	version, bins := os.Getenv(serverVersionEnv), os.Getenv(serverBinEnv)
	if version == "" || bins == "" {
		t.Fatalf("%s and %s are unset: run `make cluster-test`, which builds the pinned Temporal server", serverVersionEnv, serverBinEnv)
	}
	schemas := schemaDir(t, version)
	u, err := url.Parse(admin)
	if err != nil {
		t.Fatal(err)
	}
	prefix := "masflow_cluster_" + randomHex(4)
	persistence, visibility := prefix+"_temporal", prefix+"_visibility"
	for _, db := range []struct{ name, schema string }{
		{persistence, "temporal"},
		{visibility, "visibility"},
	} {
		createDatabase(t, ctx, admin, db.name)
		setupSchema(t, filepath.Join(bins, "sql"), u, db.name, filepath.Join(schemas, db.schema, "versioned"))
	}
	s := &temporalServer{t: t, bin: filepath.Join(bins, "server"), config: filepath.Join(dir, "temporal.yaml"),
		log: filepath.Join(dir, "temporal.log")}
	showLogsOnFailure(t, s.log, s.log+".stdout")
	s.HostPort = writeServerConfig(t, s.config, filepath.Join(dir, "dynamicconfig.yaml"), u, persistence, visibility)
	s.start()
	registerNamespace(t, s.HostPort)
	return s
}

// schemaDir is the PostgreSQL schema directory of the server release, in
// the module cache (`go install` downloaded the module).
func schemaDir(t *testing.T, version string) string {
	t.Helper()
	out, err := exec.Command("go", "list", "-m", "-json", "go.temporal.io/server@"+version).Output()
	if err != nil {
		t.Fatalf("locating go.temporal.io/server@%s: %v", version, err)
	}
	var m struct{ Dir string }
	if err := json.Unmarshal(out, &m); err != nil || m.Dir == "" {
		t.Fatalf("go list gave no directory for go.temporal.io/server@%s: %v\n%s", version, err, out)
	}
	return filepath.Join(m.Dir, "schema", "postgresql", "v12")
}

func randomHex(n int) string {
	b := make([]byte, n)
	_, _ = rand.Read(b)
	return hex.EncodeToString(b)
}

// createDatabase creates an empty database, dropped when the test ends.
func createDatabase(t *testing.T, ctx context.Context, admin, name string) {
	t.Helper()
	conn, err := pgx.Connect(ctx, admin)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close(ctx)
	if _, err := conn.Exec(ctx, "CREATE DATABASE "+pgx.Identifier{name}.Sanitize()); err != nil {
		t.Fatalf("creating database %s: %v", name, err)
	}
	t.Cleanup(func() { dropDatabases(admin, name) })
}

// dropDatabases drops databases, whoever is still connected.
func dropDatabases(admin string, names ...string) {
	ctx := context.Background()
	conn, err := pgx.Connect(ctx, admin)
	if err != nil {
		return
	}
	defer conn.Close(ctx)
	for _, n := range names {
		_, _ = conn.Exec(ctx, "DROP DATABASE IF EXISTS "+pgx.Identifier{n}.Sanitize()+" WITH (FORCE)")
	}
}

// setupSchema creates a database's schema as the release's docs say:
// the versioning tables first, then every versioned update in order.
func setupSchema(t *testing.T, tool string, u *url.URL, db, versioned string) {
	t.Helper()
	pw, _ := u.User.Password()
	env := append(os.Environ(), "SQL_PLUGIN=postgres12", "SQL_HOST="+u.Hostname(), "SQL_PORT="+u.Port(),
		"SQL_USER="+u.User.Username(), "SQL_PASSWORD="+pw, "SQL_DATABASE="+db)
	for _, args := range [][]string{
		{"setup-schema", "-v", "0.0"},
		{"update-schema", "-d", versioned},
	} {
		cmd := exec.Command(tool, args...)
		cmd.Env = env
		if out, err := cmd.CombinedOutput(); err != nil {
			t.Fatalf("temporal-sql-tool %s on %s: %v\n%s", strings.Join(args, " "), db, err, out)
		}
	}
}

// serverConfig is the server's static config: one process, loopback
// ports, both stores on PostgreSQL. Placeholders, in order: log file;
// persistence and visibility databases (host:port, user, password,
// database, each twice); then the frontend's gRPC, HTTP and membership
// ports and the gRPC and membership ports of history, matching and
// worker; the frontend address again; the dynamic config file.
const serverConfig = `log:
  stdout: false
  outputFile: %q
  level: info

persistence:
  defaultStore: default
  visibilityStore: visibility
  # Small, as a test needs; fixed for the life of a cluster.
  numHistoryShards: 4
  datastores:
    default:
      sql:
        pluginName: postgres12
        connectAddr: %q
        connectProtocol: tcp
        user: %q
        password: %q
        databaseName: %q
        maxConns: 10
        maxIdleConns: 10
        maxConnLifetime: 1h
    visibility:
      sql:
        pluginName: postgres12
        connectAddr: %q
        connectProtocol: tcp
        user: %q
        password: %q
        databaseName: %q
        maxConns: 4
        maxIdleConns: 4
        maxConnLifetime: 1h

global:
  membership:
    maxJoinDuration: 30s
    broadcastAddress: 127.0.0.1

services:
  frontend:
    rpc: {grpcPort: %d, httpPort: %d, membershipPort: %d, bindOnIP: 127.0.0.1}
  history:
    rpc: {grpcPort: %d, membershipPort: %d, bindOnIP: 127.0.0.1}
  matching:
    rpc: {grpcPort: %d, membershipPort: %d, bindOnIP: 127.0.0.1}
  worker:
    rpc: {grpcPort: %d, membershipPort: %d, bindOnIP: 127.0.0.1}

clusterMetadata:
  enableGlobalNamespace: false
  failoverVersionIncrement: 10
  masterClusterName: active
  currentClusterName: active
  clusterInformation:
    active:
      enabled: true
      initialFailoverVersion: 1
      rpcName: frontend
      rpcAddress: %q

dcRedirectionPolicy:
  policy: noop

dynamicConfigClient:
  filepath: %q
  pollInterval: 10s
`

// dynamicConfig makes search attributes usable as soon as they are
// registered (the frontend otherwise caches the list for up to a minute).
const dynamicConfig = `system.forceSearchAttributesCacheRefreshOnRead:
  - value: true
`

// writeServerConfig writes the static and dynamic config files and
// returns the frontend's address. The ports stay the same across
// restarts, as a cluster's do.
func writeServerConfig(t *testing.T, file, dynamicFile string, u *url.URL, persistence, visibility string) string {
	t.Helper()
	if err := os.WriteFile(dynamicFile, []byte(dynamicConfig), 0o600); err != nil {
		t.Fatal(err)
	}
	pw, _ := u.User.Password()
	ports := freePorts(t, 9)
	frontend := fmt.Sprintf("127.0.0.1:%d", ports[0])
	body := fmt.Sprintf(serverConfig, filepath.Join(filepath.Dir(file), "temporal.log"),
		u.Host, u.User.Username(), pw, persistence,
		u.Host, u.User.Username(), pw, visibility,
		ports[0], ports[1], ports[2], ports[3], ports[4], ports[5], ports[6], ports[7], ports[8],
		frontend, dynamicFile)
	if err := os.WriteFile(file, []byte(body), 0o600); err != nil {
		t.Fatal(err)
	}
	return frontend
}

// freePorts returns n distinct loopback ports nothing listens on, below
// 32768: the SQL schema stores membership ports as smallint, so a port
// from Linux's ephemeral range (32768 and up) stops the server at start.
func freePorts(t *testing.T, n int) []int {
	t.Helper()
	var ports []int
	var held []net.Listener
	defer func() {
		for _, l := range held {
			l.Close()
		}
	}()
	for tries := 0; len(ports) < n; tries++ {
		if tries > 1000 {
			t.Fatal("no free loopback ports between 20000 and 32767")
		}
		l, err := net.Listen("tcp", fmt.Sprintf("127.0.0.1:%d", 20000+mrand.IntN(12768)))
		if err != nil {
			continue
		}
		held = append(held, l)
		ports = append(ports, l.Addr().(*net.TCPAddr).Port)
	}
	return ports
}

// start runs the server on its config (again, after a kill) and waits
// until the frontend answers.
func (s *temporalServer) start() {
	s.t.Helper()
	started := time.Now()
	s.proc = startProcess(s.t, "temporal server", s.log+".stdout", nil, s.bin,
		"--config-file", s.config, "--allow-no-auth", "start")
	c := waitForFrontend(s.t, s.HostPort, s.proc)
	c.Close()
	s.t.Logf("Temporal server (pid %d) answers at %s after %s", s.proc.pid(), s.HostPort, time.Since(started).Round(time.Millisecond))
}

// kill SIGKILLs the server: every service goes at once, mid-write.
func (s *temporalServer) kill() { s.proc.kill() }

// waitForFrontend waits until the frontend passes its health check.
func waitForFrontend(t *testing.T, hostPort string, proc *process) client.Client {
	t.Helper()
	ctx := context.Background()
	for deadline := time.Now().Add(2 * time.Minute); time.Now().Before(deadline); time.Sleep(500 * time.Millisecond) {
		select {
		case <-proc.done:
			t.Fatalf("the Temporal server exited with %v", proc.cmd.ProcessState)
		default:
		}
		c, err := client.Dial(client.Options{HostPort: hostPort, Logger: quiet()})
		if err != nil {
			continue
		}
		if _, err := c.CheckHealth(ctx, &client.CheckHealthRequest{}); err == nil {
			return c
		}
		c.Close()
	}
	t.Fatalf("the Temporal server at %s did not answer within 2 minutes", hostPort)
	return nil
}

// registerNamespace creates masflow's namespace and search attributes
// with the `temporal` CLI, the commands the README gives operators. A
// new namespace reaches the frontend's cache within seconds: the
// search attributes are retried until then.
func registerNamespace(t *testing.T, hostPort string) {
	t.Helper()
	cli := temporalCLI(t)
	temporal := func(args ...string) error {
		out, err := exec.Command(cli, append(args, "--address", hostPort)...).CombinedOutput()
		if err != nil {
			return fmt.Errorf("temporal %s: %v\n%s", strings.Join(args, " "), err, out)
		}
		return nil
	}
	if err := temporal("operator", "namespace", "create", "--namespace", namespace, "--retention", "72h"); err != nil {
		t.Fatal(err)
	}
	for sa := range workflows.SearchAttributeKeys().GetUntypedValues() {
		args := []string{"operator", "search-attribute", "create", "--namespace", namespace,
			"--name", sa.GetName(), "--type", sa.GetValueType().String()}
		var err error
		for deadline := time.Now().Add(time.Minute); time.Now().Before(deadline); time.Sleep(time.Second) {
			if err = temporal(args...); err == nil {
				break
			}
		}
		if err != nil {
			t.Fatal(err)
		}
	}
}

// temporalCLI is the repository's bin/temporal (`make bin/temporal`).
func temporalCLI(t *testing.T) string {
	t.Helper()
	p, err := filepath.Abs(filepath.Join("..", "..", "bin", "temporal"))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(p); err != nil {
		t.Fatalf("no Temporal CLI at %s: run `make cluster-test` (it builds bin/temporal)", p)
	}
	return p
}

// quiet drops the SDK's logs: the test's own clients retry on purpose.
func quiet() log.Logger { return log.NewStructuredLogger(slog.New(slog.DiscardHandler)) }
