package bench

import (
	"bytes"
	"strings"
	"testing"
)

// The ratio's orientation is the table's one promise: > 1 means cxkv is
// better, for a throughput and for a latency alike.
func TestSummarizeOrientsRatiosAndTargets(t *testing.T) {
	run := func(wl, b string, ops, p50, p99 float64) Result {
		return Result{Workload: wl, Backend: b, OpsPerSec: ops, P50: p50, P99: p99, Check: "ok"}
	}
	runs := []Result{
		run(CASSeq, "cxkv", 900, 1, 3), run(CASSeq, "cxkv", 1000, 1.2, 3), run(CASSeq, "cxkv", 800, 0.8, 3),
		run(CASSeq, "etcd", 300, 3, 6), run(CASSeq, "etcd", 300, 3, 6), run(CASSeq, "etcd", 300, 3, 6),
		run(CASParallel, "cxkv", 1000, 10, 20), run(CASParallel, "etcd", 2000, 10, 20),
		run(LockContended, "cxkv", 300, 50, 100), run(LockContended, "etcd", 100, 50, 200),
		run(LockContended, "cxkv-plain", 300, 5, 900),
		run(GetRead, "cxkv", 3000, 1, 2), run(GetRead, "etcd", 1000, 1, 2),
		{Workload: GetRead, Backend: "etcd", Round: 2, Error: "request timed out"},
	}
	runs[1].Check = "mutual exclusion broken"
	rows := map[string]Row{}
	for _, r := range Summarize(runs) {
		rows[r.Workload] = r
	}
	if r := rows[CASSeq]; r.Metric != "p50 ms" || r.Cxkv != 1 || r.Ratio != 3 || r.Met || !strings.Contains(r.Checks, "mutual exclusion") {
		t.Errorf("cas-seq: want p50 medians 1 vs 3, ratio 3, not met because a check failed: %+v", r)
	}
	if r := rows[CASParallel]; r.Ratio != 0.5 || r.Met {
		t.Errorf("cas-parallel: half etcd's throughput must read 0.5x, missed: %+v", r)
	}
	if r := rows[LockContended]; r.Ratio != 3 || r.P99Ratio != 2 || !r.Met {
		t.Errorf("lock-contended: 3x handoffs, half the p99: met: %+v", r)
	}
	if r := rows[LockContended+" (plain)"]; r.Ratio != 3 || r.P99Ratio >= 1 || r.Target != 0 {
		t.Errorf("lock-contended (plain) compares cxkv-plain with etcd, without target: %+v", r)
	}
	if r := rows[GetRead]; r.Ratio != 3 || !r.Met || !strings.Contains(r.Checks, "not measured") {
		t.Errorf("get: the failed run is left out of the medians and named: %+v", r)
	}
	var buf bytes.Buffer
	WriteTable(&buf, Summarize(runs), true)
	if !strings.Contains(buf.String(), "| cas-seq | p50 ms | 1.00 | 3.00 | 3.00x |") {
		t.Errorf("markdown table:\n%s", buf.String())
	}
}

// lock-contended's acquire p99 must be at most half of etcd's (issue 17):
// twice etcd's hand-offs with a p99 at 0.55 of etcd's misses it.
func TestLockContendedNeedsHalfEtcdsP99(t *testing.T) {
	runs := []Result{
		{Workload: LockContended, Backend: "cxkv", OpsPerSec: 330, P50: 44, P99: 67, Check: "ok"},
		{Workload: LockContended, Backend: "etcd", OpsPerSec: 155, P50: 100, P99: 122, Check: "ok"},
	}
	r := Summarize(runs)[0]
	if r.Ratio < 2 || r.P99Ratio >= 2 || r.Met {
		t.Fatalf("2.1x the hand-offs with 0.55 of etcd's p99 must miss: %+v", r)
	}
	var buf bytes.Buffer
	WriteTable(&buf, []Row{r}, false)
	if !strings.Contains(buf.String(), "p99 ≥2 MISSED") {
		t.Fatalf("the target cell should name the p99 target and say missed:\n%s", buf.String())
	}
}

// Redis's column is oriented like etcd's (> 1: cxkv better) and its
// cas-parallel target is a third of Redis's throughput.
func TestSummarizeComparesWithRedis(t *testing.T) {
	run := func(wl, b string, ops, p50 float64) Result {
		return Result{Workload: wl, Backend: b, OpsPerSec: ops, P50: p50, P99: 2 * p50, Check: "ok"}
	}
	runs := []Result{
		run(CASSeq, "cxkv", 1000, 1), run(CASSeq, "etcd", 500, 2), run(CASSeq, "redis", 2500, 0.4),
		run(CASParallel, "cxkv", 6000, 10), run(CASParallel, "etcd", 3000, 20), run(CASParallel, "redis", 20000, 3),
	}
	rows := map[string]Row{}
	for _, r := range Summarize(runs) {
		rows[r.Workload] = r
	}
	if r := rows[CASSeq]; r.Redis != 0.4 || r.RedisRatio != 0.4 || r.RedisTarget != 0 || !r.Met {
		t.Errorf("cas-seq: redis p50 0.4 vs 1 reads 0.40x, no redis target: %+v", r)
	}
	if r := rows[CASParallel]; r.Redis != 20000 || r.RedisRatio != 0.3 || r.Met {
		t.Errorf("cas-parallel: 6000 vs 20000 ops/s reads 0.30x, short of a third: %+v", r)
	}
	runs[3].OpsPerSec = 7000
	for _, r := range Summarize(runs) {
		if r.Workload == CASParallel && !r.Met {
			t.Errorf("cas-parallel: 2.33x etcd and 0.35x redis meets both targets: %+v", r)
		}
	}
}

func TestWorkersClause(t *testing.T) {
	if got := WorkersClause(0); got != "" {
		t.Errorf("WorkersClause(0) = %q, want none: the workloads ran on their own counts", got)
	}
	if got := WorkersClause(32); !strings.Contains(got, "32 goroutines") || !strings.HasPrefix(got, "; ") {
		t.Errorf("WorkersClause(32) = %q, want a header clause naming 32 goroutines", got)
	}
}

// A ratio compares rounds both sides measured: the rounds run every
// backend back to back, so a round one side lost says nothing of the
// other's. Found in a make bench where etcd timed out in two lock-many
// rounds of three: the median of cxkv's three rounds against etcd's one
// read 2.04x, "met", where the one round both measured gave 1.77x.
func TestSummarizeComparesOnlyRoundsBothMeasured(t *testing.T) {
	run := func(b string, round int, ops float64) Result {
		return Result{Workload: LockMany, Backend: b, Round: round, OpsPerSec: ops, P50: 5, P99: 20, Check: "ok"}
	}
	lost := func(b string, round int) Result {
		return Result{Workload: LockMany, Backend: b, Round: round, Error: "lock: etcdserver: request timed out"}
	}
	runs := []Result{
		run("cxkv", 1, 1585), run("cxkv", 2, 1601), run("cxkv", 3, 1376),
		lost("etcd", 1), lost("etcd", 2), run("etcd", 3, 778),
		run("redis", 1, 10584), run("redis", 2, 11152), lost("redis", 3),
	}
	rows := Summarize(runs)
	if len(rows) != 1 {
		t.Fatalf("want one row, got %+v", rows)
	}
	r := rows[0]
	if r.Cxkv != 1376 || r.Etcd != 778 || r.Met {
		t.Errorf("etcd measured round 3 alone: cxkv's figure must be its round 3 (1376, 1.77x), missed: %+v", r)
	}
	if r.Redis != 0 || r.RedisRatio != 0 {
		t.Errorf("redis measured no round of those compared with etcd: no redis figure: %+v", r)
	}
	for _, want := range []string{"etcd round 1 not measured", "compared on round 3"} {
		if !strings.Contains(r.Checks, want) {
			t.Errorf("checks %q should say %q", r.Checks, want)
		}
	}
}
