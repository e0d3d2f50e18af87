package bench

import (
	"bytes"
	"context"
	"strings"
	"testing"
	"time"

	"github.com/cxkv/cxkv/raftnode/raftnodetest"
)

// inProcess lets the failover workload kill members of an in-process
// cluster (a stop, where make bench sends SIGKILL to a process).
type inProcess struct{ c *raftnodetest.Cluster }

func (p inProcess) Leader(context.Context) (int, error) { return p.c.WaitLeader(), nil }
func (p inProcess) Kill(i int) error                    { p.c.Stop(i); return nil }
func (p inProcess) Restart(i int) error                 { p.c.Revive(i); return nil }

// The failover workload runs end to end on an in-process cluster, and
// writes, reads and watches recover after every kill, so the workload
// cannot rot between `make bench` runs.
func TestFailoverWorkload(t *testing.T) {
	cl := raftnodetest.Start(t, 3)
	var trace bytes.Buffer
	res, err := RunFailover(context.Background(), Cxkv{Endpoints: cl.Endpoints()}, inProcess{cl}, FailoverConfig{
		Prefix: "failover", Kills: 2, Interval: 3 * time.Second, RestartAfter: 300 * time.Millisecond,
		Undisturbed: time.Second, Writers: 2, Readers: 2, Trace: &trace,
	})
	if err != nil {
		t.Fatal(err)
	}
	if len(res.Kills) != 2 {
		t.Fatalf("%d kills measured, want 2", len(res.Kills))
	}
	for i, k := range res.Kills {
		t.Logf("kill %d: %+v", i+1, k)
		if k.Write < 0 || k.Read < 0 || k.Watch < 0 || k.Lock < 0 {
			t.Errorf("kill %d: a stage did not recover before the next kill: %+v", i+1, k)
		}
		if k.Gap > 0 && k.GapAt < min(k.Write, k.Read) {
			t.Errorf("kill %d: the longest gap after the first success began at %vms, before the first write (%vms) or read (%vms)", i+1, k.GapAt, k.Write, k.Read)
		}
	}
	// The trace names every kill and restart and each probe's calls, in
	// the member logs' clock.
	lines := map[string]int{}
	for _, l := range strings.Split(strings.TrimSpace(trace.String()), "\n") {
		f := strings.Fields(l)
		if len(f) < 3 {
			t.Fatalf("trace line %q: want <time> <event> <args>", l)
		}
		if _, err := time.Parse("15:04:05.000000", f[0]); err != nil {
			t.Fatalf("trace line %q: %v", l, err)
		}
		key := f[1]
		if key == "call" {
			key += " " + f[2] + " " + f[len(f)-1]
		}
		lines[key]++
	}
	if lines["kill"] != 2 || lines["restart"] != 2 {
		t.Errorf("trace has %d kills and %d restarts, want 2 each", lines["kill"], lines["restart"])
	}
	for _, p := range []string{"w0", "w1", "r0", "r1"} {
		if lines["call "+p+" ok"] == 0 {
			t.Errorf("trace has no successful call of probe %s: %v", p, lines)
		}
	}
	if res.Throughput <= 0 {
		t.Errorf("throughput vs undisturbed %v", res.Throughput)
	}
}
