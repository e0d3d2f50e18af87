package raftnode

import (
	"log/slog"
	"testing"

	"go.etcd.io/raft/v3"
	pb "go.etcd.io/raft/v3/raftpb"
	"google.golang.org/protobuf/proto"
)

// TestHeartbeatResponseBurstSendsOneProbe: a follower that was paused
// (SIGSTOP) answers, when it resumes, every heartbeat the leader queued to
// it while it slept, all at once. Raft unpauses a probing follower on every
// heartbeat response and sends it another append of up to MaxSizePerMsg, so
// 15 s of 100 ms heartbeats made the leader read, decode and queue ~150 MiB
// of identical appends in a second (its RSS went from 97 MB to 426 MB and
// it lost leadership). Within one tick only the first response of a peer
// may reach raft; the next tick lets one more through.
func TestHeartbeatResponseBurstSendsOneProbe(t *testing.T) {
	ms := raft.NewMemoryStorage()
	if err := ms.ApplySnapshot(&pb.Snapshot{Metadata: &pb.SnapshotMetadata{Index: proto.Uint64(1), Term: proto.Uint64(1), ConfState: &pb.ConfState{Voters: []uint64{1, 2}}}}); err != nil {
		t.Fatal(err)
	}
	var ents []*pb.Entry
	for i := uint64(2); i <= 41; i++ {
		ents = append(ents, &pb.Entry{Term: proto.Uint64(1), Index: proto.Uint64(i), Type: pb.EntryType_EntryNormal.Enum(), Data: make([]byte, 100<<10)})
	}
	if err := ms.Append(ents); err != nil {
		t.Fatal(err)
	}
	if err := ms.SetHardState(&pb.HardState{Term: proto.Uint64(1), Commit: proto.Uint64(41)}); err != nil {
		t.Fatal(err)
	}
	rn, err := raft.NewRawNode(&raft.Config{ID: 1, ElectionTick: 10, HeartbeatTick: 1, Storage: ms, Applied: 41, MaxSizePerMsg: maxSizePerMsg, MaxInflightMsgs: 256, Logger: raftLogger{slog.New(slog.DiscardHandler)}})
	if err != nil {
		t.Fatal(err)
	}
	step := func(m *pb.Message) {
		if err := rn.Step(m); err != nil {
			t.Fatal(err)
		}
	}
	// drain persists the leader's own appends and returns the bytes of
	// entries it sends member 2.
	drain := func() int {
		n := 0
		for rn.HasReady() {
			rd := rn.Ready()
			if err := ms.Append(rd.Entries); err != nil {
				t.Fatal(err)
			}
			for _, m := range rd.Messages {
				if m.GetTo() == 2 && m.GetType() == pb.MessageType_MsgApp {
					for _, e := range m.GetEntries() {
						n += len(e.GetData())
					}
				}
			}
			rn.Advance(rd)
		}
		return n
	}
	if err := rn.Campaign(); err != nil {
		t.Fatal(err)
	}
	drain()
	step(&pb.Message{Type: pb.MessageType_MsgVoteResp.Enum(), From: proto.Uint64(2), To: proto.Uint64(1), Term: proto.Uint64(2)})
	drain()
	if st := rn.Status(); st.RaftState != raft.StateLeader {
		t.Fatalf("not leader: %v", st.RaftState)
	}
	// Member 2 has nothing past index 1: it rejects the first probe, and
	// the leader probes it with appends of ~MaxSizePerMsg from index 2.
	step(&pb.Message{Type: pb.MessageType_MsgAppResp.Enum(), From: proto.Uint64(2), To: proto.Uint64(1), Term: proto.Uint64(2), Index: proto.Uint64(41), Reject: proto.Bool(true), RejectHint: proto.Uint64(1), LogTerm: proto.Uint64(1)})
	if drain() == 0 {
		t.Fatal("no probe with entries after the rejection")
	}

	var g heartbeatGate
	burst := 150
	sent, dropped := 0, 0
	for range burst {
		if !stepReceived(rn, &g, &pb.Message{Type: pb.MessageType_MsgHeartbeatResp.Enum(), From: proto.Uint64(2), To: proto.Uint64(1), Term: proto.Uint64(2)}) {
			dropped++
		}
		sent += drain()
	}
	if sent > maxSizePerMsg {
		t.Fatalf("a burst of %d heartbeat responses within one tick sent %d MiB of appends to the probed follower; want at most one append (%d MiB)", burst, sent>>20, maxSizePerMsg>>20)
	}
	// The next tick lets the next response unpause the probe again.
	g.tick()
	if !stepReceived(rn, &g, &pb.Message{Type: pb.MessageType_MsgHeartbeatResp.Enum(), From: proto.Uint64(2), To: proto.Uint64(1), Term: proto.Uint64(2)}) {
		t.Fatal("after a tick, the gate held back a heartbeat response")
	}
	if drain() == 0 {
		t.Fatal("after a tick, a heartbeat response did not unpause the probe")
	}
	// A response carrying a read-index context always goes through.
	if !stepReceived(rn, &g, &pb.Message{Type: pb.MessageType_MsgHeartbeatResp.Enum(), From: proto.Uint64(2), To: proto.Uint64(1), Term: proto.Uint64(2), Context: make([]byte, 8)}) {
		t.Fatal("a response carrying a read-index context was held back")
	}
	if dropped != burst-1 {
		t.Fatalf("dropped %d responses, want %d", dropped, burst-1)
	}
}
