package ulid

import "testing"

// A MAS provider ID decodes to its 16 bytes, time part first; strings
// that are not ULIDs are refused.
func TestParse(t *testing.T) {
	id, err := Parse("01H8PKNWKKRPCBW4YGH1RWV279")
	if err != nil {
		t.Fatal(err)
	}
	// 01H8PKNWKK encodes 1692975952499 ms (2023-08-25).
	var ms int64
	for _, b := range id[:6] {
		ms = ms<<8 | int64(b)
	}
	if ms != 1692975952499 {
		t.Fatalf("time part %d", ms)
	}
	for _, bad := range []string{"", "8ZZZZZZZZZZZZZZZZZZZZZZZZZ", "01H8PKNWKKRPCBW4YGH1RWV27U", "short"} {
		if _, err := Parse(bad); err == nil {
			t.Errorf("%q accepted", bad)
		}
	}
	var zero ID
	if id == zero {
		t.Fatal("decoded to zero")
	}
}
