package workflows

import (
	"strings"
	"testing"
)

func TestValidateSteps(t *testing.T) {
	cases := []struct {
		name   string
		dryRun bool
		steps  []string
		want   string // "" = valid; else a part of the error
	}{
		{"all steps", false, nil, ""},
		{"all steps of a dry run", true, nil, ""},
		{"import alone (homeserver stopped by hand)", false, []string{"import", "reconcile"}, ""},
		{"stop with its gate", false, []string{"advise", "approve", "backup", "stop"}, ""},
		{"dry-run subset", true, []string{"import", "discard"}, ""},
		{"unknown step", false, []string{"advise", "imprt"}, `unknown step "imprt" for a migration; the steps are, in order: advise, approve`},
		{"homeserver step in a dry run", true, []string{"stop"}, `unknown step "stop" for a dry run`},
		{"discard in a real run", false, []string{"import", "discard"}, "only in dry runs"},
		{"stop without advise", false, []string{"approve", "stop", "import"}, `without "advise"`},
		{"stop without approve", false, []string{"advise", "stop"}, `without "approve"`},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			err := ValidateSteps(c.dryRun, c.steps)
			switch {
			case c.want == "" && err != nil:
				t.Fatalf("refused: %v", err)
			case c.want != "" && (err == nil || !strings.Contains(err.Error(), c.want)):
				t.Fatalf("got %v, want an error containing %q", err, c.want)
			}
		})
	}
}
