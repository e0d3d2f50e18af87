package raftnode_test

import (
	"context"
	"fmt"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/cxkv/cxkv/api/cxkvpb"
	"github.com/cxkv/cxkv/api/cxkvrpc"
	"github.com/cxkv/cxkv/cmpxchg/cmpxchgtest"
	"github.com/cxkv/cxkv/raftnode"
	"github.com/cxkv/cxkv/raftnode/raftnodetest"
	"go.uber.org/goleak"
)

// abandoned ignores the goroutines that tests leave running on purpose: a
// store that failed on one of Pebble's own goroutines cannot be closed
// (kv.Store.Close leaves it to the process's exit), so its goroutines live
// on. Only abandon does that, and only after checking that nothing else
// was running.
var abandoned []goleak.Option

// abandon ignores, at the end, every goroutine running now. Call it from
// a test that is not parallel, after its members stopped; it fails the
// test if goroutines of an earlier test were still running when it
// started (before).
func abandon(t *testing.T, before error) {
	t.Helper()
	if before != nil {
		t.Fatalf("goroutines of earlier tests still running: %v", before)
	}
	abandoned = append(abandoned, goleak.IgnoreCurrent())
}

func TestMain(m *testing.M) {
	code := m.Run()
	if code == 0 {
		if err := goleak.Find(abandoned...); err != nil {
			fmt.Fprintf(os.Stderr, "goleak: errors on a successful test run: %v\n", err)
			code = 1
		}
	}
	os.Exit(code)
}

// clusterTarget sends each request to the next member in turn, so the
// scripts exercise forwarding and ReadIndex on followers too.
type clusterTarget struct {
	c    *raftnodetest.Cluster
	next int
}

func (t *clusterTarget) kv() cxkvrpc.KVClient {
	t.next++
	return t.c.Client(t.next % len(t.c.Members))
}

func (t *clusterTarget) Get(ctx context.Context, r *cxkvpb.GetRequest) (*cxkvpb.GetResponse, error) {
	return t.kv().Get(ctx, r)
}
func (t *clusterTarget) Put(ctx context.Context, r *cxkvpb.PutRequest) (*cxkvpb.PutResponse, error) {
	return t.kv().Put(ctx, r)
}
func (t *clusterTarget) Delete(ctx context.Context, r *cxkvpb.DeleteRequest) (*cxkvpb.DeleteResponse, error) {
	return t.kv().Delete(ctx, r)
}
func (t *clusterTarget) List(ctx context.Context, r *cxkvpb.ListRequest) (*cxkvpb.ListResponse, error) {
	return t.kv().List(ctx, r)
}
func (t *clusterTarget) Txn(ctx context.Context, r *cxkvpb.TxnRequest) (*cxkvpb.TxnResponse, error) {
	return t.kv().Txn(ctx, r)
}
func (t *clusterTarget) Sessions(ctx context.Context, r *cxkvpb.SessionsRequest) (*cxkvpb.SessionsResponse, error) {
	return t.kv().Sessions(ctx, r)
}

func TestScriptsOnLiveCluster(t *testing.T) {
	if testing.Short() {
		t.Skip("the race pass (-short) runs these scripts through the same handlers and interceptors in TestScriptsOverCallsStream; runs without -short")
	}
	// The scripts assume one leader throughout; with the race pass beside
	// this one (make test runs them side by side) a Ready loop can stall
	// past the harness's 100 ms elections, as under the race detector.
	cmpxchgtest.RunScripts(t, "../testdata/cmpxchg", func(t *testing.T) cmpxchgtest.Target {
		return &clusterTarget{c: raftnodetest.Start(t, 3, patientElections)}
	})
}

func put(t *testing.T, kv cxkvrpc.KVClient, key, value string, expect uint64) *cxkvpb.PutResponse {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	r, err := kv.Put(ctx, &cxkvpb.PutRequest{Key: key, Value: []byte(value), ExpectIndex: expect})
	if err != nil {
		t.Fatalf("put %s: %v", key, err)
	}
	return r
}

func get(t *testing.T, kv cxkvrpc.KVClient, key string, serializable bool) *cxkvpb.Record {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	r, err := kv.Get(ctx, &cxkvpb.GetRequest{Key: key, Serializable: serializable})
	if err != nil {
		t.Fatalf("get %s: %v", key, err)
	}
	return r.GetRecord()
}

// Writes through every member; the leader stops; a new leader serves writes
// and every acknowledged write is still there with its index; the old leader
// restarts from its data dir and catches up.
func TestFailoverKeepsAcknowledgedWrites(t *testing.T) {
	c := raftnodetest.Start(t, 3)
	acked := map[string]uint64{}
	for i := 0; i < 30; i++ {
		k := fmt.Sprintf("k%d", i)
		acked[k] = put(t, c.Client(i%3), k, k, 0).GetRecord().GetIndex()
	}
	lead := c.WaitLeader()
	c.Stop(lead)
	start := time.Now()
	other := (lead + 1) % 3
	newLead := c.WaitLeader()
	if newLead == lead {
		t.Fatal("stopped member still leader")
	}
	acked["after"] = put(t, c.Client(other), "after", "x", 0).GetRecord().GetIndex()
	t.Logf("new leader serving writes %v after the old one stopped", time.Since(start))
	for k, idx := range acked {
		if got := get(t, c.Client(other), k, false); got.GetIndex() != idx {
			t.Fatalf("%s: index %d after failover, acknowledged %d", k, got.GetIndex(), idx)
		}
	}
	c.Restart(lead)
	raftnodetest.Eventually(t, 10*time.Second, "restarted member catches up", func() bool {
		return c.Members[lead].Status().Applied >= acked["after"]
	})
	for k, idx := range acked {
		if got := get(t, c.Client(lead), k, true); got.GetIndex() != idx {
			t.Fatalf("restarted member: %s index %d, want %d", k, got.GetIndex(), idx)
		}
	}
}

// A member far behind a compacted log catches up by snapshot.
func TestSnapshotCatchUp(t *testing.T) {
	c := raftnodetest.Start(t, 3, func(cfg *raftnode.Config) { cfg.SnapshotEntries = 20; cfg.CatchUpEntries = 5 })
	lead := c.WaitLeader()
	lag := (lead + 1) % 3
	c.Stop(lag)
	var last uint64
	for i := 0; i < 100; i++ {
		last = put(t, c.Client(lead), fmt.Sprintf("s%d", i), "v", 0).GetRecord().GetIndex()
	}
	raftnodetest.Eventually(t, 5*time.Second, "leader compacts its log", func() bool {
		return c.Members[lead].Status().FirstIndex > 10
	})
	c.Restart(lag)
	raftnodetest.Eventually(t, 10*time.Second, "lagging member restores a snapshot", func() bool {
		return c.Members[lag].Status().Applied >= last
	})
	if got := get(t, c.Client(lag), "s0", true); got.GetIndex() == 0 {
		t.Fatal("snapshot did not carry s0")
	}
}

// A member that keeps running while it lags installs a snapshot in place
// of its state, so the floors its scans left (kv/floors.go) describe a state
// it no longer holds. Here its floor of a queue sits at the queue's end (its
// Apply's HEAD and its List found it empty); while it is cut off, an entry
// is created below that floor and the log is compacted past it. Once the
// member has installed the leader's snapshot, its List of the queue and its
// Apply's HEAD (checked under -race, where a scan that would start above a
// live record panics) must see the entry.
func TestSnapshotInstallForgetsTheFloors(t *testing.T) {
	fnet := raftnodetest.NewNet(1)
	c := raftnodetest.Start(t, 3, func(cfg *raftnode.Config) {
		cfg.SnapshotEntries, cfg.CatchUpEntries = 20, 5
		cfg.WrapTransport = fnet.Wrap(cfg.ID)
	})
	lead := c.WaitLeader()
	lag := (lead + 1) % 3
	const queue = "jobs/.lock/"
	txn := func(ops ...*cxkvpb.TxnOp) *cxkvpb.TxnResponse {
		t.Helper()
		r, err := c.Client(lead).Txn(ctxFor(t, 5*time.Second), &cxkvpb.TxnRequest{Ops: ops})
		if err != nil {
			t.Fatal(err)
		}
		return r
	}
	head := &cxkvpb.TxnOp{Type: cxkvpb.TxnOp_HEAD, Key: queue}
	list := func() []*cxkvpb.Record {
		t.Helper()
		r, err := c.Client(lag).List(ctxFor(t, 5*time.Second), &cxkvpb.ListRequest{Prefix: queue, Serializable: true})
		if err != nil {
			t.Fatal(err)
		}
		return r.GetRecords()
	}
	// An entry comes and goes: every member's HEAD, then the lagging
	// member's List, find the queue empty and raise its floor to the end.
	txn(&cxkvpb.TxnOp{Type: cxkvpb.TxnOp_PUT, Key: queue + "5", Value: []byte("a")}, head)
	last := txn(&cxkvpb.TxnOp{Type: cxkvpb.TxnOp_DELETE, Key: queue + "5"}, head).GetIndex()
	raftnodetest.Eventually(t, 5*time.Second, "the lagging member applies the release", func() bool {
		return c.Members[lag].Status().Applied >= last
	})
	if got := list(); len(got) != 0 {
		t.Fatalf("queue on the lagging member: %v, want it empty", got)
	}

	ids := []uint64{1, 2, 3}
	fnet.Isolate(uint64(lag+1), ids)
	entry := txn(&cxkvpb.TxnOp{Type: cxkvpb.TxnOp_PUT, Key: queue + "1", Value: []byte("b")}, head)
	for i := 0; i < 60; i++ {
		put(t, c.Client(lead), fmt.Sprintf("fill/%d", i), "v", 0)
	}
	last = c.Members[lead].Status().Applied
	raftnodetest.Eventually(t, 5*time.Second, "leader compacts its log past the entry", func() bool {
		return c.Members[lead].Status().FirstIndex > entry.GetIndex()
	})
	fnet.Heal()
	raftnodetest.Eventually(t, 10*time.Second, "lagging member installs a snapshot", func() bool {
		return c.Members[lag].Status().Applied >= last
	})
	m := raftnodetest.Scrape(t, c.Members[lag].Handler())
	if m.Value(t, "cxkv_snapshots_total", "op=installed", "result=ok") < 1 {
		t.Fatal("the member caught up without installing a snapshot")
	}
	if got := list(); len(got) != 1 || got[0].GetKey() != queue+"1" {
		t.Fatalf("queue on the member that installed the snapshot: %v, want %s1", got, queue)
	}
	// Its Apply's HEAD: the same answer as the leader's (under -race a
	// hidden entry panics the member).
	res := txn(head)
	if r := res.GetResults()[0]; !r.GetFound() || r.GetRecord().GetKey() != queue+"1" {
		t.Fatalf("HEAD %s = %v, want %s1", queue, r, queue)
	}
	raftnodetest.Eventually(t, 5*time.Second, "the member applies the HEAD", func() bool {
		return c.Members[lag].Status().Applied >= res.GetIndex()
	})
}

// Concurrent proposals share fsyncs: the point of the Ready loop.
func TestConcurrentWritesShareFsyncs(t *testing.T) {
	// 200 writes at once stall a loaded machine's Ready loop past the
	// harness's 100 ms election timeout; a leader change drops them.
	c := raftnodetest.Start(t, 3, patientElections)
	lead := c.WaitLeader()
	syncs0, _ := c.Members[lead].Metrics()
	const n = 200
	errs := make(chan error, n)
	for i := 0; i < n; i++ {
		go func() {
			ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
			defer cancel()
			_, err := c.Client(lead).Put(ctx, &cxkvpb.PutRequest{Key: fmt.Sprintf("b%d", i), Value: []byte("v")})
			errs <- err
		}()
	}
	for i := 0; i < n; i++ {
		if err := <-errs; err != nil {
			t.Fatal(err)
		}
	}
	syncs1, _ := c.Members[lead].Metrics()
	if d := syncs1 - syncs0; d >= n/2 {
		t.Fatalf("%d concurrent writes took %d fsyncs on the leader; batching is not working", n, d)
	} else {
		t.Logf("%d concurrent writes, %d leader fsyncs", n, d)
	}
}

func TestDataDirOfAnotherMemberIsRefused(t *testing.T) {
	dir := t.TempDir()
	n, err := raftnode.Start(raftnode.Config{ID: 1, Addr: "127.0.0.1:0", DataDir: dir})
	if err != nil {
		t.Fatal(err)
	}
	n.Stop()
	_, err = raftnode.Start(raftnode.Config{ID: 2, Addr: "127.0.0.1:0", DataDir: dir, Peers: map[uint64]string{2: "127.0.0.1:0"}})
	if err == nil {
		t.Fatal("member 2 opened member 1's data dir")
	}
	t.Log(err)
	n, err = raftnode.Start(raftnode.Config{ID: 1, Addr: "127.0.0.1:0", DataDir: dir})
	if err != nil {
		t.Fatalf("the owner cannot reopen its data dir after a refused open: %v", err)
	}
	n.Stop()
}

// A member far behind catches up by a snapshot of several MiB, streamed in
// many chunks, staged on its disk and installed: it then holds every key,
// value and index the leader has.
func TestFollowerCatchesUpByStreamedSnapshot(t *testing.T) {
	c := raftnodetest.Start(t, 3, patientElections, func(cfg *raftnode.Config) { cfg.SnapshotEntries = 20; cfg.CatchUpEntries = 5 })
	lead := c.WaitLeader()
	lag := (lead + 1) % 3
	c.Stop(lag)
	value := strings.Repeat("x", 100<<10)
	want := map[string]uint64{}
	for i := 0; i < 60; i++ { // 6 MiB: about 24 chunks
		k := fmt.Sprintf("big/%02d", i)
		want[k] = put(t, c.Client(lead), k, value, 0).GetRecord().GetIndex()
	}
	last := c.Members[lead].Status().Applied
	raftnodetest.Eventually(t, 5*time.Second, "leader compacts its log", func() bool {
		return c.Members[lead].Status().FirstIndex > 10
	})
	c.Restart(lag)
	raftnodetest.Eventually(t, time.Minute, "lagging member restores the snapshot", func() bool {
		return c.Members[lag].Status().Applied >= last
	})
	m := raftnodetest.Scrape(t, c.Members[lag].Handler())
	if m.Value(t, "cxkv_snapshots_total", "op=installed", "result=ok") < 1 {
		t.Fatal("the member caught up without installing a snapshot")
	}
	for k, idx := range want {
		got := get(t, c.Client(lag), k, true)
		if got.GetIndex() != idx || string(got.GetValue()) != value {
			t.Fatalf("%s on the restored member: index %d, %d bytes; want %d, %d bytes", k, got.GetIndex(), len(got.GetValue()), idx, len(value))
		}
	}
}
