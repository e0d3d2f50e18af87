package bench

import (
	"bufio"
	"bytes"
	"strconv"
)

// cpuTicks is the machine's CPU time so far, summed over cores, from the
// first line of /proc/stat: all of it, and the part spent idle (idle and
// iowait: a core waiting on the disk could run anything else).
type cpuTicks struct{ total, idle uint64 }

// parseProcStat reads the aggregate "cpu" line of /proc/stat. Its fields
// are user nice system idle iowait irq softirq steal guest guest_nice;
// guest time is already counted in user and nice, so it is left out of the
// total. ok is false if the line is missing or malformed.
func parseProcStat(b []byte) (t cpuTicks, ok bool) {
	sc := bufio.NewScanner(bytes.NewReader(b))
	for sc.Scan() {
		f := bytes.Fields(sc.Bytes())
		if len(f) < 5 || string(f[0]) != "cpu" {
			continue
		}
		for i, v := range f[1:min(len(f), 9)] {
			n, err := strconv.ParseUint(string(v), 10, 64)
			if err != nil {
				return cpuTicks{}, false
			}
			t.total += n
			if i == 3 || i == 4 { // idle, iowait
				t.idle += n
			}
		}
		return t, true
	}
	return cpuTicks{}, false
}

// since is the machine's CPU time between start and t.
func (t cpuTicks) since(start cpuTicks) cpuTicks {
	if t.total < start.total || t.idle < start.idle {
		return cpuTicks{}
	}
	return cpuTicks{total: t.total - start.total, idle: t.idle - start.idle}
}

// busyPercent is the share of the time that was not idle, 0 if none was
// measured.
func (t cpuTicks) busyPercent() float64 {
	if t.total == 0 {
		return 0
	}
	return 100 * float64(t.total-t.idle) / float64(t.total)
}
