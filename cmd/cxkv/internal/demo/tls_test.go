package demo

import (
	"context"
	"testing"
	"time"

	"github.com/cxkv/cxkv/client"
)

// demo cluster --tls: the members elect a leader over mutual TLS and serve
// a client with the demo's certificate; a plaintext client is refused; a
// kept dir made with --tls is not started without it.
func TestClusterWithTLS(t *testing.T) {
	dir := t.TempDir()
	cl, err := StartCluster(ClusterConfig{Bin: testBin, Dir: dir, TLS: true})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cl.Stop() })
	c, err := client.New(cl.ClientConfig())
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if _, err := cl.WaitLeader(ctx, c); err != nil {
		t.Fatal(err)
	}
	if _, err := c.Put(ctx, "demo/tls", []byte("v"), 0); err != nil {
		t.Fatalf("put over TLS: %v", err)
	}
	plain, err := client.New(client.Config{Endpoints: cl.Endpoints(), RetryTimeout: time.Second})
	if err != nil {
		t.Fatal(err)
	}
	defer plain.Close()
	if _, err := plain.Get(ctx, "demo/tls"); err == nil {
		t.Fatal("a plaintext client read from the TLS demo cluster")
	}
	cl.Stop()
	if _, err := StartCluster(ClusterConfig{Bin: testBin, Dir: dir}); err == nil {
		t.Fatal("a --tls data dir started without --tls")
	}
}
