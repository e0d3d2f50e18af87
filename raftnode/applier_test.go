package raftnode

import (
	"context"
	"errors"
	"net"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/cockroachdb/pebble/v2/vfs"
	"github.com/cockroachdb/pebble/v2/vfs/errorfs"
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

// walSyncGate holds every sync of the write-ahead log once closed, until
// a token (or the gate's channel closing) lets it through.
type walSyncGate struct {
	closed atomic.Bool
	held   atomic.Int32
	tokens chan struct{}
}

func (g *walSyncGate) String() string { return "walSyncGate" }

func (g *walSyncGate) MaybeError(op errorfs.Op) error {
	switch op.Kind {
	case errorfs.OpFileSync, errorfs.OpFileSyncData, errorfs.OpFileSyncTo:
		if g.closed.Load() && strings.HasSuffix(op.Path, ".log") {
			g.held.Add(1)
			<-g.tokens
			g.held.Add(-1)
		}
	}
	return nil
}

// A committed entry that an earlier Ready synced is applied, and its
// writer answered, while the next Ready's own write is still syncing: it
// does not wait for entries proposed after it.
func TestSyncedCommittedEntriesApplyWhileTheNextReadySyncs(t *testing.T) {
	gate := &walSyncGate{tokens: make(chan struct{})}
	n := startGated(t, gate)
	put := gatedPut(n)
	// A's Ready syncs behind the gate; B queues behind it, so the next
	// Ready carries A committed and B to write.
	gate.closed.Store(true)
	a := put("a")
	waitFor := gatedWaitFor(t)
	waitFor("A's sync is held", func() bool { return gate.held.Load() == 1 })
	b := put("b")
	waitFor("B is taken by the Ready loop", func() bool { return len(n.propc) == 0 && n.waits.len() == 2 })
	gate.tokens <- struct{}{}
	waitFor("B's sync is held", func() bool { return gate.held.Load() == 1 && len(n.propc) == 0 })

	select {
	case err := <-a:
		if err != nil {
			t.Fatalf("put A: %v", err)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("write A, committed and synced, was not answered while the next Ready's sync was held")
	}
	releaseHeld(t, gate, "B", b)
}

// releaseHeld fails if the write named name was answered while its sync
// is held, then opens the gate for good and wants the write to succeed.
func releaseHeld(t *testing.T, gate *walSyncGate, name string, done <-chan error) {
	t.Helper()
	select {
	case err := <-done:
		t.Fatalf("write %s was answered (%v) before its own sync", name, err)
	default:
	}
	gate.closed.Store(false)
	close(gate.tokens)
	if err := <-done; err != nil {
		t.Fatalf("put %s: %v", name, err)
	}
}

// startGated starts a one-member cluster whose WAL syncs gate holds once
// closed, and returns it elected, warmed by one write, with its start
// recorded. Its loop does not wait out a held sync (waitOutStuckSync)
// while the test runs.
func startGated(t *testing.T, gate *walSyncGate) *Node {
	t.Helper()
	old := stuckSyncLimit
	stuckSyncLimit = time.Hour
	t.Cleanup(func() { stuckSyncLimit = old })
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	n, err := Start(Config{
		ID: 1, Addr: lis.Addr().String(), Listener: lis, DataDir: "data",
		FS: errorfs.Wrap(vfs.NewMem(), gate), TickInterval: 10 * time.Millisecond,
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if gate.closed.Swap(false) {
			close(gate.tokens)
		}
		n.Stop()
	})
	waitFor := gatedWaitFor(t)
	waitFor("the member elects itself", func() bool { return n.Status().Role == "leader" })
	if err := <-gatedPut(n)("warm"); err != nil {
		t.Fatal(err)
	}
	// The member's announcement of its start is a configuration change,
	// which the Ready that commits it applies inline with the persister
	// idle (mustApplyInline): it would wait behind a held sync.
	waitFor("the member's start is recorded", func() bool {
		me := n.members.get().members[n.cfg.ID]
		return me != nil && me.GetStarted() && n.applied.get() == n.Status().Commit
	})
	return n
}

// gatedPut returns a put of key on n in the background; its channel gets
// the outcome.
func gatedPut(n *Node) func(key string) <-chan error {
	return func(key string) <-chan error {
		done := make(chan error, 1)
		go func() {
			ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
			defer cancel()
			_, _, err := n.propose(ctx, &cxkvpb.Command{Op: &cxkvpb.Command_Put{Put: &cxkvpb.PutRequest{Key: key}}})
			done <- err
		}()
		return done
	}
}

func gatedWaitFor(t *testing.T) func(what string, cond func() bool) {
	return func(what string, cond func() bool) {
		t.Helper()
		for deadline := time.Now().Add(5 * time.Second); !cond(); time.Sleep(time.Millisecond) {
			if time.Now().After(deadline) {
				t.Fatalf("timed out waiting until %s", what)
			}
		}
	}
}
