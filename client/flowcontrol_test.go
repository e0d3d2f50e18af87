package client_test

import (
	"context"
	"fmt"
	"testing"

	"github.com/cxkv/cxkv/client"
	"github.com/cxkv/cxkv/raftnode/raftnodetest"
	"google.golang.org/grpc"
)

// The client sends no PINGs of its own while its requests go one at a
// time. With gRPC's dynamic flow-control windows it answered nearly every
// response with a bandwidth-estimation PING, a read and a write more per
// request for the member.
func TestClientSendsNoBandwidthPings(t *testing.T) {
	cl := raftnodetest.Start(t, 1)
	cl.WaitLeader()
	var pings raftnodetest.PingCounter
	c, err := client.New(client.Config{Endpoints: cl.Endpoints(), DialOptions: []grpc.DialOption{grpc.WithContextDialer(pings.Dial)}})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	const puts = 20
	for i := range puts {
		if _, err := c.Put(context.Background(), fmt.Sprintf("k%d", i), []byte("v"), 0); err != nil {
			t.Fatal(err)
		}
	}
	if n := pings.Sent.Load(); n != 0 {
		t.Fatalf("the client sent %d PINGs during %d sequential puts, want none", n, puts)
	}
}
