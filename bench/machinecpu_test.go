package bench

import (
	"math"
	"testing"
)

func TestParseProcStat(t *testing.T) {
	// A 2-core machine's /proc/stat, abridged; guest time (the last two
	// fields) is part of user time already and must not count twice.
	const stat = `cpu  3661031 0 1499727 4672530 218166 0 306401 2984 500 0
cpu0 1830000 0 750000 2336265 109083 0 153200 1492 250 0
intr 1 2 3
`
	got, ok := parseProcStat([]byte(stat))
	if !ok {
		t.Fatal("the cpu line was not found")
	}
	want := cpuTicks{total: 3661031 + 1499727 + 4672530 + 218166 + 306401 + 2984, idle: 4672530 + 218166}
	if got != want {
		t.Fatalf("parsed %+v, want %+v", got, want)
	}
	for _, bad := range []string{"", "cpu0 1 2 3 4 5\n", "cpu 1 2 x 4 5\n", "cpu 1 2\n"} {
		if _, ok := parseProcStat([]byte(bad)); ok {
			t.Errorf("parsed %q, want it refused", bad)
		}
	}
}

func TestBusyPercent(t *testing.T) {
	start := cpuTicks{total: 1000, idle: 400}
	end := cpuTicks{total: 1200, idle: 450} // 200 ticks, 50 of them idle
	if got := end.since(start).busyPercent(); math.Abs(got-75) > 1e-9 {
		t.Fatalf("busy %v%%, want 75%%", got)
	}
	// A counter that went backwards (or an unreadable /proc/stat, all
	// zeros) measures nothing rather than a wrapped-around share.
	if got := start.since(end).busyPercent(); got != 0 {
		t.Fatalf("busy %v%% for a backwards counter, want 0", got)
	}
	if got := (cpuTicks{}).since(start).busyPercent(); got != 0 {
		t.Fatalf("busy %v%% for an unread counter, want 0", got)
	}
}
