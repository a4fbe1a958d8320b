package homeserver

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/masflow/masflow/internal/pgtest"
	"github.com/masflow/masflow/internal/secret"
)

// fakeSynapseEnv makes the test binary play Synapse (TestMain): serve
// /health on the address in it and hold a database session on
// MASFLOW_FAKE_SYNAPSE_DSN until SIGTERM, the way Synapse does.
const fakeSynapseEnv = "MASFLOW_FAKE_SYNAPSE_ADDR"

func TestMain(m *testing.M) {
	if addr := os.Getenv(fakeSynapseEnv); addr != "" {
		os.Exit(playSynapse(addr, os.Getenv("MASFLOW_FAKE_SYNAPSE_DSN")))
	}
	os.Exit(m.Run())
}

func playSynapse(addr, dsn string) int {
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM)
	defer stop()
	if dsn != "" {
		conn, err := pgx.Connect(ctx, dsn)
		if err != nil {
			fmt.Fprintln(os.Stderr, err)
			return 1
		}
		defer conn.Close(context.Background())
	}
	l, err := net.Listen("tcp", addr)
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	srv := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) { _, _ = w.Write([]byte("OK")) })}
	go func() { _ = srv.Serve(l) }()
	<-ctx.Done()
	_ = srv.Close()
	return 0
}

// double is a child process of the test binary playing Synapse (a
// /health listener and, given a DSN, a database session) or MAS (a
// /health listener) on a loopback port; launch and kill are shell lines.
type double struct {
	pidFile, launch, kill string
}

func newDouble(t *testing.T, dir, name string, port int, dsn string) double {
	t.Helper()
	d := double{pidFile: filepath.Join(dir, name+".pid")}
	d.launch = fmt.Sprintf("%s=127.0.0.1:%d MASFLOW_FAKE_SYNAPSE_DSN='%s' %s >%s 2>&1 & echo $! > %s",
		fakeSynapseEnv, port, dsn, os.Args[0], filepath.Join(dir, name+".log"), d.pidFile)
	d.kill = fmt.Sprintf("[ -f %[1]s ] && kill $(cat %[1]s) 2>/dev/null; rm -f %[1]s", d.pidFile)
	t.Cleanup(func() { _ = shell(d.kill) })
	return d
}

// commandDeployment returns a Managed controller whose command controller
// starts and stops a child process playing Synapse on port, connected to
// the Synapse database dsn.
func commandDeployment(t *testing.T, port int, dsn string) (*Managed, string) {
	t.Helper()
	p := probes(t, port, "")
	p.SynapseDB = pgtest.Pool(t, dsn)
	syn := newDouble(t, t.TempDir(), "synapse", port, dsn)
	return &Managed{Probes: p, Processes: NewCommand(syn.kill+"; echo stop sent", syn.launch, "", "", time.Minute),
		StopWait: 20 * time.Second, StartWait: 20 * time.Second, Poll: 100 * time.Millisecond, CommandTimeout: time.Minute}, syn.pidFile
}

func shell(line string) error {
	_, err := (runner{}).run(context.Background(), "test", "/bin/sh", "-c", line)
	return err
}

func TestManagedStartsAndStopsARealProcessVerified(t *testing.T) {
	ctx := context.Background()
	dsn := pgtest.Database(t, pgtest.Synapse)
	m, pidFile := commandDeployment(t, closed(t), dsn)

	rep, err := m.Start(ctx, nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	if rep.Note != "started and answering /health: mas synapse" {
		t.Fatalf("start note %q", rep.Note)
	}
	if _, err := os.Stat(pidFile); err != nil {
		t.Fatalf("the start command did not run: %v", err)
	}
	if err := m.Probes.VerifyStopped(ctx); !errors.Is(err, ErrNotYet) {
		t.Fatalf("a started Synapse looks stopped: %v", err)
	}
	rep, err = m.Stop(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(strings.Join(rep.Details, "\n"), "stop synapse, mas: stop sent") {
		t.Fatalf("stop output not recorded: %q", rep.Details)
	}
	if err := m.Probes.VerifyStopped(ctx); err != nil {
		t.Fatalf("stopped, verified, yet: %v", err)
	}
	if _, err := m.Stop(ctx); err != nil {
		t.Fatalf("stopping a stopped homeserver: %v", err)
	}
}

func TestManagedStopFailsWhileSomethingStillRuns(t *testing.T) {
	ctx := context.Background()
	dsn := pgtest.Database(t, pgtest.Synapse)
	port := closed(t)
	m, _ := commandDeployment(t, port, dsn)
	if _, err := m.Start(ctx, nil, nil); err != nil {
		t.Fatal(err)
	}
	m.Processes = NewCommand("echo pretending to stop", "true", "", "", time.Minute) // forgets a worker
	m.StopWait = 500 * time.Millisecond
	_, err := m.Stop(ctx)
	if !errors.Is(err, ErrNotYet) {
		t.Fatalf("got %v, want ErrNotYet", err)
	}
	for _, want := range []string{fmt.Sprintf("127.0.0.1:%d/health answers", port), "other sessions of its database role",
		"homeserver.command names every Synapse worker"} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("error %q lacks %q", err, want)
		}
	}
}

func TestManagedStartFailsWhenSynapseNeverAnswers(t *testing.T) {
	m, _ := commandDeployment(t, closed(t), pgtest.Database(t, pgtest.Synapse))
	m.Processes = NewCommand("true", "echo started nothing", "", "", time.Minute)
	m.StartWait = 300 * time.Millisecond
	_, err := m.Start(context.Background(), nil, []Service{Synapse})
	if !errors.Is(err, ErrNotYet) || !strings.Contains(err.Error(), "synapse does not answer 200") {
		t.Fatalf("got %v", err)
	}
}

// A program's output can quote a config value it rejects: no secret of
// the configs reaches a step's report or error, and the error still
// classifies by its cause.
func TestProgramOutputNeverCarriesASecret(t *testing.T) {
	const planted = "hunter2-matrix-secret"
	cases := []struct {
		name    string
		step    func(context.Context, *Managed) (Report, error)
		wantErr error // nil: the step succeeds
	}{
		{"in the report of a stop command that worked", stopWith("echo 'using secret " + planted + "'"), nil},
		{"in the error of a stop command that failed", stopWith("echo 'bad value " + planted + "' >&2; exit 2"), &exec.ExitError{}},
		{"in the error of Synapse's parser refusing the rewrite", reconfigureWith("echo 'bad value " + planted + "' >&2; exit 1"),
			ErrConfigRefused},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			p := probes(t, closed(t), "")
			m := &Managed{Probes: p, Secrets: secret.Known{planted}, StopWait: time.Second, CommandTimeout: time.Minute,
				Steps: &HostSteps{Probes: p}}
			rep, err := c.step(context.Background(), m)
			text := fmt.Sprintf("%+v %v", rep, err)
			if (err != nil) != (c.wantErr != nil) || strings.Contains(text, planted) || !strings.Contains(text, "[redacted]") {
				t.Fatalf("got %s", text)
			}
			var exit *exec.ExitError
			if c.wantErr != nil && !errors.As(err, &exit) || errors.Is(c.wantErr, ErrConfigRefused) && !errors.Is(err, ErrConfigRefused) {
				t.Fatalf("the cause is lost: %v", err)
			}
		})
	}
}

// stopWith stops with this shell command.
func stopWith(stop string) func(context.Context, *Managed) (Report, error) {
	return func(ctx context.Context, m *Managed) (Report, error) {
		m.Processes = NewCommand(stop, "true", "", "", time.Minute)
		return m.Stop(ctx)
	}
}

// reconfigureWith rewrites the config and checks it with a Synapse
// parser running this shell script.
func reconfigureWith(parser string) func(context.Context, *Managed) (Report, error) {
	return func(ctx context.Context, m *Managed) (Report, error) {
		dir := filepath.Dir(m.Probes.SynapsePaths[0])
		m.Steps.SynapsePython = filepath.Join(dir, "python")
		if err := os.WriteFile(m.Steps.SynapsePython, []byte("#!/bin/sh\n"+parser+"\n"), 0o755); err != nil {
			return Report{}, err
		}
		m.Steps.MASEndpoint, m.Probes.MAS.Secret = "http://mas:8080/", "shared-secret-of-the-test"
		return m.Reconfigure(ctx)
	}
}

// homeserver.command.start without mas_start starts the whole deployment
// (docs/homeserver.md): it runs once, and masflow then waits for every
// service it covers; with mas_start, MAS's command runs first and
// Synapse's after MAS answers. The same holds for stop and mas_stop.
func TestCommandControllerRunsEachCommandOnceForWhatItCovers(t *testing.T) {
	cases := []struct {
		name                string
		separateMAS         bool
		only                []Service
		wantNote            string
		wantStart, wantStop []string
	}{
		{"one start and one stop for Synapse and MAS", false, nil,
			"started and answering /health: mas synapse", []string{"start"}, []string{"stop"}},
		{"mas_start first, mas_stop last", true, nil,
			"started and answering /health: mas synapse", []string{"mas_start", "start"}, []string{"stop", "mas_stop"}},
		{"the rollback's start of Synapse alone runs start", true, []Service{Synapse},
			"started and answering /health: synapse", []string{"start"}, []string{"stop", "mas_stop"}},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			ctx := context.Background()
			synPort, masPort := closed(t), closed(t)
			p := probes(t, synPort, "")
			dir := filepath.Dir(p.SynapsePaths[0])
			p.MAS = writeMAS(t, dir, fmt.Sprintf("http: {listeners: [{binds: [{address: '127.0.0.1:%d'}]}]}", masPort))
			syn, mas := newDouble(t, dir, "synapse", synPort, ""), newDouble(t, dir, "mas", masPort, "")
			log := filepath.Join(dir, "calls.log")
			called := func(name string) string { return "echo " + name + " >> " + log + "; " }
			cmd := NewCommand(called("stop")+syn.kill+"; "+mas.kill, called("start")+syn.launch+"; "+mas.launch, "", "", time.Minute)
			if c.separateMAS {
				cmd = NewCommand(called("stop")+syn.kill, called("start")+syn.launch,
					called("mas_stop")+mas.kill, called("mas_start")+mas.launch, time.Minute)
			}
			m := &Managed{Probes: p, Processes: cmd, StopWait: 10 * time.Second, StartWait: 10 * time.Second,
				Poll: 50 * time.Millisecond, CommandTimeout: time.Minute}

			rep, err := m.Start(ctx, nil, c.only)
			if err != nil || rep.Note != c.wantNote {
				t.Fatalf("start: %q, %v; want %q", rep.Note, err, c.wantNote)
			}
			if got := calls(t, log); !slices.Equal(got, c.wantStart) {
				t.Fatalf("start ran %q, want %q", got, c.wantStart)
			}
			if err := os.Remove(log); err != nil {
				t.Fatal(err)
			}
			if rep, err = m.Stop(ctx); err != nil {
				t.Fatalf("stop: %v", err)
			}
			if got := calls(t, log); !slices.Equal(got, c.wantStop) {
				t.Fatalf("stop ran %q, want %q", got, c.wantStop)
			}
		})
	}
}
