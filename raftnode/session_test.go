package raftnode_test

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/cxkv/cxkv/api/cxkvpb"
	"github.com/cxkv/cxkv/api/cxkvrpc"
	"github.com/cxkv/cxkv/raftnode"
	"github.com/cxkv/cxkv/raftnode/raftnodetest"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
)

// openSession creates the session id with ttl and attaches n keys to it
// under prefix, half by Put and half by one Txn, and returns the index at
// which the last was attached.
func openSession(t *testing.T, kv cxkvrpc.KVClient, id string, ttl time.Duration, prefix string, n int) uint64 {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if _, err := kv.Put(ctx, &cxkvpb.PutRequest{Key: cxkvpb.SessionKey(id), Value: []byte("owner"), TtlMs: ttl.Milliseconds()}); err != nil {
		t.Fatalf("open session %s: %v", id, err)
	}
	txn := &cxkvpb.TxnRequest{}
	for i := range n {
		key := fmt.Sprintf("%s%03d", prefix, i)
		if i%2 == 0 {
			if r, err := kv.Put(ctx, &cxkvpb.PutRequest{Key: key, Value: []byte("v"), Session: id}); err != nil || !r.GetSuccessful() {
				t.Fatalf("attach %s: %v, %v", key, r, err)
			}
			continue
		}
		txn.Ops = append(txn.Ops, &cxkvpb.TxnOp{Type: cxkvpb.TxnOp_PUT, Key: key, Value: []byte("v"), Session: id})
	}
	r, err := kv.Txn(ctx, txn)
	if err != nil || !r.GetSuccessful() {
		t.Fatalf("attach by txn: %v, %v", r, err)
	}
	return r.GetIndex()
}

// The end of a session removes every key attached to it in one log entry,
// on every member: each member's watch delivers the session's expiry and
// all its keys' expiries at one index, in one response, and afterwards each
// member's own state holds none of them, while keys of another session and
// unattached keys stay.
func TestSessionExpiryDeletesAttachedKeysInOneEntryOnEveryMember(t *testing.T) {
	// The session's keys are attached by 21 writes: a leader change
	// among them refuses one, so elections wait out a loaded machine.
	c := raftnodetest.Start(t, 3, patientElections)
	lead := c.WaitLeader()
	kv := c.Client(lead)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()

	const n = 40
	openSession(t, kv, "long", time.Hour, "other/", 2)
	if _, err := kv.Put(ctx, &cxkvpb.PutRequest{Key: "att/plain", Value: []byte("stays")}); err != nil {
		t.Fatal(err)
	}
	st, err := kv.Status(ctx, &cxkvpb.StatusRequest{})
	if err != nil {
		t.Fatal(err)
	}
	from := st.GetHeader().GetAppliedIndex()
	// Watch on every member before the session exists, so each sees the
	// whole life of its keys from its own store.
	type batch struct {
		events []*cxkvpb.Event
		err    error
	}
	streams := make([]chan batch, 3)
	for m := range 3 {
		streams[m] = make(chan batch, 64)
		stream, err := c.Client(m).Watch(ctx, &cxkvpb.WatchRequest{Prefix: "", FromIndex: from})
		if err != nil {
			t.Fatal(err)
		}
		go func() {
			for {
				r, err := stream.Recv()
				if err != nil {
					streams[m] <- batch{err: err}
					return
				}
				if len(r.GetEvents()) > 0 {
					streams[m] <- batch{events: r.GetEvents()}
				}
			}
		}()
	}

	// The session lives while its keys are attached (20 writes, which a
	// loaded machine can take seconds over), then a renewal gives it a
	// short TTL: a renewal keeps what is attached.
	openSession(t, kv, "short", time.Hour, "att/", n)
	sk, err := kv.Get(ctx, &cxkvpb.GetRequest{Key: cxkvpb.SessionKey("short")})
	if err != nil {
		t.Fatal(err)
	}
	renew := &cxkvpb.PutRequest{Key: cxkvpb.SessionKey("short"), Value: []byte("owner"), TtlMs: 500, ExpectIndex: sk.GetRecord().GetIndex()}
	if r, err := kv.Put(ctx, renew); err != nil || !r.GetSuccessful() {
		t.Fatalf("renew session short with a short TTL: %v, %v", r, err)
	}

	for m := range 3 {
		var end []*cxkvpb.Event
		for end == nil {
			select {
			case b := <-streams[m]:
				if b.err != nil {
					t.Fatalf("member %d's watch: %v", m, b.err)
				}
				for i, e := range b.events {
					if e.GetType() == cxkvpb.Event_EXPIRE && e.GetRecord().GetKey() == cxkvpb.SessionKey("short") {
						end = b.events[i:]
					}
				}
			case <-ctx.Done():
				t.Fatalf("member %d: no expiry of the session seen", m)
			}
		}
		at := end[0].GetRecord().GetIndex()
		var gone []string
		for _, e := range end[1:] {
			if e.GetRecord().GetIndex() != at {
				break
			}
			if e.GetType() != cxkvpb.Event_EXPIRE || e.GetRecord().GetSession() != "short" {
				t.Fatalf("member %d: at the session's end, %v", m, e)
			}
			gone = append(gone, e.GetRecord().GetKey())
		}
		if len(gone) != n {
			t.Fatalf("member %d: the session's expiry at %d took %d keys with it in its response, want %d: %v", m, at, len(gone), n, gone)
		}
		for i, k := range gone {
			if want := fmt.Sprintf("att/%03d", i); k != want {
				t.Fatalf("member %d: key %d of the session's end is %s, want %s (key order)", m, i, k, want)
			}
		}
		raftnodetest.Eventually(t, 5*time.Second, "the member applied the end", func() bool {
			return c.Members[m].Status().Applied >= at
		})
		l, err := c.Client(m).List(ctx, &cxkvpb.ListRequest{Prefix: "att/", Serializable: true})
		if err != nil || len(l.GetRecords()) != 1 || l.GetRecords()[0].GetKey() != "att/plain" {
			t.Fatalf("member %d: att/ after the session's end: %v, %v; want only att/plain", m, l.GetRecords(), err)
		}
		ss, err := c.Client(m).Sessions(ctx, &cxkvpb.SessionsRequest{Serializable: true})
		if err != nil || len(ss.GetSessions()) != 1 || ss.GetSessions()[0].GetId() != "long" || ss.GetSessions()[0].GetAttachedKeys() != 2 {
			t.Fatalf("member %d: sessions after the end: %v, %v; want only long with 2 keys", m, ss.GetSessions(), err)
		}
	}
}

// Attaching to a session that does not exist fails with NotFound and
// writes nothing; force-closing a session (deleting its key at the index
// read) deletes its keys at once.
func TestSessionAttachToMissingAndForceClose(t *testing.T) {
	c := raftnodetest.Start(t, 3)
	kv := c.Client(c.WaitLeader())
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()

	_, err := kv.Put(ctx, &cxkvpb.PutRequest{Key: "k", Value: []byte("v"), Session: "nobody"})
	if status.Code(err) != codes.NotFound {
		t.Fatalf("put attached to a missing session: %v; want NotFound", err)
	}
	_, err = kv.Txn(ctx, &cxkvpb.TxnRequest{Ops: []*cxkvpb.TxnOp{
		{Type: cxkvpb.TxnOp_PUT, Key: "k1", Value: []byte("v")},
		{Type: cxkvpb.TxnOp_PUT, Key: "k2", Value: []byte("v"), Session: "nobody"},
	}})
	if status.Code(err) != codes.NotFound {
		t.Fatalf("txn attaching to a missing session: %v; want NotFound", err)
	}
	for _, k := range []string{"k", "k1", "k2"} {
		if get(t, kv, k, false).GetIndex() != 0 {
			t.Fatalf("%s was written by a refused write", k)
		}
	}

	openSession(t, kv, "victim", time.Hour, "held/", 6)
	s := get(t, kv, cxkvpb.SessionKey("victim"), false)
	d, err := kv.Delete(ctx, &cxkvpb.DeleteRequest{Key: cxkvpb.SessionKey("victim"), ExpectIndex: s.GetIndex()})
	if err != nil || !d.GetSuccessful() {
		t.Fatalf("force-close: %v, %v", d, err)
	}
	l, err := kv.List(ctx, &cxkvpb.ListRequest{Prefix: "held/"})
	if err != nil || len(l.GetRecords()) != 0 {
		t.Fatalf("held/ after the close: %v, %v; want none", l.GetRecords(), err)
	}
}

// Attachments are replicated state: a member that restarts, and one that
// catches up by snapshot, still know which keys belong to which session, so
// the session's end removes them there too.
func TestSessionAttachmentsSurviveRestartAndSnapshot(t *testing.T) {
	c := raftnodetest.Start(t, 3, func(cfg *raftnode.Config) { cfg.SnapshotEntries = 20; cfg.CatchUpEntries = 5 })
	lead := c.WaitLeader()
	lag := (lead + 1) % 3
	c.Stop(lag)
	kv := c.Client(lead)
	openSession(t, kv, "kept", time.Hour, "kept/", 50) // over 20 entries: the leader snapshots and compacts
	raftnodetest.Eventually(t, 5*time.Second, "leader compacts its log", func() bool {
		return c.Members[lead].Status().FirstIndex > 10
	})
	c.Restart(lag)
	restarted := (lead + 2) % 3
	c.Restart(restarted)
	lead = c.WaitLeader()
	kv = c.Client(lead)
	s := get(t, kv, cxkvpb.SessionKey("kept"), false)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	d, err := kv.Delete(ctx, &cxkvpb.DeleteRequest{Key: cxkvpb.SessionKey("kept"), ExpectIndex: s.GetIndex()})
	if err != nil || !d.GetSuccessful() {
		t.Fatalf("close: %v, %v", d, err)
	}
	for _, m := range []int{lag, restarted} {
		raftnodetest.Eventually(t, 10*time.Second, "the member applied the close", func() bool {
			return c.Members[m].Status().Applied >= d.GetIndex()
		})
		l, err := c.Client(m).List(ctx, &cxkvpb.ListRequest{Prefix: "kept/", Serializable: true})
		if err != nil || len(l.GetRecords()) != 0 {
			t.Fatalf("member %d (restarted or restored): kept/ after the close: %d keys, %v; want none", m, len(l.GetRecords()), err)
		}
	}
}
