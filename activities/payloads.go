package activities

import (
	"github.com/masflow/masflow/internal/advisor"
	"github.com/masflow/masflow/internal/engine"
	"github.com/masflow/masflow/internal/mapping"
	"github.com/masflow/masflow/internal/mas"
	"github.com/masflow/masflow/workflows/contract"
)

// The functions below turn internal results into the contract's types,
// which are what running workflows decode.

func progressOf(p mas.Progress) contract.Progress {
	return contract.Progress{Read: p.Read, Written: p.Written, Skipped: p.Skipped, Notices: p.Notices}
}

func findingsOf(fs []advisor.Finding) []contract.Finding {
	out := make([]contract.Finding, 0, len(fs))
	for _, f := range fs {
		out = append(out, contract.Finding{Code: f.Code, Severity: string(f.Severity), Message: f.Message,
			Count: f.Count, Estimated: f.Estimated, Hint: f.Hint})
	}
	return out
}

func reconcileResultOf(rec engine.Reconciliation) contract.ReconcileResult {
	out := contract.ReconcileResult{OK: rec.OK(), Problems: rec.Problems, SourceRead: rec.SourceRead,
		Tables: make([]contract.TableTally, 0, len(rec.Tables)), Entities: make([]contract.EntityTally, 0, len(rec.Entities))}
	for _, t := range rec.Tables {
		out.Tables = append(out.Tables, contract.TableTally{Table: t.Table, Expected: t.Expected, Actual: t.Actual})
	}
	for _, e := range rec.Entities {
		out.Entities = append(out.Entities, contract.EntityTally{Entity: e.Entity, SourceRows: e.SourceRows,
			Shards: e.Shards, Done: e.Done, Progress: progressOf(e.Progress)})
	}
	return out
}

// shardResultOf totals a shard's progress for the workflow.
func shardResultOf(id, entity string, done bool, p mas.Progress) contract.ShardResult {
	out := contract.ShardResult{Shard: id, Entity: entity, Done: done, Progress: progressOf(p), Written: mas.Total(p.Written)}
	for reason, n := range p.Skipped {
		if mapping.Elsewhere(reason) {
			out.Elsewhere += n
		} else {
			out.Skipped += n
		}
	}
	return out
}
