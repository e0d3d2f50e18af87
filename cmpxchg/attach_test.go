package cmpxchg_test

import (
	"bytes"
	"fmt"
	"testing"

	"github.com/cxkv/cxkv/api/cxkvpb"
	"github.com/cxkv/cxkv/cmpxchg"
	"github.com/cxkv/cxkv/kv"
)

func putCmd(key string, value []byte, session string) *cxkvpb.Command {
	return &cxkvpb.Command{Op: &cxkvpb.Command_Put{Put: &cxkvpb.PutRequest{Key: key, Value: value, Session: session}}}
}

func code(res *cxkvpb.CommandResult) cmpxchg.Code { return cmpxchg.Code(res.GetError().GetCode()) }

// A session's end must always fit one log entry, so a put that would take a
// session past MaxSessionBytes or MaxSessionKeys is refused and writes
// nothing, and the session's expiry then removes everything in one entry.
func TestSessionLimitsKeepItsEndInOneEntry(t *testing.T) {
	s := openStore(t)
	sm := cmpxchg.New(cmpxchg.DefaultLimits())
	index := uint64(0)
	apply := func(cmd *cxkvpb.Command) *cxkvpb.CommandResult {
		index++
		return applyOnce(t, s, sm, index, cmd)
	}
	if res := apply(putCmd(cxkvpb.SessionKey("big"), []byte("o"), "")); !res.GetPut().GetSuccessful() {
		t.Fatalf("open big: %v", res)
	}

	// Bytes: 1 MiB values fill a session after 13 keys.
	big := bytes.Repeat([]byte("x"), cmpxchg.MaxValueBytesLimit)
	var held int
	for i := 0; ; i++ {
		res := apply(putCmd(fmt.Sprintf("big/%02d", i), big, "big"))
		if res.GetError() != nil {
			if code(res) != cmpxchg.CodeSessionFull {
				t.Fatalf("put %d past the bytes limit: %v; want CodeSessionFull", i, res.GetError())
			}
			if _, found, _ := s.Get(fmt.Sprintf("big/%02d", i)); found {
				t.Fatal("a refused attach wrote its key")
			}
			break
		}
		held++
	}
	if want := cmpxchg.MaxSessionBytes / (cmpxchg.MaxValueBytesLimit + 70); held != want {
		t.Fatalf("a session took %d keys of 1 MiB; want %d", held, want)
	}

	// Keys, on a store of its own (point reads of absent keys next to the
	// 1 MiB values above would each read a large block: Pebble here has
	// no bloom filters and a small cache).
	s = openStore(t)
	index = 0
	if res := apply(putCmd(cxkvpb.SessionKey("many"), []byte("o"), "")); !res.GetPut().GetSuccessful() {
		t.Fatalf("open many: %v", res)
	}
	// One transaction attaching one key more than the limit is refused
	// whole.
	txn := &cxkvpb.TxnRequest{}
	for i := range cmpxchg.MaxSessionKeys + 1 {
		txn.Ops = append(txn.Ops, &cxkvpb.TxnOp{Type: cxkvpb.TxnOp_PUT, Key: fmt.Sprintf("m/%05d", i), Session: "many"})
	}
	if res := apply(&cxkvpb.Command{Op: &cxkvpb.Command_Txn{Txn: txn}}); code(res) != cmpxchg.CodeSessionFull {
		t.Fatalf("txn attaching %d keys: %v; want CodeSessionFull", len(txn.Ops), res.GetError())
	}
	if _, found, _ := s.Get("m/00000"); found {
		t.Fatal("a refused transaction wrote its first op")
	}
	txn.Ops = txn.Ops[:cmpxchg.MaxSessionKeys]
	if res := apply(&cxkvpb.Command{Op: &cxkvpb.Command_Txn{Txn: txn}}); !res.GetTxn().GetSuccessful() {
		t.Fatalf("txn attaching %d keys: %v", len(txn.Ops), res.GetError())
	}

	// A transaction that would end the full session beside another write
	// passes the events one index holds: refused, nothing written.
	sess, _, _ := s.Get(cxkvpb.SessionKey("many"))
	end := &cxkvpb.TxnRequest{Ops: []*cxkvpb.TxnOp{
		{Type: cxkvpb.TxnOp_DELETE, Key: cxkvpb.SessionKey("many")},
		{Type: cxkvpb.TxnOp_PUT, Key: "extra", Value: []byte("v")},
	}}
	if res := apply(&cxkvpb.Command{Op: &cxkvpb.Command_Txn{Txn: end}}); code(res) != cmpxchg.CodeInvalid {
		t.Fatalf("txn ending a full session and writing: %v; want CodeInvalid", res.GetError())
	}
	// Its expiry is one entry with every key.
	b := s.NewBatch()
	defer b.Close()
	index++
	if _, err := sm.Apply(b, index, &cxkvpb.Command{Op: &cxkvpb.Command_Expire{Expire: &cxkvpb.ExpireCommand{Key: sess.Key, Index: sess.Index}}}); err != nil {
		t.Fatalf("expiry of a full session: %v", err)
	}
	if n := len(b.Events()); n != cmpxchg.MaxSessionKeys+1 {
		t.Fatalf("expiry of a full session left %d events; want %d", n, cmpxchg.MaxSessionKeys+1)
	}
	for _, e := range b.Events() {
		if e.Type != kv.EventExpire || e.Record.Index != index {
			t.Fatalf("event of the expiry: %+v", e)
		}
	}
	if err := b.Commit(false); err != nil {
		t.Fatal(err)
	}
	if _, found, _ := s.Get("m/65533"); found {
		t.Fatal("an attached key outlived its session")
	}
}
