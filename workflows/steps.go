package workflows

import (
	"fmt"
	"slices"
	"strings"

	"github.com/masflow/masflow/workflows/contract"
)

// ErrTypeBadInput is the error type of a migration input that can never
// run as given (unknown or unsafe steps).
const ErrTypeBadInput = "MasflowBadInput"

// ValidateSteps checks a subset of steps (empty: all) against the kind of
// run (README.md, "Subset runs"): every step must exist in that kind
// of run; a real run stops the homeserver only after advise and approve
// in the same migration, so a downtime is always checked and approved;
// discard
// (which empties the MAS tables) exists only in dry runs. The starter
// calls it before starting, and the workflow again on its first task.
func ValidateSteps(dryRun bool, steps []string) error {
	valid := contract.AllSteps()
	kind := "a migration"
	if dryRun {
		valid, kind = contract.DryRunSteps(), "a dry run"
	}
	for _, s := range steps {
		if slices.Contains(valid, s) {
			continue
		}
		if s == contract.StepDiscard {
			return fmt.Errorf("step %q exists only in dry runs (it empties the MAS tables); use --dry-run", s)
		}
		return fmt.Errorf("unknown step %q for %s; the steps are, in order: %s", s, kind, strings.Join(valid, ", "))
	}
	if dryRun || len(steps) == 0 {
		return nil
	}
	if !slices.Contains(steps, contract.StepStop) {
		return nil
	}
	for _, gate := range []string{contract.StepAdvise, contract.StepApprove} {
		if !slices.Contains(steps, gate) {
			return fmt.Errorf("steps %s stop the homeserver without %q: add %s,%s (a downtime is checked and approved in the migration that takes it)",
				strings.Join(steps, ","), gate, contract.StepAdvise, contract.StepApprove)
		}
	}
	return nil
}
