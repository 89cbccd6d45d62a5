package main

import (
	"fmt"
	"io"
	"sort"
	"text/tabwriter"
	"time"
)

// sample is the latencies of one measured path.
type sample struct {
	name   string
	times  []time.Duration
	errors int
	note   string
}

func (s *sample) pct(p float64) time.Duration {
	if len(s.times) == 0 {
		return 0
	}
	t := append([]time.Duration(nil), s.times...)
	sort.Slice(t, func(i, j int) bool { return t[i] < t[j] })
	i := int(p/100*float64(len(t))+0.5) - 1
	if i < 0 {
		i = 0
	}
	if i >= len(t) {
		i = len(t) - 1
	}
	return t[i]
}

func ms(d time.Duration) string { return fmt.Sprintf("%.1f", float64(d.Microseconds())/1000) }

// table prints p50/p95/p99 of each sample and each p50's ratio to base's.
func table(w io.Writer, title string, base *sample, rows []*sample) {
	fmt.Fprintf(w, "\n%s\n", title)
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', tabwriter.AlignRight)
	fmt.Fprintln(tw, "path\tn\terrors\tp50 ms\tp95 ms\tp99 ms\tp50 / floor\t")
	for _, s := range rows {
		if len(s.times) == 0 {
			fmt.Fprintf(tw, "%s\t0\t%d\t-\t-\t-\t%s\t\n", s.name, s.errors, s.note)
			continue
		}
		ratio := "-"
		if base != nil && len(base.times) > 0 {
			ratio = fmt.Sprintf("%.2f×", float64(s.pct(50))/float64(base.pct(50)))
		}
		fmt.Fprintf(tw, "%s\t%d\t%d\t%s\t%s\t%s\t%s\t\n", s.name, len(s.times), s.errors, ms(s.pct(50)), ms(s.pct(95)), ms(s.pct(99)), ratio)
	}
	tw.Flush()
}
