package runner

import (
	"os"
	"runtime/debug"
)

// GCPercent is the garbage collector's target (GOGC) for masflow's
// processes when the environment sets none. The import allocates a few
// hundred bytes per row and keeps almost nothing, so at Go's default (100)
// the worker spends about a quarter of its CPU collecting; at 400 the
// import of 200 000 users took ~25 % less time, for a peak RSS of about
// 120 MiB instead of 60 (docs/architecture.md, "Performance").
const GCPercent = 400

// TuneGC applies GCPercent unless GOGC is set; call it first in main.
func TuneGC() {
	if _, set := os.LookupEnv("GOGC"); !set {
		debug.SetGCPercent(GCPercent)
	}
}
