package cmpxchg

import (
	"encoding/binary"
	"fmt"

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

type session struct {
	client, seq       uint64
	acked, ackedAsked uint64
	oldStamp, stamp   int64
	isNew             bool
	answer            *cxkvpb.CommandResult // set when the write is a duplicate
}

func encodeSession(acked uint64, stamp int64) []byte {
	b := binary.AppendUvarint(nil, acked)
	return binary.AppendVarint(b, stamp)
}

func decodeSession(buf []byte) (acked uint64, stamp int64, err error) {
	acked, n := binary.Uvarint(buf)
	if n <= 0 {
		return 0, 0, fmt.Errorf("cmpxchg: malformed session header")
	}
	stamp, m := binary.Varint(buf[n:])
	if m <= 0 || n+m != len(buf) {
		return 0, 0, fmt.Errorf("cmpxchg: malformed session header")
	}
	return acked, stamp, nil
}

func (sm *StateMachine) openSession(b *kv.Batch, wid *cxkvpb.WriteID, stamp int64) (*session, error) {
	if err := sm.expireSessions(b, stamp); err != nil {
		return nil, err
	}
	s := &session{client: wid.GetClientId(), seq: wid.GetSeq(), ackedAsked: wid.GetAckedSeq(), stamp: stamp}
	hdr, found, err := b.Session(s.client)
	if err != nil {
		return nil, err
	}
	s.isNew = !found
	if found {
		if s.acked, s.oldStamp, err = decodeSession(hdr); err != nil {
			return nil, err
		}
	}
	if s.seq <= s.acked && !s.isNew {
		s.answer = refused(Errorf(codes.FailedPrecondition,
			"write %d of client %x was applied and its result has been forgotten (results up to %d are); it was not applied again",
			s.seq, s.client, s.acked))
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
	if err := b.DeleteResults(s.client, s.acked+1, acked+1); err != nil {
		return err
	}
	if s.seq > acked {
		data, err := proto.Marshal(res)
		if err != nil {
			return err
		}
		if err := b.SetResult(s.client, s.seq, data); err != nil {
			return err
		}
	}
	return sm.saveSession(b, s, acked)
}

func (sm *StateMachine) saveSession(b *kv.Batch, s *session, acked uint64) error {
	if err := b.SetSession(s.client, encodeSession(acked, s.stamp), s.oldStamp, s.stamp, s.isNew); err != nil {
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
		if err := b.DeleteSession(client, stamp); err != nil {
			return err
		}
	}
	return b.SetCounter(sessionCount, n)
}

// expireSessions forgets clients silent for SessionTTL before stamp.
func (sm *StateMachine) expireSessions(b *kv.Batch, stamp int64) error {
	cutoff := stamp - sm.limits.SessionTTL.Milliseconds()
	n, err := b.Counter(sessionCount)
	if err != nil {
		return err
	}
	removed := uint64(0)
	for {
		client, last, ok, err := b.OldestSession()
		if err != nil {
			return err
		}
		if !ok || last >= cutoff {
			break
		}
		if err := b.DeleteSession(client, last); err != nil {
			return err
		}
		removed++
	}
	if removed == 0 {
		return nil
	}
	return b.SetCounter(sessionCount, n-removed)
}
