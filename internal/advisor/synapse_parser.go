package advisor

import (
	"bytes"
	"context"
	"os/exec"
	"strings"
	"time"

	"github.com/masflow/masflow/internal/config"
)

// parserTimeout bounds Synapse's config parser (it imports Synapse).
const parserTimeout = 2 * time.Minute

// parserCheck runs Synapse's own config parser (homeserver.synapse_python)
// over the current config. The reconfigure step relies on it to validate
// its rewrite before any restart, so a missing or broken Synapse install
// is found before the downtime, not in the middle of it.
func parserCheck(ctx context.Context, in Input, add func(Finding)) error {
	if in.SynapsePython == "" {
		return nil
	}
	ctx, cancel := context.WithTimeout(ctx, parserTimeout)
	defer cancel()
	args := []string{"-m", "synapse.config"}
	for _, f := range in.Synapse.Files {
		args = append(args, "-c", f)
	}
	var out bytes.Buffer
	cmd := exec.CommandContext(ctx, in.SynapsePython, args...)
	cmd.Stdout, cmd.Stderr = &out, &out
	if err := cmd.Run(); err != nil {
		lines := strings.Split(strings.TrimSpace(out.String()), "\n")
		// The parser quotes the values it rejects: the finding reaches
		// Advise's result and the workflow history.
		secrets := config.SecretValues(in.Synapse.Raw, in.MAS.Raw)
		tail := secrets.Redact(strings.Join(lines[max(0, len(lines)-5):], " | "))
		add(finding("synapse_parser_failed", Error,
			"point homeserver.synapse_python at the Python of Synapse's own install (e.g. /opt/venvs/matrix-synapse/bin/python), or unset it",
			"%s -m synapse.config cannot check the current config (%v): %s", in.SynapsePython, err, tail))
	}
	return nil
}
