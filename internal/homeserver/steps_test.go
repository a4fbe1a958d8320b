package homeserver

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// The reconfigure step rewrites the discovery document for MAS beside
// Synapse's config, keeping its original as <file>.pre-mas (the true
// original on a rerun); the restore puts it back byte for byte.
func TestReconfigureRewritesTheWellKnownAndRestoreUndoesIt(t *testing.T) {
	n := probes(t, closed(t), "public_baseurl: https://matrix.example.org/")
	n.MAS.Secret = "shared-secret"
	wk := filepath.Join(t.TempDir(), "client")
	const original = `{"m.homeserver": {"base_url": "https://old.example.org"}, "org.matrix.msc2965.authentication": {"issuer": "https://auth.example.org/"}}` + "\n"
	if err := os.WriteFile(wk, []byte(original), 0o644); err != nil {
		t.Fatal(err)
	}
	h := &HostSteps{Probes: n, MASEndpoint: "http://mas.internal:8080/", WellKnownFile: wk}
	for round := 1; round <= 2; round++ {
		rep, err := h.Reconfigure(context.Background())
		if err != nil {
			t.Fatal(err)
		}
		got, _ := os.ReadFile(wk)
		kept, _ := os.ReadFile(wk + ".pre-mas")
		if want := "{\n  \"m.homeserver\": {\n    \"base_url\": \"https://matrix.example.org/\"\n  }\n}\n"; string(got) != want || string(kept) != original {
			t.Fatalf("round %d: file %q, copy %q", round, got, kept)
		}
		if mentioned := strings.Contains(strings.Join(rep.Details, "\n"), wk+".pre-mas"); mentioned != (round == 1) {
			t.Errorf("round %d: the report mentions the rewrite %v: %v", round, mentioned, rep.Details)
		}
	}
	rep, err := h.RestoreConfig(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	got, _ := os.ReadFile(wk)
	if string(got) != original || !strings.Contains(strings.Join(rep.Details, " "), wk) {
		t.Fatalf("after the restore: %q (%v)", got, rep.Details)
	}
	if _, err := os.Stat(wk + ".pre-mas"); !os.IsNotExist(err) {
		t.Errorf("the copy is left behind: %v", err)
	}
}

// A missing discovery document is refused before anything is written.
func TestReconfigureRefusesAMissingWellKnownFile(t *testing.T) {
	n := probes(t, closed(t), "public_baseurl: https://matrix.example.org/")
	n.MAS.Secret = "shared-secret"
	h := &HostSteps{Probes: n, MASEndpoint: "http://mas.internal:8080/", WellKnownFile: filepath.Join(t.TempDir(), "nope")}
	if _, err := h.Reconfigure(context.Background()); err == nil || !strings.Contains(err.Error(), "homeserver.well_known_file") {
		t.Fatalf("err = %v", err)
	}
	if _, err := os.Stat(n.SynapsePaths[0] + ".pre-mas"); !os.IsNotExist(err) {
		t.Errorf("Synapse's config was rewritten before the well-known was checked: %v", err)
	}
}
