package bench

import (
	"slices"
	"time"
)

// samples collects one worker's latencies; workers merge theirs at the end
// so recording stays off any shared lock.
type samples []time.Duration

// mean is the mean of all in milliseconds.
func mean(all []time.Duration) float64 {
	if len(all) == 0 {
		return 0
	}
	var sum time.Duration
	for _, d := range all {
		sum += d
	}
	return ms(sum) / float64(len(all))
}

// quantiles returns p50, p99 and max of all, in milliseconds.
func quantiles(all []time.Duration) (p50, p99, max float64) {
	if len(all) == 0 {
		return 0, 0, 0
	}
	slices.Sort(all)
	at := func(q float64) float64 {
		i := int(q * float64(len(all)-1))
		return ms(all[i])
	}
	return at(0.50), at(0.99), ms(all[len(all)-1])
}

func ms(d time.Duration) float64 { return float64(d) / float64(time.Millisecond) }
