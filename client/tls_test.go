package client_test

import (
	"context"
	"testing"
	"time"

	"github.com/cxkv/cxkv/client"
	"github.com/cxkv/cxkv/raftnode/raftnodetest"
)

// Config.TLS connects to members serving mutual TLS; without it the same
// cluster is unreachable.
func TestTLSConfig(t *testing.T) {
	pki := raftnodetest.NewPKI(t)
	cl := raftnodetest.Start(t, 3, pki.Option())
	c, err := client.New(client.Config{Endpoints: cl.Endpoints(), TLS: pki.ClientTLS("sdk")})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	put, err := c.Put(ctx, "k", []byte("v"), 0)
	if err != nil {
		t.Fatalf("put over TLS: %v", err)
	}
	if rec, err := c.Get(ctx, "k"); err != nil || rec.Index != put.Record.Index {
		t.Fatalf("get over TLS: %+v %v, want index %d", rec, err, put.Record.Index)
	}

	plain, err := client.New(client.Config{Endpoints: cl.Endpoints(), RetryTimeout: time.Second})
	if err != nil {
		t.Fatal(err)
	}
	defer plain.Close()
	if _, err := plain.Get(ctx, "k"); err == nil {
		t.Fatal("a plaintext client read from members serving TLS")
	}
}
