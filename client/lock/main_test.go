package lock_test

import (
	"os"
	"testing"
	"time"

	"github.com/cxkv/cxkv/client"
	"github.com/cxkv/cxkv/raftnode/raftnodetest"
	"go.uber.org/goleak"
)

func TestMain(m *testing.M) {
	if role := os.Getenv(helperEnv); role != "" {
		os.Exit(runHelper(role))
	}
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
