package bench

import (
	"bytes"
	"math"
	"slices"
	"strings"
	"testing"
)

// The two builds' table pairs each round's runs, orients every ratio as
// the main table does (> 1: cxkv better, for a latency too), compares
// only the rounds both builds measured, and has no row for a workload one
// build did not measure.
func TestSummarizeCompare(t *testing.T) {
	run := func(wl, b string, round int, ops, p50, cpu float64) Result {
		return Result{Workload: wl, Backend: b, Round: round, OpsPerSec: ops, P50: p50, ServerCPUPerOp: cpu, Check: "ok"}
	}
	runs := []Result{
		run(CASSeq, "cxkv", 1, 1000, 1.0, 1), run(CASSeq, AltBackend, 1, 900, 2.0, 1),
		run(CASSeq, "cxkv", 2, 1000, 1.0, 1), run(CASSeq, AltBackend, 2, 900, 1.0, 1),
		run(CASSeq, "cxkv", 3, 1000, 1.0, 1), run(CASSeq, AltBackend, 3, 900, 0.5, 1),
		run(LockMany, "cxkv", 1, 1200, 5, 0.9), run(LockMany, AltBackend, 1, 1000, 5, 1.2),
		run(LockMany, "cxkv", 2, 1500, 5, 0.8), run(LockMany, AltBackend, 2, 1500, 5, 1.0),
		{Workload: LockMany, Backend: AltBackend, Round: 3, Error: "lock: request timed out"},
		run(LockMany, "cxkv", 3, 3000, 5, 0.7),
		run(CASParallel, "cxkv", 1, 10000, 5, 0.1), run(CASParallel, "etcd", 1, 4000, 10, 0.3),
	}
	rows := map[string]CompareRow{}
	for _, r := range SummarizeCompare(runs) {
		rows[r.Workload] = r
	}
	if _, ok := rows[CASParallel]; ok || len(rows) != 2 {
		t.Fatalf("rows for %v; want cas-seq and lock-many only (cas-parallel has no %s run)", rows, AltBackend)
	}
	if r := rows[CASSeq]; r.Metric != "p50 ms" || r.A != 1 || r.B != 1 || r.Ratio != 1 || !slices.Equal(r.RoundRatios, []float64{2, 1, 0.5}) {
		t.Errorf("cas-seq judges the p50, a shorter one better: %+v", r)
	}
	if r := rows[LockMany]; r.Metric != "ops/s" || r.A != 1350 || r.B != 1250 || r.Ratio != 1.08 || !slices.Equal(r.RoundRatios, []float64{1.2, 1}) {
		t.Errorf("lock-many: medians of rounds 1 and 2 only (%s lost round 3), 1350 and 1250, ratio 1.08, rounds 1.2 and 1: %+v", AltBackend, r)
	}
	if r := rows[LockMany]; math.Abs(r.ServerCPUA-0.85) > 1e-9 || r.ServerCPUB != 1.1 {
		t.Errorf("lock-many: server CPU medians of rounds 1 and 2, 0.85 and 1.1 ms/op: %+v", r)
	}
	var buf bytes.Buffer
	WriteCompare(&buf, SummarizeCompare(runs), true)
	if !strings.Contains(buf.String(), "| lock-many | ops/s | 1350 | 1250 | 1.08x | 1.20 1.00 | 850 | 1100 | 0.77 |") {
		t.Errorf("markdown table:\n%s", buf.String())
	}
	var detail bytes.Buffer
	WriteDetail(&detail, runs, true)
	if !strings.Contains(detail.String(), "| lock-many | "+AltBackend+" |") {
		t.Errorf("the detail table has no %s rows:\n%s", AltBackend, detail.String())
	}
}
