package raftnode

import (
	"context"
	"errors"
	"net"
	"sync/atomic"
	"testing"
	"time"

	"github.com/cxkv/cxkv/api/cxkvpb"
)

// failingMachine is a recordingMachine whose Apply fails once armed, as a
// state machine whose storage broke would.
type failingMachine struct {
	recordingMachine
	armed atomic.Bool
}

var errApplyBroke = errors.New("apply broke")

func (m *failingMachine) Apply(ents []Entry) ([]*cxkvpb.CommandResult, error) {
	if m.armed.Load() {
		return nil, errApplyBroke
	}
	return m.recordingMachine.Apply(ents)
}

// An Apply that fails on the applier's goroutine halts the member as a
// failed write does: the write in flight is not acknowledged, Done closes,
// Err names the cause, and nothing is applied after it.
func TestFailedApplyHaltsTheMember(t *testing.T) {
	sm := &failingMachine{}
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	n, err := Start(Config{
		ID: 1, Addr: lis.Addr().String(), Listener: lis, DataDir: t.TempDir(),
		TickInterval: 10 * time.Millisecond, StateMachine: sm,
	})
	if err != nil {
		t.Fatal(err)
	}
	defer n.Stop()
	for deadline := time.Now().Add(5 * time.Second); n.Status().Role != "leader"; time.Sleep(5 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatal("the member did not elect itself")
		}
	}
	put := func(key string) error {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		_, _, err := n.propose(ctx, &cxkvpb.Command{Op: &cxkvpb.Command_Put{Put: &cxkvpb.PutRequest{Key: key}}})
		return err
	}
	if err := put("before"); err != nil {
		t.Fatalf("put before the fault: %v", err)
	}
	sm.armed.Store(true)
	if err := put("during"); err == nil {
		t.Fatal("a write whose apply failed was acknowledged")
	}
	select {
	case <-n.Done():
	case <-time.After(5 * time.Second):
		t.Fatal("the member did not halt after a failed apply")
	}
	if err := n.Err(); !errors.Is(err, errApplyBroke) {
		t.Fatalf("Err() = %v, want the apply's failure", err)
	}
	sm.mu.Lock()
	defer sm.mu.Unlock()
	if len(sm.keys) != 1 || sm.keys[0] != "before" {
		t.Fatalf("applied %v, want only the write before the fault", sm.keys)
	}
}
