package cmpxchgtest

import (
	"context"
	"testing"

	"github.com/cockroachdb/pebble/v2/vfs"
	"github.com/cxkv/cxkv/api/cxkvpb"
	"github.com/cxkv/cxkv/cmpxchg"
	"github.com/cxkv/cxkv/kv"
	"google.golang.org/protobuf/proto"
)

// MachineTarget is the state machine on an in-memory store, validating
// requests as the server does and applying each write as the next log entry.
type MachineTarget struct {
	store  *kv.Store
	sm     *cmpxchg.StateMachine
	limits cmpxchg.Limits
	last   uint64
	stamp  int64
}

// NewMachineTarget returns a MachineTarget with default limits, closed when
// the test ends.
func NewMachineTarget(t *testing.T) Target {
	s, err := kv.Open("db", kv.Options{FS: vfs.NewMem()})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	l := cmpxchg.DefaultLimits()
	l.MaxSessions = 3 // small, so the eviction script can reach it
	return &MachineTarget{store: s, sm: cmpxchg.New(l), limits: l, stamp: 1_000_000}
}

type applied struct {
	index  uint64
	result *cxkvpb.CommandResult
}

func (m *MachineTarget) apply(cmd *cxkvpb.Command) (applied, error) {
	// Round-trip through the log encoding, as a real entry would.
	data, err := cmpxchg.EncodeCommand(cmd)
	if err != nil {
		return applied{}, err
	}
	if cmd, err = cmpxchg.DecodeCommand(data); err != nil {
		return applied{}, err
	}
	cmd.StampUnixMs, cmd.ClusterMs = m.stamp, proto.Int64(m.stamp)
	m.last++
	b := m.store.NewBatch()
	defer b.Close()
	res, err := m.sm.Apply(b, m.last, cmd)
	if err != nil {
		return applied{}, err
	}
	if err := b.Commit(false); err != nil {
		return applied{}, err
	}
	if err := cmpxchg.ResultError(res); err != nil {
		return applied{}, err
	}
	return applied{index: m.last, result: res}, nil
}

func (m *MachineTarget) Get(_ context.Context, r *cxkvpb.GetRequest) (*cxkvpb.GetResponse, error) {
	if err := cmpxchg.ValidateKey(r.GetKey()); err != nil {
		return nil, err
	}
	rec, found, err := m.store.Get(r.GetKey())
	if err != nil {
		return nil, err
	}
	return &cxkvpb.GetResponse{Record: cmpxchg.RecordToProto(rec), Found: found}, nil
}

func (m *MachineTarget) List(_ context.Context, r *cxkvpb.ListRequest) (*cxkvpb.ListResponse, error) {
	if err := cmpxchg.ValidateList(r); err != nil {
		return nil, err
	}
	limit := int(r.GetLimit())
	if limit == 0 {
		limit = cmpxchg.DefaultListLimit
	}
	recs, more, err := m.store.List(r.GetPrefix(), r.GetAfter(), limit, cmpxchg.MaxAnswerBytes)
	if err != nil {
		return nil, err
	}
	resp := &cxkvpb.ListResponse{More: more}
	for _, rec := range recs {
		resp.Records = append(resp.Records, cmpxchg.RecordToProto(rec))
	}
	return resp, nil
}

func (m *MachineTarget) Sessions(_ context.Context, r *cxkvpb.SessionsRequest) (*cxkvpb.SessionsResponse, error) {
	if err := cmpxchg.ValidateSessions(r); err != nil {
		return nil, err
	}
	limit := int(r.GetLimit())
	if limit == 0 {
		limit = cmpxchg.DefaultListLimit
	}
	infos, more, err := m.store.ListSessions(r.GetPrefix(), r.GetAfter(), limit, cmpxchg.MaxAnswerBytes)
	if err != nil {
		return nil, err
	}
	resp := &cxkvpb.SessionsResponse{More: more}
	for _, in := range infos {
		resp.Sessions = append(resp.Sessions, &cxkvpb.Session{
			Id: in.ID, Record: cmpxchg.RecordToProto(in.Record),
			AttachedKeys: in.Tally.Keys, AttachedBytes: in.Tally.Bytes,
		})
	}
	return resp, nil
}

func (m *MachineTarget) Put(_ context.Context, r *cxkvpb.PutRequest) (*cxkvpb.PutResponse, error) {
	if err := cmpxchg.ValidatePut(r, m.limits); err != nil {
		return nil, err
	}
	a, err := m.apply(&cxkvpb.Command{Op: &cxkvpb.Command_Put{Put: r}})
	return a.result.GetPut(), err
}

func (m *MachineTarget) Delete(_ context.Context, r *cxkvpb.DeleteRequest) (*cxkvpb.DeleteResponse, error) {
	if err := cmpxchg.ValidateDelete(r, m.limits); err != nil {
		return nil, err
	}
	a, err := m.apply(&cxkvpb.Command{Op: &cxkvpb.Command_Delete{Delete: r}})
	return a.result.GetDelete(), err
}

func (m *MachineTarget) Txn(_ context.Context, r *cxkvpb.TxnRequest) (*cxkvpb.TxnResponse, error) {
	if err := cmpxchg.ValidateTxn(r, m.limits); err != nil {
		return nil, err
	}
	a, err := m.apply(&cxkvpb.Command{Op: &cxkvpb.Command_Txn{Txn: r}})
	return a.result.GetTxn(), err
}
