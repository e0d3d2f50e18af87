package client_test

import (
	"testing"
	"time"

	"github.com/cxkv/cxkv/client"
	"github.com/cxkv/cxkv/raftnode/raftnodetest"
	"go.uber.org/goleak"
)

func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m)
}

// start starts a 3-member cluster and a Client on all its members.
func start(t *testing.T, opts ...raftnodetest.Option) (*raftnodetest.Cluster, *client.Client) {
	t.Helper()
	cl := raftnodetest.Start(t, 3, opts...)
	return cl, dial(t, cl.Endpoints())
}

func dial(t *testing.T, endpoints []string) *client.Client {
	t.Helper()
	c, err := client.New(client.Config{Endpoints: endpoints, RequestTimeout: 2 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return c
}

// leaderFirst lists the endpoints with the leader's first: a client made
// with them talks to the leader from its first call, so stopping the leader
// is sure to cut it off and make it fail over.
func leaderFirst(cl *raftnodetest.Cluster) []string {
	eps := cl.Endpoints()
	l := cl.WaitLeader()
	eps[0], eps[l] = eps[l], eps[0]
	return eps
}
