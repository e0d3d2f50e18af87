package raftnode

import (
	"time"

	"github.com/cxkv/cxkv/api/cxkvpb"
	"github.com/prometheus/client_golang/prometheus"
	pb "go.etcd.io/raft/v3/raftpb"
	"google.golang.org/protobuf/encoding/protowire"
)

// The write trace is a benchmark mode (Config.TraceWrites, cxkv server
// --trace-writes): on the leader, each write this member received is
// stamped as it passes each stage of the write path, and the time from its
// arrival to each stage goes to cxkv_write_stage_seconds{stage}. Stages are
// cumulative, so the difference between two stages' means is what the
// stage between them costs, and stages that overlap (the leader's fsync and
// the followers') show as such. Off, it costs one nil check per stage.
//
// Every stamp but the last is written by the Ready goroutine before it
// triggers the write's waiter; the waiter reads them after receiving its
// result, so the channel orders the two.
type writeStage int

const (
	stageTaken       writeStage = iota // the Ready loop took it off its queue and proposed it
	stageInReady                       // its entry was in a Ready: to be persisted and sent
	stagePersisted                     // the loop stepped the persister's response for it: on the leader's disk (beside the next two stages, not before them)
	stageFollowerAck                   // the Ready loop stepped the first follower's ack of it
	stageCommitted                     // a Ready handed it back committed
	stageApplied                       // the state machine applied it
	stageAnswered                      // its handler had the result, about to answer
	numWriteStages
)

var writeStageNames = [numWriteStages]string{"taken", "in_ready", "persisted", "follower_ack", "committed", "applied", "answered"}

// WriteStageWaitsOn says, for each stage of cxkv_write_stage_seconds, the
// stages a write always reaches before it. The leader's own sync
// (persisted) runs beside the followers' acknowledgements and the commit
// (the two followers may commit an entry before it is on the leader's
// disk): only the apply waits for it.
func WriteStageWaitsOn() map[string][]string {
	return map[string][]string{
		"in_ready":     {"taken"},
		"persisted":    {"in_ready"},
		"follower_ack": {"in_ready"},
		"committed":    {"follower_ack"},
		"applied":      {"persisted", "committed"},
		"answered":     {"applied"},
	}
}

// writeStamps are one write's times at each stage.
type writeStamps [numWriteStages]time.Time

// writeTracer is the Ready goroutine's view of the traced writes in flight
// on this leader, by log index.
type writeTracer struct {
	stages      [numWriteStages]prometheus.Observer
	byIndex     map[uint64]*proposal
	unacked     []uint64 // indexes not yet acknowledged by a follower, ascending
	unpersisted []uint64 // indexes not yet on the leader's own log, ascending
}

// Buckets from 10µs growing by 1.2x to about 1.5s: fine enough that a
// stage of a tenth of a millisecond is told from one of two tenths.
var stageBuckets = prometheus.ExponentialBuckets(0.00001, 1.2, 66)

func newWriteTracer(reg prometheus.Registerer) *writeTracer {
	h := prometheus.NewHistogramVec(prometheus.HistogramOpts{
		Name:    "cxkv_write_stage_seconds",
		Help:    "Benchmark mode (--trace-writes): from a write's arrival at the leader to each stage of its path, for writes that applied.",
		Buckets: stageBuckets,
	}, []string{"stage"})
	reg.MustRegister(h)
	t := &writeTracer{byIndex: map[uint64]*proposal{}}
	for s, name := range writeStageNames {
		t.stages[s] = h.WithLabelValues(name)
	}
	return t
}

// readied stamps the traced writes among a leader's new entries.
func (t *writeTracer) readied(ents []*pb.Entry, waits *waitRegistry, now time.Time) {
	for _, e := range ents {
		if e.GetType() != pb.EntryNormal || len(e.GetData()) == 0 {
			continue
		}
		p := waits.get(commandProposalID(e.GetData()))
		if p == nil || p.stamps == nil {
			continue
		}
		p.stamps[stageInReady] = now
		t.byIndex[e.GetIndex()] = p
		t.unacked = append(t.unacked, e.GetIndex())
		t.unpersisted = append(t.unpersisted, e.GetIndex())
	}
}

// persisted stamps the traced entries up to index, which the leader's
// own log now holds (raft was told so).
func (t *writeTracer) persisted(index uint64, now time.Time) {
	t.unpersisted = t.stampUpTo(t.unpersisted, index, stagePersisted, now)
}

// stepped stamps the writes a follower's append response acknowledges.
func (t *writeTracer) stepped(m *pb.Message) {
	if m.GetType() != pb.MsgAppResp || m.GetReject() {
		return
	}
	t.unacked = t.stampUpTo(t.unacked, m.GetIndex(), stageFollowerAck, time.Now())
}

// stampUpTo stamps stage s of the traced writes in pending (ascending
// indexes) up to index, and returns the rest of pending.
func (t *writeTracer) stampUpTo(pending []uint64, index uint64, s writeStage, now time.Time) []uint64 {
	i := 0
	for ; i < len(pending) && pending[i] <= index; i++ {
		if p := t.byIndex[pending[i]]; p != nil {
			p.stamps[s] = now
		}
	}
	return pending[i:]
}

// stamp sets stage s of the traced write at index, if there is one.
func (t *writeTracer) stamp(index uint64, s writeStage, now time.Time) {
	if p := t.byIndex[index]; p != nil {
		p.stamps[s] = now
	}
}

// done forgets the write at index: its waiter is about to be answered.
func (t *writeTracer) done(index uint64) { delete(t.byIndex, index) }

// reset forgets every write in flight: leadership changed, so their
// outcome is unknown and they are failed, not traced to the end.
func (t *writeTracer) reset() {
	clear(t.byIndex)
	t.unacked = t.unacked[:0]
	t.unpersisted = t.unpersisted[:0]
}

// observe records a write that applied, once its handler has the result.
// A write missing a stage (proposed while the member was not leader) is
// left out, so every stage counts the same writes.
func (t *writeTracer) observe(start time.Time, st *writeStamps) {
	st[stageAnswered] = time.Now()
	for _, at := range st {
		if at.IsZero() {
			return
		}
	}
	for s, at := range st {
		t.stages[s].Observe(at.Sub(start).Seconds())
	}
}

// proposalIDField is cxkvpb.Command's proposal_id field number.
var proposalIDField = (&cxkvpb.Command{}).ProtoReflect().Descriptor().Fields().ByName("proposal_id").Number()

// commandProposalID reads the proposal_id field of an encoded
// cxkvpb.Command without decoding the rest; 0 if it is absent or the
// encoding is malformed (the apply path reports that).
func commandProposalID(data []byte) uint64 {
	for len(data) > 0 {
		num, typ, n := protowire.ConsumeTag(data)
		if n < 0 {
			return 0
		}
		data = data[n:]
		if num == proposalIDField && typ == protowire.VarintType {
			id, n := protowire.ConsumeVarint(data)
			if n < 0 {
				return 0
			}
			return id
		}
		if n = protowire.ConsumeFieldValue(num, typ, data); n < 0 {
			return 0
		}
		data = data[n:]
	}
	return 0
}
