package bench

import (
	"bytes"
	"strings"
	"testing"
)

// The cost of TLS reads the same way for a latency and a throughput: the
// fraction by which TLS makes the figure worse; the TLS runs show in the
// detail table too.
func TestSummarizeTLSCost(t *testing.T) {
	run := func(wl, b string, ops, p50 float64) Result {
		return Result{Workload: wl, Backend: b, OpsPerSec: ops, P50: p50, P99: 2 * p50, Check: "ok"}
	}
	runs := []Result{
		run(CASSeq, "cxkv", 500, 2), run(CASSeq, "cxkv-tls", 400, 2.5),
		run(CASParallel, "cxkv", 1000, 10), run(CASParallel, "cxkv-tls", 800, 12),
		run(CASSeq, "etcd", 300, 3), // no etcd-tls run measured: no row
		{Workload: CASSeq, Backend: "etcd-tls", Error: "request timed out"},
	}
	rows := SummarizeTLS(runs)
	if len(rows) != 2 {
		t.Fatalf("rows %+v, want cxkv's cas-seq and cas-parallel only", rows)
	}
	if r := rows[0]; r.Workload != CASSeq || r.Metric != "p50 ms" || r.Plain != 2 || r.TLS != 2.5 || r.Cost != 0.25 {
		t.Errorf("cas-seq: p50 2 ms plaintext, 2.5 with TLS: 25%% worse: %+v", r)
	}
	if r := rows[1]; r.Workload != CASParallel || r.Metric != "ops/s" || r.Cost != 0.2 || r.TLSP99 != 24 {
		t.Errorf("cas-parallel: 1000 ops/s plaintext, 800 with TLS: 20%% worse: %+v", r)
	}
	var b bytes.Buffer
	WriteTLS(&b, rows, true)
	if !strings.Contains(b.String(), "+25.0%") {
		t.Errorf("table does not show the cost:\n%s", b.String())
	}
	b.Reset()
	WriteDetail(&b, runs, false)
	if !strings.Contains(b.String(), "cxkv-tls") {
		t.Errorf("detail table leaves out the TLS runs:\n%s", b.String())
	}
}

// The cost of TLS compares the rounds both sides measured: a TLS round
// lost leaves the plaintext run of that round out too.
func TestSummarizeTLSCostComparesRoundsBothMeasured(t *testing.T) {
	run := func(b string, round int, ops float64) Result {
		return Result{Workload: CASParallel, Backend: b, Round: round, OpsPerSec: ops, P50: 5, P99: 10, Check: "ok"}
	}
	runs := []Result{
		run("cxkv", 1, 1000), run("cxkv-tls", 1, 900),
		run("cxkv", 2, 3000), {Workload: CASParallel, Backend: "cxkv-tls", Round: 2, Error: "request timed out"},
		run("cxkv", 3, 1200), run("cxkv-tls", 3, 1080),
	}
	rows := SummarizeTLS(runs)
	if len(rows) != 1 || rows[0].Plain != 1100 || rows[0].TLS != 990 {
		t.Fatalf("rows %+v: want plaintext 1100 and TLS 990, the medians of rounds 1 and 3", rows)
	}
}
