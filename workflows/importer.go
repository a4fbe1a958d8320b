package workflows

import (
	"time"

	"github.com/masflow/masflow/activities"
	"github.com/masflow/masflow/internal/engine"
	"github.com/masflow/masflow/internal/synapse"
	"go.temporal.io/sdk/workflow"
)

// ImportState is the import's progress, carried across continue-as-new.
type ImportState struct {
	Prepared  bool
	Estimates map[string]int64
	// Stages is the wave plan, recorded on the first run: a later worker
	// with another plan (engine.Stages) replays and continues this one.
	// Empty in workflows started before it was recorded.
	Stages [][]string
	// StagesDone counts completed waves of Stages.
	StagesDone int
	// Shards holds the latest result of every shard seen.
	Shards []activities.ShardResult
	// Started records when each entity's first shard was dispatched.
	Started  map[string]time.Time
	Finished map[string]time.Time
	// LastUpdate is when the latest shard result arrived.
	LastUpdate time.Time
	Problems   []string
	Drift      []string
	// Report is the findings report file the finish step wrote.
	Report string
	// SchemaPaused: the MAS tables' indexes and constraints were dropped
	// for the import; SchemaRestored: they were rebuilt.
	SchemaPaused   bool
	SchemaRestored bool
	// SnapshotReconcile is a dry run's reconciliation, done by its
	// snapshot import against the same snapshot (nil otherwise).
	SnapshotReconcile *activities.ReconcileResult
}

// recordStages records the wave plan on first use (workflow code only:
// queries must not change state).
func (m *migration) recordStages() {
	st := &m.st.Import
	if len(st.Stages) > 0 {
		return
	}
	for _, wave := range engine.Stages() {
		var names []string
		for _, e := range wave {
			names = append(names, string(e))
		}
		st.Stages = append(st.Stages, names)
	}
}

// stages is the recorded wave plan (this code's plan before one is).
func (m *migration) stages() [][]synapse.Entity {
	if len(m.st.Import.Stages) == 0 {
		return engine.Stages()
	}
	out := make([][]synapse.Entity, len(m.st.Import.Stages))
	for i, wave := range m.st.Import.Stages {
		for _, e := range wave {
			out[i] = append(out[i], synapse.Entity(e))
		}
	}
	return out
}

// schemaPauseVersion guards the schema pause: workflows started before it
// existed keep importing into the indexed tables.
const schemaPauseVersion = "schema-pause"

// importAll imports every entity, wave by wave: users first, then what
// points at users, then tokens (which point at device sessions). Each
// shard runs as repeated ImportShard activities resuming from the
// engine's durable checkpoint.
func (m *migration) importAll(ctx workflow.Context) error {
	var a *activities.ImportActivities
	st := &m.st.Import
	if !st.Prepared {
		var prep activities.PrepareResult
		in := m.runInput()
		if workflow.GetVersion(ctx, "run-rules", workflow.DefaultVersion, 1) >= 1 {
			in.Rules = m.rules()
		}
		if err := m.activity(ctx, m.dbOptions(ctx, "check and record the run in MAS"), "PrepareImport", a.PrepareImport,
			&prep, in); err != nil {
			return err
		}
		st.Prepared, st.Estimates = true, prep.Estimates
	}
	pause := workflow.GetVersion(ctx, schemaPauseVersion, workflow.DefaultVersion, 1) >= 1
	if pause && !st.SchemaPaused {
		if err := m.activity(ctx, m.dbOptions(ctx, "pause the MAS tables' indexes and constraints"), "PauseSchema", a.PauseSchema,
			nil, m.schemaInput()); err != nil {
			return err
		}
		st.SchemaPaused = true
	}
	m.recordStages()
	stages := m.stages()
	for st.StagesDone < len(stages) {
		done, err := m.importStage(ctx, stages[st.StagesDone])
		if err != nil || !done {
			return err
		}
		st.StagesDone++
		_ = workflow.UpsertTypedSearchAttributes(ctx, SARowsImported.ValueSet(m.progress().Rows))
		if st.StagesDone < len(stages) && m.continueAsNewDue(ctx) {
			return m.continueAsNew(ctx)
		}
	}
	return m.restoreSchema(ctx)
}

// restoreSchema rebuilds the paused indexes and constraints, in parallel
// sessions; it runs after the last wave and when a failed or cancelled
// migration is compensated.
func (m *migration) restoreSchema(ctx workflow.Context) error {
	st := &m.st.Import
	if !st.SchemaPaused || st.SchemaRestored {
		return nil
	}
	var a *activities.ImportActivities
	if err := m.activity(ctx, m.restoreOptions(ctx), "RestoreSchema", a.RestoreSchema, nil, m.schemaInput()); err != nil {
		return err
	}
	st.SchemaRestored = true
	return nil
}

func (m *migration) schemaInput() activities.SchemaInput {
	return activities.SchemaInput{RunStartedAt: m.st.RunStartedAt, Parallel: m.in.Import.RestoreParallelism}
}

// importStage runs one wave's shards to completion with bounded
// parallelism; it stops dispatching when paused, and continues-as-new
// (after in-flight calls return) when history grows large.
func (m *migration) importStage(ctx workflow.Context, wave []synapse.Entity) (bool, error) {
	var a *activities.ImportActivities
	pending, err := m.planWave(ctx, wave)
	if err != nil {
		return false, err
	}
	sel := workflow.NewSelector(ctx)
	running := 0
	var firstErr error
	for len(pending) > 0 || running > 0 {
		draining := firstErr != nil || m.continueAsNewDue(ctx)
		for !draining && !m.st.Paused && m.st.Blocked == nil && running < m.in.Import.Parallelism && len(pending) > 0 {
			shard := pending[0]
			pending = pending[1:]
			running++
			f := workflow.ExecuteActivity(m.shardOptions(ctx, shard), a.ImportShard, activities.ShardInput{
				RunStartedAt: m.st.RunStartedAt, Shard: shard, BatchSize: m.in.Import.BatchSize,
				MaxSeconds: m.in.Import.ShardCallSeconds})
			sel.AddFuture(f, func(f workflow.Future) {
				running--
				var res activities.ShardResult
				if err := f.Get(ctx, &res); m.blocks(ctx, err) {
					m.block(ctx, "ImportShard "+shard, err)
					pending = append(pending, shard) // called again after the retry
					return
				} else if err != nil {
					if firstErr == nil {
						firstErr = err
					}
					return
				}
				m.recordShard(ctx, res)
				if !res.Done {
					pending = append(pending, res.Shard)
				}
			})
		}
		if running == 0 {
			if firstErr != nil {
				return false, firstErr
			}
			if draining {
				return false, m.continueAsNew(ctx)
			}
			// Paused or blocked with nothing in flight: wait for resume
			// or the operator's retry.
			if err := workflow.Await(ctx, func() bool { return !m.st.Paused && m.st.Blocked == nil }); err != nil {
				return false, err
			}
			continue
		}
		sel.Select(ctx)
	}
	return true, nil
}

// planWave plans the wave's entities and returns the shards not yet done.
func (m *migration) planWave(ctx workflow.Context, wave []synapse.Entity) ([]string, error) {
	var a *activities.ImportActivities
	var pending []string
	for _, e := range wave {
		entity := string(e)
		var plan activities.PlanResult
		in := activities.PlanInput{RunStartedAt: m.st.RunStartedAt, Entity: entity, Shards: m.in.Import.ShardsPerEntity}
		if err := m.activity(ctx, m.dbOptions(ctx, "plan shards of "+entity), "PlanEntity", a.PlanEntity, &plan, in); err != nil {
			return nil, err
		}
		for _, s := range plan.Shards {
			if !m.shardDone(s) {
				pending = append(pending, s)
			}
		}
		if _, ok := m.st.Import.Started[entity]; !ok {
			m.st.Import.Started = setTime(m.st.Import.Started, entity, workflow.Now(ctx))
		}
	}
	return pending, nil
}

func (m *migration) shardDone(id string) bool {
	for _, s := range m.st.Import.Shards {
		if s.Shard == id {
			return s.Done
		}
	}
	return false
}

// recordShard keeps the latest result of a shard and refreshes progress.
func (m *migration) recordShard(ctx workflow.Context, res activities.ShardResult) {
	st := &m.st.Import
	replaced := false
	for i := range st.Shards {
		if st.Shards[i].Shard == res.Shard {
			st.Shards[i], replaced = res, true
		}
	}
	if !replaced {
		st.Shards = append(st.Shards, res)
	}
	st.LastUpdate = workflow.Now(ctx)
	if res.Done && m.entityDone(res.Entity) {
		st.Finished = setTime(st.Finished, res.Entity, workflow.Now(ctx))
	}
	workflow.SetCurrentDetails(ctx, m.progress().Markdown())
}

func (m *migration) entityDone(entity string) bool {
	for _, s := range m.st.Import.Shards {
		if s.Entity == entity && !s.Done {
			return false
		}
	}
	return true
}

func setTime(m map[string]time.Time, k string, t time.Time) map[string]time.Time {
	if m == nil {
		m = map[string]time.Time{}
	}
	m[k] = t
	return m
}
