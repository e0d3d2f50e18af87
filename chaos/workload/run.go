// Package workload is the client side of a fault run, shared by `make chaos`
// (real processes) and the in-process nemesis (raftnode/nemesis): SDK
// clients writing, locking and watching, and the checks of what they saw.
// Key-value operations are checked for linearizability with porcupine
// against the compare-exchange model; locks against a fenced resource; the
// watch stream for exactly-once delivery in log order; every acknowledged
// write is read back after the cluster heals. It uses only the SDK, so it
// sees what a user would.
package workload

import (
	"context"
	"encoding/json"
	"fmt"
	"math/rand/v2"
	"os"
	"path/filepath"
	"slices"
	"sort"
	"strings"
	"sync"
	"time"

	"github.com/anishathalye/porcupine"
	"github.com/cxkv/cxkv/client"
	"github.com/cxkv/cxkv/client/lock"
)

// Config configures a workload.
type Config struct {
	// NewClient makes one SDK client: each worker is a "process" of its own.
	NewClient func() (*client.Client, error)
	Seed      uint64
	// KVWorkers (default 6) run Get/Put/Delete/Txn; LockWorkers (default
	// 6) take two locks, one queued and one plain.
	KVWorkers   int
	LockWorkers int
	LockTTL     time.Duration // default 2s
	Epoch       time.Duration // key-value workers move to fresh keys this often (default 5s)
	// LeaseGrace is how late a lost holder's Lost() may close after the
	// next holder entered (it closes from a goroutine a loaded machine may
	// run late); later is an anomaly. Default 1s.
	LeaseGrace time.Duration
	// OpTimeout bounds one key-value operation, retries included (default
	// 4s).
	OpTimeout time.Duration
}

// Result is what a workload checked and found.
type Result struct {
	KVOps        int // operations in the checked history
	KVUnknown    int // of which the outcome was unknown
	KeysChecked  int // keys read back after healing
	LockAcquired int
	LockAccesses int
	LockRefused  int // accesses by holders that had lost their lock, stopped by the fence
	HolderCrash  int
	LostLate     int           // holders whose Lost() closed after the next holder entered (within the grace)
	LostMaxLate  time.Duration // the latest of those
	WatchEvents  int
	WatchGaps    int      // watches ended by ErrCompacted and restarted from the current index
	GapWrites    int      // acknowledged writes in those gaps, whose delivery could not be checked
	WatchTrail   []string // when and why each restart happened
	Linearizable porcupine.CheckResult
	Anomalies    []string

	h      *history
	info   porcupine.LinearizationInfo
	result porcupine.CheckResult
}

// Workload is a running workload.
type Workload struct {
	cfg     Config
	admin   *client.Client
	h       *history
	w       *watcher
	res     *resource
	lws     []*lockWorker
	clients []*client.Client
	stop    context.CancelFunc
	wg      sync.WaitGroup
	watchWG sync.WaitGroup
	stopW   context.CancelFunc
}

// endKey is written once the cluster has healed: the watcher must reach it.
// startKey, outside the watched prefix, is the index the watch starts from.
const (
	endKey   = "kv/zz-end"
	startKey = "workload/start"
)

// Start starts the watcher and the workers; they run until Finish.
func Start(ctx context.Context, cfg Config) (*Workload, error) {
	set := func(d *time.Duration, v time.Duration) {
		if *d == 0 {
			*d = v
		}
	}
	set(&cfg.LockTTL, 2*time.Second)
	set(&cfg.Epoch, 5*time.Second)
	set(&cfg.LeaseGrace, time.Second)
	set(&cfg.OpTimeout, 4*time.Second)
	if cfg.KVWorkers == 0 {
		cfg.KVWorkers = 6
	}
	if cfg.LockWorkers == 0 {
		cfg.LockWorkers = 6
	}
	wl := &Workload{cfg: cfg}
	var err error
	if wl.admin, err = cfg.NewClient(); err != nil {
		return nil, err
	}
	rng := rand.New(rand.NewPCG(cfg.Seed, 0x776f726b))
	// The watch starts at a write made before any worker starts, so every
	// worker's write is after it. Watching "from now" instead started
	// wherever the watch first reached a member: under a partition at the
	// start, after writes it was then blamed for missing.
	startIndex, err := WriteUntil(ctx, wl.admin, startKey, time.Minute)
	if err != nil {
		wl.admin.Close()
		return nil, fmt.Errorf("workload: the cluster took no write to start from: %w", err)
	}
	watchCtx, stopW := context.WithCancel(context.Background())
	wl.stopW = stopW
	wl.w = newWatcher()
	wl.watchWG.Add(1)
	go func() { defer wl.watchWG.Done(); wl.w.run(watchCtx, wl.admin, "kv/", startIndex) }()

	start := time.Now()
	wl.h = newHistory(start)
	runCtx, stop := context.WithCancel(ctx)
	wl.stop = stop
	for i := range cfg.KVWorkers {
		cl, err := cfg.NewClient()
		if err != nil {
			wl.abort()
			return nil, err
		}
		wl.clients = append(wl.clients, cl)
		kw := &kvWorker{id: i, cl: cl, h: wl.h, r: rand.New(rand.NewPCG(rng.Uint64(), uint64(i))),
			epoch: func() int { return int(time.Since(start) / cfg.Epoch) }, groups: 2,
			timeout: cfg.OpTimeout, seen: map[string]rec{}}
		wl.wg.Add(1)
		go func() { defer wl.wg.Done(); kw.run(runCtx) }()
	}
	wl.res = newResource(cfg.LeaseGrace)
	var holderIDs sync.Mutex
	nextHolder := 0
	for i := range cfg.LockWorkers {
		lw := &lockWorker{id: i, name: "locks/queued", mode: lock.Queue, ttl: cfg.LockTTL, newCl: cfg.NewClient,
			res: wl.res, r: rand.New(rand.NewPCG(rng.Uint64(), uint64(i))), crash: make(chan struct{}, 1),
			nextID: func() int { holderIDs.Lock(); defer holderIDs.Unlock(); nextHolder++; return nextHolder }}
		if i%2 == 1 {
			lw.name, lw.mode = "locks/plain", lock.Plain
		}
		wl.lws = append(wl.lws, lw)
		wl.wg.Add(1)
		go func() { defer wl.wg.Done(); lw.run(runCtx) }()
	}
	return wl, nil
}

// abort stops what Start started, checking nothing.
func (wl *Workload) abort() {
	wl.stop()
	wl.wg.Wait()
	wl.stopW()
	wl.watchWG.Wait()
	for _, cl := range wl.clients {
		cl.Close()
	}
	wl.admin.Close()
}

// CrashHolder asks lock worker pick (mod their number) to crash: drop its
// client without releasing its lock. It reports whether the worker took
// the request.
func (wl *Workload) CrashHolder(pick int) bool {
	select {
	case wl.lws[pick%len(wl.lws)].crash <- struct{}{}:
		return true
	default:
		return false
	}
}

// Admin is a client of the workload's own, for the harness's writes.
func (wl *Workload) Admin() *client.Client { return wl.admin }

// Finish stops the workers and checks everything they saw. The caller has
// healed the cluster: Finish writes a last key and waits for the watcher to
// reach it, and reads back every key written. checkTimeout bounds
// porcupine.
func (wl *Workload) Finish(ctx context.Context, checkTimeout time.Duration) *Result {
	wl.stop()
	wl.wg.Wait()
	for _, cl := range wl.clients {
		cl.Close()
	}
	defer wl.admin.Close()
	r := &Result{h: wl.h}
	endIndex, err := WriteUntil(ctx, wl.admin, endKey, time.Minute)
	if err != nil {
		r.Anomalies = append(r.Anomalies, fmt.Sprintf("the healed cluster did not accept a write within a minute: %v", err))
	} else {
		r.Anomalies = append(r.Anomalies, finalReads(ctx, wl.admin, wl.h)...)
		wctx, cancel := context.WithTimeout(ctx, time.Minute)
		if err := membersReach(wctx, wl.admin, endIndex); err != nil {
			r.Anomalies = append(r.Anomalies, fmt.Sprintf("a member did not catch up after healing: %v", err))
		}
		if err := wl.w.waitFor(wctx, endIndex); err != nil {
			r.Anomalies = append(r.Anomalies, fmt.Sprintf("watch did not catch up after healing: %v%s; members: %s",
				err, wl.w.describe(), describeMembers(ctx, wl.admin)))
		}
		cancel()
	}
	wl.stopW()
	wl.watchWG.Wait()

	h := wl.h
	r.KVOps, r.KVUnknown, r.KeysChecked = len(h.ops), h.unknowns, len(h.keys)
	r.result, r.info = porcupine.CheckOperationsVerbose(kvModel, h.ops, checkTimeout)
	r.Linearizable = r.result
	switch r.result {
	case porcupine.Illegal:
		r.Anomalies = append(r.Anomalies, "key-value history is not linearizable")
	case porcupine.Unknown:
		r.Anomalies = append(r.Anomalies, fmt.Sprintf("linearizability check did not finish within %v", checkTimeout))
	}
	for _, lw := range wl.lws {
		r.LockAcquired += lw.acquired
		r.HolderCrash += lw.crashes
		for _, e := range lw.errs {
			r.Anomalies = append(r.Anomalies, "lock worker: "+e)
		}
	}
	wl.res.wait()
	r.LockAccesses, r.LockRefused = wl.res.accesses, wl.res.refused
	r.LostLate, r.LostMaxLate = wl.res.late, wl.res.maxLate
	r.Anomalies = append(r.Anomalies, wl.res.anomalies...)
	n, bad := checkWatch(wl.w, h)
	r.WatchEvents, r.WatchGaps = n, len(wl.w.gaps)
	wl.w.mu.Lock()
	r.WatchTrail = slices.Clone(wl.w.trail)
	wl.w.mu.Unlock()
	for _, idx := range h.acked {
		if wl.w.inGap(idx) {
			r.GapWrites++
		}
	}
	for kd := range h.delAck {
		if wl.w.inGap(kd[1].(uint64)) {
			r.GapWrites++
		}
	}
	r.Anomalies = append(r.Anomalies, bad...)
	if r.LockAcquired == 0 {
		r.Anomalies = append(r.Anomalies, "no lock was ever acquired")
	}
	return r
}

// WriteUntil puts key until one put succeeds or d passes, and returns its
// index.
func WriteUntil(ctx context.Context, cl *client.Client, key string, d time.Duration) (uint64, error) {
	ctx, cancel := context.WithTimeout(ctx, d)
	defer cancel()
	for {
		cur, err := cl.Get(ctx, key)
		if err == nil {
			res, err := cl.Put(ctx, key, []byte("x"), cur.Index)
			if err == nil && res.Successful {
				return res.Record.Index, nil
			}
		}
		if ctx.Err() != nil {
			return 0, fmt.Errorf("no successful put of %s: %w", key, ctx.Err())
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// finalReads reads back every key the workload wrote, adds the reads to the
// history (so porcupine checks them too) and reports any acknowledged write
// that is gone outright.
func finalReads(ctx context.Context, cl *client.Client, h *history) []string {
	keys := make([]string, 0, len(h.keys))
	for k := range h.keys {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	var bad []string
	for _, k := range keys {
		var r client.Record
		var err error
		call := h.now()
		for range 10 {
			rctx, cancel := context.WithTimeout(ctx, 5*time.Second)
			r, err = cl.Get(rctx, k)
			cancel()
			if err == nil {
				break
			}
		}
		if err != nil {
			bad = append(bad, fmt.Sprintf("final read of %s failed: %v", k, err))
			continue
		}
		dir, base := filepath.Split(k)
		var key int
		fmt.Sscanf(base, "k%d", &key)
		h.add(h.newClient(), kvInput{Kind: opGet, Group: filepath.Clean(dir), Key: key}, call, kvOutput{Rec: toRec(r)})
		last := h.lastAck[k]
		switch {
		case r.Index != 0 && r.Index < last.Index:
			bad = append(bad, fmt.Sprintf("lost write: %s holds %q@%d after an acknowledged write at %d", k, r.Value, r.Index, last.Index))
		case r.Index == 0 && last.Value != "" && h.delUnk[k] == 0:
			bad = append(bad, fmt.Sprintf("lost write: %s is absent after the acknowledged put %q@%d and no delete that may have applied", k, last.Value, last.Index))
		}
	}
	return bad
}

// Save writes the history as JSON into dir and, if it is not
// linearizable, porcupine's visualisation beside it.
func (r *Result) Save(dir string) error {
	h, info, result := r.h, r.info, r.result
	f, err := os.Create(filepath.Join(dir, "history.json"))
	if err != nil {
		return err
	}
	enc := json.NewEncoder(f)
	for _, op := range h.ops {
		enc.Encode(op)
	}
	if err := f.Close(); err != nil {
		return err
	}
	if result == porcupine.Illegal {
		return porcupine.VisualizePath(kvModel, info, filepath.Join(dir, "history.html"))
	}
	return nil
}

// membersReach waits until every member has applied index: a healed
// cluster brings every member back, not only a quorum.
func membersReach(ctx context.Context, cl *client.Client, index uint64) error {
	for {
		sctx, cancel := context.WithTimeout(ctx, 2*time.Second)
		sts, err := cl.Status(sctx)
		cancel()
		behind := err != nil
		for _, s := range sts {
			behind = behind || s.Unreachable != nil || s.Applied < index
		}
		if !behind {
			return nil
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("not every member applied index %d: %w; members: %s", index, ctx.Err(), describeMembers(context.Background(), cl))
		case <-time.After(100 * time.Millisecond):
		}
	}
}

// describeMembers is each member's applied index, role and leader, for a
// report of something that did not catch up.
func describeMembers(ctx context.Context, cl *client.Client) string {
	ctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	sts, err := cl.Status(ctx)
	if err != nil {
		return err.Error()
	}
	var parts []string
	for _, s := range sts {
		if s.Unreachable != nil {
			parts = append(parts, fmt.Sprintf("%s unreachable (%v)", s.Endpoint, s.Unreachable))
			continue
		}
		parts = append(parts, fmt.Sprintf("%s m%d %s applied %d commit %d (leader m%d, term %d)",
			s.Endpoint, s.MemberID, s.Role, s.Applied, s.Commit, s.LeaderID, s.Term))
	}
	return strings.Join(parts, ", ")
}
