package raftnode_test

import (
	"context"
	"fmt"
	"math/rand/v2"
	"slices"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/cxkv/cxkv/api/cxkvpb"
	"github.com/cxkv/cxkv/api/cxkvrpc"
	"github.com/cxkv/cxkv/raftnode/raftnodetest"
)

// watchLog is what a resuming watcher saw: every event as delivered, in
// order, duplicates included, and any broken promise of a progress notice.
type watchLog struct {
	mu     sync.Mutex
	events []*cxkvpb.Event
	broken []string
	last   uint64 // highest index delivered or promised by a progress notice
}

func (w *watchLog) snapshot() ([]*cxkvpb.Event, []string) {
	w.mu.Lock()
	defer w.mu.Unlock()
	return slices.Clone(w.events), slices.Clone(w.broken)
}

// watchResuming watches prefix from index from, as a client should: when a
// stream breaks it resumes on the next member from the last index it was
// told about (the last event, or the last progress notice). member records
// which member it is streaming from.
func watchResuming(ctx context.Context, kvs []cxkvrpc.KVClient, first int, prefix string, from uint64, member *atomic.Int32, w *watchLog) {
	m := first
	for ctx.Err() == nil {
		member.Store(int32(m))
		stream, err := kvs[m].Watch(ctx, &cxkvpb.WatchRequest{Prefix: prefix, FromIndex: from})
		for err == nil {
			var resp *cxkvpb.WatchResponse
			if resp, err = stream.Recv(); err != nil {
				break
			}
			w.mu.Lock()
			if len(resp.GetEvents()) == 0 {
				// A progress notice: nothing under the prefix up to here.
				if p := resp.GetHeader().GetAppliedIndex(); p > from {
					from = p
				}
			}
			for _, e := range resp.GetEvents() {
				idx := e.GetRecord().GetIndex()
				if idx <= from {
					w.broken = append(w.broken, fmt.Sprintf("event %s@%d from member %d after the stream had reached %d", e.GetRecord().GetKey(), idx, m+1, from))
				}
				w.events = append(w.events, e)
				from = max(from, idx)
			}
			w.last = from
			w.mu.Unlock()
		}
		if ctx.Err() != nil {
			return
		}
		m = (m + 1) % len(kvs)
		time.Sleep(10 * time.Millisecond) // paces reconnection while a member is down
	}
}

// A watcher that resumes on another member from the last index it saw gets
// every event exactly once, in index order, while writers put keys and the
// leader, and the member the watcher streams from, stop and restart.
func TestWatchExactlyOnceAcrossLeaderChange(t *testing.T) {
	c := raftnodetest.Start(t, 3)
	kvs := make([]cxkvrpc.KVClient, len(c.Members))
	for i := range kvs {
		kvs[i] = c.Client(i)
	}
	lead := c.WaitLeader()
	from := put(t, kvs[lead], "watch-start", "x", 0).GetRecord().GetIndex()

	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	var (
		w        watchLog
		watching atomic.Int32
		watchWG  sync.WaitGroup
	)
	watchWG.Add(1)
	go func() {
		defer watchWG.Done()
		watchResuming(ctx, kvs, (lead+1)%3, "w/", from, &watching, &w)
	}()

	// Writers create keys under w/ (watched) and o/ (not watched: progress
	// notices), each key once, through random members.
	type write struct {
		key   string
		index uint64 // 0: the call failed, the write may or may not be there
	}
	var (
		wmu    sync.Mutex
		writes []write
		stop   atomic.Bool
		down   [3]atomic.Bool // members the fault schedule has stopped
		wg     sync.WaitGroup
	)
	for wr := 0; wr < 4; wr++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for n := 0; !stop.Load(); n++ {
				key := fmt.Sprintf("w/%d/%d", wr, n)
				if n%3 == 0 {
					key = fmt.Sprintf("o/%d/%d", wr, n)
				}
				rctx, rcancel := context.WithTimeout(ctx, time.Second)
				m := rand.IntN(len(kvs))
				for down[m].Load() { // calls to a stopped member only add failed calls
					m = (m + 1) % len(kvs)
				}
				r, err := kvs[m].Put(rctx, &cxkvpb.PutRequest{Key: key, Value: []byte(key)})
				rcancel()
				if err != nil {
					time.Sleep(10 * time.Millisecond) // paces retries while there is no leader
				}
				if key[0] != 'w' {
					continue
				}
				done := write{key: key}
				if err == nil {
					if !r.GetSuccessful() {
						t.Errorf("create of fresh key %s failed: %v", key, r)
					}
					done.index = r.GetRecord().GetIndex()
				}
				wmu.Lock()
				writes = append(writes, done)
				wmu.Unlock()
			}
		}()
	}

	pace, downFor := 600*time.Millisecond, 500*time.Millisecond
	faults := []string{"leader", "watched", "leader"}
	if testing.Short() {
		pace, downFor, faults = 400*time.Millisecond, 300*time.Millisecond, []string{"leader", "watched"}
	}
	for _, f := range faults {
		time.Sleep(pace)
		victim := c.WaitLeader()
		if f == "watched" {
			victim = int(watching.Load())
		}
		t.Logf("stop member %d (%s)", victim+1, f)
		bounce(c, victim, downFor, down[:])
	}
	time.Sleep(pace)
	stop.Store(true)
	wg.Wait()

	// A last write, and the watcher must get to it.
	var end uint64
	raftnodetest.Eventually(t, 10*time.Second, "a write after the faults", func() bool {
		rctx, rcancel := context.WithTimeout(ctx, time.Second)
		defer rcancel()
		r, err := kvs[c.WaitLeader()].Put(rctx, &cxkvpb.PutRequest{Key: "w/end", Value: []byte("w/end")})
		if err == nil {
			end = r.GetRecord().GetIndex()
		}
		return err == nil
	})
	writes = append(writes, write{key: "w/end", index: end})
	raftnodetest.Eventually(t, 10*time.Second, "the watcher reaches the last write", func() bool {
		w.mu.Lock()
		defer w.mu.Unlock()
		return w.last >= end
	})
	cancel()
	watchWG.Wait()

	// What is there (one linearizable List): every write that succeeded, at
	// the index it returned, and every write whose call failed but that was
	// applied.
	there := map[string]uint64{}
	for after, more := "", true; more; {
		rctx, rcancel := context.WithTimeout(context.Background(), 5*time.Second)
		r, err := kvs[c.WaitLeader()].List(rctx, &cxkvpb.ListRequest{Prefix: "w/", After: after, Limit: 1000})
		rcancel()
		if err != nil {
			t.Fatalf("list: %v", err)
		}
		for _, rec := range r.GetRecords() {
			there[rec.GetKey()] = rec.GetIndex()
			after = rec.GetKey()
		}
		more = r.GetMore()
	}
	want := map[uint64]string{}
	acked := 0
	for _, wr := range writes {
		if wr.index == 0 {
			continue
		}
		acked++
		if there[wr.key] != wr.index {
			t.Fatalf("%s: index %d, but its put returned %d", wr.key, there[wr.key], wr.index)
		}
	}
	for k, idx := range there {
		want[idx] = k
	}
	unknown := len(there) - acked
	wantIdx := make([]uint64, 0, len(want))
	for idx := range want {
		wantIdx = append(wantIdx, idx)
	}
	slices.Sort(wantIdx)

	events, broken := w.snapshot()
	for _, b := range broken {
		t.Error(b)
	}
	var got []uint64
	for _, e := range events {
		idx := e.GetRecord().GetIndex()
		if idx > end {
			break
		}
		got = append(got, idx)
		if k, ok := want[idx]; ok && (k != e.GetRecord().GetKey() || e.GetType() != cxkvpb.Event_PUT) {
			t.Errorf("event at %d is %v %s, want the put of %s", idx, e.GetType(), e.GetRecord().GetKey(), k)
		}
	}
	t.Logf("%d writes acknowledged, %d applied without an answer, %d failed; watcher got %d events", acked, unknown, len(writes)-acked-unknown, len(got))
	if !slices.Equal(got, wantIdx) {
		i := 0
		for i < min(len(got), len(wantIdx)) && got[i] == wantIdx[i] {
			i++
		}
		t.Fatalf("watcher's events differ from the writes at position %d:\n got  %v\n want %v",
			i, got[i:min(len(got), i+10)], wantIdx[i:min(len(wantIdx), i+10)])
	}
}

// A progress notice promises that there are no events under the prefix up
// to its AppliedIndex. Each round writes the first key under a fresh prefix
// and, while that write is in flight, opens a watch on the prefix from
// before a long stretch of history with nothing under it, so the member
// scans the stretch (taking a while) and sends a notice while the write
// commits. The key's event must never arrive after a notice that covered its
// index: a client resuming from that notice would miss the event.
func TestWatchProgressNoticeCoversOnlyWhatWasScanned(t *testing.T) {
	c := raftnodetest.Start(t, 1)
	kv := c.Client(0)
	from := put(t, kv, "x/start", "x", 0).GetRecord().GetIndex()
	// The stretch: 5000 events in 40 transactions of 125 puts.
	for n := 0; n < 40; n++ {
		txn := &cxkvpb.TxnRequest{}
		for k := 0; k < 125; k++ {
			txn.Ops = append(txn.Ops, &cxkvpb.TxnOp{Type: cxkvpb.TxnOp_PUT, Key: fmt.Sprintf("x/%d/%d", n, k), Value: []byte("x")})
		}
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		r, err := kv.Txn(ctx, txn)
		cancel()
		if err != nil || !r.GetSuccessful() {
			t.Fatalf("txn: %v %v", r, err)
		}
	}
	// How long a write takes: the watch opens at a random point of it.
	t0 := time.Now()
	put(t, kv, "x/timing", "x", 0)
	putTook := time.Since(t0)
	rounds, raced := 100, 0
	if testing.Short() {
		rounds = 50
	}
	r := 0
	for ; r < rounds && !t.Failed(); r++ {
		if watchRaceRound(t, kv, fmt.Sprintf("p%d/", r), from, putTook) {
			raced++
		}
	}
	t.Logf("writes took %v; in %d of %d rounds a progress notice came before the event", putTook, raced, r)
}

// watchRaceRound reports whether a progress notice came before the event.
func watchRaceRound(t *testing.T, kv cxkvrpc.KVClient, prefix string, from uint64, putTook time.Duration) bool {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	written := make(chan uint64, 1)
	go func() {
		resp, err := kv.Put(ctx, &cxkvpb.PutRequest{Key: prefix + "k", Value: []byte("v")})
		if err != nil {
			resp = nil
		}
		written <- resp.GetRecord().GetIndex()
	}()
	defer func() { <-written }() // no goroutine outlives the round
	time.Sleep(rand.N(putTook))  // opens the watch at a random point of the write
	stream, err := kv.Watch(ctx, &cxkvpb.WatchRequest{Prefix: prefix, FromIndex: from})
	if err != nil {
		t.Errorf("%s: watch: %v", prefix, err)
		return false
	}
	var promised uint64
	for {
		resp, err := stream.Recv()
		if err != nil {
			t.Errorf("%s: %v", prefix, err)
			return false
		}
		if len(resp.GetEvents()) == 0 {
			promised = resp.GetHeader().GetAppliedIndex()
			continue
		}
		if idx := resp.GetEvents()[0].GetRecord().GetIndex(); promised >= idx {
			t.Errorf("a progress notice promised no events under %q up to %d, then the event at %d arrived", prefix, promised, idx)
		}
		return promised != 0
	}
}
