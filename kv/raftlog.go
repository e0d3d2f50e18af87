package kv

import (
	"encoding/binary"
	"errors"
	"fmt"
	"math"

	"github.com/cockroachdb/pebble/v2"
	pb "go.etcd.io/raft/v3/raftpb"
	"google.golang.org/protobuf/encoding/protowire"
	"google.golang.org/protobuf/proto"
)

// RaftLog is the member's Raft log, kept in the same database as the state so
// both share one fsync domain. It holds entries (trunc, last]: trunc is the
// entry just before the first one held, kept only for its term, which raft
// asks for when it appends after it.
//
// RaftLog keeps no cache and takes no lock: its one writer (the Ready loop)
// knows the log's bounds and passes them in; readers may run concurrently
// with it and see each write whole or not at all.
type RaftLog struct {
	db     *pebble.DB
	failed *failure // the store's
}

// RaftLog returns the log API of the store.
func (s *Store) RaftLog() *RaftLog { return &RaftLog{db: s.db, failed: &s.failed} }

// RaftLogState is what the log holds when a member opens it.
type RaftLogState struct {
	HardState *pb.HardState // empty if none was ever written
	// Snapshot is the metadata of the member's latest snapshot, nil if none.
	Snapshot *pb.SnapshotMetadata
	// Installing is the metadata of a received snapshot whose install began
	// and did not finish; nil if none. See BeginInstall.
	Installing            *pb.SnapshotMetadata
	TruncIndex, TruncTerm uint64 // the entry before the first held
	LastIndex, LastTerm   uint64 // equal to the trunc point when no entry is held
}

// Load reads the log's bounds and metadata.
func (l *RaftLog) Load() (RaftLogState, error) {
	st := RaftLogState{HardState: &pb.HardState{}}
	if v, ok, err := getRaw(l.db, raftHardStateKey); err != nil {
		return st, err
	} else if ok {
		if err := proto.Unmarshal(v, st.HardState); err != nil {
			return st, fmt.Errorf("kv: stored HardState: %w", err)
		}
	}
	var err error
	if st.Snapshot, err = l.metadata(raftSnapshotKey); err != nil {
		return st, err
	}
	if st.Installing, err = l.metadata(raftInstallKey); err != nil {
		return st, err
	}
	if v, ok, err := getRaw(l.db, raftTruncKey); err != nil {
		return st, err
	} else if ok {
		if len(v) != 16 {
			return st, fmt.Errorf("kv: stored log start holds %d bytes, want 16", len(v))
		}
		st.TruncIndex, st.TruncTerm = binary.BigEndian.Uint64(v), binary.BigEndian.Uint64(v[8:])
	}
	st.LastIndex, st.LastTerm = st.TruncIndex, st.TruncTerm
	it, err := l.db.NewIter(entryBounds(0, math.MaxUint64))
	if err != nil {
		return st, err
	}
	defer it.Close()
	if it.Last() {
		e, err := decodeEntry(it)
		if err != nil {
			return st, err
		}
		st.LastIndex, st.LastTerm = e.GetIndex(), e.GetTerm()
	}
	return st, it.Error()
}

// metadata reads snapshot metadata stored under key (as a pb.Snapshot
// without data, the form the log has always used).
func (l *RaftLog) metadata(key []byte) (*pb.SnapshotMetadata, error) {
	v, ok, err := getRaw(l.db, key)
	if err != nil || !ok {
		return nil, err
	}
	s := &pb.Snapshot{}
	if err := proto.Unmarshal(v, s); err != nil {
		return nil, fmt.Errorf("kv: stored snapshot metadata %q: %w", key, err)
	}
	if s.GetMetadata() == nil {
		return &pb.SnapshotMetadata{}, nil
	}
	return s.GetMetadata(), nil
}

func encodeMetadata(meta *pb.SnapshotMetadata) ([]byte, error) {
	return proto.Marshal(&pb.Snapshot{Metadata: meta})
}

func entryBounds(lo, hi uint64) *pebble.IterOptions {
	return &pebble.IterOptions{LowerBound: raftEntryKey(lo), UpperBound: raftEntryKey(hi)}
}

func decodeEntry(it *pebble.Iterator) (*pb.Entry, error) {
	v, err := it.ValueAndErr()
	if err != nil {
		return nil, err
	}
	e := &pb.Entry{}
	if err := proto.Unmarshal(v, e); err != nil {
		return nil, fmt.Errorf("kv: log entry at key %x: %w", it.Key(), err)
	}
	return e, nil
}

// Entries returns the entries held in [lo, hi), in order, stopping before
// the entry that would take their total size past maxSize (the first entry
// is returned whatever its size, as raft.Storage requires). A gap ends the
// answer early: the caller checks that it starts at lo.
func (l *RaftLog) Entries(lo, hi, maxSize uint64) ([]*pb.Entry, error) {
	it, err := l.db.NewIter(entryBounds(lo, hi))
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
	return out, it.Error()
}

// Term returns the term of the entry at index, and false if the log does not
// hold it. Raft asks for it before every append it sends, so it reads the
// term field in place instead of decoding the entry: decoding copied the
// whole entry (up to the maximum command size) to learn one number.
func (l *RaftLog) Term(index uint64) (uint64, bool, error) {
	v, closer, err := l.db.Get(raftEntryKey(index))
	if errors.Is(err, pebble.ErrNotFound) {
		return 0, false, nil
	}
	if err != nil {
		return 0, false, err
	}
	defer closer.Close()
	term, err := entryTerm(v)
	if err != nil {
		return 0, false, fmt.Errorf("kv: log entry %d: %w", index, err)
	}
	return term, true, nil
}

// entryTerm reads the Term field of an encoded pb.Entry without decoding
// the rest. Every field is walked (skipping Data costs its length prefix
// only), so an encoding that proto.Unmarshal would refuse is refused here
// too, and the last Term field wins as it does there.
func entryTerm(v []byte) (uint64, error) {
	var term uint64
	for len(v) > 0 {
		num, typ, n := protowire.ConsumeTag(v)
		if n < 0 {
			return 0, protowire.ParseError(n)
		}
		v = v[n:]
		if num == entryTermField {
			if typ != protowire.VarintType {
				return 0, fmt.Errorf("term field has wire type %d, want varint", typ)
			}
			t, n := protowire.ConsumeVarint(v)
			if n < 0 {
				return 0, protowire.ParseError(n)
			}
			term, v = t, v[n:]
			continue
		}
		n = protowire.ConsumeFieldValue(num, typ, v)
		if n < 0 {
			return 0, protowire.ParseError(n)
		}
		v = v[n:]
	}
	return term, nil
}

// entryTermField is pb.Entry's Term field number, from its descriptor.
var entryTermField = (&pb.Entry{}).ProtoReflect().Descriptor().Fields().ByName("Term").Number()

// Append writes ents and hs (either may be empty) in one batch, so the votes
// and commit index a member acknowledges are durable with the entries they
// describe. Entries from ents[0] up to last, the log's last index before the
// call, are replaced: raft sends a conflicting suffix only to overwrite it.
// sync makes the batch durable before Append returns. It reports whether
// anything was written.
func (l *RaftLog) Append(ents []*pb.Entry, hs *pb.HardState, last uint64, sync bool) (bool, error) {
	b := l.db.NewBatch()
	defer b.Close()
	if len(ents) > 0 && ents[0].GetIndex() <= last {
		if err := b.DeleteRange(raftEntryKey(ents[0].GetIndex()), raftEntryKey(last+1), nil); err != nil {
			return false, err
		}
	}
	for _, e := range ents {
		if err := setEntry(b, e); err != nil {
			return false, err
		}
	}
	if hs != nil && (hs.GetTerm() != 0 || hs.GetVote() != 0 || hs.GetCommit() != 0) {
		data, err := proto.Marshal(hs)
		if err != nil {
			return false, err
		}
		if err := b.Set(raftHardStateKey, data, nil); err != nil {
			return false, err
		}
	}
	if b.Empty() {
		return false, nil
	}
	return true, l.failed.guard(func() error { return b.Commit(syncOpt(sync)) })
}

// setEntry encodes e straight into the batch at its key: an entry (up to
// the largest command) is copied once, not marshalled into a buffer of its
// own and then copied into the batch.
func setEntry(b *pebble.Batch, e *pb.Entry) error {
	key := raftEntryKey(e.GetIndex())
	op := b.SetDeferred(len(key), entryMarshal.Size(e))
	copy(op.Key, key)
	out, err := entryMarshal.MarshalAppend(op.Value[:0], e)
	if err != nil {
		return err
	}
	if len(out) != len(op.Value) || (len(out) > 0 && &out[0] != &op.Value[0]) {
		// MarshalAppend wrote elsewhere than the batch: Size disagreed
		// with the encoding. Never store a half-written entry.
		return fmt.Errorf("kv: log entry %d encoded to %d bytes, sized %d", e.GetIndex(), len(out), len(op.Value))
	}
	return op.Finish()
}

// entryMarshal encodes entries; Deterministic keeps Size and the encoding
// in agreement for the same entry.
var entryMarshal = proto.MarshalOptions{Deterministic: true}

// Truncate drops the entries in [from, index] and records (index, term) as
// the point before the first entry held. It is not synced: losing it in a
// crash only leaves entries that the next truncation drops again.
func (l *RaftLog) Truncate(from, index, term uint64) error {
	b := l.db.NewBatch()
	defer b.Close()
	if err := b.DeleteRange(raftEntryKey(from), raftEntryKey(index+1), nil); err != nil {
		return err
	}
	if err := b.Set(raftTruncKey, truncValue(index, term), nil); err != nil {
		return err
	}
	return l.failed.guard(func() error { return b.Commit(pebble.NoSync) })
}

// SetSnapshot records the metadata of the member's latest snapshot, the one
// raft sends to members too far behind for the log.
func (l *RaftLog) SetSnapshot(meta *pb.SnapshotMetadata, sync bool) error {
	data, err := encodeMetadata(meta)
	if err != nil {
		return err
	}
	return l.failed.guard(func() error { return l.db.Set(raftSnapshotKey, data, syncOpt(sync)) })
}

// BeginInstall durably records that a received snapshot is about to replace
// the state. The state is replaced by its own atomic write, then
// FinishInstall resets the log; a crash between the two leaves this record
// for the member to finish (or abandon) on open, so state and log never
// disagree at startup.
func (l *RaftLog) BeginInstall(meta *pb.SnapshotMetadata) error {
	data, err := encodeMetadata(meta)
	if err != nil {
		return err
	}
	return l.failed.guard(func() error { return l.db.Set(raftInstallKey, data, pebble.Sync) })
}

// FinishInstall replaces the whole log by the point (meta.Index, meta.Term)
// of an installed snapshot, records meta as the latest snapshot, stores hs,
// appends ents (those that follow the snapshot in the same Ready) and clears
// the install record, in one synced batch.
func (l *RaftLog) FinishInstall(meta *pb.SnapshotMetadata, hs *pb.HardState, ents []*pb.Entry) error {
	b := l.db.NewBatch()
	defer b.Close()
	if err := b.DeleteRange(raftEntryKey(0), raftEntryKey(math.MaxUint64), nil); err != nil {
		return err
	}
	if err := b.Set(raftTruncKey, truncValue(meta.GetIndex(), meta.GetTerm()), nil); err != nil {
		return err
	}
	data, err := encodeMetadata(meta)
	if err != nil {
		return err
	}
	if err := b.Set(raftSnapshotKey, data, nil); err != nil {
		return err
	}
	for _, e := range ents {
		if err := setEntry(b, e); err != nil {
			return err
		}
	}
	if hs != nil {
		data, err := proto.Marshal(hs)
		if err != nil {
			return err
		}
		if err := b.Set(raftHardStateKey, data, nil); err != nil {
			return err
		}
	}
	if err := b.Delete(raftInstallKey, nil); err != nil {
		return err
	}
	return l.failed.guard(func() error { return b.Commit(pebble.Sync) })
}

// AbandonInstall forgets an install record whose state was never replaced.
func (l *RaftLog) AbandonInstall() error {
	return l.failed.guard(func() error { return l.db.Delete(raftInstallKey, pebble.Sync) })
}

func truncValue(index, term uint64) []byte {
	return binary.BigEndian.AppendUint64(binary.BigEndian.AppendUint64(nil, index), term)
}

func syncOpt(sync bool) *pebble.WriteOptions {
	if sync {
		return pebble.Sync
	}
	return pebble.NoSync
}
