package raftnode_test

import (
	"context"
	"errors"
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
	conn, err := grpc.NewClient(n.Addr(), grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	kv := cxkvrpc.NewKVClient(conn)
	for deadline := time.Now().Add(5 * time.Second); n.Status().Role != "leader"; time.Sleep(5 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatal("no leader")
		}
	}
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
