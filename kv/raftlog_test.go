package kv

import (
	"bytes"
	"testing"

	"github.com/cockroachdb/pebble/v2/vfs"
	pb "go.etcd.io/raft/v3/raftpb"
	"google.golang.org/protobuf/proto"
)

// TestRaftLogTermReadsTheStoredTerm: Term answers from the stored entry
// whatever its size, type or data, and reports an entry not held.
func TestRaftLogTermReadsTheStoredTerm(t *testing.T) {
	s := openMem(t, vfs.NewMem())
	defer s.Close()
	l := s.RaftLog()
	ents := []*pb.Entry{
		{Index: proto.Uint64(1), Term: proto.Uint64(1)}, // empty leader entry
		{Index: proto.Uint64(2), Term: proto.Uint64(3), Data: []byte("x")},
		{Index: proto.Uint64(3), Term: proto.Uint64(7), Data: bytes.Repeat([]byte{0x10}, 1<<20)},
		{Index: proto.Uint64(4), Term: proto.Uint64(1 << 40), Type: pb.EntryConfChangeV2.Enum(), Data: []byte{0x10, 0x02}},
		{Index: proto.Uint64(5)}, // term 0 is never written by raft, but must still read as 0
	}
	if _, err := l.Append(ents, nil, 0, false); err != nil {
		t.Fatal(err)
	}
	for _, e := range ents {
		term, ok, err := l.Term(e.GetIndex())
		if err != nil || !ok || term != e.GetTerm() {
			t.Errorf("Term(%d) = %d, %v, %v; want %d", e.GetIndex(), term, ok, err, e.GetTerm())
		}
	}
	if _, ok, err := l.Term(6); ok || err != nil {
		t.Errorf("Term(6) of a log ending at 5: ok %v err %v, want not held", ok, err)
	}
}

// TestRaftLogTermRefusesAGarbledEntry: a stored entry that is not a valid
// encoding is an error, never a made-up term.
func TestRaftLogTermRefusesAGarbledEntry(t *testing.T) {
	s := openMem(t, vfs.NewMem())
	defer s.Close()
	for _, v := range [][]byte{{0x10}, {0x22, 0x05, 'a'}, {0xff, 0xff, 0xff}, {0x12, 0x01, 0x07}} {
		if err := s.db.Set(raftEntryKey(9), v, nil); err != nil {
			t.Fatal(err)
		}
		if term, ok, err := s.RaftLog().Term(9); err == nil {
			t.Errorf("Term of garbled entry %x = %d, %v with no error", v, term, ok)
		}
	}
}

// BenchmarkRaftLogTerm: raft asks a leader for the term of the entry before
// every append it sends, so a follower catching up costs one Term per
// batch; it must not cost a decode of the entry's data.
func BenchmarkRaftLogTerm(b *testing.B) {
	s, err := Open("db", Options{FS: vfs.NewMem()})
	if err != nil {
		b.Fatal(err)
	}
	defer s.Close()
	l := s.RaftLog()
	e := &pb.Entry{Index: proto.Uint64(1), Term: proto.Uint64(2), Data: bytes.Repeat([]byte{1}, 1<<20)}
	if _, err := l.Append([]*pb.Entry{e}, nil, 0, false); err != nil {
		b.Fatal(err)
	}
	b.ReportAllocs()
	for b.Loop() {
		if term, _, err := l.Term(1); err != nil || term != 2 {
			b.Fatal(term, err)
		}
	}
}

// BenchmarkRaftLogAppend: one Ready's worth of entries (16 of 1 KiB)
// appended unsynced, the log's write path without the disk.
func BenchmarkRaftLogAppend(b *testing.B) {
	s, err := Open("db", Options{FS: vfs.NewMem()})
	if err != nil {
		b.Fatal(err)
	}
	defer s.Close()
	l := s.RaftLog()
	data := bytes.Repeat([]byte{1}, 1<<10)
	ents := make([]*pb.Entry, 16)
	var last uint64
	b.ReportAllocs()
	for b.Loop() {
		for i := range ents {
			ents[i] = &pb.Entry{Index: proto.Uint64(last + 1 + uint64(i)), Term: proto.Uint64(1), Data: data}
		}
		hs := &pb.HardState{Term: proto.Uint64(1), Commit: proto.Uint64(last)}
		if _, err := l.Append(ents, hs, last, false); err != nil {
			b.Fatal(err)
		}
		last += uint64(len(ents))
	}
}
