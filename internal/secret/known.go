package secret

import (
	"cmp"
	"slices"
	"strings"
)

// Known are secret values masflow knows by content: every secret of the
// configs (config.SecretValues). Text that comes from outside masflow —
// the output of a program a step or a check runs, which can quote a
// config value it rejects — may carry them, so it passes through Redact
// before it reaches a result, an error, a log line or the workflow
// history.
type Known []string

// Redact hides every known value in text, longest first: a value that
// contains another is hidden whole, not left in pieces.
func (k Known) Redact(text string) string {
	values := slices.Clone(k)
	slices.SortStableFunc(values, func(a, b string) int { return cmp.Compare(len(b), len(a)) })
	for _, v := range values {
		if v != "" {
			text = strings.ReplaceAll(text, v, Redacted)
		}
	}
	return text
}

// RedactErr is err with its message redacted; errors.Is and errors.As
// still see the causes (the activities classify errors by them).
func (k Known) RedactErr(err error) error {
	if err == nil {
		return nil
	}
	if msg := k.Redact(err.Error()); msg != err.Error() {
		return &redacted{msg: msg, err: err}
	}
	return err
}

// redacted is an error whose message hides the known secrets of its
// cause's.
type redacted struct {
	msg string
	err error
}

func (r *redacted) Error() string { return r.msg }
func (r *redacted) Unwrap() error { return r.err }
