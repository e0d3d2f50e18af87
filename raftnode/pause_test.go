package raftnode_test

import (
	"context"
	"fmt"
	"io"
	"net"
	"runtime"
	"runtime/metrics"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/cxkv/cxkv/api/cxkvpb"
	"github.com/cxkv/cxkv/raftnode"
	"github.com/cxkv/cxkv/raftnode/raftnodetest"
)

// freezeProxy stands between a member's peer port and its peers. Frozen, it
// stops reading in both directions, so what peers send piles up in socket
// buffers and then in their own queues, as it does for a SIGSTOPped process;
// thawed, the backlog arrives at once.
type freezeProxy struct {
	l      net.Listener
	target string
	mu     sync.Mutex
	frozen bool
	thawed chan struct{}
	conns  []net.Conn
}

func startFreezeProxy(t *testing.T, target string) *freezeProxy {
	l := listen(t)
	p := &freezeProxy{l: l, target: target, thawed: make(chan struct{})}
	close(p.thawed)
	go p.accept()
	t.Cleanup(func() {
		p.thaw()
		l.Close()
		p.mu.Lock()
		for _, c := range p.conns {
			c.Close()
		}
		p.mu.Unlock()
	})
	return p
}

func (p *freezeProxy) accept() {
	for {
		in, err := p.l.Accept()
		if err != nil {
			return
		}
		out, err := net.Dial("tcp", p.target)
		if err != nil {
			in.Close()
			continue
		}
		p.mu.Lock()
		p.conns = append(p.conns, in, out)
		p.mu.Unlock()
		go p.copy(out, in)
		go p.copy(in, out)
	}
}

func (p *freezeProxy) copy(dst, src net.Conn) {
	buf := make([]byte, 32<<10)
	for {
		p.mu.Lock()
		thawed := p.thawed
		p.mu.Unlock()
		<-thawed
		n, err := src.Read(buf)
		if n > 0 {
			if _, werr := dst.Write(buf[:n]); werr != nil {
				err = werr
			}
		}
		if err != nil {
			if err != io.EOF {
				dst.Close()
			}
			src.Close()
			return
		}
	}
}

func (p *freezeProxy) freeze() {
	p.mu.Lock()
	defer p.mu.Unlock()
	if !p.frozen {
		p.frozen, p.thawed = true, make(chan struct{})
	}
}

func (p *freezeProxy) isFrozen() bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.frozen
}

func (p *freezeProxy) thaw() {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.frozen {
		p.frozen = false
		close(p.thawed)
	}
}

// heapSampler records the peak of the process's heap (objects allocated and
// not yet freed, runtime/metrics) while it runs.
type heapSampler struct {
	stop chan struct{}
	done chan struct{}
	peak atomic.Uint64
}

// heapGrowthLimit is the heap growth the pause test accepts after the
// resume: without the heartbeat gate it measured 320-390 MiB, with it
// 40-80 MiB when it was set (the paused member's own catch-up is in the
// same heap, and at 10 ms ticks the gate still lets a 1 MiB probe through
// per tick until the resumed member answers one). On 2026-11-27, with the
// backlog at pauseBacklog: 89-120 MiB with the gate, 463 MiB without.
const heapGrowthLimit = 160 << 20

// pauseBacklog bounds the writes made during the pause: about what 6 s of
// this load made when heapGrowthLimit was set. A faster machine or build
// made more (75,000 on 2026-11-27 once proposals were batched, and the
// catch-up's heap grew with them, about 2 KiB per entry behind).
const pauseBacklog = 50_000

const heapObjects = "/memory/classes/heap/objects:bytes"

func heapNow() uint64 {
	s := []metrics.Sample{{Name: heapObjects}}
	metrics.Read(s)
	return s[0].Value.Uint64()
}

func sampleHeap() *heapSampler {
	h := &heapSampler{stop: make(chan struct{}), done: make(chan struct{})}
	go func() {
		defer close(h.done)
		tk := time.NewTicker(2 * time.Millisecond)
		defer tk.Stop()
		for {
			if v := heapNow(); v > h.peak.Load() {
				h.peak.Store(v)
			}
			select {
			case <-h.stop:
				return
			case <-tk.C:
			}
		}
	}()
	return h
}

func (h *heapSampler) end() uint64 {
	close(h.stop)
	<-h.done
	return h.peak.Load()
}

// A leader paused (SIGSTOP) under a load of small writes, as 1,000 lock
// sessions renewing are, comes back to every heartbeat the new leader sent
// it meanwhile, and answers them all at once. The new leader must not build
// an append for each answer: 15 s of heartbeats took a real one from 55 to
// 453 MB RSS and cost it the leadership. Here the pause is a proxy in front
// of member 3's peer port that stops reading (so the new leader's stream to
// it stays open and its heartbeats pile up in socket buffers) and a cut of
// what member 3 sends. The heap is the process's, all three members'.
func TestNewLeaderMemoryWhenThePausedLeaderResumes(t *testing.T) {
	if testing.Short() {
		t.Skip("pauses a follower for seconds under load")
	}
	fnet := raftnodetest.NewNet(1)
	var proxy *freezeProxy
	c := raftnodetest.Start(t, 3, func(cfg *raftnode.Config) {
		cfg.ElectionTicks = 30
		cfg.SnapshotEntries = 1 << 20 // the paused member catches up from the log, as it did in the field
		cfg.WrapTransport = fnet.Wrap(cfg.ID)
		if cfg.ID == 3 {
			l := listen(t)
			proxy = startFreezeProxy(t, l.Addr().String())
			cfg.PeerListener, cfg.PeerAddr = l, proxy.l.Addr().String()
			cfg.Peers[3] = cfg.PeerAddr // the map every member shares
		}
	})
	// Member 3 leads, is paused, and a new leader takes the load.
	if lead := c.WaitLeader(); lead != 2 {
		if _, err := c.ClusterClient(lead).MoveLeader(ctxFor(t, 5*time.Second), &cxkvpb.MoveLeaderRequest{Id: 3}); err != nil {
			t.Fatal(err)
		}
	}
	raftnodetest.Eventually(t, 10*time.Second, "member 3 leads", func() bool { return c.Members[2].Status().Role == "leader" })
	// Small writes from many clients, as sessions renewing are, each sent
	// to whichever of members 1 and 2 leads (3 until the pause).
	leading := func() int {
		for i, m := range c.Members {
			if m.Status().Role == "leader" && (i < 2 || !proxy.isFrozen()) {
				return i
			}
		}
		return 0
	}
	ctx, cancel := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	var writes atomic.Int64
	// The backlog the resumed member catches up, and so the heap its
	// catch-up takes, would grow with the machine's (and the build's)
	// speed: the writes stop for the rest of the pause at pauseBacklog,
	// so the heap measures the heartbeats piled up, not the machine.
	var capAt atomic.Int64 // writes.Load() at which writes wait for the thaw; 0: none
	thawed := make(chan struct{})
	for w := range 64 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			val := make([]byte, 150)
			for i := 0; ctx.Err() == nil; i++ {
				if c := capAt.Load(); c != 0 && writes.Load() >= c {
					select {
					case <-thawed:
					case <-ctx.Done():
						return
					}
				}
				wctx, wcancel := context.WithTimeout(ctx, time.Second)
				if _, err := c.Client(leading()).Put(wctx, &cxkvpb.PutRequest{Key: fmt.Sprintf("s/%d/%d", w, i%100), Value: val}); err == nil {
					writes.Add(1)
				}
				wcancel()
			}
		}()
	}
	defer func() { cancel(); wg.Wait() }()
	time.Sleep(time.Second)

	if c.Members[2].Status().Role != "leader" {
		t.Fatalf("member 3 lost the leadership before its pause: %+v", c.Members[2].Status())
	}
	runtime.GC()
	base := heapNow()
	fnet.Cut(3, 1)
	fnet.Cut(3, 2)
	proxy.freeze()
	raftnodetest.Eventually(t, 10*time.Second, "a new leader", func() bool { l := leading(); return l < 2 && c.Members[l].Status().Role == "leader" })
	lead := leading()
	leader := c.Members[lead]
	before := writes.Load()
	capAt.Store(before + pauseBacklog)
	pause := 6 * time.Second
	time.Sleep(pause)
	backlog := leader.Status().LastIndex - c.Members[2].Status().LastIndex
	runtime.GC()
	pausedHeap := heapNow()
	h := sampleHeap()
	resumedAt := time.Now()
	proxy.thaw()
	fnet.Heal()
	close(thawed)
	target := leader.Status().Applied
	raftnodetest.Eventually(t, 20*time.Second, "the paused member catches up", func() bool { return c.Members[2].Status().Applied >= target })
	peak := h.end()
	grew := int64(peak) - int64(pausedHeap)
	t.Logf("paused %v: %d writes, %d entries behind; resumed, caught up in %v; heap %d MiB before the pause, %d MiB at its end, peak %d MiB after",
		pause, writes.Load()-before, backlog, time.Since(resumedAt).Round(time.Millisecond), base>>20, pausedHeap>>20, peak>>20)
	if grew > heapGrowthLimit {
		t.Errorf("the heap grew by %d MiB once the paused leader resumed; want at most %d MiB", grew>>20, heapGrowthLimit>>20)
	}
}
