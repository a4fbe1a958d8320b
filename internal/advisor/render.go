package advisor

import (
	"encoding/json"
	"fmt"
	"io"
	"strings"
)

// WriteText prints the report for people: one block per finding, most
// serious first, then a summary line.
func (r Report) WriteText(w io.Writer) error {
	var b strings.Builder
	for _, f := range r.Findings {
		fmt.Fprintf(&b, "%-8s %s", strings.ToUpper(string(f.Severity)), f.Code)
		if f.Count != nil {
			approx, unit := "", "rows"
			if f.Estimated {
				approx, unit = "~", "rows, estimate"
			}
			fmt.Fprintf(&b, " (%s%d %s)", approx, *f.Count, unit)
		}
		fmt.Fprintf(&b, "\n         %s\n", f.Message)
		if f.Hint != "" {
			fmt.Fprintf(&b, "         fix: %s\n", f.Hint)
		}
	}
	fmt.Fprintf(&b, "%d errors, %d warnings, %d info (phase %s)\n", r.Count(Error), r.Count(Warning), r.Count(Info), r.Phase)
	_, err := io.WriteString(w, b.String())
	return err
}

// WriteJSON prints the report for machines.
func (r Report) WriteJSON(w io.Writer) error {
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	return enc.Encode(r)
}

// Exit codes of `starter advise`.
const (
	ExitOK       = 0
	ExitErrors   = 2 // at least one error finding
	ExitWarnings = 3 // warnings, with --strict
)

// ExitCode maps a report to the advise command's exit code: warnings only
// count when strict.
func (r Report) ExitCode(strict bool) int {
	switch {
	case r.Count(Error) > 0:
		return ExitErrors
	case strict && r.Count(Warning) > 0:
		return ExitWarnings
	}
	return ExitOK
}
