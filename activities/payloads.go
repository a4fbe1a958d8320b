package activities

import (
	"github.com/masflow/masflow/internal/advisor"
	"github.com/masflow/masflow/internal/engine"
	"github.com/masflow/masflow/internal/mas"
)

// The types below are what activities send to the workflow. They belong
// to this package, not to internal ones, so that reshaping an internal
// type cannot silently change what running workflows decode; their JSON
// is that of the internal types they were before (histories replay).

// Progress counts what a shard did so far: rows read, MAS rows written
// per table, source rows skipped and noted per reason.
type Progress struct {
	Read    int64            `json:"read"`
	Written map[string]int64 `json:"written,omitempty"`
	Skipped map[string]int64 `json:"skipped,omitempty"`
	Notices map[string]int64 `json:"notices,omitempty"`
}

func progressOf(p mas.Progress) Progress {
	return Progress{Read: p.Read, Written: p.Written, Skipped: p.Skipped, Notices: p.Notices}
}

// Finding is one result of a pre-flight check.
type Finding struct {
	Code      string `json:"code"`
	Severity  string `json:"severity"`
	Message   string `json:"message"`
	Count     *int64 `json:"count,omitempty"`
	Estimated bool   `json:"estimated,omitempty"`
	Hint      string `json:"hint,omitempty"`
}

func findingsOf(fs []advisor.Finding) []Finding {
	out := make([]Finding, 0, len(fs))
	for _, f := range fs {
		out = append(out, Finding{Code: f.Code, Severity: string(f.Severity), Message: f.Message, Count: f.Count,
			Estimated: f.Estimated, Hint: f.Hint})
	}
	return out
}

// TableTally compares a MAS table's rows with what the batches wrote.
type TableTally struct {
	Table    string `json:"table"`
	Expected int64  `json:"expected"`
	Actual   int64  `json:"actual"`
}

// EntityTally is an entity's reconciliation.
type EntityTally struct {
	Entity     string   `json:"entity"`
	SourceRows int64    `json:"source_rows"`
	Shards     int      `json:"shards"`
	Done       bool     `json:"done"`
	Progress   Progress `json:"progress"`
}

func talliesOf(rec engine.Reconciliation) ([]TableTally, []EntityTally) {
	tables := make([]TableTally, 0, len(rec.Tables))
	for _, t := range rec.Tables {
		tables = append(tables, TableTally{Table: t.Table, Expected: t.Expected, Actual: t.Actual})
	}
	entities := make([]EntityTally, 0, len(rec.Entities))
	for _, e := range rec.Entities {
		entities = append(entities, EntityTally{Entity: e.Entity, SourceRows: e.SourceRows, Shards: e.Shards,
			Done: e.Done, Progress: progressOf(e.Progress)})
	}
	return tables, entities
}
