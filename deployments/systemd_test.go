package deployments

import (
	"bufio"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/masflow/masflow/internal/config"
)

// unitFile is a systemd unit: section → key → values in order (a key may
// repeat, as ReadWritePaths= does).
type unitFile map[string]map[string][]string

func parseUnit(t *testing.T, path string) unitFile {
	t.Helper()
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	u := unitFile{}
	section := ""
	sc := bufio.NewScanner(f)
	for n := 1; sc.Scan(); n++ {
		line := strings.TrimSpace(sc.Text())
		switch {
		case line == "" || strings.HasPrefix(line, "#") || strings.HasPrefix(line, ";"):
		case strings.HasPrefix(line, "[") && strings.HasSuffix(line, "]"):
			section = strings.Trim(line, "[]")
			u[section] = map[string][]string{}
		default:
			key, value, ok := strings.Cut(line, "=")
			if !ok || section == "" {
				t.Fatalf("%s:%d: not a key=value line of a section: %q", path, n, line)
			}
			u[section][key] = append(u[section][key], value)
		}
	}
	return u
}

// one returns the single value of a key ("" when unset).
func (u unitFile) one(t *testing.T, section, key string) string {
	t.Helper()
	v := u[section][key]
	if len(v) > 1 {
		t.Errorf("[%s] %s= is set %d times", section, key, len(v))
	}
	if len(v) == 0 {
		return ""
	}
	return v[len(v)-1]
}

// execLine splits an Exec*= value into the program (without systemd's
// prefixes such as "-" or "+") and its arguments.
func execLine(v string) (string, []string) {
	f := strings.Fields(v)
	if len(f) == 0 {
		return "", nil
	}
	return strings.TrimLeft(f[0], "-+@!:"), f[1:]
}

// units maps each unit file to what it must start.
var units = map[string]struct{ hostOnly bool }{
	"masflow-worker.service":      {hostOnly: false},
	"masflow-host-worker.service": {hostOnly: true},
}

func TestSystemdUnits(t *testing.T) {
	files, _ := filepath.Glob("systemd/*.service")
	if len(files) != len(units) {
		t.Errorf("systemd/ holds %v; this test knows %d units", files, len(units))
	}
	flags := workerFlags(t)
	for name, want := range units {
		u := parseUnit(t, filepath.Join("systemd", name))
		prog, args := execLine(u.one(t, "Service", "ExecStart"))
		if filepath.Base(prog) != "masflow-worker" || !filepath.IsAbs(prog) {
			t.Errorf("%s: ExecStart runs %q, want the absolute path of masflow-worker (the ./worker binary)", name, prog)
		}
		if bad := flags.check(args); len(bad) > 0 {
			t.Errorf("%s: ExecStart flags %q are not the worker's", name, bad)
		}
		if !filepath.IsAbs(flagValue(t, args, "-c")) {
			t.Errorf("%s: the settings file is not an absolute path", name)
		}
		if got := slices.Contains(args, "--host-only"); got != want.hostOnly {
			t.Errorf("%s: --host-only is %v, want %v", name, got, want.hostOnly)
		}
		if u.one(t, "Service", "User") == "" {
			t.Errorf("%s: no User=", name)
		}
		if r := u.one(t, "Service", "Restart"); r != "on-failure" && r != "always" {
			t.Errorf("%s: Restart=%q, want on-failure or always", name, r)
		}
		if u.one(t, "Service", "ProtectSystem") != "strict" {
			t.Errorf("%s: ProtectSystem is not strict", name)
		}
		if u.one(t, "Install", "WantedBy") == "" {
			t.Errorf("%s: no WantedBy= (cannot be enabled)", name)
		}
	}
}

// The database worker may write import.report_dir of the example
// settings: its StateDirectory.
func TestSystemdWorkerWritesReportDir(t *testing.T) {
	s, err := config.LoadSettings("masflow.example.yaml", nil)
	if err != nil {
		t.Fatal(err)
	}
	u := parseUnit(t, "systemd/masflow-worker.service")
	if dir := "/var/lib/" + u.one(t, "Service", "StateDirectory"); dir != s.Import.ReportDir {
		t.Errorf("masflow-worker.service may write %s, but import.report_dir is %s", dir, s.Import.ReportDir)
	}
}

// backupDir is the backup.dir the example settings and the host unit use.
const backupDir = "/var/backups/masflow"

// The host worker may write Synapse's config directory (reconfigure and
// its rollback) and the backup directory, under ProtectSystem=strict.
func TestSystemdHostWorkerWritablePaths(t *testing.T) {
	u := parseUnit(t, "systemd/masflow-host-worker.service")
	var writable []string
	for _, v := range u["Service"]["ReadWritePaths"] {
		writable = append(writable, strings.Fields(v)...)
	}
	defaults, err := config.LoadSettings("", nil)
	if err != nil {
		t.Fatal(err)
	}
	need := []string{backupDir}
	for _, f := range defaults.Synapse.Config {
		need = append(need, filepath.Dir(f))
	}
	for _, dir := range need {
		if !slices.ContainsFunc(writable, func(w string) bool { return covers(strings.TrimPrefix(w, "-"), dir) }) {
			t.Errorf("masflow-host-worker.service: ReadWritePaths %q does not cover %s", writable, dir)
		}
	}
	example, err := os.ReadFile("masflow.example.yaml")
	if err != nil || !strings.Contains(string(example), backupDir) {
		t.Errorf("masflow.example.yaml does not suggest backup.dir %s, which the host unit prepares", backupDir)
	}
	if !slices.ContainsFunc(u["Service"]["ExecStartPre"], func(v string) bool { return strings.Contains(v, backupDir) }) {
		t.Errorf("masflow-host-worker.service does not create %s before its sandbox is set up", backupDir)
	}
}

// covers reports whether path is dir or inside it.
func covers(dir, path string) bool {
	rel, err := filepath.Rel(dir, path)
	return err == nil && rel != ".." && !strings.HasPrefix(rel, "../")
}

// systemd's own parser, where installed: every directive must be known
// and its value valid. The binary is replaced by a stub, which
// systemd-analyze requires to exist.
func TestSystemdAnalyzeVerify(t *testing.T) {
	analyze, err := exec.LookPath("systemd-analyze")
	if err != nil {
		t.Log("systemd-analyze not installed: units checked by the other tests only")
		return
	}
	dir := t.TempDir()
	stub := filepath.Join(dir, "masflow-worker")
	if err := os.WriteFile(stub, []byte("#!/bin/sh\n"), 0o755); err != nil {
		t.Fatal(err)
	}
	for name := range units {
		b, err := os.ReadFile(filepath.Join("systemd", name))
		if err != nil {
			t.Fatal(err)
		}
		unit := filepath.Join(dir, name)
		text := strings.ReplaceAll(string(b), "/usr/local/bin/masflow-worker", stub)
		if err := os.WriteFile(unit, []byte(text), 0o644); err != nil {
			t.Fatal(err)
		}
		out, err := exec.Command(analyze, "verify", unit).CombinedOutput()
		if err != nil || strings.Contains(string(out), name) {
			t.Errorf("systemd-analyze verify %s: %v\n%s", name, err, out)
		}
	}
}
