package wellknown

import "testing"

func TestClient(t *testing.T) {
	cases := []struct {
		rule, existing, want string
	}{
		{"no file: the base URL alone", "", "{\n  \"m.homeserver\": {\n    \"base_url\": \"https://matrix.example.org/\"\n  }\n}\n"},
		{"the obsolete MAS key goes, the other keys stay",
			`{"m.homeserver":{"base_url":"https://old.example.org"},"m.identity_server":{"base_url":"https://id.example.org"},` +
				`"org.matrix.msc2965.authentication":{"issuer":"https://auth.example.org/"}}`,
			"{\n  \"m.homeserver\": {\n    \"base_url\": \"https://matrix.example.org/\"\n  },\n  \"m.identity_server\": {\n    \"base_url\": \"https://id.example.org\"\n  }\n}\n"},
		{"its own output is unchanged", "{\n  \"m.homeserver\": {\n    \"base_url\": \"https://matrix.example.org/\"\n  }\n}\n",
			"{\n  \"m.homeserver\": {\n    \"base_url\": \"https://matrix.example.org/\"\n  }\n}\n"},
	}
	for _, c := range cases {
		t.Run(c.rule, func(t *testing.T) {
			got, err := Client([]byte(c.existing), "https://matrix.example.org/")
			if err != nil || string(got) != c.want {
				t.Fatalf("got %q (%v)\nwant %q", got, err, c.want)
			}
		})
	}
	if _, err := Client([]byte("<html>"), "https://matrix.example.org/"); err == nil {
		t.Fatal("a file that is not JSON was accepted")
	}
}
