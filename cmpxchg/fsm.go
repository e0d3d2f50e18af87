// Package cmpxchg is the cxkv state machine: compare-exchange on keys, the
// transactions built from it, and the exactly-once table, applied to a kv
// batch.
//
// The contract, which raftnode relies on and the tests pin down:
//
//   - Apply is a pure function of (state, index, command): it reads no clock
//     (time comes from the command's stamp), starts no goroutine, does no
//     I/O but the batch, and iterates no map. Every member applying the same
//     log reaches the same state and returns the same results.
//   - A failed compare is a result (Successful=false with the current
//     state), never an error. Apply returns a Go error only when the store
//     fails; then the state is unknown and the caller must stop.
//   - Apply sets the applied index in the same batch as the writes it makes,
//     so the state and the index that describes it are durable together.
//   - Apply never trusts its input: a malformed command gets a deterministic
//     CommandError, not a panic.
package cmpxchg

import (
	"errors"

	"github.com/cxkv/cxkv/api/cxkvpb"
	"github.com/cxkv/cxkv/kv"
)

// StateMachine applies committed commands. It holds configuration and the
// last auth state it decoded (a cache keyed by the stored bytes); the state
// lives in the store.
type StateMachine struct {
	limits Limits
	auth   AuthCache
}

// New returns a state machine with the given limits.
func New(limits Limits) *StateMachine { return &StateMachine{limits: limits} }

// Apply applies the command of the log entry at index into b.
func (sm *StateMachine) Apply(b *kv.Batch, index uint64, cmd *cxkvpb.Command) (*cxkvpb.CommandResult, error) {
	if err := b.SetApplied(index); err != nil {
		return nil, err
	}
	wid := writeIDOf(cmd)
	if wid.GetClientId() == 0 {
		return sm.applyOp(b, index, cmd)
	}
	return sm.applyOnce(b, index, cmd, wid)
}

func writeIDOf(cmd *cxkvpb.Command) *cxkvpb.WriteID {
	switch op := cmd.GetOp().(type) {
	case *cxkvpb.Command_Put:
		return op.Put.GetWriteId()
	case *cxkvpb.Command_Delete:
		return op.Delete.GetWriteId()
	case *cxkvpb.Command_Txn:
		return op.Txn.GetWriteId()
	case *cxkvpb.Command_Auth:
		return op.Auth.GetRequest().GetWriteId()
	}
	return nil
}

func (sm *StateMachine) applyOp(b *kv.Batch, index uint64, cmd *cxkvpb.Command) (*cxkvpb.CommandResult, error) {
	who, denied, err := sm.permitted(b, cmd)
	if err != nil || denied != nil {
		return denied, err
	}
	stamp := cmd.GetStampUnixMs()
	switch op := cmd.GetOp().(type) {
	case *cxkvpb.Command_Put:
		if err := ValidatePut(op.Put, hardLimits); err != nil {
			return refused(err), nil
		}
		return applyPut(b, index, stamp, op.Put, who)
	case *cxkvpb.Command_Delete:
		if err := structural(op.Delete.GetKey(), 0); err != nil {
			return refused(err), nil
		}
		return applyDelete(b, index, op.Delete, who)
	case *cxkvpb.Command_Txn:
		if err := ValidateTxn(op.Txn, hardLimits); err != nil {
			return refused(err), nil
		}
		return applyTxn(b, index, stamp, op.Txn, who)
	case *cxkvpb.Command_Expire:
		return &cxkvpb.CommandResult{}, applyExpire(b, index, op.Expire)
	case *cxkvpb.Command_Auth:
		return sm.applyAuth(b, index, cmd)
	}
	return refused(invalid("command at index %d carries no operation", index)), nil
}

// permitted refuses a key write whose identity lacks a permission it needs
// on the keys it names, judged by the auth state as of this entry (the
// state's own copy, so every member decides alike), and returns who the
// command acts as for the rules that also depend on the records it meets
// (a session's owner, see plan). Auth changes are judged in applyAuth with
// the rest of their rules.
func (sm *StateMachine) permitted(b *kv.Batch, cmd *cxkvpb.Command) (actor, *cxkvpb.CommandResult, error) {
	if _, ok := cmd.GetOp().(*cxkvpb.Command_Auth); ok {
		return actor{}, nil, nil
	}
	auth, err := sm.auth.Load(b)
	if err != nil {
		return actor{}, nil, err
	}
	if err := auth.CheckCommand(cmd); err != nil {
		return actor{}, refused(err), nil
	}
	return actor{auth: auth, identity: cmd.GetIdentity()}, nil, nil
}

// structural checks the rules that hold whatever the server's flags, so
// every member judges a logged command the same way. Puts and Txns are held
// to the hard limits (hardLimits) the same way.
func structural(key string, ttl int64) error {
	if err := ValidateKey(key); err != nil {
		return err
	}
	return validateTTL(key, ttl)
}

func newRecord(prev kv.Record, found bool, key string, value []byte, ttl int64, session string, index uint64, stamp int64) kv.Record {
	r := kv.Record{Key: key, Value: value, Index: index, CreateIndex: index, TTLMillis: ttl, Session: session}
	if found {
		r.CreateIndex = prev.CreateIndex
	}
	if ttl > 0 {
		r.ExpiresAtUnixMs = stamp + ttl
	}
	return r
}

func applyPut(b *kv.Batch, index uint64, stamp int64, p *cxkvpb.PutRequest, who actor) (*cxkvpb.CommandResult, error) {
	cur, found, err := b.Get(p.GetKey())
	if err != nil {
		return nil, err
	}
	expect := p.GetExpectIndex()
	if (expect == 0 && found) || (expect != 0 && (!found || cur.Index != expect)) {
		return putResult(&cxkvpb.PutResponse{Successful: false, Record: RecordToProto(cur)}), nil
	}
	r := newRecord(cur, found, p.GetKey(), p.GetValue(), p.GetTtlMs(), p.GetSession(), index, stamp)
	w := newPlan(b, index, who)
	if err := w.put(cur, found, r); err != nil {
		return refusedOr(err)
	}
	return putResult(&cxkvpb.PutResponse{Successful: true, Record: RecordToProto(r)}), w.commit()
}

func putResult(r *cxkvpb.PutResponse) *cxkvpb.CommandResult {
	return &cxkvpb.CommandResult{Result: &cxkvpb.CommandResult_Put{Put: r}}
}

// refusedOr turns a plan's refusal into a result; any other error is the
// store's.
func refusedOr(err error) (*cxkvpb.CommandResult, error) {
	var e *Error
	if errors.As(err, &e) {
		return refused(e), nil
	}
	return nil, err
}

func applyDelete(b *kv.Batch, index uint64, d *cxkvpb.DeleteRequest, who actor) (*cxkvpb.CommandResult, error) {
	cur, found, err := b.Get(d.GetKey())
	if err != nil {
		return nil, err
	}
	resp := &cxkvpb.DeleteResponse{Record: RecordToProto(cur), Index: index}
	out := &cxkvpb.CommandResult{Result: &cxkvpb.CommandResult_Delete{Delete: resp}}
	if !found || d.GetExpectIndex() != cur.Index {
		return out, nil
	}
	resp.Successful = true
	w := newPlan(b, index, who)
	if err := w.delete(cur); err != nil {
		return refusedOr(err) // only a session's key may be refused (to all but its owner); a removal fits (MaxSessionKeys)
	}
	return out, w.commit()
}

func applyExpire(b *kv.Batch, index uint64, e *cxkvpb.ExpireCommand) error {
	cur, found, err := b.Get(e.GetKey())
	if err != nil || !found || cur.Index != e.GetIndex() {
		return err // renewed or deleted since the leader queued it: nothing to do
	}
	w := newPlan(b, index, actor{}) // the leader's own: no identity to check
	if err := w.remove(cur, kv.EventExpire); err != nil {
		return err
	}
	return w.commit()
}
