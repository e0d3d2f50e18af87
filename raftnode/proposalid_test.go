package raftnode_test

import (
	"context"
	"testing"
	"time"

	"github.com/cxkv/cxkv/api/cxkvpb"
	"github.com/cxkv/cxkv/raftnode"
	"github.com/cxkv/cxkv/raftnode/raftnodetest"
)

// Proposal ids restarted at the same value on every start, so an entry a
// member proposed before a restart, applied after it, handed its result to
// the new waiter with the same id: a wrong answer (or, for a write of
// another kind, a nil dereference in the service).
//
// Five members with long election timeouts; two are stopped for good. The
// third is stopped too, leaving the leader and member m without a quorum
// (the leader keeps leading for an election timeout): m proposes "old",
// which reaches both logs but cannot commit. m restarts, learns the leader,
// and proposes "new", which cannot commit either. The third member returns;
// both entries commit, "old" first. The answer to "new" must be its own.
func TestProposalIDsAreUniqueAcrossRestarts(t *testing.T) {
	c := raftnodetest.Start(t, 5, func(cfg *raftnode.Config) { cfg.ElectionTicks = 300 })
	lead := c.WaitLeader()
	var others []int
	for i := range c.Members {
		if i != lead {
			others = append(others, i)
		}
	}
	m, third := others[0], others[1]
	c.Stop(others[2])
	c.Stop(others[3])
	c.Stop(third)
	leader := c.Members[lead]

	// "old": proposed by m, in the leader's log, not committed.
	last := leader.Status().LastIndex
	ctx, cancel := context.WithTimeout(context.Background(), 300*time.Millisecond)
	_, err := c.Client(m).Put(ctx, &cxkvpb.PutRequest{Key: "old", Value: []byte("old")})
	cancel()
	if err == nil {
		t.Fatal("a write committed without a quorum")
	}
	raftnodetest.Eventually(t, 5*time.Second, `"old" in the leader's log`, func() bool { return leader.Status().LastIndex > last })

	c.Restart(m)
	raftnodetest.Eventually(t, 5*time.Second, "m learns the leader", func() bool { return c.Members[m].Status().Leader == uint64(lead+1) })

	// "new": proposed by m's new incarnation, waiting in the leader's log.
	last = leader.Status().LastIndex
	type answer struct {
		r   *cxkvpb.PutResponse
		err error
	}
	done := make(chan answer, 1)
	go func() {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		r, err := c.Client(m).Put(ctx, &cxkvpb.PutRequest{Key: "new", Value: []byte("new")})
		done <- answer{r, err}
	}()
	raftnodetest.Eventually(t, 5*time.Second, `"new" in the leader's log`, func() bool { return leader.Status().LastIndex > last })
	if st := leader.Status(); st.Role != "leader" {
		t.Fatalf("the leader stepped down (%s) before the quorum returned; the scenario needs it to lead throughout", st.Role)
	}

	c.Restart(third)
	a := <-done
	if a.err != nil {
		t.Fatalf("put new: %v", a.err)
	}
	if got := a.r.GetRecord().GetKey(); got != "new" || !a.r.GetSuccessful() {
		t.Fatalf(`put "new" was answered with the record of %q (successful=%v): another entry's result`, got, a.r.GetSuccessful())
	}
}
