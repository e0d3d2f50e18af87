package raftnode_test

import (
	"context"
	"testing"
	"time"

	"github.com/cxkv/cxkv/api/cxkvpb"
	"github.com/cxkv/cxkv/raftnode"
	"github.com/cxkv/cxkv/raftnode/raftnodetest"
)

// A leader's answers say it is in contact with a quorum (Header.
// quorum_contact) while it is, including while its disk takes a few
// hundred ms to sync a write and nothing applies; a follower's never do.
// A leader blocked in a sync for longer than an election timeout stops
// saying it within about an election timeout and a quarter (the loop waits
// out a sync after a quarter, waitOutStuckSync); one cut off from its
// peers, within about an election timeout.
// The SDK waits for a write's attempt on a member that says it (issue 17).
func TestLeaderReportsQuorumContact(t *testing.T) {
	if testing.Short() {
		t.Skip("blocks a leader's disk past an election timeout")
	}
	const electionTimeout = time.Second // 100 ticks of 10 ms
	net := raftnodetest.NewNet(1)
	disks := []*raftnodetest.Disk{raftnodetest.NewDisk(), raftnodetest.NewDisk(), raftnodetest.NewDisk()}
	ids := []uint64{1, 2, 3}
	c := raftnodetest.Start(t, 3, func(cfg *raftnode.Config) {
		cfg.FS = disks[cfg.ID-1].FS
		cfg.WrapTransport = net.Wrap(cfg.ID)
		cfg.ElectionTicks = 100
		cfg.HeartbeatTicks = 10
	})
	ctx := context.Background()
	header := func(i int) *cxkvpb.Header {
		ctx, cancel := context.WithTimeout(ctx, time.Second)
		defer cancel()
		resp, err := c.Client(i).Status(ctx, &cxkvpb.StatusRequest{})
		if err != nil {
			return nil
		}
		return resp.GetHeader()
	}
	contact := func(i int) bool { return header(i).GetQuorumContact() }
	// put writes through member i in the background; the returned channel
	// closes when the write is done, whatever its outcome.
	put := func(i int, key string) chan struct{} {
		done := make(chan struct{})
		go func() {
			defer close(done)
			ctx, cancel := context.WithTimeout(ctx, 10*time.Second)
			defer cancel()
			c.Client(i).Put(ctx, &cxkvpb.PutRequest{Key: key, Value: []byte("v")})
		}()
		return done
	}

	l := c.WaitLeader()
	raftnodetest.Eventually(t, 5*time.Second, "the leader says it is in contact with a quorum", func() bool { return contact(l) })
	for i := range c.Members {
		if i != l && contact(i) {
			t.Fatalf("follower m%d says it is in contact with a quorum", i+1)
		}
	}

	// A slow sync: its applied index stands, and it is working all the
	// same (the loop waits out the sync only after a quarter of an
	// election timeout, 250 ms, and then hears its peers again within
	// the timeout).
	disks[l].Slow(400 * time.Millisecond)
	done := put(l, "slow")
	time.Sleep(50 * time.Millisecond) // into the write's sync
	for end := time.Now().Add(300 * time.Millisecond); time.Now().Before(end); time.Sleep(20 * time.Millisecond) {
		if h := header(l); h.GetLeaderId() == h.GetMemberId() && !h.GetQuorumContact() {
			t.Fatalf("the leader, syncing a write for 400 ms, said it was out of contact (%v)", h)
		}
	}
	disks[l].Slow(0)
	<-done

	// A sync blocked past an election timeout: the loop waits it out
	// (waitOutStuckSync) and stops hearing its peers, and its answers say
	// so although its status still says it leads.
	disks[l].Slow(2 * electionTimeout)
	blocked := time.Now()
	done = put(l, "blocked")
	raftnodetest.Eventually(t, 2*electionTimeout, "the blocked leader stops saying it is in contact", func() bool { return !contact(l) })
	t.Logf("the blocked leader's answers said no contact %v after the write", time.Since(blocked))
	disks[l].Slow(0)
	<-done

	// Cut off from its peers.
	l = c.WaitLeader()
	raftnodetest.Eventually(t, 5*time.Second, "the leader says it is in contact with a quorum", func() bool { return contact(l) })
	net.Isolate(ids[l], ids)
	cut := time.Now()
	raftnodetest.Eventually(t, 2*electionTimeout, "the cut-off leader stops saying it is in contact", func() bool { return !contact(l) })
	t.Logf("the cut-off leader's answers said no contact %v after the cut", time.Since(cut))
	net.Heal()
}
