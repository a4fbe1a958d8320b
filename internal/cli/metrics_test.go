package cli

import (
	"bytes"
	"context"
	"encoding/json"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"

	"github.com/masflow/masflow/internal/runner"
	"github.com/masflow/masflow/internal/sample"
	"github.com/masflow/masflow/internal/temporaltest"
	"github.com/masflow/masflow/workflows"
	"go.uber.org/zap"
)

// After a small migration the worker's /metrics holds masflow's own
// series with the right values, and every series the Grafana dashboard
// queries is one the worker exports.
func TestWorkerMetricsAfterAMigration(t *testing.T) {
	ctx := context.Background()
	dir := t.TempDir()
	h := sample.ForTest(t, dir, sample.Options{Users: 300})
	root := filepath.Join(filepath.Dir(temporaltest.CLIPath()), "..")
	srv, _ := temporaltest.Server(t, filepath.Join(dir, "server"), workflows.SearchAttributeKeys())
	m, err := runner.StartMetrics("127.0.0.1:0", zap.NewNop())
	if err != nil {
		t.Fatal(err)
	}
	defer m.Close(ctx)
	defer startWorker(t, h.Settings, srv.HostPort, m.Handler)()
	var out, errOut bytes.Buffer
	if code := Main(ctx, []string{"migrate", "--address", srv.HostPort, "-c", h.Settings, "--steps=advise,approve,import,reconcile",
		"--yes", "--ack", "guests_in_database,non_email_threepids"}, &out, &errOut); code != ExitOK {
		t.Fatalf("migrate: exit %d\n%s%s", code, out.String(), errOut.String())
	}
	exported := scrape(t, "http://"+m.Address+"/metrics")
	cases := []struct {
		metric string
		labels []string // name=value pairs the series must carry
		want   float64  // -1: any positive value
	}{
		{"masflow_rows_read", []string{"entity=users"}, 300},
		{"masflow_rows_written", []string{"entity=users"}, 594}, // 297 users, each a user and a password
		{"masflow_rows_skipped", []string{"entity=users"}, 3},
		{"masflow_rows_read", []string{"entity=devices"}, -1},
		{"masflow_batch_seconds_count", []string{"entity=devices"}, -1},
		{"masflow_checkpoint_timestamp_seconds", []string{"entity=users"}, -1},
		{"masflow_phase", []string{"homeserver=demo.example", "phase=completed"}, 1},
		{"masflow_phase", []string{"homeserver=demo.example", "phase=reconcile"}, 0},
		{"masflow_restore_objects", nil, sum(exported, "masflow_restore_objects_done")},
	}
	for _, c := range cases {
		got, ok := lookup(exported, c.metric, c.labels...)
		if !ok || (c.want < 0 && got <= 0) || (c.want >= 0 && got != c.want) {
			t.Errorf("%s%v = %v (exported: %v), want %v", c.metric, c.labels, got, ok, c.want)
		}
	}
	if n := sum(exported, "masflow_restore_objects_done"); n < 30 {
		t.Errorf("%v indexes and constraints rebuilt", n)
	}
	checkDashboard(t, filepath.Join(root, "deployments", "grafana", "masflow.json"), exported)
}

// series is one exported series.
type series struct {
	name   string
	labels string // as printed, e.g. {entity="users",…}
	value  float64
}

// scrape reads a Prometheus text exposition.
func scrape(t *testing.T, url string) []series {
	t.Helper()
	resp, err := http.Get(url)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	var out []series
	for _, line := range strings.Split(string(body), "\n") {
		if line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		i := strings.LastIndexByte(line, ' ')
		v, err := strconv.ParseFloat(line[i+1:], 64)
		if err != nil {
			continue
		}
		name, labels, _ := strings.Cut(line[:i], "{")
		out = append(out, series{name: name, labels: "{" + labels, value: v})
	}
	return out
}

// lookup is the value of the series of metric carrying every label pair
// (name=value); false when there is none.
func lookup(all []series, metric string, pairs ...string) (float64, bool) {
	for _, s := range all {
		if s.name != metric {
			continue
		}
		match := true
		for _, p := range pairs {
			k, v, _ := strings.Cut(p, "=")
			match = match && strings.Contains(s.labels, k+`="`+v+`"`)
		}
		if match {
			return s.value, true
		}
	}
	return 0, false
}

// sum adds every series of metric.
func sum(all []series, metric string) float64 {
	var n float64
	for _, s := range all {
		if s.name == metric {
			n += s.value
		}
	}
	return n
}

// checkDashboard: every masflow_* metric a dashboard query names exists.
func checkDashboard(t *testing.T, file string, all []series) {
	t.Helper()
	b, err := os.ReadFile(file)
	if err != nil {
		t.Fatal(err)
	}
	var dash struct {
		Panels []struct {
			Title   string
			Targets []struct{ Expr string }
		}
	}
	if err := json.Unmarshal(b, &dash); err != nil {
		t.Fatalf("%s: %v", file, err)
	}
	exported := map[string]bool{}
	for _, s := range all {
		exported[s.name] = true
	}
	metric := regexp.MustCompile(`\b(masflow|temporal)_[a-z_]+`)
	queries := 0
	for _, p := range dash.Panels {
		for _, tg := range p.Targets {
			for _, name := range metric.FindAllString(tg.Expr, -1) {
				queries++
				if !exported[name] {
					t.Errorf("panel %q queries %s, which the worker does not export", p.Title, name)
				}
			}
		}
	}
	if queries < 8 {
		t.Fatalf("the dashboard queries only %d metrics", queries)
	}
}
