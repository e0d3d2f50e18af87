package raftnode_test

import (
	"context"
	"sync"
	"testing"
	"time"

	"github.com/cxkv/cxkv/api/cxkvpb"
	"github.com/cxkv/cxkv/raftnode"
	"github.com/cxkv/cxkv/raftnode/raftnodetest"
	"github.com/jonboulle/clockwork"
)

// stepClock is the real clock, except for the member's Ready-loop ticks (its
// ticker of period TickInterval): they come at the real pace until manual is
// called, then only from tick, one at a time, each handed over when the
// member takes it. So a test knows exactly how many ticks a member got.
type stepClock struct {
	clockwork.Clock
	period   time.Duration
	ticks    chan time.Time
	stopAuto chan struct{}
	autoDone chan struct{}
	once     sync.Once
}

func newStepClock(period time.Duration) *stepClock {
	c := &stepClock{Clock: clockwork.NewRealClock(), period: period, ticks: make(chan time.Time),
		stopAuto: make(chan struct{}), autoDone: make(chan struct{})}
	go c.auto()
	return c
}

func (c *stepClock) auto() {
	defer close(c.autoDone)
	t := time.NewTicker(c.period)
	defer t.Stop()
	for {
		select {
		case <-c.stopAuto:
			return
		case now := <-t.C:
			select {
			case c.ticks <- now:
			case <-c.stopAuto:
				return
			}
		}
	}
}

// manual ends the ticks at the real pace.
func (c *stepClock) manual() {
	c.once.Do(func() { close(c.stopAuto) })
	<-c.autoDone
}

// tick hands the member one tick.
func (c *stepClock) tick(t testing.TB) {
	t.Helper()
	select {
	case c.ticks <- time.Now():
	case <-time.After(10 * time.Second):
		t.Fatal("the member took no tick for 10s")
	}
}

func (c *stepClock) NewTicker(d time.Duration) clockwork.Ticker {
	if d != c.period {
		return c.Clock.NewTicker(d)
	}
	return stepTicker{c.ticks}
}

type stepTicker struct{ ch <-chan time.Time }

func (k stepTicker) Chan() <-chan time.Time { return k.ch }
func (k stepTicker) Reset(time.Duration)    {}
func (k stepTicker) Stop()                  {}

const deadLeaderMetric = "cxkv_dead_leader_detections_total"

func deadLeaderDetections(t testing.TB, n *raftnode.Node) float64 {
	v, _ := raftnodetest.Scrape(t, n.Handler()).Lookup(deadLeaderMetric)
	return v
}

// A follower whose leader's process dies learns it from its transport (its
// stream to the leader broke and reconnecting is refused: nothing listens
// on the leader's port) and advances its election clock to the end of the
// timeout: it grants the other survivor's pre-vote at once, and campaigns
// itself after what is left of its randomised timeout. So the survivors
// elect a leader with fewer ticks than one election timeout. Without it a
// follower neither campaigns nor grants a pre-vote (check-quorum's lease)
// before a whole election timeout of ticks since it last heard from the
// leader, and the survivors get fewer here.
//
// The ticks are the test's (stepClock). Only one survivor is ticked, and
// only once both have seen the death, so the two cannot campaign on the
// same tick and split the vote; they could both campaign the moment they
// see it if raft drew each the shortest timeout, one chance in
// electionTicks², 1 in 10,000 here.
func TestDeadLeaderReplacedWithinElectionTimeout(t *testing.T) {
	const (
		tick          = 10 * time.Millisecond
		electionTicks = 100
	)
	clocks := map[uint64]*stepClock{}
	for id := uint64(1); id <= 3; id++ {
		clocks[id] = newStepClock(tick)
		t.Cleanup(clocks[id].manual) // after the members stop (cleanups run last first)
	}
	c := raftnodetest.Start(t, 3, func(cfg *raftnode.Config) {
		cfg.TickInterval = tick
		cfg.ElectionTicks = electionTicks
		cfg.Clock = clocks[cfg.ID]
	})
	leader := c.WaitLeader()
	lid := uint64(leader + 1)
	var survivors []int
	for i := range c.Members {
		if i != leader {
			survivors = append(survivors, i)
		}
	}
	raftnodetest.Eventually(t, 10*time.Second, "both followers follow the leader", func() bool {
		return c.Members[survivors[0]].Status().Leader == lid && c.Members[survivors[1]].Status().Leader == lid
	})
	for _, clk := range clocks {
		clk.manual()
	}
	term := c.Members[leader].Status().Term

	c.Stop(leader)
	// Not fatal: on failure, what follows shows the election it costs.
	if !raftnodetest.Within(10*time.Second, func() bool {
		return deadLeaderDetections(t, c.Members[survivors[0]]) == 1 && deadLeaderDetections(t, c.Members[survivors[1]]) == 1
	}) {
		t.Errorf("within 10s of the leader's stop, the survivors did not both learn from their transports that it is gone (%s: %v and %v)",
			deadLeaderMetric, deadLeaderDetections(t, c.Members[survivors[0]]), deadLeaderDetections(t, c.Members[survivors[1]]))
	}
	ticked, idle := survivors[0], survivors[1]
	for range electionTicks - 1 {
		clocks[uint64(ticked+1)].tick(t)
	}
	// No more ticks: the pre-vote and vote rounds are messages.
	var elected int
	if !raftnodetest.Within(10*time.Second, func() bool {
		for _, i := range survivors {
			other := survivors[0] + survivors[1] - i
			if c.Members[i].Status().Role == "leader" && c.Members[other].Status().Leader == uint64(i+1) {
				elected = i
				return true
			}
		}
		return false
	}) {
		t.Fatalf("no leader among the survivors after %d ticks of member %d and none of member %d (election timeout %d ticks); their status: %+v, %+v",
			electionTicks-1, ticked+1, idle+1, electionTicks, c.Members[ticked].Status(), c.Members[idle].Status())
	}
	st := c.Members[elected].Status()
	t.Logf("member %d elected at term %d (the dead leader's: %d)", elected+1, st.Term, term)
	// The new leader serves: its first entry commits with no tick either.
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if _, err := c.Client(elected).Put(ctx, &cxkvpb.PutRequest{Key: "after", Value: []byte("v")}); err != nil {
		t.Fatalf("a write to the new leader: %v", err)
	}
}

// A follower told that its leader is gone while the leader lives (its links
// to the leader cut both ways, as a broken connection leaves them, and the
// transport's report made by hand) campaigns early but cannot disrupt: the
// other follower still hears the leader and ignores its pre-vote
// (check-quorum's lease), and a pre-vote changes no term. A member whose
// leader is not the reported one, and a leader, ignore the report.
func TestLeaderGoneReportDoesNotDisruptALiveLeader(t *testing.T) {
	const (
		tick          = 10 * time.Millisecond
		electionTicks = 50 // a loaded machine's pauses stay well below it
		election      = electionTicks * tick
	)
	fnet := raftnodetest.NewNet(1)
	c := raftnodetest.Start(t, 3, func(cfg *raftnode.Config) {
		cfg.TickInterval = tick
		cfg.ElectionTicks = electionTicks
		cfg.WrapTransport = fnet.Wrap(cfg.ID)
	})
	leader := c.WaitLeader()
	f, g := (leader+1)%3, (leader+2)%3
	lid, fid, gid := uint64(leader+1), uint64(f+1), uint64(g+1)
	raftnodetest.Eventually(t, 10*time.Second, "both followers follow the leader", func() bool {
		return c.Members[f].Status().Leader == lid && c.Members[g].Status().Leader == lid
	})
	term := c.Members[leader].Status().Term

	fnet.Cut(lid, fid)
	fnet.Cut(fid, lid)
	c.Members[f].ReportLeaderGone(lid)
	c.Members[g].ReportLeaderGone(fid) // not g's leader
	c.Members[leader].ReportLeaderGone(gid)
	raftnodetest.Eventually(t, 10*time.Second, "the cut-off follower campaigns", func() bool {
		return c.Members[f].Status().Role == "pre-candidate"
	})
	if n := deadLeaderDetections(t, c.Members[f]); n != 1 {
		t.Errorf("the cut-off follower acted on %v reports, want 1", n)
	}
	// Its pre-votes keep being ignored; a few election timeouts show
	// whether any got through.
	time.Sleep(3 * election)
	if st := c.Members[leader].Status(); st.Role != "leader" || st.Term != term {
		t.Errorf("the leader is now %s at term %d, was leader at term %d", st.Role, st.Term, term)
	}
	if st := c.Members[g].Status(); st.Leader != lid || st.Term != term {
		t.Errorf("the other follower follows %d at term %d, followed %d at term %d", st.Leader, st.Term, lid, term)
	}
	if st := c.Members[f].Status(); st.Term != term {
		t.Errorf("the cut-off follower's term went from %d to %d", term, st.Term)
	}
	for _, i := range []int{g, leader} {
		if n := deadLeaderDetections(t, c.Members[i]); n != 0 {
			t.Errorf("member %d (%s) acted on a report about a member it does not follow", i+1, c.Members[i].Status().Role)
		}
	}
}
