package cmpxchg

import (
	"fmt"

	"github.com/cxkv/cxkv/api/cxkvpb"
	"github.com/cxkv/cxkv/kv"
	"google.golang.org/grpc/codes"
	"google.golang.org/protobuf/proto"
)

// Exactly-once: a write that carries a write id goes through the table in
// kv (kv.Sessions, where its rules and invariants are written down). Apply
// asks the table what it knows of the write and either answers from it,
// refuses, or applies the write and records the result. A retry of a
// forgotten seq is refused, never applied twice.

func (sm *StateMachine) sessionLimits() kv.SessionLimits {
	return kv.SessionLimits{
		MaxSessions: sm.limits.MaxSessions,
		MaxResults:  uint64(sm.limits.MaxResultsPerSession),
		TTLMillis:   sm.limits.SessionTTL.Milliseconds(),
	}
}

// applyOnce applies cmd at most once for its write id.
func (sm *StateMachine) applyOnce(b *kv.Batch, index uint64, cmd *cxkvpb.Command, wid *cxkvpb.WriteID) (*cxkvpb.CommandResult, error) {
	table, err := b.Sessions(sm.sessionLimits(), cmd.GetStampUnixMs())
	if err != nil {
		return nil, err
	}
	w, err := table.Lookup(wid.GetClientId(), wid.GetSeq())
	if err != nil {
		return nil, err
	}
	switch w.Outcome {
	case kv.Forgotten:
		return refused(Errorf(codes.FailedPrecondition,
			"write %d of client %x was applied and its result has been forgotten (results up to %d are); it was not applied again",
			w.Seq, w.Client, w.Acked)), table.Touch(&w)
	case kv.Answered:
		res := &cxkvpb.CommandResult{}
		if err := proto.Unmarshal(w.Result, res); err != nil {
			return nil, fmt.Errorf("cmpxchg: stored result of client %x seq %d: %w", w.Client, w.Seq, err)
		}
		return res, table.Touch(&w)
	}
	res, err := sm.applyOp(b, index, cmd)
	if err != nil {
		return nil, err
	}
	data, err := proto.Marshal(res)
	if err != nil {
		return nil, err
	}
	return res, table.Record(&w, wid.GetAckedSeq(), data)
}
