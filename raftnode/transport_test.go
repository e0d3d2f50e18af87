package raftnode_test

import (
	"bytes"
	"context"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/cxkv/cxkv/api/cxkvpb"
	"github.com/cxkv/cxkv/raftnode"
	"github.com/cxkv/cxkv/raftnode/raftnodetest"
)

// A follower that missed 40 writes of 1 MiB catches up from the log
// without a peer stream breaking: batches are bounded by bytes below what
// the receiver accepts. (With batches bounded by count, the leader sent all
// it had queued in one, 2.5 times the receiver's 16 MiB limit with these 40
// writes and ~100 MB with 100, the follower refused it, and the stream was
// reset again and again.)
func TestFollowerCatchesUpOnLargeWritesWithoutStreamReset(t *testing.T) {
	if testing.Short() {
		t.Skip("writes and replicates 120 MiB; runs without -short")
	}
	// 40 MiB through a loaded test machine: elections in a second, not
	// the harness's 100ms, so the test measures catch-up, not failovers.
	c := raftnodetest.Start(t, 3, func(cfg *raftnode.Config) { cfg.ElectionTicks = 100 })
	l := c.WaitLeader()
	f := (l + 1) % 3
	c.Stop(f)
	kv := c.Client(l)
	val := bytes.Repeat([]byte{'x'}, 1<<20)
	var wg sync.WaitGroup
	for w := range 8 { // eight writers share fsyncs: the test is about catch-up
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range 5 {
				ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
				_, err := kv.Put(ctx, &cxkvpb.PutRequest{Key: fmt.Sprintf("big/%d/%d", w, i), Value: val})
				cancel()
				if err != nil {
					t.Errorf("put %d/%d: %v", w, i, err)
					return
				}
			}
		}()
	}
	wg.Wait()
	if t.Failed() {
		t.FailNow()
	}
	resets := func() (n uint64) {
		for _, m := range c.Members {
			if m != nil {
				n += m.PeerStreamResets()
			}
		}
		return n
	}
	before := resets()
	start := time.Now()
	c.Restart(f)
	// A liveness bound only (the time is logged): a shared 2-core test
	// machine can be ten times slower than an idle one.
	raftnodetest.Eventually(t, 3*time.Minute, "the follower catches up", func() bool {
		return c.Members[f].Status().Applied >= c.Members[l].Status().Applied
	})
	t.Logf("the follower caught up on 40 MiB in %v", time.Since(start).Round(time.Millisecond))
	if n := resets() - before; n != 0 {
		t.Fatalf("%d peer streams broke while the follower caught up; want none", n)
	}
}

// A follower sends the other follower nothing while a leader lives, so its
// stream to that peer carries nothing for as long. A break of that stream
// (the peer restarted) must be noticed when it happens and the stream
// redialled, not found by the next message, which the broken stream loses:
// that message is the first pre-vote request or answer between the two
// survivors of the leader's death, and losing it made the election wait out
// another election timeout (seen in the lock-chaos benchmark: member 2
// granted member 3's pre-vote, its answer went down a stream to member 3
// that had broken when member 3 restarted 4 s before, and the cluster had
// no leader until member 2's own timeout, 0.3 s later).
func TestIdlePeerStreamRedialsWhenThePeerRestarts(t *testing.T) {
	// Elections of half a second or more: a loaded machine's pauses do not
	// set one off while the test waits on the streams.
	c := raftnodetest.Start(t, 3, func(cfg *raftnode.Config) { cfg.ElectionTicks = 50 })
	l := c.WaitLeader()
	a, b := (l+1)%3, (l+2)%3
	peerB := fmt.Sprintf("peer=%d", b+1)
	connected := func() float64 {
		return raftnodetest.Scrape(t, c.Members[a].Handler()).Value(t, "cxkv_peer_connected", peerB)
	}
	failed := func(from, to int) float64 {
		return raftnodetest.Scrape(t, c.Members[from].Handler()).Value(t, "cxkv_peer_messages_failed_total", fmt.Sprintf("peer=%d", to+1))
	}
	raftnodetest.Eventually(t, 10*time.Second, "follower A's stream to follower B is open", func() bool { return connected() == 1 })
	c.Stop(b)
	raftnodetest.Eventually(t, 10*time.Second, "follower A notices, sending nothing, that its stream to the stopped B broke", func() bool { return connected() == 0 })
	c.Revive(b)
	raftnodetest.Eventually(t, 10*time.Second, "follower A's stream to the restarted B is open again", func() bool { return connected() == 1 })
	raftnodetest.Eventually(t, 10*time.Second, "B follows the leader again", func() bool {
		return c.Members[b].Status().Leader == uint64(l+1)
	})

	lostAB, lostBA := failed(a, b), failed(b, a)
	c.Stop(l)
	leader := c.WaitLeader()
	if leader != a && leader != b {
		t.Fatalf("member %d leads after member %d stopped", leader+1, l+1)
	}
	if n := failed(a, b) - lostAB; n != 0 {
		t.Errorf("%v messages from A to B lost in the election after the leader stopped", n)
	}
	if n := failed(b, a) - lostBA; n != 0 {
		t.Errorf("%v messages from B to A lost in the election after the leader stopped", n)
	}
}
