package main

import (
	"math"
	"testing"
)

// The floor is c plus b's schema pause and restore, and every run is also
// compared with it; without c or b's phases there is no floor.
func TestComputeRatiosFloor(t *testing.T) {
	restore := []Phase{{Name: "wave 1", Seconds: 3}, {Name: "pause + restore schema (the rest)", Seconds: 15}}
	for _, c := range []struct {
		name   string
		runs   []Run
		phases []Phase
		want   map[string]float64
		floor  float64
	}{
		{"full", []Run{{ID: "a1", Seconds: 40}, {ID: "b", Seconds: 30}, {ID: "c", Seconds: 5}}, restore,
			map[string]float64{"a1/c": 8, "b/c": 6, "a1/b": 40.0 / 30, "floor/c": 4, "a1/floor": 2, "b/floor": 1.5}, 20},
		{"no ceiling", []Run{{ID: "a1", Seconds: 40}, {ID: "b", Seconds: 30}}, restore,
			map[string]float64{"a1/b": 40.0 / 30}, 0},
		{"no phases", []Run{{ID: "b", Seconds: 30}, {ID: "c", Seconds: 5}}, nil,
			map[string]float64{"b/c": 6}, 0},
	} {
		t.Run(c.name, func(t *testing.T) {
			r := Report{Runs: c.runs, EnginePhases: c.phases}
			r.computeRatios()
			if r.FloorSeconds != c.floor {
				t.Errorf("floor %.2f, want %.2f", r.FloorSeconds, c.floor)
			}
			if len(r.Ratios) != len(c.want) {
				t.Errorf("ratios %v, want %v", r.Ratios, c.want)
			}
			for k, v := range c.want {
				if math.Abs(r.Ratios[k]-v) > 1e-9 {
					t.Errorf("%s = %.4f, want %.4f", k, r.Ratios[k], v)
				}
			}
		})
	}
}
