package client_test

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/cxkv/cxkv/client"
	"github.com/cxkv/cxkv/raftnode"
	"google.golang.org/grpc"
)

// Values of the largest size work end to end on a live 3-member cluster:
// Put, Get, Txn (its answer lost once, the retry answered from the
// exactly-once table), List, Watch, a member catching up by log, then by
// snapshot, and every member restarting.
func TestMaxSizeValuesEndToEnd(t *testing.T) {
	if testing.Short() {
		t.Skip("writes and replicates over 40 MiB; runs without -short")
	}
	cl, _ := start(t, func(cfg *raftnode.Config) {
		// The watch below starts at the first put: the history (kept
		// CatchUpEntries behind a snapshot) must still hold it after the
		// cluster's own entries (bootstrap, the members' start records).
		cfg.SnapshotEntries, cfg.CatchUpEntries = 20, 15
		cfg.ElectionTicks = 50 // megabytes through a loaded test machine: no spurious elections
	})
	c := dialLarge(t, cl.Endpoints(), []grpc.DialOption{grpc.WithUnaryInterceptor(dropFirst("/cxkv.v1.KV/Txn"))})
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	want := map[string]byte{} // key -> tag of its value
	put := func(key string, tag byte) uint64 {
		t.Helper()
		res, err := c.Put(ctx, key, mib(tag), 0)
		if err != nil || !res.Successful {
			t.Fatalf("put %s: %+v, %v", key, res, err)
		}
		want[key] = tag
		return res.Record.Index
	}
	check := func(where string, get func(key string) (client.Record, error)) {
		t.Helper()
		for key, tag := range want {
			rec, err := get(key)
			if err != nil || len(rec.Value) != 1<<20 || rec.Value[0] != tag {
				t.Fatalf("%s: %s = %d bytes tagged %q, %v; want 1 MiB tagged %q", where, key, len(rec.Value), rec.Value[:min(1, len(rec.Value))], err, tag)
			}
		}
	}
	getVia := func(i int) func(string) (client.Record, error) {
		one := dialLarge(t, []string{cl.Endpoints()[i]}, nil)
		return func(key string) (client.Record, error) { return one.Get(ctx, key, client.Serializable()) }
	}

	first := put("v/0", 'a')
	for i := 1; i < 6; i++ {
		put(fmt.Sprintf("v/%d", i), byte('a'+i))
	}
	check("Get", func(key string) (client.Record, error) { return c.Get(ctx, key) })

	// The first answer is dropped after the cluster applied the Txn; the
	// retry must get the first result, not apply again (a second
	// application would fail its compare).
	tx, err := c.Txn(ctx, []client.Compare{client.Absent("t/a")},
		[]client.Op{client.PutOp("t/a", mib('T'), 0), client.PutOp("t/b", mib('U'), 0), client.GetOp("v/0")})
	if err != nil || !tx.Successful || len(tx.Results) != 3 || tx.Results[2].Value[0] != 'a' {
		t.Fatalf("Txn of 1 MiB values, retried = %+v, %v; want the first application's success", tx.Successful, err)
	}
	want["t/a"], want["t/b"] = 'T', 'U'
	if rec, _ := c.Get(ctx, "t/a"); rec.Index != tx.Index {
		t.Fatalf("t/a at index %d; the Txn said %d (applied twice?)", rec.Index, tx.Index)
	}

	listed := 0
	for rec, err := range c.List(ctx, "") {
		if err != nil {
			t.Fatalf("List: %v", err)
		}
		if tag, ok := want[rec.Key]; !ok || rec.Value[0] != tag || len(rec.Value) != 1<<20 {
			t.Fatalf("List: unexpected %s", rec.Key)
		}
		listed++
	}
	if listed != len(want) {
		t.Fatalf("List gave %d records, want %d", listed, len(want))
	}
	watched := 0
	for ev, err := range c.Watch(ctx, "", first-1) {
		if err != nil {
			t.Fatalf("Watch: %v", err)
		}
		if tag := want[ev.Record.Key]; ev.Record.Value[0] != tag {
			t.Fatalf("Watch: %s tagged %q, want %q", ev.Record.Key, ev.Record.Value[0], tag)
		}
		if watched++; watched == len(want) {
			break
		}
	}

	lagger := (cl.WaitLeader() + 1) % 3
	cl.Stop(lagger)
	for i := range 3 { // a few entries: caught up from the log
		put(fmt.Sprintf("log/%d", i), byte('0'+i))
	}
	cl.Restart(lagger)
	waitCaughtUp(t, cl, lagger, "catch-up by log")
	check("after catch-up by log", getVia(lagger))

	cl.Stop(lagger)
	for i := range 30 { // past SnapshotEntries: the log is compacted, a snapshot is needed
		put(fmt.Sprintf("snap/%02d", i), byte('A'+i))
	}
	cl.Restart(lagger)
	waitCaughtUp(t, cl, lagger, "catch-up by snapshot")
	check("after catch-up by snapshot", getVia(lagger))

	for i := range 3 {
		cl.Restart(i)
		cl.WaitLeader()
	}
	check("after every member restarted", func(key string) (client.Record, error) { return c.Get(ctx, key) })
	for i := range 3 {
		waitCaughtUp(t, cl, i, "member caught up after the restarts")
		check(fmt.Sprintf("member %d after the restarts", i+1), getVia(i))
	}
}
