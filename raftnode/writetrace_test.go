package raftnode_test

import (
	"fmt"
	"testing"
	"time"

	"github.com/cxkv/cxkv/raftnode"
	"github.com/cxkv/cxkv/raftnode/raftnodetest"
)

var writeStages = []string{"taken", "in_ready", "persisted", "follower_ack", "committed", "applied", "answered"}

// With TraceWrites, every write through the leader is timed at every stage,
// and since each write passes the stages in order, each stage's mean time
// since arrival is at least the one before it.
func TestWriteTraceTimesEveryStageInOrder(t *testing.T) {
	c := raftnodetest.Start(t, 3, patientElections, func(cfg *raftnode.Config) { cfg.TraceWrites = true })
	li := c.WaitLeader()
	leader := c.Members[li]
	kv := c.Client(li)
	raftnodetest.Eventually(t, 10*time.Second, "applied catches up with commit", func() bool {
		st := leader.Status()
		return st.Applied == st.Commit && st.Commit > 0
	})
	const puts = 20
	for i := 0; i < puts; i++ {
		put(t, kv, fmt.Sprintf("k/%d", i), "v", 0)
	}
	m := raftnodetest.Scrape(t, leader.Handler())
	f := m["cxkv_write_stage_seconds"]
	if f == nil {
		t.Fatal("no cxkv_write_stage_seconds with TraceWrites on")
	}
	mean := map[string]float64{}
	for _, s := range f.GetMetric() {
		h := s.GetHistogram()
		stage := s.GetLabel()[0].GetValue()
		if h.GetSampleCount() != puts {
			t.Errorf("stage %s counted %d writes, want %d", stage, h.GetSampleCount(), puts)
		}
		mean[stage] = h.GetSampleSum() / float64(h.GetSampleCount())
	}
	for _, s := range writeStages {
		if _, ok := mean[s]; !ok {
			t.Fatalf("stage %s missing (have %v)", s, mean)
		}
	}
	for s, prior := range raftnode.WriteStageWaitsOn() {
		for _, p := range prior {
			if mean[s] < mean[p] {
				t.Errorf("stage %s at %.3fms comes before %s at %.3fms", s, mean[s]*1e3, p, mean[p]*1e3)
			}
		}
	}
	t.Logf("mean ms since arrival: %v", mean)
}

// Without TraceWrites the member exports no stage histogram: the trace is a
// benchmark mode, not a cost every deployment pays.
func TestWriteTraceIsOffByDefault(t *testing.T) {
	c := raftnodetest.Start(t, 1)
	li := c.WaitLeader()
	put(t, c.Client(li), "k", "v", 0)
	if f := raftnodetest.Scrape(t, c.Members[li].Handler())["cxkv_write_stage_seconds"]; f != nil {
		t.Fatalf("cxkv_write_stage_seconds exported with TraceWrites off: %v", f)
	}
}
