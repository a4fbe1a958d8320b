package advisor

import (
	"strings"
	"testing"
)

// echoingParser is a Synapse parser that refuses every config and, as
// Synapse does when a value is malformed, quotes what it read: every
// config file it is given, then the error.
const echoingParser = `for a; do [ -f "$a" ] && cat "$a"; done; echo 'Error in configuration'; exit 1`

// Synapse's parser quotes the values it rejects: no secret of the configs
// reaches the finding (and so Advise's result, its failure details and the
// workflow history), and the finding still says why the parser failed.
func TestParserFindingNeverCarriesASecret(t *testing.T) {
	t.Parallel()
	cases := []struct {
		name, synYAML, secret string
	}{
		{"a Synapse secret key's value", "registration_shared_secret: planted-registration-secret-31337",
			"planted-registration-secret-31337"},
		{"the secret Synapse shares with MAS", "matrix_authentication_service: {enabled: false, secret: planted-mas-secret-4242}",
			"planted-mas-secret-4242"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			t.Parallel()
			f := newFixture(t)
			f.synExtra = c.synYAML
			parser(echoingParser)(f)
			got, ok := f.run().find("synapse_parser_failed")
			switch {
			case !ok:
				t.Fatal("the refusing parser was not reported")
			case strings.Contains(got.Message+got.Hint, c.secret):
				t.Fatalf("the finding carries the secret: %s", got.Message)
			case !strings.Contains(got.Message, "[redacted]") || !strings.Contains(got.Message, "Error in configuration"):
				t.Fatalf("the finding lost the parser's words: %s", got.Message)
			}
		})
	}
}
