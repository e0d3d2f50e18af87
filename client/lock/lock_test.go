package lock_test

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"os/exec"
	"sort"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/cxkv/cxkv/api/cxkvrpc"

	"github.com/cxkv/cxkv/client"
	"github.com/cxkv/cxkv/client/lock"
	"github.com/cxkv/cxkv/raftnode/raftnodetest"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
)

var modes = []lock.Mode{lock.Queue, lock.Plain}

// Mutual exclusion: 32 goroutines and 4 processes increment one counter with
// a plain read-then-write under one lock. No update is lost, and ordered by
// the counter value each critical section read, the fencing tokens strictly
// increase.
func TestMutualExclusion(t *testing.T) {
	for _, mode := range modes {
		t.Run(mode.String(), func(t *testing.T) {
			cl, c := start(t)
			const goroutines, procs = 32, 4
			rounds := 3
			if testing.Short() {
				rounds = 1
			}
			counter := "counter/" + mode.String()
			ctx := context.Background()

			var (
				mu    sync.Mutex
				pairs [][2]uint64
				wg    sync.WaitGroup
			)
			type proc struct {
				cmd *exec.Cmd
				out *bytes.Buffer
			}
			var cmds []proc
			for range procs {
				cmd := helper("count", "ENDPOINTS="+strings.Join(cl.Endpoints(), ","), "TTL=5s", "MODE="+mode.String(),
					"LOCK=mx", "COUNTER="+counter, fmt.Sprintf("ROUNDS=%d", rounds))
				var out bytes.Buffer
				cmd.Stdout = &out
				if err := cmd.Start(); err != nil {
					t.Fatal(err)
				}
				cmds = append(cmds, proc{cmd, &out})
			}
			// Goroutines share four clients, each with its own monitor.
			clients := []*client.Client{c, dial(t, cl.Endpoints()), dial(t, cl.Endpoints()), dial(t, cl.Endpoints())}
			for g := range goroutines {
				wg.Add(1)
				go func() {
					defer wg.Done()
					gc := clients[g%len(clients)]
					mon := lock.NewProcessMonitor(gc, lock.Options{TTL: 5 * time.Second, Mode: mode})
					for range rounds {
						tok, read, err := increment(ctx, gc, mon, "mx", counter)
						if err != nil {
							t.Error(err)
							return
						}
						mu.Lock()
						pairs = append(pairs, [2]uint64{tok, read})
						mu.Unlock()
					}
				}()
			}
			wg.Wait()
			for _, p := range cmds {
				if err := p.cmd.Wait(); err != nil {
					t.Fatalf("helper process: %v", err)
				}
				more, err := parseCounts(p.out.String())
				if err != nil {
					t.Fatal(err)
				}
				pairs = append(pairs, more...)
			}
			total := (goroutines + procs) * rounds
			if len(pairs) != total {
				t.Fatalf("%d acquisitions recorded, want %d", len(pairs), total)
			}
			sort.Slice(pairs, func(i, j int) bool { return pairs[i][1] < pairs[j][1] })
			for i, p := range pairs {
				if p[1] != uint64(i) {
					t.Fatalf("critical section %d read counter %d: an update was lost or seen twice", i, p[1])
				}
				if i > 0 && p[0] <= pairs[i-1][0] {
					t.Fatalf("token %d after token %d: fencing tokens must increase", p[0], pairs[i-1][0])
				}
			}
			rec, err := c.Get(ctx, counter)
			if err != nil || string(rec.Value) != fmt.Sprint(total) {
				t.Fatalf("counter = %q, %v; want %d", rec.Value, err, total)
			}
		})
	}
}

func TestTryLock(t *testing.T) {
	for _, mode := range modes {
		t.Run(mode.String(), func(t *testing.T) {
			_, c := start(t)
			ctx := context.Background()
			a := lock.NewProcessMonitor(c, lock.Options{TTL: 5 * time.Second, Mode: mode, Name: "a"})
			b := lock.NewProcessMonitor(c, lock.Options{TTL: 5 * time.Second, Mode: mode, Name: "b"})
			la, err := a.TryLock(ctx, "t")
			if err != nil {
				t.Fatal(err)
			}
			if _, err := b.TryLock(ctx, "t"); !errors.Is(err, lock.ErrLocked) || !strings.Contains(err.Error(), "held by a") {
				t.Fatalf("TryLock of a held lock: %v; want ErrLocked naming a", err)
			}
			if err := la.Unlock(); err != nil {
				t.Fatal(err)
			}
			lb, err := b.TryLock(ctx, "t")
			if err != nil || lb.Token() <= la.Token() {
				t.Fatalf("TryLock after release: %v, token %d after %d", err, lb.Token(), la.Token())
			}
			lb.Unlock()
			locks, err := lock.List(ctx, c, "t")
			if err != nil || len(locks) != 0 {
				t.Fatalf("after both released: %+v, %v; want no locks (a failed TryLock leaves no entry)", locks, err)
			}
		})
	}
}

// Queued waiters get the lock in arrival order, one per release.
func TestQueueIsFIFO(t *testing.T) {
	_, c := start(t)
	ctx := context.Background()
	mon := func(name string) *lock.ProcessMonitor {
		return lock.NewProcessMonitor(c, lock.Options{TTL: 5 * time.Second, Name: name})
	}
	holder, err := mon("holder").Lock(ctx, "q")
	if err != nil {
		t.Fatal(err)
	}
	order := make(chan string, 3)
	var wg sync.WaitGroup
	for i, name := range []string{"w1", "w2", "w3"} {
		wg.Add(1)
		go func() {
			defer wg.Done()
			l, err := mon(name).Lock(ctx, "q")
			if err != nil {
				t.Error(err)
				return
			}
			order <- name
			l.Unlock()
		}()
		// Wait until this waiter is queued before starting the next.
		raftnodetest.Eventually(t, 5*time.Second, name+" queued", func() bool {
			locks, _ := lock.List(ctx, c, "q")
			return len(locks) == 1 && len(locks[0].Waiters) == i+1
		})
	}
	locks, _ := lock.List(ctx, c, "q")
	if locks[0].Owner.Name != "holder" || locks[0].Waiters[0].Name != "w1" || locks[0].Token != holder.Token() {
		t.Fatalf("List = %+v", locks)
	}
	holder.Unlock()
	wg.Wait()
	close(order)
	var got []string
	for n := range order {
		got = append(got, n)
	}
	if strings.Join(got, ",") != "w1,w2,w3" {
		t.Fatalf("acquisition order %v, want w1,w2,w3", got)
	}
}

// A force-released holder sees Lost close, its guarded writes and its
// Unlock fail, and nothing of the next holder is deleted.
func TestForceReleasedHolderIsLost(t *testing.T) {
	for _, mode := range modes {
		t.Run(mode.String(), func(t *testing.T) {
			_, c := start(t)
			ctx := context.Background()
			// The TTL bounds the cluster's write latency (see
			// TestRenewalKeepsLock): with 600 ms, a's lease ran out under
			// -race on a loaded machine before its first guarded put.
			// Lost's promptness is TestForceReleaseIsNoticedAtOnce's.
			ttl := 2 * time.Second
			a := lock.NewProcessMonitor(c, lock.Options{TTL: ttl, Mode: mode, Name: "a"})
			b := lock.NewProcessMonitor(c, lock.Options{TTL: ttl, Mode: mode, Name: "b"})
			la, err := a.Lock(ctx, "fr")
			if err != nil {
				t.Fatal(err)
			}
			if _, err := la.Put(ctx, "fr-data", []byte("a")); err != nil {
				t.Fatalf("guarded put while held: %v", err)
			}
			info, err := lock.ForceRelease(ctx, c, "fr")
			if err != nil || info.Owner.Name != "a" || info.Token != la.Token() {
				t.Fatalf("ForceRelease = %+v, %v; want a's lock", info, err)
			}
			lb, err := b.Lock(ctx, "fr")
			if err != nil {
				t.Fatal(err)
			}
			defer lb.Unlock()
			select {
			case <-la.Lost():
			case <-time.After(ttl):
				t.Fatal("Lost did not close within a renewal interval of the force-release")
			}
			if la.Context().Err() == nil {
				t.Fatal("the lost lock's context is still alive")
			}
			if _, err := la.Put(ctx, "fr-data", []byte("stale")); !errors.Is(err, lock.ErrLost) {
				t.Fatalf("guarded put after loss: %v; want ErrLost", err)
			}
			if err := la.Unlock(); !errors.Is(err, lock.ErrLost) {
				t.Fatalf("Unlock after loss: %v; want ErrLost", err)
			}
			if rec, _ := c.Get(ctx, "fr-data"); string(rec.Value) != "a" {
				t.Fatalf("fr-data = %q: a write of the lost holder landed", rec.Value)
			}
			if locks, _ := lock.List(ctx, c, "fr"); len(locks) != 1 || locks[0].Owner.Name != "b" {
				t.Fatalf("after a's Unlock: %+v; want b still holding", locks)
			}
			if _, err := lock.ForceRelease(ctx, c, "nobody"); !errors.Is(err, lock.ErrNotLocked) {
				t.Fatalf("ForceRelease of a free lock: %v; want ErrNotLocked", err)
			}
		})
	}
}

// A guarded write checks the lock in the same transaction: once another
// holder has it, the old holder's write is refused even before its own
// renewal noticed.
func TestGuardedWriteAfterTakeover(t *testing.T) {
	cl, c := start(t)
	ctx := context.Background()
	// The holder's client cannot watch, and its TTL is long: only the
	// cluster's check inside the transaction can refuse its write.
	noWatch := func(ctx context.Context, desc *grpc.StreamDesc, cc *grpc.ClientConn, method string, streamer grpc.Streamer, opts ...grpc.CallOption) (grpc.ClientStream, error) {
		if method != cxkvrpc.KV_Watch_FullMethodName { // the calls' stream (client/callstream.go) passes
			return streamer(ctx, desc, cc, method, opts...)
		}
		return nil, status.Error(codes.Unimplemented, "test: no watches")
	}
	blind, err := client.New(client.Config{Endpoints: cl.Endpoints(), DialOptions: []grpc.DialOption{grpc.WithStreamInterceptor(noWatch)}})
	if err != nil {
		t.Fatal(err)
	}
	defer blind.Close()
	a := lock.NewProcessMonitor(blind, lock.Options{TTL: time.Hour, Name: "a"})
	la, _ := a.Lock(ctx, "g")
	lock.ForceRelease(ctx, c, "g")
	res, err := la.Txn(ctx, []client.Compare{client.Absent("g-data")}, []client.Op{client.PutOp("g-data", []byte("a"), 0)})
	if !errors.Is(err, lock.ErrLost) || res.Successful {
		t.Fatalf("guarded txn after force-release: %+v, %v; want ErrLost", res, err)
	}
	select {
	case <-la.Lost():
	default:
		t.Fatal("a refused guarded write did not mark the lock lost")
	}
}

// Renewal keeps a lock past many TTLs.
func TestRenewalKeepsLock(t *testing.T) {
	_, c := start(t)
	ctx := context.Background()
	// The lease counts from a write's sending, so a write slower than the
	// lease's remainder loses the lock, as it must. The TTL is therefore a
	// bound on the cluster's write latency, and must hold on a loaded
	// 2-core machine under -race, where a single write (the session's
	// open among them) was seen to take 700 ms. More, until the SDK took a
	// leader's contact with a quorum as progress: on a cluster with
	// nothing else to apply, a renewal attempt the leader had not answered
	// within TTL/6 (at least 200 ms) was cut and sent again (client.
	// WithAttemptTimeout), so the TTL bounded one write's latency at about
	// TTL/6. With 300 ms the lock was lost in 12 of 60 runs; with 1 s in 12
	// of 40 (two copies at once, load 15-20). The test cluster's election
	// timeout is 100 ms, so a leader whose loop stalls longer still loses
	// its contact, and the attempt, there.
	ttl := 2 * time.Second
	l, err := lock.NewProcessMonitor(c, lock.Options{TTL: ttl}).Lock(ctx, "r")
	if err != nil {
		t.Fatal(err)
	}
	select {
	case <-l.Lost():
		t.Fatalf("lost while renewals should succeed: %v", l.Unlock())
	case <-time.After(2 * ttl): // about six renewals
	}
	if err := l.Unlock(); err != nil {
		t.Fatalf("Unlock after renewals: %v", err)
	}
}

// Without a quorum renewals fail; the holder is told before its lease ends
// could let anyone else in.
func TestRenewalFailureLoses(t *testing.T) {
	cl, c := start(t)
	ctx := context.Background()
	ttl := 400 * time.Millisecond
	l, err := lock.NewProcessMonitor(c, lock.Options{TTL: ttl}).Lock(ctx, "nq")
	if err != nil {
		t.Fatal(err)
	}
	leader := cl.WaitLeader()
	for i := range cl.Members {
		if i != leader {
			cl.Stop(i)
		}
	}
	// The last renewal that can succeed was sent before the stops ended.
	stopped := time.Now()
	select {
	case <-l.Lost():
		if since := time.Since(stopped); since > ttl+200*time.Millisecond {
			t.Fatalf("Lost closed %v after the quorum was gone; the lease was %v", since, ttl)
		}
	case <-time.After(3 * ttl):
		t.Fatal("Lost did not close with no quorum")
	}
	if err := l.Unlock(); !errors.Is(err, lock.ErrLost) {
		t.Fatalf("Unlock: %v; want ErrLost", err)
	}
}

// A holder killed with kill -9 loses its lock when the TTL runs out; another
// process takes it within the TTL plus a small bound.
func TestKilledHolderReleasesAfterTTL(t *testing.T) {
	for _, mode := range modes {
		t.Run(mode.String(), func(t *testing.T) {
			cl, c := start(t)
			ttl := time.Second
			cmd := helper("hold", "ENDPOINTS="+strings.Join(cl.Endpoints(), ","), "TTL="+ttl.String(), "MODE="+mode.String(), "LOCK=k9")
			stdout, _ := cmd.StdoutPipe()
			if err := cmd.Start(); err != nil {
				t.Fatal(err)
			}
			line, err := bufio.NewReader(stdout).ReadString('\n')
			if err != nil || !strings.HasPrefix(line, "locked") {
				t.Fatalf("helper: %q, %v", line, err)
			}
			cmd.Process.Kill()
			killed := time.Now()
			cmd.Wait()
			ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
			defer cancel()
			l, err := lock.NewProcessMonitor(c, lock.Options{TTL: ttl, Mode: mode}).Lock(ctx, "k9")
			if err != nil {
				t.Fatal(err)
			}
			defer l.Unlock()
			waited := time.Since(killed)
			t.Logf("acquired %v after kill -9 (TTL %v)", waited, ttl)
			if waited > ttl+time.Second {
				t.Fatalf("acquired %v after the holder died; want within TTL %v + 1s", waited, ttl)
			}
		})
	}
}

// Expiry after a leader failover is never early: the new leader gives every
// TTL key its full TTL from when it took over.
func TestExpiryAfterFailoverIsNeverEarly(t *testing.T) {
	cl, c := start(t)
	ctx := context.Background()
	ttl := time.Second
	sent := time.Now()
	if _, err := c.Put(ctx, "ttl", nil, 0, client.WithTTL(ttl)); err != nil {
		t.Fatal(err)
	}
	cl.Stop(cl.WaitLeader())
	// Every read that starts before the TTL has run from before the put
	// must see the key.
	for time.Since(sent) < ttl {
		rec, err := c.Get(ctx, "ttl")
		if err != nil {
			t.Fatal(err)
		}
		if !rec.Exists() {
			t.Fatalf("key expired %v after the put, before its TTL of %v", time.Since(sent), ttl)
		}
	}
	raftnodetest.Eventually(t, 5*ttl, "the key expires", func() bool {
		rec, err := c.Get(ctx, "ttl")
		return err == nil && !rec.Exists()
	})
}

// A holder paused (SIGSTOP) past its TTL loses the lock to another process;
// resumed, its guarded write is refused, and the resource holds only the
// second holder's write.
func TestPausedHolderCannotWrite(t *testing.T) {
	cl, c := start(t)
	ctx := context.Background()
	ttl := 500 * time.Millisecond
	cmd := helper("pause", "ENDPOINTS="+strings.Join(cl.Endpoints(), ","), "TTL="+ttl.String(), "LOCK=p", "RESOURCE=p-data")
	stdin, _ := cmd.StdinPipe()
	stdout, _ := cmd.StdoutPipe()
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	defer cmd.Process.Kill()
	out := bufio.NewReader(stdout)
	if line, err := out.ReadString('\n'); err != nil || !strings.HasPrefix(line, "locked") {
		t.Fatalf("helper: %q, %v", line, err)
	}
	if err := cmd.Process.Signal(syscall.SIGSTOP); err != nil {
		t.Fatal(err)
	}
	// The cluster expires the paused holder's lock; this process takes it.
	l, err := lock.NewProcessMonitor(c, lock.Options{TTL: ttl}).Lock(ctx, "p")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Unlock()
	if _, err := l.Put(ctx, "p-data", []byte("second holder")); err != nil {
		t.Fatal(err)
	}
	cmd.Process.Signal(syscall.SIGCONT)
	fmt.Fprintln(stdin, "write")
	line, _ := out.ReadString('\n')
	if !strings.HasPrefix(line, "rejected") || !strings.Contains(line, "lock lost") {
		t.Fatalf("the resumed holder's guarded write: %q; want rejected with lock lost", line)
	}
	if rec, _ := c.Get(ctx, "p-data"); string(rec.Value) != "second holder" {
		t.Fatalf("resource = %q; want only the second holder's write", rec.Value)
	}
	cmd.Wait()
}

// The holder follows its own key, so a force-release closes Lost at once,
// not at the next renewal (with this TTL, 20 minutes away).
func TestForceReleaseIsNoticedAtOnce(t *testing.T) {
	for _, mode := range modes {
		t.Run(mode.String(), func(t *testing.T) {
			_, c := start(t)
			ctx := context.Background()
			l, err := lock.NewProcessMonitor(c, lock.Options{TTL: time.Hour, Mode: mode}).Lock(ctx, "now")
			if err != nil {
				t.Fatal(err)
			}
			if _, err := lock.ForceRelease(ctx, c, "now"); err != nil {
				t.Fatal(err)
			}
			select {
			case <-l.Lost():
			case <-time.After(10 * time.Second):
				t.Fatal("Lost did not close after a force-release")
			}
			if err := l.Unlock(); !errors.Is(err, lock.ErrLost) || !strings.Contains(err.Error(), "deleted at index") {
				t.Fatalf("Unlock: %v; want ErrLost naming the deletion", err)
			}
		})
	}
}
