package workload

import (
	"context"
	"fmt"
	"math/rand/v2"
	"sync"
	"time"

	"github.com/cxkv/cxkv/client"
	"github.com/cxkv/cxkv/client/lock"
)

// resource is what a lock protects, fenced as the SDK tells users to fence:
// it remembers the highest token it accepted and refuses lower ones. It
// also knows which holder is inside, so it can see two holders overlap.
type resource struct {
	mu        sync.Mutex
	highest   map[string]uint64  // lock name -> highest token accepted
	inside    map[string]*holder // lock name -> the holder that last entered
	tokens    map[string]map[uint64]int
	accesses  int
	refused   int
	anomalies []string
	grace     time.Duration // how late a lost holder's Lost() may close
	late      int           // holders whose Lost() closed after the next holder entered
	maxLate   time.Duration
	wg        sync.WaitGroup
}

// holder is one acquisition of a lock.
type holder struct {
	id    int
	name  string
	token uint64
	lost  <-chan struct{} // the lock's Lost()
	gone  bool            // unlocked, or its process crashed
}

func newResource(grace time.Duration) *resource {
	return &resource{grace: grace, highest: map[string]uint64{}, inside: map[string]*holder{}, tokens: map[string]map[uint64]int{}}
}

func (r *resource) anomaly(format string, args ...any) {
	r.anomalies = append(r.anomalies, fmt.Sprintf(format, args...))
}

// acquired records a new holder: its token must be new for the lock.
func (r *resource) acquired(h *holder) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.tokens[h.name] == nil {
		r.tokens[h.name] = map[uint64]int{}
	}
	if prev, dup := r.tokens[h.name][h.token]; dup {
		r.anomaly("lock %s: token %d handed to acquisition %d and again to %d", h.name, h.token, prev, h.id)
	}
	r.tokens[h.name][h.token] = h.id
}

// access is one use of the resource under a lock. It reports whether the
// fence let it through.
func (r *resource) access(h *holder) bool {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.accesses++
	hi := r.highest[h.name]
	if h.token < hi {
		r.refused++ // a holder that lost its lock; the fence stops it
		return false
	}
	if cur := r.inside[h.name]; cur != nil && cur != h && !cur.gone {
		select {
		case <-cur.lost:
		default:
			r.overlap(cur, h)
		}
		if h.token == cur.token {
			r.anomaly("lock %s: holders %d and %d share token %d", h.name, cur.id, h.id, h.token)
		}
	}
	r.highest[h.name] = h.token
	r.inside[h.name] = h
	return true
}

// overlap handles a holder entering while the previous one's Lost() is
// still open. The SDK counts a lease from before its renewal was sent, so
// the previous holder's lease ended before the cluster expired its key; but
// its Lost() closes from a goroutine, which a loaded machine may run late.
// So Lost() gets r.grace to close (the lateness is reported); a holder still
// inside, Lost() open, after that believes it holds a lock someone else has.
func (r *resource) overlap(prev, next *holder) {
	since := time.Now()
	r.wg.Add(1)
	go func() {
		defer r.wg.Done()
		t := time.NewTimer(r.grace)
		defer t.Stop()
		select {
		case <-prev.lost:
			r.mu.Lock()
			r.late++
			r.maxLate = max(r.maxLate, time.Since(since))
			r.mu.Unlock()
		case <-t.C:
			r.mu.Lock()
			if !prev.gone {
				r.anomaly("lock %s: holder %d (token %d) entered while holder %d (token %d) held it, whose Lost() was still open %v later",
					next.name, next.id, next.token, prev.id, prev.token, r.grace)
			} else {
				r.late++
				r.maxLate = max(r.maxLate, r.grace)
			}
			r.mu.Unlock()
		}
	}()
}

// wait waits for the overlaps being watched.
func (r *resource) wait() { r.wg.Wait() }

func (r *resource) leave(h *holder) {
	r.mu.Lock()
	defer r.mu.Unlock()
	h.gone = true
}

// lockWorker takes a lock again and again, uses the resource a few times
// under it and releases it. It is one "process": its own client and
// ProcessMonitor, replaced when the nemesis crashes it.
type lockWorker struct {
	id       int
	name     string
	mode     lock.Mode
	ttl      time.Duration
	newCl    func() (*client.Client, error)
	res      *resource
	r        *rand.Rand
	nextID   func() int
	crash    chan struct{} // the nemesis asks this worker to crash
	acquired int
	failed   int
	crashes  int
	errs     []string
}

func (w *lockWorker) run(ctx context.Context) {
	for ctx.Err() == nil {
		cl, err := w.newCl()
		if err != nil {
			w.errs = append(w.errs, err.Error())
			return
		}
		mon := lock.NewProcessMonitor(cl, lock.Options{TTL: w.ttl, Mode: w.mode, Name: fmt.Sprintf("chaos-worker-%d", w.id)})
		crashed := w.session(ctx, mon)
		if crashed {
			// A crash: the process is gone without releasing anything; its
			// lock must free itself by TTL. Closing the client stops renewal.
			cl.Close()
			continue
		}
		mon.Close()
		cl.Close()
	}
}

// session runs until ctx ends or the worker is told to crash.
func (w *lockWorker) session(ctx context.Context, mon *lock.ProcessMonitor) (crashed bool) {
	for ctx.Err() == nil {
		lctx, cancel := context.WithTimeout(ctx, 3*w.ttl)
		held, err := mon.Lock(lctx, w.name)
		cancel()
		if err != nil {
			w.failed++
			continue
		}
		w.acquired++
		h := &holder{id: w.nextID(), name: w.name, token: held.Token(), lost: held.Lost()}
		w.res.acquired(h)
	use:
		for range 1 + w.r.IntN(4) {
			select {
			case <-held.Lost():
				break use
			case <-w.crash:
				w.crashes++
				w.res.leave(h)
				return true
			default:
			}
			w.res.access(h)
			time.Sleep(time.Duration(5+w.r.IntN(40)) * time.Millisecond)
		}
		w.res.leave(h)
		uctx, cancel := context.WithTimeout(context.Background(), 2*w.ttl)
		held.UnlockContext(uctx)
		cancel()
	}
	return false
}
