// Package version names the masflow release a binary was built from.
package version

import "runtime/debug"

// Release is masflow's release (CHANGELOG.md). From v0.1.0 on, every
// change to what the workflow records is guarded (docs/architecture.md,
// "Workflow changes").
const Release = "v0.1.0"

// String is the release and the commit the binary was built from, as Go
// records it ("v0.1.0 (commit 1a2b3c4d5e6f, modified)"; "unknown" outside
// a git checkout).
func String() string {
	commit, dirty := "unknown", false
	if info, ok := debug.ReadBuildInfo(); ok {
		for _, s := range info.Settings {
			switch s.Key {
			case "vcs.revision":
				commit = s.Value[:min(12, len(s.Value))]
			case "vcs.modified":
				dirty = s.Value == "true"
			}
		}
	}
	if dirty {
		commit += ", modified"
	}
	return Release + " (commit " + commit + ")"
}
