package bench

import (
	"fmt"
	"io"
	"strings"
)

// Two builds of cxkv judged side by side: -cxkv-b starts a second cluster
// from another binary, run as backend "cxkv-b" in the same rounds as
// "cxkv", beside it. The rounds alternate the order of backends, so the
// two builds take turns going first and the machine's drift falls on both;
// on these shared machines one run of each build decides nothing, and
// the medians and the per-round ratios of one command do better than
// runs minutes apart. Only the members differ: the harness, and so the
// SDK, is the same for both.

// AltBackend names the second build's backend in results.
const AltBackend = "cxkv-b"

// CompareRow is one workload's headline figure on the two builds (medians
// over rounds), their ratio oriented as the main table's (> 1: cxkv, the
// build under -cxkv, is better), each round's ratio in round order, and
// the members' CPU per operation of each build.
type CompareRow struct {
	Workload     string    `json:"workload"`
	Metric       string    `json:"metric"`
	A            float64   `json:"cxkv"`
	B            float64   `json:"cxkv_b"`
	Ratio        float64   `json:"ratio"`
	RoundRatios  []float64 `json:"round_ratios"`
	ServerCPUA   float64   `json:"server_cpu_ms_per_op_cxkv"`
	ServerCPUB   float64   `json:"server_cpu_ms_per_op_cxkv_b"`
	ServerCPURat float64   `json:"server_cpu_ratio"`
}

// SummarizeCompare computes a row per workload both builds measured, over
// the rounds both measured; none without a cxkv-b run.
func SummarizeCompare(runs []Result) []CompareRow {
	var rows []CompareRow
	for _, wl := range Workloads {
		a, b := pick(runs, wl, "cxkv"), pick(runs, wl, AltBackend)
		a, b = inRounds(a, b), inRounds(b, a)
		if len(a) == 0 || len(b) == 0 {
			continue
		}
		h := headlineOf(wl)
		r := CompareRow{Workload: wl, Metric: h.metric(), A: median(a, h.figure), B: median(b, h.figure)}
		r.Ratio = h.advantage(r.A, r.B)
		for _, ra := range a {
			for _, rb := range b {
				if rb.Round == ra.Round {
					r.RoundRatios = append(r.RoundRatios, h.advantage(h.figure(ra), h.figure(rb)))
				}
			}
		}
		cpu := func(r Result) float64 { return r.ServerCPUPerOp }
		r.ServerCPUA, r.ServerCPUB = median(a, cpu), median(b, cpu)
		r.ServerCPURat = ratio(r.ServerCPUA, r.ServerCPUB)
		rows = append(rows, r)
	}
	return rows
}

// WriteCompare prints the rows.
func WriteCompare(w io.Writer, rows []CompareRow, markdown bool) {
	head := []string{"workload", "metric", "cxkv", AltBackend, "ratio (> 1: cxkv better)", "per round", "server CPU µs/op cxkv", "server CPU µs/op " + AltBackend, "CPU ratio (< 1: cxkv cheaper)"}
	var lines [][]string
	for _, r := range rows {
		per := make([]string, len(r.RoundRatios))
		for i, x := range r.RoundRatios {
			per[i] = fmt.Sprintf("%.2f", x)
		}
		lines = append(lines, []string{r.Workload, r.Metric, num(r.A), num(r.B), fmt.Sprintf("%.2fx", r.Ratio), strings.Join(per, " "),
			fmt.Sprintf("%.0f", 1000*r.ServerCPUA), fmt.Sprintf("%.0f", 1000*r.ServerCPUB), fmt.Sprintf("%.2f", r.ServerCPURat)})
	}
	writeGrid(w, head, lines, markdown)
}
