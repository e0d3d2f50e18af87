package cmpxchg

import (
	"fmt"

	"github.com/cxkv/cxkv/api/cxkvpb"
	"github.com/cxkv/cxkv/kv"
	"google.golang.org/protobuf/proto"
)

// Exactly-once: a write that carries a write id goes through the table in
// kv (kv.Sessions, where its rules and invariants are written down). Apply
// asks the table what it knows of the write and either answers from it,
// refuses, or applies the write and records the result. A write the table
// can no longer answer for is refused as "outcome unknown": never applied
// twice, and never reported applied when it may not have been.

func (sm *StateMachine) sessionLimits() kv.SessionLimits {
	return kv.SessionLimits{
		MaxSessions: sm.limits.MaxSessions,
		MaxResults:  uint64(sm.limits.MaxResultsPerSession),
		TTLMillis:   sm.limits.SessionTTL.Milliseconds(),
	}
}

// applyOnce applies cmd at most once for its write id.
func (sm *StateMachine) applyOnce(b *kv.Batch, index uint64, cmd *cxkvpb.Command, wid *cxkvpb.WriteID) (*cxkvpb.CommandResult, error) {
	table, err := b.Sessions(sm.sessionLimits(), sessionStamp(cmd))
	if err != nil {
		return nil, err
	}
	w, err := table.Lookup(wid.GetClientId(), wid.GetSeq(), wid.GetNewClient())
	if err != nil {
		return nil, err
	}
	switch w.Outcome {
	case kv.Forgotten:
		why := fmt.Sprintf("results up to seq %d are forgotten", w.Acked)
		if !w.Session {
			why = "the client has no session (it expired, was evicted, or was never opened)"
		}
		return refused(refusal(CodeForgotten,
			"write %d of client %x: outcome unknown: %s, so whether an earlier attempt was applied is unknown; this attempt was not applied",
			w.Seq, w.Client, why)), table.Touch(&w)
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
	data, err := EncodeResult(res)
	if err != nil {
		return nil, err
	}
	return res, table.Record(&w, wid.GetAckedSeq(), data)
}

// sessionStamp is the time a command ages sessions by: the cluster time it
// carries, or for a command logged before cluster time existed, its
// proposer's wall clock, as then.
func sessionStamp(cmd *cxkvpb.Command) int64 {
	if cmd.ClusterMs != nil {
		return cmd.GetClusterMs()
	}
	return cmd.GetStampUnixMs()
}
