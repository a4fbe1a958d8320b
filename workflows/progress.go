package workflows

import (
	"strconv"
	"strings"

	"github.com/masflow/masflow/workflows/contract"
)

// progress computes what the query and the UI show (read-only).
func (m *migration) progress() Progress {
	st := &m.st.Import
	p := Progress{Homeserver: m.in.Homeserver, Phase: m.phase, Paused: m.st.Paused, DryRun: m.in.DryRun,
		Warnings: m.st.Warnings, Done: m.st.Done, Blocked: m.st.Blocked, Verification: m.st.Verification,
		Cutover: m.st.Cutover, Delta: st.Delta, CatchUp: st.CatchUp, SnapshotsLost: st.Lost, Repairing: st.Repair}
	if st.Precopied && !st.PrecopiedAt.IsZero() {
		at := st.PrecopiedAt
		p.Precopied = &at
	}
	if at := m.in.CutoverAt; !at.IsZero() {
		p.CutoverAt = &at
	}
	for wave, entities := range st.Waves {
		for _, entity := range entities {
			p.Entities = append(p.Entities, m.entityProgress(entity, wave < st.WavesDone))
		}
	}
	for _, ep := range p.Entities {
		p.Rows += ep.Written
	}
	return p
}

// entityProgress sums an entity's shards; complete is its wave's being
// done.
func (m *migration) entityProgress(entity string, complete bool) EntityProgress {
	st := &m.st.Import
	ep := EntityProgress{Entity: entity, Estimated: st.Estimates[entity]}
	seen, done := false, true
	for _, s := range st.Shards {
		if s.Entity != entity {
			continue
		}
		seen, done = true, done && s.Done
		ep.Read += s.Progress.Read
		ep.Written += s.Written
		ep.Skipped += s.Skipped
		ep.Elsewhere += s.Elsewhere
	}
	ep.Migrated = ep.Read - ep.Skipped - ep.Elsewhere
	ep.Complete = seen && done && complete
	if start, ok := st.Started[entity]; ok {
		end, ok := st.Finished[entity]
		if !ok || !ep.Complete {
			end = st.LastUpdate
		}
		if secs := end.Sub(start).Seconds(); secs > 0 {
			ep.RowsPerSecond = float64(ep.Read) / secs
		}
	}
	return ep
}

// Markdown renders progress as the table shown in the Temporal UI (built
// with strconv: workflowcheck rejects fmt's reflection).
func (p Progress) Markdown() string {
	var b strings.Builder
	state := p.Phase
	if p.Paused {
		state += " (paused)"
	}
	if p.DryRun {
		state += " — dry run"
	}
	b.WriteString("**" + p.Homeserver + "**: " + state + ", " + itoa(p.Rows) + " MAS rows written\n\n")
	b.WriteString("| entity | read / estimated | migrated | skipped | other pass | MAS rows | rows/s |\n|---|---:|---:|---:|---:|---:|---:|\n")
	for _, e := range p.Entities {
		mark := ""
		if e.Complete {
			mark = " ✓"
		}
		b.WriteString("| " + e.Entity + mark + " | " + itoa(e.Read) + " / ~" + itoa(max(e.Estimated, 0)) + " | " +
			itoa(e.Migrated) + " | " + itoa(e.Skipped) + " | " + itoa(e.Elsewhere) + " | " + itoa(e.Written) + " | " +
			strconv.FormatFloat(e.RowsPerSecond, 'f', 0, 64) + " |\n")
	}
	if len(p.Warnings) > 0 {
		b.WriteString("\nwarnings: " + strings.Join(p.Warnings, ", ") + "\n")
	}
	writeCutover(&b, p)
	writeProbes(&b, p.Verification)
	if bl := p.Blocked; bl != nil {
		b.WriteString("\n**blocked** in " + bl.Phase + " (" + bl.Activity + ") since " + bl.At.Format("2006-01-02 15:04:05Z07:00") +
			": " + bl.Error + "\n\nFix the cause, then `starter retry`; or `starter cancel`.\n")
	}
	return b.String()
}

// stamp is how progress shows times.
const stamp = "2006-01-02 15:04:05Z07:00"

func itoa(n int64) string { return strconv.FormatInt(n, 10) }

// writeCutover says where the pre-copy and the cut-over stand.
func writeCutover(b *strings.Builder, p Progress) {
	if p.SnapshotsLost > 0 {
		b.WriteString("\npre-copy: " + strconv.Itoa(p.SnapshotsLost) + " snapshots of Synapse lost; the copy went on at a new one")
		if p.Repairing {
			b.WriteString(" (a repair pass applies what changed in between once the copy is done)")
		}
		b.WriteString("\n")
	}
	if p.Precopied != nil {
		b.WriteString("\npre-copy complete at " + p.Precopied.Format(stamp) + " (Synapse served meanwhile)\n")
	}
	writeCatchUp(b, p.CatchUp)
	switch {
	case p.Cutover != nil:
		b.WriteString("\ncut-over started by " + p.Cutover.Approver + " at " + p.Cutover.At.Format(stamp) + "\n")
	case p.Phase == contract.StepCutover && p.CutoverAt != nil:
		b.WriteString("\nwaiting for the cut-over scheduled at " + p.CutoverAt.Format(stamp) + " (or `starter cutover`)\n")
	case p.Phase == contract.StepCutover:
		b.WriteString("\nwaiting for the cut-over: `starter cutover` starts the downtime\n")
	}
	if d := p.Delta; d != nil {
		if d.All {
			b.WriteString("\ndelta: imports everything again: " + d.Reason + "\n")
		} else {
			b.WriteString("\ndelta: " + strconv.Itoa(d.Users) + " users changed since the pre-copy (" + strconv.Itoa(d.Written) +
				" with rows written, " + strconv.Itoa(d.Deleted) + " with rows only deleted), found in " +
				strconv.FormatFloat(d.Seconds, 'f', 2, 64) + " s\n")
		}
	}
}

// writeCatchUp says how fresh the copy is and what the last catch-up pass
// found: at the same pace of changes, the cut-over's delta takes about as
// long as that pass did.
func writeCatchUp(b *strings.Builder, cu *CatchUp) {
	if cu == nil || cu.Last == nil {
		return
	}
	secs := func(f float64) string { return strconv.FormatFloat(f, 'f', 1, 64) }
	b.WriteString("\ncopy as of " + cu.LastAt.Format(stamp) + " after " + strconv.Itoa(cu.Passes) + " catch-up passes (" +
		strconv.Itoa(cu.Users) + " users imported again)")
	if cu.Abandoned > 0 {
		b.WriteString(", " + strconv.Itoa(cu.Abandoned) + " taken over after losing their snapshot")
	}
	b.WriteString("; the last found " + strconv.Itoa(cu.Last.Users) + " users changed since the pass before and took " +
		secs(cu.LastSeconds) + " s (finding them " + secs(cu.Last.Seconds) + " s): predicted downtime ≈ " +
		secs(cu.LastSeconds) + " s for the delta, plus stopping and starting Synapse\n")
}

// writeProbes renders the verify step's probes: every failed or warning
// one with what answered and the fix, and how many passed.
func writeProbes(b *strings.Builder, probes []contract.Probe) {
	if len(probes) == 0 {
		return
	}
	passed := 0
	var rows strings.Builder
	for _, p := range probes {
		if p.OK && !p.Warning {
			passed++
			continue
		}
		state := "**failed**"
		if p.OK {
			state = "warning"
		}
		rows.WriteString("| " + p.Name + " | " + state + " | " + cell(p.Answered) + " | " + cell(p.Detail) + " | " + cell(p.Fix) + " |\n")
	}
	b.WriteString("\nverification: " + strconv.Itoa(passed) + " of " + strconv.Itoa(len(probes)) + " probes passed\n")
	if rows.Len() > 0 {
		b.WriteString("\n| probe | state | answered | seen | fix |\n|---|---|---|---|---|\n" + rows.String())
	}
}

// cell keeps a Markdown table cell on one line.
func cell(s string) string {
	return strings.NewReplacer("|", "\\|", "\n", " ").Replace(s)
}
