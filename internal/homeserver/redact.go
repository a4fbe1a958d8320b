package homeserver

import (
	"strings"
)

// redact hides every known secret in text that came from a program the
// step ran (its output can quote a config value it rejects) before the
// text reaches a result, an error, a log line or the workflow history.
func (n *None) redact(text string) string {
	for _, s := range n.Secrets {
		text = strings.ReplaceAll(text, s, "[redacted]")
	}
	return text
}

// redactErr is err with its message redacted; errors.Is and errors.As
// still see the causes (the activity classifies by them).
func (n *None) redactErr(err error) error {
	if err == nil {
		return nil
	}
	if msg := n.redact(err.Error()); msg != err.Error() {
		return &redacted{msg: msg, err: err}
	}
	return err
}

type redacted struct {
	msg string
	err error
}

func (r *redacted) Error() string { return r.msg }
func (r *redacted) Unwrap() error { return r.err }
