package main

import (
	"context"
	"fmt"
	"io"
	"slices"
	"strings"
)

// Rounds is run d repeated (-rounds), at the homeserver's size and, with
// -growth-users, alternating with a second size, every run with the same
// changed users: one downtime figure varies by a fifth or more from run
// to run on a shared machine, and the cut-over's target is how little
// the downtime part grows with the homeserver (docs/architecture.md,
// "Measured").
type Rounds struct {
	Changed int `json:"changed_users"`
	// Sizes are the homeserver's size first, then -growth-users'.
	Sizes []SizeRounds `json:"sizes"`
	// Growth is the first size's median downtime part over the second's
	// (0 with one size); RoundGrowth the same ratio round by round.
	Growth      float64   `json:"growth,omitempty"`
	RoundGrowth []float64 `json:"round_growth,omitempty"`
}

// SizeRounds are one size's downtime parts, in seconds, and their median.
type SizeRounds struct {
	Users    int       `json:"users"`
	Downtime []float64 `json:"downtime_seconds"`
	Median   float64   `json:"median_seconds"`
}

// sized is a Synapse database run d copies, and its users.
type sized struct {
	users int
	dsn   string
}

// precopyRounds runs d -rounds times, alternating with the growth size
// when given; the report's Precopy is the last run at the homeserver's
// size.
func (b *bench) precopyRounds(ctx context.Context, rep *Report) error {
	changed := b.o.changed
	if changed <= 0 {
		changed = max(1, rep.Users/100)
	}
	sizes := []sized{{users: rep.Users, dsn: b.synapse}}
	if b.o.growthUsers > 0 || b.o.growthSource != "" {
		other, err := b.growthSize(ctx)
		if err != nil {
			return err
		}
		sizes = append(sizes, other)
	}
	rounds := &Rounds{Changed: changed}
	for _, s := range sizes {
		rounds.Sizes = append(rounds.Sizes, SizeRounds{Users: s.users})
	}
	for r := range max(1, b.o.rounds) {
		for i, s := range sizes {
			b.dropRunDatabases()
			b.logf("d: round %d of %d at %d users", r+1, max(1, b.o.rounds), s.users)
			d, err := b.precopyRun(ctx, s.dsn, s.users, changed)
			if err != nil {
				return fmt.Errorf("d (pre-copy and delta, %d users, round %d): %w", s.users, r+1, err)
			}
			rounds.Sizes[i].Downtime = append(rounds.Sizes[i].Downtime, d.DowntimeSeconds)
			if i == 0 {
				rep.Precopy = d
			}
		}
	}
	rounds.summarize()
	if len(sizes) > 1 || b.o.rounds > 1 {
		rep.Rounds = rounds
	}
	return nil
}

// growthSize is the second homeserver of -growth-users: -growth-source,
// or generated.
func (b *bench) growthSize(ctx context.Context) (sized, error) {
	if b.o.growthSource != "" {
		dsn, stats, err := b.existingSource(ctx, b.o.growthSource)
		if err != nil {
			return sized{}, fmt.Errorf("-growth-source %s: %w", b.o.growthSource, err)
		}
		return sized{users: int(stats["users"]), dsn: dsn}, nil
	}
	dsn, _, _, err := b.generateSource(ctx, b.o.growthUsers)
	return sized{users: b.o.growthUsers, dsn: dsn}, err
}

// summarize computes the medians and the growth.
func (r *Rounds) summarize() {
	for i := range r.Sizes {
		r.Sizes[i].Median = median(r.Sizes[i].Downtime)
	}
	if len(r.Sizes) < 2 || r.Sizes[1].Median == 0 {
		return
	}
	r.Growth = r.Sizes[0].Median / r.Sizes[1].Median
	r.RoundGrowth = nil
	for j, large := range r.Sizes[0].Downtime {
		if small := r.Sizes[1].Downtime[j]; small > 0 {
			r.RoundGrowth = append(r.RoundGrowth, large/small)
		}
	}
}

// median is the middle value of xs (the mean of the two middle ones for
// an even count; 0 for none).
func median(xs []float64) float64 {
	if len(xs) == 0 {
		return 0
	}
	s := slices.Sorted(slices.Values(xs))
	if n := len(s); n%2 == 1 {
		return s[n/2]
	}
	return (s[len(s)/2-1] + s[len(s)/2]) / 2
}

// writeRounds prints every size's downtime parts, their medians and the
// growth.
func (r *Report) writeRounds(w io.Writer) {
	rd := r.Rounds
	if rd == nil {
		return
	}
	fmt.Fprintf(w, "\nd rounds (%d changed users each, sizes alternating): downtime part\n", rd.Changed)
	table(w, "users\tmedian (s)\teach run (s)\t", func(tw io.Writer) {
		for _, s := range rd.Sizes {
			fmt.Fprintf(tw, "%d\t%.2f\t%s\t\n", s.Users, s.Median, twoDecimals(s.Downtime))
		}
	})
	if rd.Growth > 0 {
		fmt.Fprintf(w, "growth from %d to %d users: %.2f× (medians); round by round %s\n",
			rd.Sizes[1].Users, rd.Sizes[0].Users, rd.Growth, twoDecimals(rd.RoundGrowth))
	}
}

// twoDecimals spells figures with two decimals, space-separated.
func twoDecimals(xs []float64) string {
	parts := make([]string, len(xs))
	for i, x := range xs {
		parts[i] = fmt.Sprintf("%.2f", x)
	}
	return strings.Join(parts, " ")
}
