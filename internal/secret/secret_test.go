package secret

import (
	"encoding/json"
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
