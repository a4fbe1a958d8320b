package version

import (
	"strings"
	"testing"
)

func TestStringNamesTheReleaseAndACommit(t *testing.T) {
	s := String()
	if !strings.HasPrefix(s, Release+" (commit ") || !strings.HasSuffix(s, ")") {
		t.Fatalf("String() = %q", s)
	}
}
