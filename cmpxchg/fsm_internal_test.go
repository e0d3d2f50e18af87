package cmpxchg

import (
	"fmt"
	"testing"

	"github.com/cockroachdb/pebble/v2/vfs"
	"github.com/cxkv/cxkv/api/cxkvpb"
	"github.com/cxkv/cxkv/kv"
)

// Apply checks every command against the auth state through the state
// machine's AuthCache: while the stored state does not change, commands in
// later batches find it decoded (the same *Auth), not decoded again.
func TestApplyDecodesAnUnchangedAuthStateOnce(t *testing.T) {
	s, err := kv.Open("db", kv.Options{FS: vfs.NewMem()})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	sm := New(DefaultLimits())
	apply := func(index uint64) *Auth {
		t.Helper()
		b := s.NewBatch()
		defer b.Close()
		cmd := &cxkvpb.Command{Op: &cxkvpb.Command_Put{Put: &cxkvpb.PutRequest{Key: fmt.Sprintf("k%d", index), Value: []byte("v")}}}
		res, err := sm.Apply(b, index, cmd)
		if err != nil || !res.GetPut().GetSuccessful() {
			t.Fatalf("index %d: %v, %v", index, res, err)
		}
		if err := b.Commit(false); err != nil {
			t.Fatal(err)
		}
		sm.auth.mu.Lock()
		defer sm.auth.mu.Unlock()
		return sm.auth.auth
	}
	first := apply(2)
	if first == nil {
		t.Fatal("Apply left no decoded auth state in the state machine's cache")
	}
	if again := apply(3); again != first {
		t.Fatalf("the next batch's command decoded the unchanged auth state again (%p, was %p)", again, first)
	}
}
