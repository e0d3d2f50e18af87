package raftnode_test

import (
	"context"
	"testing"
	"time"

	"github.com/cxkv/cxkv/api/cxkvpb"
	"github.com/cxkv/cxkv/api/cxkvrpc"
	"github.com/cxkv/cxkv/raftnode/raftnodetest"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/status"
)

// With peer ports of their own, members replicate over them, a restarted
// member rejoins through its peer port, the client port does not serve the
// Raft service and the peer port does not serve KV.
func TestPeerPortCarriesRaftOnly(t *testing.T) {
	c := raftnodetest.Start(t, 3, raftnodetest.PeerPorts())
	eps, peers := c.Endpoints(), c.PeerAddrs()
	for i := range eps {
		if eps[i] == peers[i] {
			t.Fatalf("member %d: peer address %s is its client address", i+1, peers[i])
		}
		if got := c.Members[i].PeerAddr(); got != peers[i] {
			t.Fatalf("member %d serves peers on %s, the cluster names %s", i+1, got, peers[i])
		}
	}
	lead := c.WaitLeader()
	idx := put(t, c.Client(lead), "k", "v", 0).GetRecord().GetIndex()
	other := (lead + 1) % 3
	raftnodetest.Eventually(t, 10*time.Second, "a follower applies the write", func() bool {
		return c.Members[other].Status().Applied >= idx
	})
	c.Restart(other)
	idx = put(t, c.Client(lead), "k2", "v", 0).GetRecord().GetIndex()
	raftnodetest.Eventually(t, 10*time.Second, "the restarted member applies a new write", func() bool {
		return c.Members[other].Status().Applied >= idx
	})

	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	client := dialPlain(t, eps[other])
	s, err := cxkvrpc.NewPeerClient(client).Send(ctx)
	if err == nil {
		_, err = s.CloseAndRecv()
	}
	if status.Code(err) != codes.Unimplemented {
		t.Errorf("Raft service on the client port: %v, want Unimplemented", err)
	}
	peer := dialPlain(t, peers[other])
	if _, err := cxkvrpc.NewKVClient(peer).Get(ctx, &cxkvpb.GetRequest{Key: "k"}); status.Code(err) != codes.Unimplemented {
		t.Errorf("KV on the peer port: %v, want Unimplemented", err)
	}
}

func dialPlain(t *testing.T, addr string) *grpc.ClientConn {
	t.Helper()
	conn, err := grpc.NewClient(addr, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close() })
	return conn
}
