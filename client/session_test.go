package client_test

import (
	"context"
	"testing"
	"time"

	"github.com/cxkv/cxkv/client"
)

// The SDK's session calls, end to end: open, attach by Put and by Txn,
// the head of a queue in the creating write, listing with counts, renewal,
// and a force-close that takes every attached key with it.
func TestSessionAttachListAndForceClose(t *testing.T) {
	_, c := start(t)
	ctx := context.Background()
	id := client.NewSessionID()

	if _, err := c.Put(ctx, "orphan", []byte("x"), 0, client.InSession(id)); !client.IsNoSession(err) {
		t.Fatalf("attach to a session never opened: %v; want IsNoSession", err)
	}
	open, err := c.Put(ctx, client.SessionKey(id), []byte("me"), 0, client.WithTTL(time.Minute))
	if err != nil || !open.Successful {
		t.Fatalf("open: %+v, %v", open, err)
	}
	put, err := c.Put(ctx, "plain/key", []byte("v"), 0, client.InSession(id))
	if err != nil || !put.Successful || put.Record.Session != id {
		t.Fatalf("attached put: %+v, %v", put, err)
	}
	entry := func(name string) client.Op { return client.PutOp("q/.lock/"+name, []byte(name), 0).InSession(id) }
	first, err := c.Txn(ctx, []client.Compare{client.Absent("q/.lock/b")}, []client.Op{entry("b"), client.HeadOp("q/.lock/")})
	if err != nil || !first.Successful || first.Results[1].Key != "q/.lock/b" {
		t.Fatalf("first entry: %+v, %v; want it at the head", first, err)
	}
	second, err := c.Txn(ctx, []client.Compare{client.Absent("q/.lock/a")}, []client.Op{entry("a"), client.HeadOp("q/.lock/")})
	if err != nil || !second.Successful || second.Results[1].Key != "q/.lock/b" || second.Results[0].Session != id {
		t.Fatalf("second entry: %+v, %v; want q/.lock/b still at the head", second, err)
	}
	renew, err := c.Put(ctx, client.SessionKey(id), []byte("me"), open.Record.Index, client.WithTTL(time.Minute))
	if err != nil || !renew.Successful {
		t.Fatalf("renew: %+v, %v", renew, err)
	}

	var listed []client.SessionInfo
	for s, err := range c.Sessions(ctx, id[:4]) {
		if err != nil {
			t.Fatal(err)
		}
		listed = append(listed, s)
	}
	if len(listed) != 1 || listed[0].ID != id || listed[0].AttachedKeys != 3 || string(listed[0].Record.Value) != "me" || listed[0].Record.TTL != time.Minute {
		t.Fatalf("Sessions(%q) = %+v; want %s with 3 keys attached", id[:4], listed, id)
	}

	closed, err := c.CloseSession(ctx, id)
	if err != nil || !closed {
		t.Fatalf("CloseSession: %v, %v", closed, err)
	}
	for _, k := range []string{"plain/key", "q/.lock/a", "q/.lock/b", client.SessionKey(id)} {
		if rec, err := c.Get(ctx, k); err != nil || rec.Exists() {
			t.Fatalf("%s after the close: %+v, %v; want absent", k, rec, err)
		}
	}
	if closed, err := c.CloseSession(ctx, id); err != nil || closed {
		t.Fatalf("second CloseSession: %v, %v; want false, nil", closed, err)
	}
}
