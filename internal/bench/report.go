package main

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"maps"
	"slices"
	"text/tabwriter"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/masflow/masflow/internal/mas"
	"github.com/masflow/masflow/internal/synthetic"
)

// Run is one measured import.
type Run struct {
	ID            string  `json:"id"`
	Name          string  `json:"name"`
	MASRows       int64   `json:"mas_rows"`
	Seconds       float64 `json:"seconds"`
	RowsPerSecond float64 `json:"rows_per_second"`
	// PeakRSSKiB is the peak resident set of PeakRSSOf (0: not measured).
	PeakRSSKiB int64            `json:"peak_rss_kib,omitempty"`
	PeakRSSOf  string           `json:"peak_rss_of,omitempty"`
	Tables     map[string]int64 `json:"tables"`
}

// total sums the tables into MASRows and the rate.
func (r *Run) total() {
	r.MASRows = mas.Total(r.Tables)
	r.RowsPerSecond = perSecond(r.MASRows, r.Seconds)
}

// newRun counts what a run wrote into its MAS database.
func (b *bench) newRun(ctx context.Context, id, name, masDSN string, wall time.Duration, rssKiB int64, rssOf string) (Run, error) {
	conn, err := pgx.Connect(ctx, masDSN)
	if err != nil {
		return Run{}, fmt.Errorf("connecting to run %s's MAS database: %w", id, err)
	}
	defer conn.Close(ctx)
	r := Run{ID: id, Name: name, Seconds: wall.Seconds(), PeakRSSKiB: rssKiB, PeakRSSOf: rssOf}
	if r.Tables, err = countRows(ctx, conn, "public"); err != nil {
		return Run{}, err
	}
	r.total()
	b.logf("%s: %d MAS rows in %.2fs", id, r.MASRows, r.Seconds)
	return r, nil
}

// Report is every figure of a benchmark session.
type Report struct {
	Users           int     `json:"users"`
	Batch           int     `json:"batch_size"`
	Shards          int     `json:"shards_per_entity"`
	Parallel        int     `json:"parallelism"`
	RestoreParallel int     `json:"restore_parallelism_b"`
	GenerateSeconds float64 `json:"generate_seconds"`
	// Reused names the database given with -source (nothing generated).
	Reused string `json:"reused_source,omitempty"`
	// Strays: every Strays-th generated user has rows without an exact
	// owner (-strays).
	Strays     int             `json:"strays,omitempty"`
	SourceRows synthetic.Stats `json:"source_rows"`
	Runs       []Run           `json:"runs"`
	// Ratios divide the runs' seconds: "a1/c" is how many times the raw
	// COPY's time a1 took.
	Ratios map[string]float64 `json:"ratios"`
	// FloorSeconds is c plus b's schema pause and restore: loading the
	// rows and building the MAS indexes and constraints once, the least
	// any import into this schema can take on this machine.
	FloorSeconds float64 `json:"floor_seconds"`
	// EmbeddedStartSeconds: a1's starter announced its embedded server and
	// worker ready (part of a1's time).
	EmbeddedStartSeconds float64 `json:"a1_embedded_start_seconds"`
	// StarterTreePeakRSSKiB: the larger of a1's starter and its dev server.
	StarterTreePeakRSSKiB int64 `json:"a1_starter_or_server_peak_rss_kib"`
	// ServerStartSeconds and WorkerReadySeconds: a2's dev server answered,
	// its worker polled (neither is part of a2's time).
	ServerStartSeconds float64 `json:"a2_server_start_seconds"`
	WorkerReadySeconds float64 `json:"a2_worker_ready_seconds"`
	WorkerPeakRSSKiB   int64   `json:"a2_worker_peak_rss_kib"`
	// Phases of a2 from its workflow history; EnginePhases of b.
	Phases       []Phase  `json:"a2_phases"`
	EnginePhases []Phase  `json:"b_phases"`
	Entities     []Entity `json:"b_entities"`
	// Precopy is run d (its last run at the homeserver's size).
	Precopy *Precopy `json:"d_precopy,omitempty"`
	// Rounds are run d's repeated downtime figures (-rounds,
	// -growth-users).
	Rounds *Rounds `json:"d_rounds,omitempty"`
}

// ratioPairs are the ratios reported, numerator and denominator.
var ratioPairs = [][2]string{{"a1", "c"}, {"a2", "c"}, {"b", "c"}, {"a1", "b"}, {"a2", "b"}}

func (r *Report) computeRatios() {
	secs := map[string]float64{}
	for _, run := range r.Runs {
		secs[run.ID] = run.Seconds
	}
	r.Ratios = map[string]float64{}
	for _, p := range ratioPairs {
		if secs[p[0]] > 0 && secs[p[1]] > 0 {
			r.Ratios[p[0]+"/"+p[1]] = secs[p[0]] / secs[p[1]]
		}
	}
	if secs["c"] > 0 && len(r.EnginePhases) > 0 {
		r.FloorSeconds = secs["c"] + r.EnginePhases[len(r.EnginePhases)-1].Seconds
		r.Ratios["floor/c"] = r.FloorSeconds / secs["c"]
		for _, a := range []string{"a1", "a2", "b"} {
			if secs[a] > 0 {
				r.Ratios[a+"/floor"] = secs[a] / r.FloorSeconds
			}
		}
	}
}

func (r *Report) writeJSON(w io.Writer) error {
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	return enc.Encode(r)
}

func (r *Report) writeTables(w io.Writer) {
	origin := fmt.Sprintf("generated in %.1fs", r.GenerateSeconds)
	if r.Reused != "" {
		origin = "reused from database " + r.Reused
	}
	if r.Strays > 0 {
		origin += fmt.Sprintf(", every %d-th user with stray rows", r.Strays)
	}
	fmt.Fprintf(w, "source: %d users %s; batch %d, %d shards per entity, parallelism %d\n",
		r.Users, origin, r.Batch, r.Shards, r.Parallel)
	table(w, "\nsynapse table\trows\t", func(tw io.Writer) {
		for _, t := range slices.Sorted(maps.Keys(r.SourceRows)) {
			fmt.Fprintf(tw, "%s\t%d\t\n", t, r.SourceRows[t])
		}
	})
	r.writeRuns(w)
	r.writePrecopy(w)
	r.writeRounds(w)
	if len(r.Runs) > 2 {
		r.writeProduction(w)
	}
	writePhases(w, "\nphases of b (in-process)\tcalls\tseconds\t", r.EnginePhases)
	table(w, "\nentity (b)\tread\twritten\tskipped\tseconds\trows/s\t", func(tw io.Writer) {
		for _, e := range r.Entities {
			fmt.Fprintf(tw, "%s\t%d\t%d\t%d\t%.2f\t%.0f\t\n", e.Entity, e.Read, e.Written, e.Skipped, e.Seconds, e.RowsPerSecond)
		}
	})
}

// writeProduction writes what only the production runs a1 and a2 measure.
func (r *Report) writeProduction(w io.Writer) {
	fmt.Fprintf(w, "\na1: embedded server and worker ready after %.2fs (counted in a1); starter or its server peak RSS %s\n",
		r.EmbeddedStartSeconds, mib(r.StarterTreePeakRSSKiB))
	fmt.Fprintf(w, "a2: server start %.2fs, worker polling after %.2fs (neither counted in a2); worker peak RSS %s\n",
		r.ServerStartSeconds, r.WorkerReadySeconds, mib(r.WorkerPeakRSSKiB))
	writePhases(w, "\nphases of a2 (workflow history)\tcalls\tseconds\t", r.Phases)
}

func (r *Report) writeRuns(w io.Writer) {
	table(w, "\nrun\t\tMAS rows\tseconds\trows/s\tpeak RSS\tof\t", func(tw io.Writer) {
		for _, run := range r.Runs {
			fmt.Fprintf(tw, "%s\t%s\t%d\t%.2f\t%.0f\t%s\t%s\t\n", run.ID, run.Name, run.MASRows, run.Seconds,
				run.RowsPerSecond, mib(run.PeakRSSKiB), run.PeakRSSOf)
		}
	})
	fmt.Fprint(w, "\ntime ratios:")
	for _, p := range ratioPairs {
		name := p[0] + "/" + p[1]
		if v, ok := r.Ratios[name]; ok {
			fmt.Fprintf(w, "  %s %.2f", name, v)
		}
	}
	fmt.Fprintln(w)
	if r.FloorSeconds > 0 {
		fmt.Fprintf(w, "floor: c + b's schema pause and restore = %.2fs, %.2f× c (no import into this schema can be faster here);",
			r.FloorSeconds, r.Ratios["floor/c"])
		for _, a := range []string{"a1", "a2", "b"} {
			if v, ok := r.Ratios[a+"/floor"]; ok {
				fmt.Fprintf(w, "  %s/floor %.2f", a, v)
			}
		}
		fmt.Fprintln(w)
	}
	if a2, a3 := r.run("a2"), r.run("a3"); a2 != nil && a3 != nil {
		fmt.Fprintf(w, "a SIGKILLed worker cost a3 − a2 = %.2fs (the heartbeat timeout, the restart, the batches in flight)\n",
			a3.Seconds-a2.Seconds)
	}
}

// run returns the run with that ID, nil when it was not measured.
func (r *Report) run(id string) *Run {
	for i := range r.Runs {
		if r.Runs[i].ID == id {
			return &r.Runs[i]
		}
	}
	return nil
}

func writePhases(w io.Writer, header string, phases []Phase) {
	table(w, header, func(tw io.Writer) {
		for _, p := range phases {
			calls := ""
			if p.Calls > 0 {
				calls = fmt.Sprint(p.Calls)
			}
			fmt.Fprintf(tw, "%s\t%s\t%.2f\t\n", p.Name, calls, p.Seconds)
		}
	})
}

// table writes a header and rows through a right-aligned tabwriter.
func table(w io.Writer, header string, rows func(io.Writer)) {
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', tabwriter.AlignRight)
	fmt.Fprintln(tw, header)
	rows(tw)
	tw.Flush()
}

func mib(kib int64) string {
	if kib <= 0 {
		return "-"
	}
	return fmt.Sprintf("%.0f MiB", float64(kib)/1024)
}

func perSecond(n int64, seconds float64) float64 {
	if seconds <= 0 {
		return 0
	}
	return float64(n) / seconds
}
