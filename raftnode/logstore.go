package raftnode

import (
	"encoding/binary"
	"errors"
	"fmt"
	"sync"

	"github.com/cockroachdb/pebble/v2"
	"github.com/cxkv/cxkv/kv"
	"go.etcd.io/raft/v3"
	pb "go.etcd.io/raft/v3/raftpb"
	"google.golang.org/protobuf/proto"
)

// logStore is raft.Storage on the member's Pebble database. The log holds
// entries [trunc.index+1, last]; trunc is the entry just before the first,
// kept for its term (raft asks for the term of the entry before an append).
//
// The Ready goroutine is the only writer; raft reads from the same goroutine,
// the transport reads entries for snapshots and Status reads indexes, hence
// the mutex on the cached indexes.
type logStore struct {
	db *pebble.DB

	mu         sync.Mutex
	hs         *pb.HardState
	truncIndex uint64
	truncTerm  uint64
	last       uint64
	lastTerm   uint64
	snap       *pb.Snapshot // metadata only; nil until the first snapshot
	confState  *pb.ConfState
}

var truncKey = []byte("htrunc")

func openLogStore(db *pebble.DB, confState []byte) (*logStore, error) {
	ls := &logStore{db: db, hs: &pb.HardState{}, confState: &pb.ConfState{}}
	if v, ok, err := get(db, kv.RaftHardStateKey()); err != nil {
		return nil, err
	} else if ok {
		if err := proto.Unmarshal(v, ls.hs); err != nil {
			return nil, fmt.Errorf("raftnode: stored HardState: %w", err)
		}
	}
	if v, ok, err := get(db, kv.RaftSnapshotKey()); err != nil {
		return nil, err
	} else if ok {
		ls.snap = &pb.Snapshot{}
		if err := proto.Unmarshal(v, ls.snap); err != nil {
			return nil, fmt.Errorf("raftnode: stored snapshot metadata: %w", err)
		}
	}
	if v, ok, err := get(db, truncKey); err != nil {
		return nil, err
	} else if ok && len(v) == 16 {
		ls.truncIndex, ls.truncTerm = binary.BigEndian.Uint64(v), binary.BigEndian.Uint64(v[8:])
	}
	if len(confState) > 0 {
		if err := proto.Unmarshal(confState, ls.confState); err != nil {
			return nil, fmt.Errorf("raftnode: stored conf state: %w", err)
		}
	}
	ls.last, ls.lastTerm = ls.truncIndex, ls.truncTerm
	it, err := db.NewIter(&pebble.IterOptions{LowerBound: kv.RaftEntryKey(0), UpperBound: kv.RaftEntryKey(1<<64 - 1)})
	if err != nil {
		return nil, err
	}
	defer it.Close()
	if it.Last() {
		e, err := decodeEntry(it)
		if err != nil {
			return nil, err
		}
		ls.last, ls.lastTerm = e.GetIndex(), e.GetTerm()
	}
	return ls, it.Error()
}

func get(r pebble.Reader, key []byte) ([]byte, bool, error) {
	v, c, err := r.Get(key)
	if errors.Is(err, pebble.ErrNotFound) {
		return nil, false, nil
	}
	if err != nil {
		return nil, false, err
	}
	defer c.Close()
	return append([]byte(nil), v...), true, nil
}

func decodeEntry(it *pebble.Iterator) (*pb.Entry, error) {
	v, err := it.ValueAndErr()
	if err != nil {
		return nil, err
	}
	e := &pb.Entry{}
	if err := proto.Unmarshal(v, e); err != nil {
		return nil, fmt.Errorf("raftnode: log entry at key %x: %w", it.Key(), err)
	}
	return e, nil
}

func (ls *logStore) InitialState() (*pb.HardState, *pb.ConfState, error) {
	ls.mu.Lock()
	defer ls.mu.Unlock()
	return proto.Clone(ls.hs).(*pb.HardState), proto.Clone(ls.confState).(*pb.ConfState), nil
}

func (ls *logStore) Entries(lo, hi, maxSize uint64) ([]*pb.Entry, error) {
	ls.mu.Lock()
	first, last := ls.truncIndex+1, ls.last
	ls.mu.Unlock()
	if lo < first {
		return nil, raft.ErrCompacted
	}
	if hi > last+1 {
		return nil, fmt.Errorf("raftnode: entries [%d, %d) asked beyond the last index %d", lo, hi, last)
	}
	it, err := ls.db.NewIter(&pebble.IterOptions{LowerBound: kv.RaftEntryKey(lo), UpperBound: kv.RaftEntryKey(hi)})
	if err != nil {
		return nil, err
	}
	defer it.Close()
	var out []*pb.Entry
	var size uint64
	for ok := it.First(); ok; ok = it.Next() {
		e, err := decodeEntry(it)
		if err != nil {
			return nil, err
		}
		size += uint64(proto.Size(e))
		if len(out) > 0 && size > maxSize {
			break
		}
		out = append(out, e)
	}
	if err := it.Error(); err != nil {
		return nil, err
	}
	if len(out) == 0 || out[0].GetIndex() != lo {
		return nil, raft.ErrUnavailable
	}
	return out, nil
}

func (ls *logStore) Term(i uint64) (uint64, error) {
	ls.mu.Lock()
	truncIndex, truncTerm, last, lastTerm := ls.truncIndex, ls.truncTerm, ls.last, ls.lastTerm
	ls.mu.Unlock()
	switch {
	case i == truncIndex:
		return truncTerm, nil
	case i < truncIndex:
		return 0, raft.ErrCompacted
	case i > last:
		return 0, raft.ErrUnavailable
	case i == last:
		return lastTerm, nil
	}
	v, ok, err := get(ls.db, kv.RaftEntryKey(i))
	if err != nil {
		return 0, err
	}
	if !ok {
		return 0, raft.ErrUnavailable
	}
	e := &pb.Entry{}
	if err := proto.Unmarshal(v, e); err != nil {
		return 0, err
	}
	return e.GetTerm(), nil
}

func (ls *logStore) LastIndex() (uint64, error) {
	ls.mu.Lock()
	defer ls.mu.Unlock()
	return ls.last, nil
}

func (ls *logStore) FirstIndex() (uint64, error) {
	ls.mu.Lock()
	defer ls.mu.Unlock()
	return ls.truncIndex + 1, nil
}

func (ls *logStore) Snapshot() (*pb.Snapshot, error) {
	ls.mu.Lock()
	defer ls.mu.Unlock()
	if ls.snap == nil {
		return nil, raft.ErrSnapshotTemporarilyUnavailable
	}
	return proto.Clone(ls.snap).(*pb.Snapshot), nil
}

// append adds entries to b, replacing any conflicting suffix; the caller
// commits b (synced) and then calls appended.
func (ls *logStore) append(b *pebble.Batch, ents []*pb.Entry) error {
	if len(ents) == 0 {
		return nil
	}
	ls.mu.Lock()
	last := ls.last
	ls.mu.Unlock()
	first := ents[0].GetIndex()
	if first <= last {
		if err := b.DeleteRange(kv.RaftEntryKey(first), kv.RaftEntryKey(last+1), nil); err != nil {
			return err
		}
	}
	for _, e := range ents {
		data, err := proto.Marshal(e)
		if err != nil {
			return err
		}
		if err := b.Set(kv.RaftEntryKey(e.GetIndex()), data, nil); err != nil {
			return err
		}
	}
	return nil
}

func (ls *logStore) setHardState(b *pebble.Batch, hs *pb.HardState) error {
	data, err := proto.Marshal(hs)
	if err != nil {
		return err
	}
	return b.Set(kv.RaftHardStateKey(), data, nil)
}

// persisted updates the cache after a batch carrying ents and hs committed.
func (ls *logStore) persisted(ents []*pb.Entry, hs *pb.HardState) {
	ls.mu.Lock()
	defer ls.mu.Unlock()
	if n := len(ents); n > 0 {
		ls.last, ls.lastTerm = ents[n-1].GetIndex(), ents[n-1].GetTerm()
	}
	if hs != nil && !raft.IsEmptyHardState(hs) {
		ls.hs = proto.Clone(hs).(*pb.HardState)
	}
}

// setSnapshot records snapshot metadata (durably, in b) as the one raft
// sends to members that are too far behind.
func (ls *logStore) setSnapshot(b *pebble.Batch, meta *pb.SnapshotMetadata) error {
	s := &pb.Snapshot{Metadata: meta}
	data, err := proto.Marshal(s)
	if err != nil {
		return err
	}
	if err := b.Set(kv.RaftSnapshotKey(), data, nil); err != nil {
		return err
	}
	ls.mu.Lock()
	ls.snap = s
	ls.mu.Unlock()
	return nil
}

// truncate drops every entry up to and including index, keeping its term.
func (ls *logStore) truncate(b *pebble.Batch, index, term uint64) error {
	ls.mu.Lock()
	from := ls.truncIndex + 1
	ls.mu.Unlock()
	if index < from {
		return nil
	}
	if err := b.DeleteRange(kv.RaftEntryKey(from), kv.RaftEntryKey(index+1), nil); err != nil {
		return err
	}
	v := binary.BigEndian.AppendUint64(binary.BigEndian.AppendUint64(nil, index), term)
	return b.Set(truncKey, v, nil)
}

// truncated updates the cache after a truncate committed; a snapshot that
// jumps past the log resets it.
func (ls *logStore) truncated(index, term uint64) {
	ls.mu.Lock()
	defer ls.mu.Unlock()
	if index <= ls.truncIndex {
		return
	}
	ls.truncIndex, ls.truncTerm = index, term
	if ls.last < index {
		ls.last, ls.lastTerm = index, term
	}
}

func (ls *logStore) setConfState(cs *pb.ConfState) {
	ls.mu.Lock()
	ls.confState = proto.Clone(cs).(*pb.ConfState)
	ls.mu.Unlock()
}

// reset replaces the whole log by the point (index, term): what a received
// snapshot does.
func (ls *logStore) reset(b *pebble.Batch, index, term uint64) error {
	if err := b.DeleteRange(kv.RaftEntryKey(0), kv.RaftEntryKey(1<<64-1), nil); err != nil {
		return err
	}
	v := binary.BigEndian.AppendUint64(binary.BigEndian.AppendUint64(nil, index), term)
	return b.Set(truncKey, v, nil)
}

func (ls *logStore) wasReset(index, term uint64) {
	ls.mu.Lock()
	defer ls.mu.Unlock()
	ls.truncIndex, ls.truncTerm = index, term
	ls.last, ls.lastTerm = index, term
}
