package raftnode_test

import (
	"context"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/cxkv/cxkv/api/cxkvpb"
	"github.com/cxkv/cxkv/raftnode"
	"github.com/cxkv/cxkv/raftnode/raftnodetest"
)

// Issue 12, defect 7: a member whose data dir was wiped came back under its
// old id with no vote record, so it could vote twice in one term. Its first
// start from an empty dir must be refused once the cluster has seen it
// started, with the way to replace a member; the cluster keeps working.
func TestWipedMemberRefusesToRejoin(t *testing.T) {
	c := raftnodetest.Start(t, 3)
	waitAllStarted(t, c)
	lead := c.WaitLeader()
	put(t, c.Client(lead), "k", "v", 0)

	victim := (lead + 1) % 3
	cfg := c.Config(victim)
	c.Stop(victim)
	if err := os.RemoveAll(cfg.DataDir); err != nil {
		t.Fatal(err)
	}
	n, err := raftnode.Start(cfg)
	if err == nil {
		n.Stop()
		t.Fatalf("member %d started again from a wiped data dir under its old id; want a refusal", cfg.ID)
	}
	for _, want := range []string{"has run in cluster", "member add", "member remove"} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("refusal %q does not say %q", err, want)
		}
	}
	// The rest of the cluster still takes writes.
	put(t, c.Client(c.WaitLeader()), "k2", "v", 0)
}

// waitAllStarted waits until every member's start is in the replicated
// membership, as every member sees it.
func waitAllStarted(t *testing.T, c *raftnodetest.Cluster) {
	t.Helper()
	raftnodetest.Eventually(t, 10*time.Second, "every member recorded as started", func() bool {
		for i := range c.Members {
			ctx, cancel := context.WithTimeout(context.Background(), time.Second)
			resp, err := c.ClusterClient(i).MemberList(ctx, &cxkvpb.MemberListRequest{})
			cancel()
			if err != nil || len(resp.GetMembers()) != len(c.Members) {
				return false
			}
			for _, m := range resp.GetMembers() {
				if !m.GetMember().GetStarted() {
					return false
				}
			}
		}
		return true
	})
}
