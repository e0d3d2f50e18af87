package raftnode_test

import (
	"context"
	"fmt"
	"net"
	"testing"
	"time"

	"github.com/cockroachdb/pebble/v2/vfs"
	"github.com/cxkv/cxkv/api/cxkvpb"
	"github.com/cxkv/cxkv/api/cxkvrpc"
	"github.com/cxkv/cxkv/raftnode"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
)

// A one-member cluster that crashed may come back with a stored commit index
// below its last acknowledged write: the commit index moves in a Ready of its
// own, written without a sync. raft answers a lone leader's ReadIndex with
// that commit index at once, before the entry of its new term commits, so a
// linearizable read right after the restart could miss the acknowledged
// write. The member must not serve a read until it has committed an entry of
// its own term (then everything acknowledged before is committed too).
func TestSingletonReadAfterCrashSeesAcknowledgedWrites(t *testing.T) {
	mem := vfs.NewCrashableMem()
	cfg := raftnode.Config{ID: 1, DataDir: "data", FS: mem, TickInterval: 10 * time.Millisecond, ElectionTicks: 3}
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	addr := "127.0.0.1:0"
	for round := range 12 {
		lis, err := net.Listen("tcp", addr) // the same address each round: it names the cluster
		if err != nil {
			t.Fatal(err)
		}
		addr = lis.Addr().String()
		cfg.Addr, cfg.Listener = addr, lis
		n, err := raftnode.Start(cfg)
		if err != nil {
			t.Fatal(err)
		}
		conn, err := grpc.NewClient(n.Addr(), grpc.WithTransportCredentials(insecure.NewCredentials()))
		if err != nil {
			t.Fatal(err)
		}
		kv := cxkvrpc.NewKVClient(conn)
		// The first read after the restart: every earlier round's write
		// was acknowledged before the crash.
		if round > 0 {
			prev := fmt.Sprintf("k%d", round-1)
			var got *cxkvpb.GetResponse
			for got == nil {
				if got, err = kv.Get(ctx, &cxkvpb.GetRequest{Key: prev}); err != nil && ctx.Err() != nil {
					t.Fatal(err)
				}
			}
			if !got.GetFound() {
				t.Fatalf("round %d: the first linearizable read after the restart misses %s, acknowledged before the crash", round, prev)
			}
		}
		var r *cxkvpb.PutResponse
		for r == nil || !r.GetSuccessful() {
			if r, err = kv.Put(ctx, &cxkvpb.PutRequest{Key: fmt.Sprintf("k%d", round), Value: []byte("v")}); err != nil && ctx.Err() != nil {
				t.Fatal(err)
			}
		}
		crashed := mem.CrashClone(vfs.CrashCloneCfg{UnsyncedDataPercent: 0})
		conn.Close()
		n.Stop()
		mem, cfg.FS = crashed, crashed
	}
}
