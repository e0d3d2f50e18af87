package cmpxchg

import (
	"encoding/binary"
	"errors"
	"fmt"
	"math"

	"github.com/cxkv/cxkv/api/cxkvpb"
	"github.com/cxkv/cxkv/kv"
	"google.golang.org/grpc/codes"
	"google.golang.org/protobuf/proto"
)

// The exactly-once table. A client names each write (client id, seq); Apply
// remembers the result of every seq above the client's acknowledged mark and
// answers a retry with the stored result instead of applying it again.
//
// Bounds, all decided from command contents so every member agrees:
//   - results with seq <= acked are forgotten; acked is the larger of what
//     the client says it has received and seq - MaxResultsPerSession;
//   - a client whose last write is SessionTTL older (by proposer stamps)
//     than the current command is forgotten, oldest first;
//   - at most MaxSessions clients are remembered; the least recently used
//     goes first.
// A retry of a forgotten seq is refused (FailedPrecondition), never applied
// twice.

const sessionCount = "sessions"

// What every command may rely on, and what each write must keep true:
//   - a client's results all have seq in (acked, top] of its header, and a
//     client without a header has none. So a fresh seq above top needs no
//     lookup, and forgetting results deletes known keys one by one instead
//     of leaving a range tombstone that every later read pays for.
//   - the stored session floor (kv SessionFloor) is at most every session's
//     stamp. It only decides whether the expiry scan can be skipped, which
//     is the case exactly when the scan would remove nothing; so whatever
//     value a member holds, results are those of a scan on every command.
//     A missing floor (an older store) means "scan".

// topUnknown is the top of a header written before tops were kept: any seq
// above acked may have a result.
const topUnknown = math.MaxUint64

type session struct {
	client, seq       uint64
	acked, ackedAsked uint64
	top               uint64
	oldStamp, stamp   int64
	floor             int64
	isNew             bool
	answer            *cxkvpb.CommandResult // set when the write is a duplicate
}

func encodeSession(acked uint64, stamp int64, top uint64) []byte {
	b := make([]byte, 0, 3*binary.MaxVarintLen64)
	b = binary.AppendUvarint(b, acked)
	b = binary.AppendVarint(b, stamp)
	return binary.AppendUvarint(b, top)
}

var errBadSession = errors.New("cmpxchg: malformed session header")

// decodeSession reads a header; one without a top (the first format) gets
// topUnknown.
func decodeSession(buf []byte) (acked uint64, stamp int64, top uint64, err error) {
	acked, n := binary.Uvarint(buf)
	if n <= 0 {
		return 0, 0, 0, errBadSession
	}
	stamp, m := binary.Varint(buf[n:])
	if m <= 0 {
		return 0, 0, 0, errBadSession
	}
	if n+m == len(buf) {
		return acked, stamp, topUnknown, nil
	}
	top, k := binary.Uvarint(buf[n+m:])
	if k <= 0 || n+m+k != len(buf) {
		return 0, 0, 0, errBadSession
	}
	return acked, stamp, top, nil
}

func (sm *StateMachine) openSession(b *kv.Batch, wid *cxkvpb.WriteID, stamp int64) (*session, error) {
	floor, err := sm.expireSessions(b, stamp)
	if err != nil {
		return nil, err
	}
	s := &session{client: wid.GetClientId(), seq: wid.GetSeq(), ackedAsked: wid.GetAckedSeq(), stamp: stamp, floor: floor}
	hdr, found, err := b.Session(s.client)
	if err != nil {
		return nil, err
	}
	s.isNew = !found
	if found {
		if s.acked, s.oldStamp, s.top, err = decodeSession(hdr); err != nil {
			return nil, err
		}
	}
	if s.seq <= s.acked && !s.isNew {
		s.answer = refused(Errorf(codes.FailedPrecondition,
			"write %d of client %x was applied and its result has been forgotten (results up to %d are); it was not applied again",
			s.seq, s.client, s.acked))
		return s, nil
	}
	if s.seq > s.top {
		return s, nil
	}
	stored, dup, err := b.Result(s.client, s.seq)
	if err != nil || !dup {
		return s, err
	}
	s.answer = &cxkvpb.CommandResult{}
	if err := proto.Unmarshal(stored, s.answer); err != nil {
		return nil, fmt.Errorf("cmpxchg: stored result of client %x seq %d: %w", s.client, s.seq, err)
	}
	return s, nil
}

// touchSession records that a duplicate kept the client alive.
func (sm *StateMachine) touchSession(b *kv.Batch, s *session) error {
	return sm.saveSession(b, s, s.acked)
}

// closeSession stores the result of a write that was just applied.
func (sm *StateMachine) closeSession(b *kv.Batch, s *session, res *cxkvpb.CommandResult) error {
	acked := max(s.acked, s.ackedAsked)
	if limit := uint64(sm.limits.MaxResultsPerSession); s.seq > limit {
		acked = max(acked, s.seq-limit)
	}
	if acked > s.acked {
		if err := b.DeleteResults(s.client, s.acked+1, min(acked, s.top)); err != nil {
			return err
		}
	}
	if s.seq > acked {
		data, err := proto.Marshal(res)
		if err != nil {
			return err
		}
		if err := b.SetResult(s.client, s.seq, data); err != nil {
			return err
		}
		s.top = max(s.top, s.seq)
	}
	return sm.saveSession(b, s, acked)
}

func (sm *StateMachine) saveSession(b *kv.Batch, s *session, acked uint64) error {
	if err := b.SetSession(s.client, encodeSession(acked, s.stamp, s.top), s.oldStamp, s.stamp, s.isNew); err != nil {
		return err
	}
	// Proposers' clocks differ: a new leader may stamp below the floor. The
	// floor is rewritten even when unchanged so that it stays in the
	// memtable: a key written rarely is read from the sstables, which costs
	// about as much as the rest of this command (measured: ~5µs).
	s.floor = min(s.floor, s.stamp)
	if err := b.SetSessionFloor(s.floor); err != nil {
		return err
	}
	if !s.isNew {
		return nil
	}
	s.isNew, s.oldStamp = false, s.stamp
	n, err := b.Counter(sessionCount)
	if err != nil {
		return err
	}
	n++
	for ; n > uint64(max(sm.limits.MaxSessions, 1)); n-- {
		client, stamp, ok, err := b.OldestSession()
		if err != nil || !ok {
			return err
		}
		if err := forgetSession(b, client, stamp); err != nil {
			return err
		}
	}
	return b.SetCounter(sessionCount, n)
}

// forgetSession deletes a client's header, LRU entry and results.
func forgetSession(b *kv.Batch, client uint64, stamp int64) error {
	hdr, found, err := b.Session(client)
	if err != nil {
		return err
	}
	acked, top := uint64(0), uint64(topUnknown) // no header: sweep them all
	if found {
		if acked, _, top, err = decodeSession(hdr); err != nil {
			return err
		}
	}
	if acked < top {
		if err := b.DeleteResults(client, acked+1, top); err != nil {
			return err
		}
	}
	return b.DeleteSession(client, stamp)
}

// expireSessions forgets clients silent for SessionTTL before stamp, and
// returns the session floor it leaves stored.
func (sm *StateMachine) expireSessions(b *kv.Batch, stamp int64) (int64, error) {
	cutoff := stamp - sm.limits.SessionTTL.Milliseconds()
	floor, known, err := b.SessionFloor()
	if err != nil || (known && floor >= cutoff) {
		return floor, err // no session is older than the floor: none expires
	}
	removed := uint64(0)
	for {
		client, last, ok, err := b.OldestSession()
		if err != nil {
			return 0, err
		}
		if !ok || last >= cutoff {
			break
		}
		if err := forgetSession(b, client, last); err != nil {
			return 0, err
		}
		removed++
	}
	if removed > 0 {
		n, err := b.Counter(sessionCount)
		if err != nil {
			return 0, err
		}
		if err := b.SetCounter(sessionCount, n-removed); err != nil {
			return 0, err
		}
	}
	// Raise the floor to the lowest stamp left, so the next scan waits until
	// that session could expire. It stays below cutoff only if a negative
	// stamp sorts behind the oldest in the LRU order: then every command
	// scans, as it always did.
	lowest, ok, err := b.LowestSessionStamp()
	if err != nil {
		return 0, err
	}
	if !ok {
		lowest = math.MaxInt64 // no sessions: the next one lowers it
	}
	if known && lowest == floor {
		return floor, nil
	}
	return lowest, b.SetSessionFloor(lowest)
}
