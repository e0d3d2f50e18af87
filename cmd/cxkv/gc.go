package main

import (
	"fmt"
	"runtime/debug"
	"strconv"
)

// defaultGCPercent is the member's Go GC target unless the operator sets
// one. A member's live Go heap is small (tens of MB under load) and each
// write allocates a little in many places, so at Go's default of 100 the
// collector ran often enough to cost about a tenth of the members' CPU
// per write under cas-parallel; at 400 it runs a quarter as often, and the
// heap it lets grow costs about 40 MB of RSS per member (BENCHMARKS.md,
// "GC target"). GOMEMLIMIT, when set, still makes Go collect before the
// heap reaches it, whatever this target.
const defaultGCPercent = 400

// gcPercentFlag is --gc-percent.
type gcPercentFlag struct {
	percent int
}

// resolve says which GC target the member should run with: the flag when
// it was given (on the command line or as CXKV_GC_PERCENT); else GOGC, as
// Go reads it itself, when set; else defaultGCPercent. set is false when
// Go's own setting stands.
func (g gcPercentFlag) resolve(given bool, gogc string) (percent int, set bool, err error) {
	if given {
		if g.percent < 25 || g.percent > 10000 {
			return 0, false, fmt.Errorf("--gc-percent %d: want 25..10000 (GOGC=off is not offered: a member's heap must be collected)", g.percent)
		}
		return g.percent, true, nil
	}
	if gogc != "" {
		return 0, false, nil
	}
	return defaultGCPercent, true, nil
}

// apply sets the process's GC target as resolve decides, and says which
// target the member runs with, for its start-up log line.
func (g gcPercentFlag) apply(given bool, gogc string) (string, error) {
	percent, set, err := g.resolve(given, gogc)
	if err != nil {
		return "", err
	}
	if !set {
		return "GOGC=" + gogc, nil
	}
	debug.SetGCPercent(percent)
	return strconv.Itoa(percent), nil
}
