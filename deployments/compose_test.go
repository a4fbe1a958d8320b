package deployments

import (
	"context"
	"net"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/compose-spec/compose-go/v2/cli"
	"github.com/compose-spec/compose-go/v2/types"
	"github.com/masflow/masflow/internal/config"
	"github.com/masflow/masflow/workflows"
	"go.temporal.io/api/enums/v1"
)

const composeFile = "compose/compose.yaml"

// loadCompose parses compose.yaml as `docker compose` would (schema
// validation, interpolation, anchors, relative paths), with every profile
// enabled and only the variables the file requires.
func loadCompose(t *testing.T) *types.Project {
	t.Helper()
	opts, err := cli.NewProjectOptions([]string{composeFile},
		cli.WithWorkingDirectory("compose"),
		cli.WithEnv([]string{"TEMPORAL_DB_PASSWORD=not-a-secret"}),
		cli.WithProfiles([]string{"*"}))
	if err != nil {
		t.Fatal(err)
	}
	p, err := opts.LoadProject(context.Background())
	if err != nil {
		t.Fatalf("%s does not load: %v", composeFile, err)
	}
	return p
}

func service(t *testing.T, p *types.Project, name string) types.ServiceConfig {
	t.Helper()
	s, err := p.GetService(name)
	if err != nil {
		t.Fatalf("%s: %v", composeFile, err)
	}
	return s
}

func TestComposeImagesPinned(t *testing.T) {
	p := loadCompose(t)
	built := map[string]bool{}
	for _, s := range p.Services {
		if s.Build != nil {
			built[s.Image] = true
		}
	}
	for _, s := range p.Services {
		var err error
		switch {
		case s.Image == "":
			t.Errorf("service %s has no image", s.Name)
			continue
		case built[s.Image]:
			err = localTag(s.Image)
		default:
			err = pinned(s.Image)
		}
		if err != nil {
			t.Errorf("service %s: %v", s.Name, err)
		}
	}
}

// A service others wait for must say when it is ready (a healthcheck they
// wait on) or be a one-shot they wait to complete; nothing may start
// against a dependency that is merely started.
func TestComposeDependenciesHealthy(t *testing.T) {
	p := loadCompose(t)
	for _, s := range p.Services {
		for dep, d := range s.DependsOn {
			target := service(t, p, dep)
			switch d.Condition {
			case types.ServiceConditionHealthy:
				if !hasHealthcheck(target) {
					t.Errorf("%s waits for %s to be healthy, but %s has no healthcheck", s.Name, dep, dep)
				}
			case types.ServiceConditionCompletedSuccessfully:
				if target.Restart == types.RestartPolicyAlways || target.Restart == types.RestartPolicyUnlessStopped {
					t.Errorf("%s waits for %s to complete, but %s restarts for ever (%s)", s.Name, dep, dep, target.Restart)
				}
			default:
				t.Errorf("%s depends on %s with condition %q: wait for service_healthy or service_completed_successfully",
					s.Name, dep, d.Condition)
			}
		}
		if s.Restart == types.RestartPolicyUnlessStopped || s.Restart == types.RestartPolicyAlways {
			if !hasHealthcheck(s) {
				t.Errorf("long-running service %s has no healthcheck", s.Name)
			}
		} else if !slices.Contains(s.Profiles, "tools") && s.Restart != types.RestartPolicyOnFailure {
			t.Errorf("service %s: restart is %q; long-running services use unless-stopped, one-shots on-failure",
				s.Name, s.Restart)
		}
	}
	worker := service(t, p, "worker")
	for _, want := range []string{"temporal", "register-search-attributes"} {
		if _, ok := worker.DependsOn[want]; !ok {
			t.Errorf("the worker does not wait for %s", want)
		}
	}
}

func hasHealthcheck(s types.ServiceConfig) bool {
	return s.HealthCheck != nil && !s.HealthCheck.Disable && len(s.HealthCheck.Test) > 0 &&
		s.HealthCheck.Test[0] != "NONE"
}

// The worker and the starter reach Temporal through TEMPORAL_ADDRESS (the
// SDK's standard client settings), pointing at the compose service.
func TestComposeTemporalAddress(t *testing.T) {
	p := loadCompose(t)
	temporal := service(t, p, "temporal")
	for _, name := range []string{"worker", "starter", "register-search-attributes"} {
		s := service(t, p, name)
		addr := s.Environment["TEMPORAL_ADDRESS"]
		if addr == nil {
			t.Errorf("%s has no TEMPORAL_ADDRESS", name)
			continue
		}
		host, port, err := net.SplitHostPort(*addr)
		if err != nil || host != temporal.Name || port != "7233" {
			t.Errorf("%s: TEMPORAL_ADDRESS is %q, want %s:7233", name, *addr, temporal.Name)
		}
	}
}

// The worker's settings file loads with masflow's own loader, and every
// config file those settings name is inside a read-only bind mount, as is
// the settings file itself; the findings report goes to a writable volume.
func TestComposeWorkerMountsAndSettings(t *testing.T) {
	p := loadCompose(t)
	for _, name := range []string{"worker", "starter"} {
		s := service(t, p, name)
		settingsPath := flagValue(t, s.Command, "-c")
		m, ok := mountFor(s, settingsPath)
		if !ok || m.Type != types.VolumeTypeBind || !m.ReadOnly {
			t.Fatalf("%s: the settings file %s is not a read-only bind mount: %+v", name, settingsPath, m)
		}
		settings, err := config.LoadSettings(m.Source, nil)
		if err != nil {
			t.Fatalf("%s: the settings file %s does not load: %v", name, m.Source, err)
		}
		for _, file := range append(slices.Clone(settings.Synapse.Config), settings.MAS.Config...) {
			m, ok := mountFor(s, file)
			if !ok || m.Type != types.VolumeTypeBind || !m.ReadOnly {
				t.Errorf("%s: %s (named in %s) is not inside a read-only bind mount", name, file, settingsPath)
			}
		}
		if name != "worker" {
			continue
		}
		if m, ok := mountFor(s, settings.Import.ReportDir); !ok || m.ReadOnly || m.Type != types.VolumeTypeVolume {
			t.Errorf("worker: import.report_dir %s is not on a writable named volume", settings.Import.ReportDir)
		}
		_, port, err := net.SplitHostPort(settings.Worker.MetricsAddress)
		if err != nil {
			t.Fatalf("worker.metrics_address %q: %v", settings.Worker.MetricsAddress, err)
		}
		if probe := strings.Join(s.HealthCheck.Test, " "); !strings.Contains(probe, "/"+port) {
			t.Errorf("worker healthcheck %q does not probe worker.metrics_address port %s", probe, port)
		}
		if settings.Worker.HostTaskQueue != "" {
			t.Errorf("worker.host_task_queue is %q: these workers would poll the host queue and run homeserver "+
				"steps off the Synapse host", settings.Worker.HostTaskQueue)
		}
	}
}

// flagValue returns the argument after flag in a command line.
func flagValue(t *testing.T, args []string, flag string) string {
	t.Helper()
	i := slices.Index(args, flag)
	if i < 0 || i+1 >= len(args) {
		t.Fatalf("command %q has no %s", args, flag)
	}
	return args[i+1]
}

// mountFor finds the mount of s that holds path (the deepest one).
func mountFor(s types.ServiceConfig, path string) (types.ServiceVolumeConfig, bool) {
	var best types.ServiceVolumeConfig
	found := false
	for _, v := range s.Volumes {
		rel, err := filepath.Rel(v.Target, path)
		if err != nil || rel == ".." || strings.HasPrefix(rel, "../") {
			continue
		}
		if !found || len(v.Target) > len(best.Target) {
			best, found = v, true
		}
	}
	return best, found
}

// The one-shot registers exactly the search attributes the workflow sets,
// each with its type.
func TestComposeRegistersSearchAttributes(t *testing.T) {
	p := loadCompose(t)
	script := strings.Join(service(t, p, "register-search-attributes").Command, "\n")
	cliType := map[enums.IndexedValueType]string{
		enums.INDEXED_VALUE_TYPE_KEYWORD: "Keyword",
		enums.INDEXED_VALUE_TYPE_BOOL:    "Bool",
		enums.INDEXED_VALUE_TYPE_INT:     "Int",
	}
	for sa := range workflows.SearchAttributeKeys().GetUntypedValues() {
		want := sa.GetName() + ":" + cliType[sa.GetValueType()]
		if !strings.Contains(script, want) {
			t.Errorf("register-search-attributes does not create %s", want)
		}
	}
	if strings.Count(script, "Masflow") != len(workflows.SearchAttributeKeys().GetUntypedValues()) {
		t.Errorf("register-search-attributes names other attributes than the workflow sets:\n%s", script)
	}
}

// The worker image is built from the repository's Dockerfile, which
// builds both commands into a non-root runtime with pg_dump.
func TestComposeBuildsDockerfile(t *testing.T) {
	p := loadCompose(t)
	w := service(t, p, "worker")
	if w.Build == nil {
		t.Fatal("the worker is not built from the repository")
	}
	df := filepath.Join(w.Build.Context, w.Build.Dockerfile)
	root, _ := filepath.Abs("..")
	if df != filepath.Join(root, "Dockerfile") {
		t.Fatalf("the worker is built from %s, want the repository's Dockerfile", df)
	}
	checkDockerfile(t, df)
	starter := service(t, p, "starter")
	if starter.Image != w.Image || len(starter.Entrypoint) == 0 || starter.Entrypoint[0] != "masflow-starter" {
		t.Errorf("the starter service should run masflow-starter from the worker's image, has %s %q",
			starter.Image, starter.Entrypoint)
	}
}

// dockerInstruction is one instruction of a Dockerfile, continuation
// lines joined.
type dockerInstruction struct {
	op, args string
}

func parseDockerfile(t *testing.T, path string) []dockerInstruction {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	var out []dockerInstruction
	var cur strings.Builder
	for _, line := range strings.Split(string(b), "\n") {
		trimmed := strings.TrimSpace(line)
		if cur.Len() == 0 && (trimmed == "" || strings.HasPrefix(trimmed, "#")) {
			continue
		}
		cont := strings.HasSuffix(trimmed, "\\")
		cur.WriteString(strings.TrimSuffix(trimmed, "\\") + " ")
		if cont {
			continue
		}
		op, args, _ := strings.Cut(strings.TrimSpace(cur.String()), " ")
		out = append(out, dockerInstruction{strings.ToUpper(op), strings.TrimSpace(args)})
		cur.Reset()
	}
	return out
}

func checkDockerfile(t *testing.T, path string) {
	ins := parseDockerfile(t, path)
	args := map[string]string{}
	var stages, lastUser, entrypoint, built string
	var runtimeRuns []string
	for _, in := range ins {
		switch in.op {
		case "ARG":
			if k, v, ok := strings.Cut(in.args, "="); ok && stages == "" {
				args[k] = v
			}
		case "FROM":
			image := strings.Fields(in.args)[0]
			if strings.HasPrefix(image, "${") {
				image = args[strings.Trim(image, "${}")]
			}
			if err := pinned(image); err != nil {
				t.Errorf("Dockerfile FROM: %v", err)
			}
			stages += "|" + image
			lastUser, runtimeRuns = "", nil
		case "USER":
			lastUser = in.args
		case "ENTRYPOINT":
			entrypoint = in.args
		case "RUN":
			runtimeRuns = append(runtimeRuns, in.args)
			if strings.Contains(in.args, "go build") {
				built = in.args
			}
		}
	}
	if strings.Count(stages, "|") < 2 {
		t.Errorf("Dockerfile is not multi-stage (stages %s)", stages)
	}
	for _, pkg := range []string{"./worker", "./starter"} {
		if !strings.Contains(built, pkg) {
			t.Errorf("Dockerfile does not build %s (go build: %q)", pkg, built)
		}
	}
	if lastUser == "" || lastUser == "root" || strings.HasPrefix(lastUser, "0") {
		t.Errorf("the runtime image runs as %q, want a non-root user", lastUser)
	}
	if !strings.Contains(strings.Join(runtimeRuns, " "), "postgresql-client") {
		t.Error("the runtime image lacks pg_dump and pg_restore (postgresql-client)")
	}
	if !strings.Contains(entrypoint, "masflow-worker") {
		t.Errorf("the image's entrypoint is %s, want masflow-worker", entrypoint)
	}
}

// The worker and starter command lines use only flags the binaries have.
func TestComposeCommands(t *testing.T) {
	p := loadCompose(t)
	if bad := workerFlags(t).check(service(t, p, "worker").Command); len(bad) > 0 {
		t.Errorf("worker: flags %q are not the worker's", bad)
	}
	checkStarterArgs(t, "compose starter", service(t, p, "starter").Command)
}
