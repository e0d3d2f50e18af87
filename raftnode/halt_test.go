package raftnode_test

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/cockroachdb/pebble/v2/vfs"
	"github.com/cockroachdb/pebble/v2/vfs/errorfs"
	"github.com/cxkv/cxkv/api/cxkvpb"
	"github.com/cxkv/cxkv/api/cxkvrpc"
	"github.com/cxkv/cxkv/internal/loopback"
	"github.com/cxkv/cxkv/raftnode"
	"go.uber.org/goleak"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/status"
)

// failSyncs makes every sync fail once armed, as a dying disk would.
type failSyncs struct{ armed atomic.Bool }

func (f *failSyncs) String() string { return "failSyncs" }

func (f *failSyncs) MaybeError(op errorfs.Op) error {
	switch op.Kind {
	case errorfs.OpFileSync, errorfs.OpFileSyncData, errorfs.OpFileSyncTo:
		if f.armed.Load() {
			return errorfs.ErrInjected
		}
	}
	return nil
}

// A member whose disk stops syncing must stop serving, say so through Done
// and Err (the server exits non-zero on it), and lose no write it
// acknowledged: it may not answer stale serializable reads, hang
// linearizable ones, or report itself leader.
func TestMemberHaltsOnStorageFailure(t *testing.T) {
	mem := vfs.NewCrashableMem()
	inj := &failSyncs{}
	lis, err := loopback.Listen()
	if err != nil {
		t.Fatal(err)
	}
	cfg := raftnode.Config{
		ID: 1, Addr: lis.Addr().String(), Listener: lis, DataDir: "data",
		FS: errorfs.Wrap(mem, inj), TickInterval: 10 * time.Millisecond,
	}
	n, err := raftnode.Start(cfg)
	if err != nil {
		t.Fatal(err)
	}
	defer n.Stop()
	kv := leaderClient(t, n)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	acked, err := kv.Put(ctx, &cxkvpb.PutRequest{Key: "acked", Value: []byte("v")})
	if err != nil || !acked.GetSuccessful() {
		t.Fatalf("put before the fault: %v %v", acked, err)
	}

	calls, err := kv.Calls(ctx) // open before the halt, as a client's is
	if err != nil {
		t.Fatal(err)
	}

	inj.armed.Store(true)
	if r, err := kv.Put(ctx, &cxkvpb.PutRequest{Key: "lost", Value: []byte("v")}); err == nil {
		t.Fatalf("a put the member could not persist was acknowledged: %v", r)
	}
	select {
	case <-n.Done():
	case <-time.After(5 * time.Second):
		t.Fatal("the member did not report its halt through Done")
	}
	if err := n.Err(); err == nil || !errors.Is(err, errorfs.ErrInjected) {
		t.Fatalf("Err() = %v, want the storage failure", err)
	}
	if st := n.Status(); st.Role == "leader" || st.Leader != 0 {
		t.Fatalf("a halted member reports %+v", st)
	}
	for _, serializable := range []bool{true, false} {
		rctx, rcancel := context.WithTimeout(ctx, 2*time.Second)
		_, err := kv.Get(rctx, &cxkvpb.GetRequest{Key: "acked", Serializable: serializable})
		rcancel()
		if status.Code(err) != codes.Unavailable || !strings.Contains(err.Error(), "halted") {
			t.Fatalf("get (serializable=%v) from a halted member: %v, want Unavailable naming the halt", serializable, err)
		}
	}
	// A call on a stream opened before the halt is refused alike, by its
	// answer or by the end of its stream.
	err = calls.Send(&cxkvpb.CallRequest{Id: 1, Op: &cxkvpb.CallRequest_Get{Get: &cxkvpb.GetRequest{Key: "acked", Serializable: true}}})
	if err == nil {
		var resp *cxkvpb.CallResponse
		if resp, err = calls.Recv(); err == nil {
			err = callError(resp)
		}
	} else {
		_, err = calls.Recv() // the stream's end says why
	}
	if status.Code(err) != codes.Unavailable || !strings.Contains(err.Error(), "halted") {
		t.Fatalf("get on a Calls stream of a halted member: %v, want Unavailable naming the halt", err)
	}

	// The process dies; what is on disk must hold every acknowledged write.
	crashed := mem.CrashClone(vfs.CrashCloneCfg{UnsyncedDataPercent: 0})
	n.Stop()
	cfg.Listener, cfg.FS = nil, crashed // on the same address again
	n2, err := raftnode.Start(cfg)
	if err != nil {
		t.Fatalf("restart after the halt: %v", err)
	}
	defer n2.Stop()
	conn2, err := grpc.NewClient(n2.Addr(), grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	defer conn2.Close()
	var rec *cxkvpb.Record
	for deadline := time.Now().Add(5 * time.Second); ; time.Sleep(10 * time.Millisecond) {
		r, err := cxkvrpc.NewKVClient(conn2).Get(ctx, &cxkvpb.GetRequest{Key: "acked"})
		if err == nil {
			rec = r.GetRecord()
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("get after restart: %v", err)
		}
	}
	if rec.GetIndex() != acked.GetRecord().GetIndex() {
		t.Fatalf("the acknowledged write is %v after the restart, want index %d", rec, acked.GetRecord().GetIndex())
	}
}

// A store can fail where no write of the member's is: Pebble flushes full
// memtables on a goroutine of its own, and a flush whose MANIFEST write
// fails leaves the store taking no more writes. The member must halt then,
// not at its next write: an idle member would otherwise report itself live
// and ready on a store that can persist nothing, until a client happened
// to write.
func TestMemberHaltsWhenABackgroundFlushFails(t *testing.T) {
	var (
		armed   atomic.Bool
		reached atomic.Bool // a flush is at its MANIFEST write, held there
		proceed = make(chan struct{})
	)
	fs := errorfs.Wrap(vfs.NewMem(), errorfs.InjectorFunc(func(op errorfs.Op) error {
		if !armed.Load() || !strings.Contains(op.Path, "MANIFEST") {
			return nil
		}
		switch op.Kind {
		case errorfs.OpFileWrite, errorfs.OpFileWriteAt, errorfs.OpFileSync, errorfs.OpFileSyncData:
			reached.Store(true)
			<-proceed
			return errorfs.ErrInjected
		}
		return nil
	}))
	// The failed store is never closed (a flush is left running), so its
	// goroutines outlive the test: they are the only ones abandoned.
	before := goleak.Find(abandoned...)
	lis, err := loopback.Listen()
	if err != nil {
		t.Fatal(err)
	}
	n, err := raftnode.Start(raftnode.Config{
		ID: 1, Addr: lis.Addr().String(), Listener: lis, DataDir: "data",
		FS: fs, TickInterval: 10 * time.Millisecond,
	})
	if err != nil {
		t.Fatal(err)
	}
	released := false
	t.Cleanup(func() { // after the client's cleanup
		if !released {
			close(proceed)
		}
		n.Stop()
		abandon(t, before)
	})
	kv := leaderClient(t, n)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	armed.Store(true)
	// Write until a flush reaches the MANIFEST (Pebble flushes once its
	// full memtables hold half a memtable's size), which the injector holds
	// there. Writes go on meanwhile: Pebble stalls them only at two
	// memtables' worth queued. Then the flush fails with no write after it.
	value := make([]byte, 1<<20)
	for i := 0; !reached.Load(); i++ {
		if i == 200 {
			t.Fatal("200 MiB written and no flush reached the MANIFEST")
		}
		if r, err := kv.Put(ctx, &cxkvpb.PutRequest{Key: fmt.Sprintf("big/%03d", i), Value: value}); err != nil || !r.GetSuccessful() {
			t.Fatalf("put %d before the flush failed: %v %v", i, r, err)
		}
	}
	if err := n.Err(); err != nil {
		t.Fatalf("Err() = %v before the flush failed", err)
	}
	released = true
	close(proceed)
	select {
	case <-n.Done():
	case <-time.After(10 * time.Second):
		t.Fatal("the member did not halt on its store's failure while idle")
	}
	if err := n.Err(); !errors.Is(err, errorfs.ErrInjected) {
		t.Fatalf("Err() = %v, want the flush's failure", err)
	}
	if err := n.Ready(); err == nil || !strings.Contains(err.Error(), "halted") {
		t.Fatalf("Ready() = %v, want the halt", err)
	}
}

// leaderClient dials lone member n, closed when the test ends, once n
// leads.
func leaderClient(t *testing.T, n *raftnode.Node) cxkvrpc.KVClient {
	t.Helper()
	conn, err := grpc.NewClient(n.Addr(), grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close() })
	for deadline := time.Now().Add(5 * time.Second); n.Status().Role != "leader"; time.Sleep(5 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatal("no leader")
		}
	}
	return cxkvrpc.NewKVClient(conn)
}
