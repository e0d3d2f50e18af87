package bench

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"slices"

	dto "github.com/prometheus/client_model/go"
	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"
)

// StageNames are the stages of a write on the leader, as
// cxkv_write_stage_seconds labels them (raftnode's writetrace.go): each is
// the time from the write's arrival at the leader. A write passes them in
// this order, except that the leader's own sync (persisted) runs beside
// the followers' acknowledgements and the commit, and may end after them
// (raftnode.WriteStageWaitsOn).
// "client" is added by the harness: the client's own round trip.
var StageNames = []string{"taken", "in_ready", "persisted", "follower_ack", "committed", "applied", "answered", "client"}

// Stage is one stage's figures over a run: the writes that reached it, and
// the mean and median time from arrival to it, in milliseconds.
type Stage struct {
	Name  string  `json:"name"`
	Count int64   `json:"count,omitempty"`
	Mean  float64 `json:"mean_ms"`
	P50   float64 `json:"p50_ms,omitempty"`
}

// stageHistogram is one stage's histogram summed over members.
type stageHistogram struct {
	bounds []float64 // bucket upper bounds, seconds
	counts []uint64  // cumulative
	sum    float64
	count  uint64
}

// StageHistograms is a scrape of every member's cxkv_write_stage_seconds,
// by stage, and of the counters that say what the writes cost the
// cluster, summed over members.
type StageHistograms struct {
	stages map[string]*stageHistogram
	// fsyncs: synced writes of the Raft log (cxkv_wal_fsync_duration_seconds'
	// count); entries: log entries written; peerMessages: Raft messages
	// handed to peers' streams.
	fsyncs, entries, peerMessages float64
}

// ScrapeStages reads cxkv_write_stage_seconds and the log and peer
// counters from every member and sums them (only the leader of the moment
// counts writes).
func (c *Cluster) ScrapeStages(ctx context.Context) (*StageHistograms, error) {
	out := &StageHistograms{stages: map[string]*stageHistogram{}}
	for _, url := range c.MetricsURLs {
		req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
		if err != nil {
			return nil, err
		}
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			return nil, err
		}
		p := expfmt.NewTextParser(model.UTF8Validation)
		fams, err := p.TextToMetricFamilies(resp.Body)
		resp.Body.Close()
		if err != nil {
			return nil, fmt.Errorf("%s: %w", url, err)
		}
		f := fams["cxkv_write_stage_seconds"]
		if f == nil {
			return nil, fmt.Errorf("%s has no cxkv_write_stage_seconds (not started with --trace-writes?)", url)
		}
		for _, m := range f.GetMetric() {
			out.add(stageLabel(m), m.GetHistogram())
		}
		out.fsyncs += sumMetric(fams["cxkv_wal_fsync_duration_seconds"])
		out.entries += sumMetric(fams["cxkv_wal_entries_persisted_total"])
		out.peerMessages += sumMetric(fams["cxkv_peer_messages_sent_total"])
	}
	return out, nil
}

// sumMetric is a family's counters, or its histograms' sample counts,
// summed over its series; 0 for a family the member does not export.
func sumMetric(f *dto.MetricFamily) float64 {
	var n float64
	for _, m := range f.GetMetric() {
		if h := m.GetHistogram(); h != nil {
			n += float64(h.GetSampleCount())
		} else {
			n += m.GetCounter().GetValue()
		}
	}
	return n
}

func stageLabel(m *dto.Metric) string {
	for _, l := range m.GetLabel() {
		if l.GetName() == "stage" {
			return l.GetValue()
		}
	}
	return ""
}

func (s *StageHistograms) add(stage string, h *dto.Histogram) {
	sh := s.stages[stage]
	if sh == nil {
		sh = &stageHistogram{}
		for _, b := range h.GetBucket() {
			sh.bounds = append(sh.bounds, b.GetUpperBound())
		}
		sh.counts = make([]uint64, len(sh.bounds))
		s.stages[stage] = sh
	}
	for i, b := range h.GetBucket() {
		if i < len(sh.counts) {
			sh.counts[i] += b.GetCumulativeCount()
		}
	}
	sh.sum += h.GetSampleSum()
	sh.count += h.GetSampleCount()
}

// StageDelta is what the writes between two scrapes spent at each stage,
// followed by the client's mean round trip (clientMean, ms).
func StageDelta(before, after *StageHistograms, clientMean float64) []Stage {
	var out []Stage
	for _, name := range StageNames[:len(StageNames)-1] {
		a := after.stages[name]
		if a == nil {
			continue
		}
		d := stageHistogram{bounds: a.bounds, counts: slices.Clone(a.counts), sum: a.sum, count: a.count}
		if b := before.stages[name]; b != nil {
			for i := range d.counts {
				if i < len(b.counts) {
					d.counts[i] -= b.counts[i]
				}
			}
			d.sum -= b.sum
			d.count -= b.count
		}
		st := Stage{Name: name, Count: int64(d.count)}
		if d.count > 0 {
			st.Mean = d.sum * 1e3 / float64(d.count)
			st.P50 = d.quantile(0.5) * 1e3
		}
		out = append(out, st)
	}
	return append(out, Stage{Name: "client", Mean: clientMean})
}

// Costs is what a run's operations cost the cluster, summed over members
// (cxkvbench -stages).
type Costs struct {
	// FsyncsPerOp: synced log writes per operation, all members together.
	FsyncsPerOp float64 `json:"fsyncs_per_op"`
	// EntriesPerFsync: log entries each synced write carried on average,
	// the batching factor (an entry is one write, or a leader's empty
	// entry or a configuration change).
	EntriesPerFsync float64 `json:"entries_per_fsync"`
	// PeerMessagesPerOp: Raft messages the members sent each other per
	// operation (appends, acknowledgements, heartbeats, commit notices).
	PeerMessagesPerOp float64 `json:"peer_messages_per_op"`
}

// CostDelta is what the ops operations between two scrapes cost.
func CostDelta(before, after *StageHistograms, ops int64) Costs {
	var c Costs
	fsyncs := after.fsyncs - before.fsyncs
	if ops > 0 {
		c.FsyncsPerOp = fsyncs / float64(ops)
		c.PeerMessagesPerOp = (after.peerMessages - before.peerMessages) / float64(ops)
	}
	if fsyncs > 0 {
		c.EntriesPerFsync = (after.entries - before.entries) / fsyncs
	}
	return c
}

// quantile interpolates within the bucket that holds the q-th write.
func (h *stageHistogram) quantile(q float64) float64 {
	rank := q * float64(h.count)
	lo, prev := 0.0, uint64(0)
	for i, c := range h.counts {
		if float64(c) >= rank {
			if c == prev {
				return h.bounds[i]
			}
			return lo + (h.bounds[i]-lo)*(rank-float64(prev))/float64(c-prev)
		}
		lo, prev = h.bounds[i], c
	}
	return lo
}

// HasStages reports whether any run traced its writes.
func HasStages(runs []Result) bool {
	return slices.ContainsFunc(runs, func(r Result) bool { return len(r.Stages) > 0 })
}

// WriteStages prints, for each workload whose cxkv runs traced their
// writes, the median over rounds of each stage's mean and p50 time since
// the write reached the leader, and what the stage itself added (the
// difference of means).
func WriteStages(w io.Writer, runs []Result, markdown bool) {
	head := []string{"workload", "stage (time since the leader received the write)", "mean ms", "p50 ms", "stage adds ms"}
	var lines [][]string
	for _, wl := range Workloads {
		rs := slices.DeleteFunc(pick(runs, wl, "cxkv"), func(r Result) bool { return len(r.Stages) == 0 })
		if len(rs) == 0 {
			continue
		}
		prev := 0.0
		for _, name := range StageNames {
			at := func(f func(Stage) float64) func(Result) float64 {
				return func(r Result) float64 {
					for _, s := range r.Stages {
						if s.Name == name {
							return f(s)
						}
					}
					return 0
				}
			}
			m := median(rs, at(func(s Stage) float64 { return s.Mean }))
			p50 := "-"
			if name != "client" {
				p50 = num(median(rs, at(func(s Stage) float64 { return s.P50 })))
			}
			lines = append(lines, []string{wl, name, num(m), p50, fmt.Sprintf("%+.3f", m-prev)})
			prev = m
		}
	}
	writeGrid(w, head, lines, markdown)

	fmt.Fprintln(w)
	head = []string{"workload", "fsyncs per op (all members)", "log entries per fsync", "peer messages per op"}
	lines = nil
	for _, wl := range Workloads {
		rs := slices.DeleteFunc(pick(runs, wl, "cxkv"), func(r Result) bool { return r.Costs == nil })
		if len(rs) == 0 {
			continue
		}
		lines = append(lines, []string{wl,
			fmt.Sprintf("%.2f", median(rs, func(r Result) float64 { return r.Costs.FsyncsPerOp })),
			fmt.Sprintf("%.2f", median(rs, func(r Result) float64 { return r.Costs.EntriesPerFsync })),
			fmt.Sprintf("%.2f", median(rs, func(r Result) float64 { return r.Costs.PeerMessagesPerOp })),
		})
	}
	writeGrid(w, head, lines, markdown)
}
