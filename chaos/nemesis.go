package chaos

import (
	"context"
	"fmt"
	"math/rand/v2"
	"syscall"
	"time"

	"github.com/cxkv/cxkv/client"
)

// FaultKind is one kind of fault the nemesis injects.
type FaultKind int

const (
	FaultLeaderAlone   FaultKind = iota // the leader cut from both followers, both ways
	FaultFollowerAlone                  // one follower cut off, both ways (a minority)
	FaultOneWay                         // the leader hears the followers, they do not hear it
	FaultKill                           // kill -9, restart from the data dir after a pause
	FaultPause                          // SIGSTOP for longer than the election timeout, then SIGCONT
	FaultHolderCrash                    // a lock holder's process vanishes without unlocking
	numFaultKinds
)

func (k FaultKind) String() string {
	return [...]string{
		"partition: leader alone",
		"partition: a follower alone",
		"one-way: followers do not hear the leader",
		"kill -9, restart",
		"SIGSTOP > election timeout, SIGCONT",
		"lock holder crashes (no unlock)",
	}[k]
}

// fault is one step of the schedule. Everything in it comes from the seed;
// which member is the leader is found out when the step runs.
type fault struct {
	Kind     FaultKind
	ToLeader bool          // kill/pause: the leader, else member Member
	Member   uint64        // 1..3: the target when not the leader
	Pick     int           // which lock worker crashes
	Hold     time.Duration // how long the fault lasts
	Gap      time.Duration // healthy time after it
}

// schedule draws the next fault from the seeded source.
func nextFault(r *rand.Rand, electionTimeout time.Duration) fault {
	f := fault{
		Kind:     FaultKind(r.IntN(int(numFaultKinds))),
		ToLeader: r.IntN(2) == 0,
		Member:   uint64(1 + r.IntN(3)),
		Pick:     r.IntN(1 << 16),
		Hold:     time.Duration(500+r.IntN(3000)) * time.Millisecond,
		Gap:      time.Duration(300+r.IntN(1500)) * time.Millisecond,
	}
	if f.Kind == FaultPause {
		f.Hold = electionTimeout*2 + time.Duration(r.IntN(2000))*time.Millisecond
	}
	return f
}

// nemesis runs the schedule until ctx ends, then heals everything.
type nemesis struct {
	c               *cluster
	cl              *client.Client // for finding the leader
	seed            uint64
	electionTimeout time.Duration
	crashHolder     func(pick int) bool
	logf            func(string, ...any)
	counts          [numFaultKinds]int
}

func (n *nemesis) run(ctx context.Context) error {
	r := rand.New(rand.NewPCG(n.seed, 0x6368616f73))
	for ctx.Err() == nil {
		f := nextFault(r, n.electionTimeout)
		desc, applied := n.inject(ctx, f)
		if applied {
			n.counts[f.Kind]++
			n.logf("fault: %s (%s) for %v", f.Kind, desc, f.Hold.Round(time.Millisecond))
			sleep(ctx, f.Hold)
		}
		if err := n.c.heal(); err != nil {
			return err
		}
		sleep(ctx, f.Gap)
	}
	return n.c.heal()
}

func sleep(ctx context.Context, d time.Duration) {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
	case <-t.C:
	}
}

func (n *nemesis) others(id uint64) []uint64 {
	var out []uint64
	for _, o := range n.c.ids {
		if o != id {
			out = append(out, o)
		}
	}
	return out
}

// inject starts fault f; it reports what it did, or false if it could not
// (no leader to target).
func (n *nemesis) inject(ctx context.Context, f fault) (string, bool) {
	target := f.Member
	needLeader := f.Kind == FaultLeaderAlone || f.Kind == FaultOneWay || f.Kind == FaultFollowerAlone ||
		(f.ToLeader && (f.Kind == FaultKill || f.Kind == FaultPause))
	var leader uint64
	if needLeader {
		if leader = n.c.leader(ctx, n.cl); leader == 0 {
			return "", false
		}
		target = leader
	}
	switch f.Kind {
	case FaultLeaderAlone:
		for _, o := range n.others(leader) {
			n.c.proxies.block(leader, o)
			n.c.proxies.block(o, leader)
		}
		return fmt.Sprintf("m%d", leader), true
	case FaultFollowerAlone:
		fs := n.others(leader)
		target = fs[int(f.Member)%len(fs)]
		for _, o := range n.others(target) {
			n.c.proxies.block(target, o)
			n.c.proxies.block(o, target)
		}
		return fmt.Sprintf("m%d", target), true
	case FaultOneWay:
		for _, o := range n.others(leader) {
			n.c.proxies.block(leader, o)
		}
		return fmt.Sprintf("m%d -> others cut", leader), true
	case FaultKill:
		n.c.kill(target)
		return fmt.Sprintf("m%d", target), true
	case FaultPause:
		n.c.signal(target, syscall.SIGSTOP)
		return fmt.Sprintf("m%d", target), true
	case FaultHolderCrash:
		if n.crashHolder == nil || !n.crashHolder(f.Pick) {
			return "", false
		}
		return fmt.Sprintf("worker %d", f.Pick), true
	}
	return "", false
}
