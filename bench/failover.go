package bench

import (
	"context"
	"fmt"
	"io"
	"slices"
	"sort"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"
)

// Failover is the workload that kills the leader: what a leader's death
// costs a client, measured the same way on cxkv and etcd. It runs on a
// cluster of its own (it kills members), through the same Conn interface as
// the other workloads, so both sides differ only in the system underneath.
//
// Probes run throughout: writers (put-if-absent of fresh keys under a
// prefix), readers (linearizable Gets), a watcher of the writers' prefix,
// and a pair of lock workers. Each call is limited to ProbeTimeout and
// retried by the probe itself on any error, so a client that recovers on
// its own and one that needs a nudge are measured alike. After an
// undisturbed stretch, the leader is killed (SIGKILL) Kills times, every
// Interval, and restarted RestartAfter later. Per kill it reports the time
// from the kill to the first write, read, watch event and lock hand-off
// that succeeded after it, and the longest gap between successes after the
// first (a second stall, such as when the killed member returns).
type FailoverConfig struct {
	Prefix       string
	Kills        int           // 5
	Interval     time.Duration // between kills: 4s
	RestartAfter time.Duration // the killed member restarts this long after the kill: 1s
	Undisturbed  time.Duration // the undisturbed stretch before the first kill: 4s
	ProbeTimeout time.Duration // one probe call: 250ms
	Writers      int           // 4
	Readers      int           // 4
	LockTTL      time.Duration // 10s
	// Trace, if set, gets one line per probe call, kill and restart, in
	// the member logs' clock (UTC, microseconds), so a stall can be laid
	// beside what each member logged: "<time> call <probe> <ms> <error or
	// ok>", "<time> kill <member>", "<time> restart <member>" (a call's
	// time is its start; kill and restart are logged just before them).
	Trace io.Writer
}

func (c FailoverConfig) withDefaults() FailoverConfig {
	def := func(d *time.Duration, v time.Duration) {
		if *d <= 0 {
			*d = v
		}
	}
	def(&c.Interval, 4*time.Second)
	def(&c.RestartAfter, time.Second)
	def(&c.Undisturbed, 4*time.Second)
	def(&c.ProbeTimeout, 250*time.Millisecond)
	def(&c.LockTTL, 10*time.Second)
	if c.Kills <= 0 {
		c.Kills = 5
	}
	if c.Writers <= 0 {
		c.Writers = 4
	}
	if c.Readers <= 0 {
		c.Readers = 4
	}
	return c
}

// Killable is a cluster whose leader the workload can find, kill and bring
// back.
type Killable interface {
	// Leader is the position of the member that leads now.
	Leader(ctx context.Context) (int, error)
	Kill(i int) error
	Restart(i int) error
}

// KillResult is what one kill cost, in milliseconds from the kill (-1: the
// stage never recovered before the next kill).
type KillResult struct {
	Member int     `json:"member"`
	Write  float64 `json:"first_write_ms"`
	Read   float64 `json:"first_read_ms"`
	Watch  float64 `json:"watch_again_ms"`
	Lock   float64 `json:"lock_handoff_ms"`
	// Gap is the longest time without a successful write or read after
	// the first of each, up to the next kill: a second stall.
	Gap float64 `json:"longest_gap_after_ms"`
	// GapAt is when that gap began, from the kill: beside the restart
	// (RestartAfter) it tells a stall the returning member caused from one
	// elsewhere.
	GapAt float64 `json:"longest_gap_at_ms"`
}

// FailoverResult is one backend's run.
type FailoverResult struct {
	Backend string       `json:"backend"`
	Kills   []KillResult `json:"kills"`
	// Throughput is the probes' successful calls per second while the
	// leader was being killed, relative to the undisturbed stretch.
	Throughput float64 `json:"throughput_vs_undisturbed"`
	Errors     int64   `json:"probe_errors"`
}

// successLog is when a probe's calls started and ended that succeeded.
type successLog struct {
	mu    sync.Mutex
	calls [][2]time.Time
}

func (l *successLog) add(start time.Time) {
	l.mu.Lock()
	l.calls = append(l.calls, [2]time.Time{start, time.Now()})
	l.mu.Unlock()
}

// event logs something that happened now (a lock handed off): it counts
// after any kill that came before it.
func (l *successLog) event() { l.add(time.Now()) }

// watchLog is when the watcher received the writers' events, by the
// writers' sequence number: an event counts after a kill only if its write
// was issued after it (one issued before may be delivered just after).
type watchLog struct {
	mu     sync.Mutex
	events []watched
}

type watched struct {
	seq int64
	at  time.Time
}

func (l *watchLog) add(seq int64) {
	l.mu.Lock()
	l.events = append(l.events, watched{seq, time.Now()})
	l.mu.Unlock()
}

// firstAfter is when the first event of a write with a sequence number above
// seq arrived, before until.
func (l *watchLog) firstAfter(seq int64, until time.Time) time.Time {
	l.mu.Lock()
	defer l.mu.Unlock()
	for _, e := range l.events {
		if e.seq > seq && !e.at.After(until) {
			return e.at
		}
	}
	return time.Time{}
}

// firstAfter is the end of the first success among calls started after t
// and ending before until, and the longest gap between successes after it
// and when that gap began.
func (l *successLog) firstAfter(t, until time.Time) (first time.Time, gap time.Duration, gapAt time.Time) {
	l.mu.Lock()
	defer l.mu.Unlock()
	ends := []time.Time{}
	for _, c := range l.calls {
		if c[1].After(until) {
			continue
		}
		if first.IsZero() {
			if c[0].After(t) {
				first = c[1]
				ends = append(ends, c[1])
			}
			continue
		}
		ends = append(ends, c[1])
	}
	slices.SortFunc(ends, func(a, b time.Time) int { return a.Compare(b) })
	for i := 1; i < len(ends); i++ {
		if d := ends[i].Sub(ends[i-1]); d > gap {
			gap, gapAt = d, ends[i-1]
		}
	}
	return first, gap, gapAt
}

func (l *successLog) count(from, to time.Time) int {
	l.mu.Lock()
	defer l.mu.Unlock()
	n := 0
	for _, c := range l.calls {
		if c[1].After(from) && !c[1].After(to) {
			n++
		}
	}
	return n
}

// RunFailover runs the workload on backend b, whose cluster is k.
func RunFailover(ctx context.Context, b Backend, k Killable, cfg FailoverConfig) (FailoverResult, error) {
	cfg = cfg.withDefaults()
	res := FailoverResult{Backend: b.Name()}
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	var wg sync.WaitGroup
	defer wg.Wait()
	var errs atomic.Int64
	var writes, reads, handoffs successLog
	var events watchLog
	var connsMu sync.Mutex
	var conns []Conn
	defer func() {
		cancel()
		wg.Wait()
		for _, c := range conns {
			c.Close()
		}
	}()
	connect := func() (Conn, error) {
		c, err := b.Connect(ctx)
		if err == nil {
			connsMu.Lock()
			conns = append(conns, c)
			connsMu.Unlock()
		}
		return c, err
	}
	// probe calls op until the run ends, each call limited to ProbeTimeout.
	tr := &tracer{w: cfg.Trace}
	if cfg.Trace != nil {
		k = tracedKillable{k, tr}
	}
	probe := func(name string, log *successLog, op func(ctx context.Context, i int) error) {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := 0; ctx.Err() == nil; i++ {
				start := time.Now()
				pctx, pcancel := context.WithTimeout(ctx, cfg.ProbeTimeout)
				err := op(pctx, i)
				pcancel()
				tr.call(name, start, err)
				if err == nil {
					log.add(start)
					continue
				}
				if ctx.Err() == nil {
					errs.Add(1)
					time.Sleep(5 * time.Millisecond) // a refusal comes at once: don't spin
				}
			}
		}()
	}
	var seq atomic.Int64
	for w := range cfg.Writers {
		c, err := connect()
		if err != nil {
			return res, err
		}
		probe(fmt.Sprintf("w%d", w), &writes, func(ctx context.Context, _ int) error {
			_, _, err := c.CAS(ctx, fmt.Sprintf("%s/w/%d/%d", cfg.Prefix, w, seq.Add(1)), []byte("v"), 0)
			return err
		})
	}
	for r := range cfg.Readers {
		c, err := connect()
		if err != nil {
			return res, err
		}
		probe(fmt.Sprintf("r%d", r), &reads, func(ctx context.Context, _ int) error {
			_, _, err := c.Get(ctx, cfg.Prefix+"/w/0/1")
			return err
		})
	}
	wc, err := connect()
	if err != nil {
		return res, err
	}
	if w, ok := wc.(Watcher); ok {
		wg.Add(1)
		go func() {
			defer wg.Done()
			watch(ctx, w, cfg.Prefix+"/w/", &events, &errs)
		}()
	}
	lockKills := make(chan struct{}, cfg.Kills)
	wg.Add(1)
	go func() {
		defer wg.Done()
		lockPair(ctx, connect, cfg, lockKills, &handoffs, &errs)
	}()

	time.Sleep(cfg.Undisturbed)
	undisturbedEnd := time.Now()
	undisturbedOps := writes.count(undisturbedEnd.Add(-cfg.Undisturbed), undisturbedEnd) + reads.count(undisturbedEnd.Add(-cfg.Undisturbed), undisturbedEnd)
	type kill struct {
		at     time.Time
		member int
		seq    int64 // the last write issued before the kill
	}
	var kills []kill
	err = killLeaders(ctx, k, cfg.Kills, cfg.Interval, cfg.RestartAfter, func(member int, at time.Time) {
		kills = append(kills, kill{at, member, seq.Load()})
		lockKills <- struct{}{}
	})
	if err != nil {
		return res, err
	}
	end := time.Now()
	close(lockKills)
	for i, kl := range kills {
		until := end
		if i+1 < len(kills) {
			until = kills[i+1].at
		}
		type gap struct {
			d  time.Duration
			at time.Time
		}
		since := func(l *successLog) (float64, gap) {
			first, d, at := l.firstAfter(kl.at, until)
			if first.IsZero() {
				return -1, gap{d, at}
			}
			return ms(first.Sub(kl.at)), gap{d, at}
		}
		r := KillResult{Member: kl.member + 1}
		var wgap, rgap gap
		r.Write, wgap = since(&writes)
		r.Read, rgap = since(&reads)
		r.Watch = -1
		if at := events.firstAfter(kl.seq, until); !at.IsZero() {
			r.Watch = ms(at.Sub(kl.at))
		}
		r.Lock, _ = since(&handoffs)
		longest := wgap
		if rgap.d > wgap.d {
			longest = rgap
		}
		r.Gap = ms(longest.d)
		if !longest.at.IsZero() {
			r.GapAt = ms(longest.at.Sub(kl.at))
		}
		res.Kills = append(res.Kills, r)
	}
	chaosOps := writes.count(kills[0].at, end) + reads.count(kills[0].at, end)
	res.Throughput = (float64(chaosOps) / end.Sub(kills[0].at).Seconds()) / (float64(undisturbedOps) / cfg.Undisturbed.Seconds())
	res.Errors = errs.Load()
	return res, nil
}

// killLeaders is the one chaos loop of the bench: it finds the leader,
// kills it (SIGKILL where k is a cluster of processes), calls onKill with
// the member and the moment just before the kill, restarts the member
// restartAfter later and waits out the rest of interval; n times, or until
// ctx ends when n is 0. A killed member is always restarted before it
// returns, so what runs after it (an invariant check) meets a whole
// cluster. It returns ctx's error only when n kills were asked for and ctx
// cut them short.
func killLeaders(ctx context.Context, k Killable, n int, interval, restartAfter time.Duration, onKill func(member int, at time.Time)) error {
	for i := 0; n == 0 || i < n; i++ {
		if ctx.Err() != nil {
			break
		}
		lctx, lcancel := context.WithTimeout(ctx, 10*time.Second)
		leader, err := k.Leader(lctx)
		lcancel()
		if err != nil {
			if ctx.Err() != nil {
				break
			}
			return fmt.Errorf("find the leader: %w", err)
		}
		at := time.Now()
		if err := k.Kill(leader); err != nil {
			return err
		}
		onKill(leader, at)
		sleepCtx(ctx, restartAfter)
		if err := k.Restart(leader); err != nil {
			return err
		}
		sleepCtx(ctx, interval-restartAfter)
	}
	if n > 0 {
		return ctx.Err()
	}
	return nil
}

// tracer writes FailoverConfig.Trace's lines; a nil writer makes it a no-op.
type tracer struct {
	mu sync.Mutex
	w  io.Writer
}

func (t *tracer) line(at time.Time, format string, args ...any) {
	if t.w == nil {
		return
	}
	t.mu.Lock()
	defer t.mu.Unlock()
	fmt.Fprintf(t.w, "%s "+format+"\n", append([]any{at.UTC().Format("15:04:05.000000")}, args...)...)
}

func (t *tracer) call(probe string, start time.Time, err error) {
	if t.w == nil {
		return
	}
	outcome := "ok"
	if err != nil {
		outcome = err.Error()
	}
	t.line(start, "call %s %.1f %s", probe, ms(time.Since(start)), outcome)
}

// tracedKillable logs each kill and restart to the trace before doing it.
type tracedKillable struct {
	Killable
	t *tracer
}

func (k tracedKillable) Kill(i int) error {
	k.t.line(time.Now(), "kill %d", i+1)
	return k.Killable.Kill(i)
}

func (k tracedKillable) Restart(i int) error {
	k.t.line(time.Now(), "restart %d", i+1)
	return k.Killable.Restart(i)
}

// sleepCtx waits d or until ctx ends.
func sleepCtx(ctx context.Context, d time.Duration) {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
	case <-ctx.Done():
	}
}

// Watcher is a Conn that can watch: the failover workload's watch stage.
type Watcher interface {
	// Watch calls each with the key and revision of every change under
	// prefix after from (0: from now) until ctx ends or the stream fails. The client's
	// own resumption (cxkv's SDK resumes on another member; etcd's client
	// re-opens the stream) happens inside; an error is what it gave up on.
	Watch(ctx context.Context, prefix string, from uint64, each func(key string, rev uint64)) error
}

// watch follows prefix and logs each event delivered, starting again from
// the last revision it saw if the client gives up.
func watch(ctx context.Context, c Watcher, prefix string, log *watchLog, errs *atomic.Int64) {
	var from uint64
	for ctx.Err() == nil {
		err := c.Watch(ctx, prefix, from, func(key string, rev uint64) {
			from = rev
			if seq, err := strconv.ParseInt(key[strings.LastIndexByte(key, '/')+1:], 10, 64); err == nil {
				log.add(seq)
			}
		})
		if ctx.Err() != nil {
			return
		}
		if err != nil {
			errs.Add(1)
			time.Sleep(5 * time.Millisecond)
		}
	}
}

// lockPair keeps one worker holding a lock and another waiting for it. At
// each kill the holder releases (retrying until the release succeeds) and
// the time until the waiter holds the lock is a hand-off; then they swap.
// A lock call that fails is retried on a fresh session, as etcd's
// concurrency.Mutex needs (its session may be gone); releasing one's own
// lock is safe to retry on both systems.
func lockPair(ctx context.Context, connect func() (Conn, error), cfg FailoverConfig, kills <-chan struct{}, handoffs *successLog, errs *atomic.Int64) {
	name := cfg.Prefix + "/lock"
	type worker struct {
		c    Conn
		s    LockSession
		held Held
	}
	var ws [2]*worker
	for i := range ws {
		c, err := connect()
		if err != nil {
			errs.Add(1)
			return
		}
		ws[i] = &worker{c: c}
	}
	acquire := func(w *worker) bool {
		for ctx.Err() == nil {
			if w.s == nil {
				s, err := w.c.Session(ctx, cfg.LockTTL)
				if err != nil {
					errs.Add(1)
					time.Sleep(20 * time.Millisecond)
					continue
				}
				w.s = s
			}
			h, err := w.s.Lock(ctx, name)
			if err == nil {
				w.held = h
				return true
			}
			if ctx.Err() != nil {
				return false
			}
			errs.Add(1)
			w.s.Close()
			w.s = nil
		}
		return false
	}
	release := func(w *worker) {
		for ctx.Err() == nil {
			rctx, cancel := context.WithTimeout(ctx, cfg.ProbeTimeout)
			err := w.held.Unlock(rctx)
			cancel()
			if err == nil {
				w.held = nil
				return
			}
			errs.Add(1)
		}
	}
	defer func() {
		for _, w := range ws {
			if w.s != nil {
				w.s.Close()
			}
		}
	}()
	holder, waiter := ws[0], ws[1]
	if !acquire(holder) {
		return
	}
	for {
		got := make(chan bool, 1)
		go func() { got <- acquire(waiter) }()
		_, ok := <-kills
		if !ok {
			release(holder)
			<-got
			return
		}
		release(holder)
		if !<-got {
			return
		}
		handoffs.event()
		holder, waiter = waiter, holder
	}
}

// WriteFailover writes each backend's per-kill figures and the medians and
// maxima per stage.
func WriteFailover(w io.Writer, runs []FailoverResult, markdown bool) {
	head := []string{"backend", "stage", "median ms", "max ms", "per kill (ms)"}
	var lines [][]string
	for _, r := range runs {
		stages := []struct {
			name string
			get  func(KillResult) float64
		}{
			{"first write", func(k KillResult) float64 { return k.Write }},
			{"first read", func(k KillResult) float64 { return k.Read }},
			{"watch delivers again", func(k KillResult) float64 { return k.Watch }},
			{"lock handed off", func(k KillResult) float64 { return k.Lock }},
			{"longest gap after", func(k KillResult) float64 { return k.Gap }},
			{"longest gap began at", func(k KillResult) float64 { return k.GapAt }},
		}
		for _, st := range stages {
			var all []float64
			var each []string
			for _, k := range r.Kills {
				v := st.get(k)
				each = append(each, strconv.FormatFloat(v, 'f', 0, 64))
				if v >= 0 {
					all = append(all, v)
				}
			}
			med, mx := -1.0, -1.0
			if len(all) > 0 {
				sort.Float64s(all)
				med, mx = all[len(all)/2], all[len(all)-1]
				if len(all)%2 == 0 {
					med = (all[len(all)/2-1] + all[len(all)/2]) / 2
				}
			}
			lines = append(lines, []string{r.Backend, st.name, num(med), num(mx), fmt.Sprint(each)})
		}
		lines = append(lines, []string{r.Backend, "throughput vs undisturbed", fmt.Sprintf("%.2f", r.Throughput), "", fmt.Sprintf("probe errors %d", r.Errors)})
	}
	writeGrid(w, head, lines, markdown)
}
