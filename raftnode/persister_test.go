package raftnode

import (
	"context"
	"fmt"
	"strings"
	"testing"
	"time"

	"go.etcd.io/raft/v3"
	pb "go.etcd.io/raft/v3/raftpb"
	"google.golang.org/protobuf/proto"
)

// While the leader's log write syncs, its loop goes on: a linearizable read
// is answered (its round needs nothing written), and the write waits for
// its own sync.
func TestReadsAreAnsweredWhileTheLogSyncs(t *testing.T) {
	gate := &walSyncGate{tokens: make(chan struct{})}
	n := startGated(t, gate)
	gate.closed.Store(true)
	w := gatedPut(n)("w")
	gatedWaitFor(t)("W's sync is held", func() bool { return gate.held.Load() == 1 })

	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	if err := n.readIndex(ctx); err != nil {
		t.Fatalf("a read while the log syncs: %v", err)
	}
	releaseHeld(t, gate, "W", w)
}

// Two queued log writes merged into one: what the second writes wins where
// they overlap, as raft sends a conflicting suffix only to overwrite it,
// and nothing raft handed over is changed in place.
func TestMergedLogWritesKeepRaftsOrder(t *testing.T) {
	ent := func(i, term uint64) *pb.Entry { return &pb.Entry{Index: proto.Uint64(i), Term: proto.Uint64(term)} }
	resp := func(i uint64) *pb.Message { return &pb.Message{Type: pb.MsgAppResp.Enum(), Index: proto.Uint64(i)} }
	hs := func(term, commit uint64) *pb.HardState {
		return &pb.HardState{Term: proto.Uint64(term), Commit: proto.Uint64(commit)}
	}
	first := []*pb.Entry{ent(5, 1), ent(6, 1), ent(7, 1)}
	a := persistJob{rd: raft.Ready{Entries: first, HardState: hs(1, 4)}, resps: []*pb.Message{resp(7)}}
	b := persistJob{rd: raft.Ready{Entries: []*pb.Entry{ent(6, 2), ent(7, 2), ent(8, 2)}, HardState: hs(2, 5), MustSync: true}, resps: []*pb.Message{resp(8)}}
	m := mergeJobs(a, b)
	var got []string
	for _, e := range m.rd.Entries {
		got = append(got, fmt.Sprintf("%d@%d", e.GetIndex(), e.GetTerm()))
	}
	if strings.Join(got, " ") != "5@1 6@2 7@2 8@2" {
		t.Errorf("merged entries %v, want 5@1 6@2 7@2 8@2", got)
	}
	if m.rd.HardState.GetTerm() != 2 || m.rd.HardState.GetCommit() != 5 || !m.rd.MustSync {
		t.Errorf("merged HardState %v, MustSync %v; want term 2 commit 5, synced", m.rd.HardState, m.rd.MustSync)
	}
	if len(m.resps) != 2 || m.resps[0].GetIndex() != 7 || m.resps[1].GetIndex() != 8 {
		t.Errorf("merged responses %v, want the first write's then the second's", m.resps)
	}
	if first[1].GetTerm() != 1 || first[2].GetTerm() != 1 || len(a.rd.Entries) != 3 {
		t.Errorf("the first write's entries were changed in place: %v", first)
	}

	// A write with no HardState keeps the one before it; one with no
	// entries keeps the entries.
	c := persistJob{rd: raft.Ready{HardState: &pb.HardState{}}, resps: []*pb.Message{resp(9)}}
	if m2 := mergeJobs(m, c); m2.rd.HardState.GetCommit() != 5 || len(m2.rd.Entries) != 4 || len(m2.resps) != 3 || !m2.rd.MustSync {
		t.Errorf("merging a write without entries or HardState: %+v", m2.rd)
	}
}
