package secret

import (
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"testing"
)

func TestNoFormattingRevealsTheSecret(t *testing.T) {
	s := String("syt_c2VjcmV0_abcdef")
	wrapped := struct {
		Token String
		Ptr   *String
	}{s, &s}
	cases := map[string]func() string{
		"%s":         func() string { return fmt.Sprintf("%s", s) },
		"%v":         func() string { return fmt.Sprintf("%v", s) },
		"%q":         func() string { return fmt.Sprintf("%q", s) },
		"%x":         func() string { return fmt.Sprintf("%x", s) },
		"%#v":        func() string { return fmt.Sprintf("%#v", s) },
		"%+v struct": func() string { return fmt.Sprintf("%+v", wrapped) },
		"error %w":   func() string { return fmt.Errorf("bad %v: %w", s, fmt.Errorf("%s", s)).Error() },
		"json": func() string {
			b, err := json.Marshal(wrapped)
			if err != nil {
				t.Fatal(err)
			}
			return string(b)
		},
	}
	for name, render := range cases {
		t.Run(name, func(t *testing.T) {
			out := render()
			if strings.Contains(out, "c2VjcmV0") {
				t.Fatalf("secret leaked: %s", out)
			}
			if !strings.Contains(out, Redacted) {
				t.Fatalf("placeholder missing: %s", out)
			}
		})
	}
	if s.Reveal() != "syt_c2VjcmV0_abcdef" {
		t.Fatalf("Reveal changed the value")
	}
}

func TestKnownSecretsAreRedacted(t *testing.T) {
	cause := errors.New("cause")
	known := Known{"pa55", "pa55word-long"}
	cases := []struct {
		name, text, want string
	}{
		{"a value is hidden everywhere", "pa55 and pa55", "[redacted] and [redacted]"},
		{"a value containing another is hidden whole", "x pa55word-long y", "x [redacted] y"},
		{"text without a secret is kept", "Config parses OK!", "Config parses OK!"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			if got := known.Redact(c.text); got != c.want {
				t.Fatalf("Redact = %q, want %q", got, c.want)
			}
			err := known.RedactErr(fmt.Errorf("%s: %w", c.text, cause))
			if err.Error() != c.want+": cause" || !errors.Is(err, cause) {
				t.Fatalf("RedactErr = %q (cause kept: %v)", err, errors.Is(err, cause))
			}
		})
	}
	if Known(nil).RedactErr(nil) != nil || (Known{""}).Redact("abc") != "abc" {
		t.Fatal("nothing to redact must change nothing")
	}
}
