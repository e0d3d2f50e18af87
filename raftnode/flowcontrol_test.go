package raftnode_test

import (
	"context"
	"fmt"
	"testing"

	"github.com/cxkv/cxkv/api/cxkvpb"
	"github.com/cxkv/cxkv/api/cxkvrpc"
	"github.com/cxkv/cxkv/raftnode/raftnodetest"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
)

// A member's server sends no PINGs of its own while requests come one at a
// time. With gRPC's dynamic flow-control windows it sent a
// bandwidth-estimation PING after nearly every request, which the client
// answered: two more socket writes and reads per request on each side, and
// the same on every peer stream per raft message.
func TestServerSendsNoBandwidthPings(t *testing.T) {
	c := raftnodetest.Start(t, 1)
	c.WaitLeader()
	var pings raftnodetest.PingCounter
	conn, err := grpc.NewClient(c.Endpoints()[0], grpc.WithTransportCredentials(insecure.NewCredentials()),
		grpc.WithContextDialer(pings.Dial))
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	kv := cxkvrpc.NewKVClient(conn)
	const puts = 20
	for i := range puts {
		if _, err := kv.Put(context.Background(), &cxkvpb.PutRequest{Key: fmt.Sprintf("k%d", i), Value: []byte("v")}); err != nil {
			t.Fatal(err)
		}
	}
	if n := pings.Received.Load(); n != 0 {
		t.Fatalf("the server sent %d PINGs during %d sequential puts, want none", n, puts)
	}
}
