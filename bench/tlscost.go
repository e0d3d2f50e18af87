package bench

import (
	"fmt"
	"io"
)

// The cost of security: cas-seq and cas-parallel on cxkv and on etcd with
// TLS on both ports (client certificates required, mutual TLS between
// members; see PKI), run in the same rounds as the plaintext runs, beside
// them. Backends "cxkv-tls" and "etcd-tls".

// TLSWorkloads are the workloads run with TLS too.
var TLSWorkloads = []string{CASSeq, CASParallel}

// TLSBackend names a backend's TLS twin in results.
func TLSBackend(name string) string { return name + "-tls" }

// TLSRow is one system's headline figure on one workload, plaintext and
// with TLS (medians over rounds), and what TLS costs: the fraction by
// which the figure is worse with it (a latency longer, a throughput lower).
type TLSRow struct {
	Workload string  `json:"workload"`
	Backend  string  `json:"backend"`
	Metric   string  `json:"metric"`
	Plain    float64 `json:"plain"`
	TLS      float64 `json:"tls"`
	PlainP99 float64 `json:"plain_p99_ms"`
	TLSP99   float64 `json:"tls_p99_ms"`
	Cost     float64 `json:"cost"`
}

// SummarizeTLS computes the TLS rows from every run, over the rounds both
// sides measured; a system with no such round has none.
func SummarizeTLS(runs []Result) []TLSRow {
	var rows []TLSRow
	for _, wl := range TLSWorkloads {
		h := headlineOf(wl)
		for _, b := range []string{"cxkv", "etcd"} {
			plain, tls := pick(runs, wl, b), pick(runs, wl, TLSBackend(b))
			plain, tls = inRounds(plain, tls), inRounds(tls, plain)
			if len(plain) == 0 || len(tls) == 0 {
				continue
			}
			r := TLSRow{Workload: wl, Backend: b, Metric: h.metric(),
				Plain: median(plain, h.figure), TLS: median(tls, h.figure),
				PlainP99: median(plain, func(r Result) float64 { return r.P99 }),
				TLSP99:   median(tls, func(r Result) float64 { return r.P99 })}
			// The fraction by which TLS makes the figure worse: a latency
			// longer, a throughput lower.
			if h.latency {
				r.Cost = (r.TLS - r.Plain) / r.Plain
			} else {
				r.Cost = (r.Plain - r.TLS) / r.Plain
			}
			rows = append(rows, r)
		}
	}
	return rows
}

// WriteTLS prints the TLS rows.
func WriteTLS(w io.Writer, rows []TLSRow, markdown bool) {
	head := []string{"workload", "backend", "metric", "plaintext", "TLS", "cost of TLS", "p99 ms plaintext", "p99 ms TLS"}
	var lines [][]string
	for _, r := range rows {
		lines = append(lines, []string{r.Workload, r.Backend, r.Metric, num(r.Plain), num(r.TLS),
			fmt.Sprintf("%+.1f%%", 100*r.Cost), num(r.PlainP99), num(r.TLSP99)})
	}
	writeGrid(w, head, lines, markdown)
}
