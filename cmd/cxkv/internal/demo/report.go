package demo

import (
	"fmt"
	"slices"
	"text/tabwriter"
	"time"
)

// Summary is the table `demo run` prints, computed from the workers'
// records (so a killed worker's operations count too).
type Summary struct {
	Operations int           // bookings or transfers applied and recorded
	Conflicts  int           // failed compares retried (optimistic) or seen under a lock
	LockWaits  int           // acquisitions that found the lock held by another
	Acquires   int           // lock acquisitions
	AcquireP50 time.Duration // time to acquire a lock, waiting included
	AcquireP99 time.Duration
	LocksLost  int // writes refused because the lock had been lost
	Unknown    int // writes whose outcome the worker could not learn
	Unfinished int // announced writes with no result: the worker was killed
}

// Summarize computes the Summary of entries.
func Summarize(entries []Entry) Summary {
	var s Summary
	var waits []time.Duration
	results := map[string]bool{}
	for _, e := range entries {
		switch e.Op {
		case OpBook, OpTransfer:
			s.Operations++
			s.Conflicts += e.Retry
			results[e.Req] = true
		case OpAborted:
			s.Conflicts += e.Retry
			if e.Err == "lock lost" {
				s.LocksLost++
			}
			results[e.Req] = true
		case OpUnknown:
			s.Unknown++
			results[e.Req] = true
		case OpConflict:
			s.Conflicts++
			results[e.Req] = true
		case OpAcquire:
			s.Acquires++
			if e.Waited {
				s.LockWaits++
			}
			waits = append(waits, time.Duration(e.WaitUS)*time.Microsecond)
		}
	}
	for _, e := range entries {
		if e.Op == OpIntent && !results[e.Req] {
			s.Unfinished++
		}
	}
	slices.Sort(waits)
	s.AcquireP50 = percentile(waits, 0.50)
	s.AcquireP99 = percentile(waits, 0.99)
	return s
}

// percentile of sorted ds, nearest rank.
func percentile(ds []time.Duration, p float64) time.Duration {
	if len(ds) == 0 {
		return 0
	}
	i := int(float64(len(ds))*p+0.5) - 1
	return ds[min(max(i, 0), len(ds)-1)]
}

func (r *runner) table(entries []Entry, elapsed time.Duration) {
	s := Summarize(entries)
	r.say("")
	tw := tabwriter.NewWriter(r.cfg.Out, 0, 0, 2, ' ', tabwriter.AlignRight)
	row := func(k string, v any) { fmt.Fprintf(tw, "%s\t%v\t\n", k, v) }
	row("operations", s.Operations)
	row("ops/s", fmt.Sprintf("%.0f", float64(s.Operations)/elapsed.Seconds()))
	row("conflicts retried", s.Conflicts)
	if s.Acquires > 0 {
		row("lock acquisitions", s.Acquires)
		row("lock waits", s.LockWaits)
		row("acquire p50", s.AcquireP50.Round(10*time.Microsecond))
		row("acquire p99", s.AcquireP99.Round(10*time.Microsecond))
		row("writes refused, lock lost", s.LocksLost)
	}
	row("outcome unknown to worker", s.Unknown)
	row("cut short by a kill", s.Unfinished)
	r.mu.Lock()
	if r.cfg.Chaos {
		row("members killed (kill -9)", r.killedM)
		row("workers killed (kill -9)", len(r.killedW))
	}
	r.mu.Unlock()
	tw.Flush()
	r.say("")
}

func (r *runner) verdict(v Verdict) error {
	for _, f := range v.Facts {
		r.say("  ok   %s", f)
	}
	for _, p := range v.Problems {
		r.say("  FAIL %s", p)
	}
	if !v.OK() {
		r.say("VERDICT: BROKEN — %d problem(s) above, from the workers' records and the store", len(v.Problems))
		return ErrInvariantBroken
	}
	r.say("VERDICT: OK — every invariant held, checked from the workers' own records and the store")
	return nil
}
