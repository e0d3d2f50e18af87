package main

import (
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/cxkv/cxkv/bench"
)

// -summarize takes a saved report's tables again from its runs: a summary
// taken the old way (here: cxkv's three rounds against etcd's one, read as
// met) is replaced by today's, in the JSON and in the Markdown.
func TestResummarizeRetakesTheTables(t *testing.T) {
	dir := t.TempDir()
	run := func(b string, round int, ops float64) bench.Result {
		return bench.Result{Workload: bench.LockMany, Backend: b, Round: round, OpsPerSec: ops, P50: 5, P99: 20, Check: "ok"}
	}
	old := bench.Report{
		GitCommit: "24ebefc482b0",
		Rounds:    3,
		Runs: []bench.Result{
			run("cxkv", 1, 1585), run("cxkv", 2, 1601), run("cxkv", 3, 1376),
			{Workload: bench.LockMany, Backend: "etcd", Round: 1, Error: "request timed out"},
			run("etcd", 3, 778),
		},
		Summary: []bench.Row{{Workload: bench.LockMany, Cxkv: 1585, Etcd: 778, Met: true}},
	}
	b, err := json.Marshal(old)
	if err != nil {
		t.Fatal(err)
	}
	from := filepath.Join(dir, "old.json")
	if err := os.WriteFile(from, b, 0o644); err != nil {
		t.Fatal(err)
	}
	jsonPath, mdPath := filepath.Join(dir, "new.json"), filepath.Join(dir, "new.md")
	if err := resummarize(from, jsonPath, mdPath); err != nil {
		t.Fatal(err)
	}
	var rep bench.Report
	b, err = os.ReadFile(jsonPath)
	if err != nil {
		t.Fatal(err)
	}
	if err := json.Unmarshal(b, &rep); err != nil {
		t.Fatal(err)
	}
	if len(rep.Summary) != 1 || rep.Summary[0].Cxkv != 1376 || rep.Summary[0].Met || len(rep.Runs) != 5 || rep.GitCommit != old.GitCommit {
		t.Fatalf("the summary was not taken again from the runs, or the rest not kept: %+v", rep)
	}
	md, err := os.ReadFile(mdPath)
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(string(md), "compared on round 3") || !strings.Contains(string(md), "at cxkv 24ebefc482b0") {
		t.Errorf("markdown:\n%s", md)
	}

	if err := os.WriteFile(from, []byte(`{"runs": []}`), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := resummarize(from, jsonPath, mdPath); err == nil || !strings.Contains(err.Error(), "no runs") {
		t.Errorf("a report with no runs: %v, want an error saying so", err)
	}
}
