package main

import (
	"math"
	"slices"
	"testing"
)

func TestRoundsSummarize(t *testing.T) {
	tests := []struct {
		name        string
		sizes       [][]float64
		medians     []float64
		growth      float64
		roundGrowth []float64
	}{
		{name: "one size, odd count", sizes: [][]float64{{5, 3, 4}}, medians: []float64{4}},
		{name: "one size, even count", sizes: [][]float64{{5, 3, 4, 8}}, medians: []float64{4.5}},
		{name: "two sizes", sizes: [][]float64{{4, 6, 5}, {2, 2.5, 4}},
			medians: []float64{5, 2.5}, growth: 2, roundGrowth: []float64{2, 2.4, 1.25}},
		{name: "two sizes, one run each", sizes: [][]float64{{3}, {2}},
			medians: []float64{3, 2}, growth: 1.5, roundGrowth: []float64{1.5}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r := Rounds{}
			for _, d := range tt.sizes {
				r.Sizes = append(r.Sizes, SizeRounds{Downtime: d})
			}
			r.summarize()
			for i, want := range tt.medians {
				if got := r.Sizes[i].Median; got != want {
					t.Errorf("size %d: median %v, want %v", i, got, want)
				}
			}
			if math.Abs(r.Growth-tt.growth) > 1e-9 {
				t.Errorf("growth %v, want %v", r.Growth, tt.growth)
			}
			if !slices.EqualFunc(r.RoundGrowth, tt.roundGrowth, func(a, b float64) bool { return math.Abs(a-b) < 1e-9 }) {
				t.Errorf("round growth %v, want %v", r.RoundGrowth, tt.roundGrowth)
			}
		})
	}
}

func TestMedianLeavesItsInputAlone(t *testing.T) {
	xs := []float64{3, 1, 2}
	if got := median(xs); got != 2 {
		t.Fatalf("median %v, want 2", got)
	}
	if !slices.Equal(xs, []float64{3, 1, 2}) {
		t.Errorf("median reordered its input: %v", xs)
	}
	if got := median(nil); got != 0 {
		t.Errorf("median of nothing %v, want 0", got)
	}
}
