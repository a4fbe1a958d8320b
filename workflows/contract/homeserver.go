package contract

import "time"

// StepResult is a homeserver step's record for the audit trail: what was
// done and the commands' output. It never holds a secret.
type StepResult struct {
	Note string
	// Details are the commands' outputs and the probes' outcomes.
	Details []string
	// Replicas are the workloads' replica counts before the stop
	// (Kubernetes), which the start restores.
	Replicas map[string]int32
	// Probes are the verify step's outcomes (a failed verification
	// carries them as its error's details instead).
	Probes []Probe `json:",omitempty"`
}

// Probe is one check of the verify step: what it probed, what answered,
// and on failure the likely cause and the fix. It never holds a secret.
type Probe struct {
	// Name says which check this is ("login v3", "migrated token 3/20").
	Name string `json:"name"`
	// OK is false when the check failed.
	OK bool `json:"ok"`
	// Warning marks a passed check whose result deserves attention.
	Warning bool `json:"warning,omitempty"`
	// Answered names what answered ("MAS", "Synapse", the proxy, …).
	Answered string `json:"answered,omitempty"`
	// Detail says what was seen.
	Detail string `json:"detail"`
	// Fix is the likely cause and what to change.
	Fix string `json:"fix,omitempty"`
}

// StartInput says what the start brings back.
type StartInput struct {
	// Replicas are what the stop recorded.
	Replicas map[string]int32
	// Only, when set, limits the start to these services ("synapse",
	// "mas"): the compensation restarts Synapse alone.
	Only []string
}

// BackupInput names the migration the backup belongs to.
type BackupInput struct {
	// RunStartedAt is the migration's fixed start: the backup's files
	// are named after it, so a retry reuses them and a later migration
	// never does.
	RunStartedAt time.Time
}

// AdviseInput selects the phase (runtime checks are errors only before
// the import) and the run's rules.
type AdviseInput struct {
	Phase string
	Rules Rules
}

// AdviseResult carries the findings (no secrets: codes, messages, counts).
type AdviseResult struct {
	Findings []Finding
	Errors   []string
	Warnings []string
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
