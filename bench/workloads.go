package bench

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"strconv"
	"sync"
	"sync/atomic"
	"time"
)

// Workload names are the interface: results, the table and BENCHMARKS.md
// refer to them.
const (
	CASSeq        = "cas-seq"
	CASParallel   = "cas-parallel"
	LockContended = "lock-contended"
	LockMany      = "lock-many"
	GetRead       = "get"
)

// Workloads lists every workload in the order a round runs them.
var Workloads = []string{CASSeq, CASParallel, LockContended, LockMany, GetRead}

// Config shapes one run. The zero value of each field takes the figure
// issue 6 defines, so tests can shrink one knob without restating the rest.
type Config struct {
	Duration time.Duration
	// Prefix scopes every key of the run; runs must not share one.
	Prefix string
	// Conns is how many connections cas-parallel, lock-many and get spread
	// their goroutines over (8).
	Conns int
	// Workers overrides the workload's goroutine count (cas-parallel and get
	// 64, lock-contended 16, lock-many 32).
	Workers int
	// Keys is the key space of lock-many and get (1000).
	Keys int
	// LockTTL is every lock session's TTL (10s, whole seconds for etcd).
	LockTTL time.Duration
	// OpTimeout bounds one operation (30s).
	OpTimeout time.Duration
	// ServerCPU, if set, reads the CPU time the cluster's processes have
	// used; Run then reports Result.ServerCPUPerOp over the timed part.
	ServerCPU func() time.Duration
	// Retry, if set, makes the lock workloads carry on through failures
	// as a user would: each call is limited to Retry (a lock attempt to
	// LockTTL, since waiting is its job) and retried when it fails, a
	// failed acquire on a fresh session (etcd's session may be gone);
	// Result.Errors counts the failures. 0: the first error ends the run.
	Retry time.Duration
	// Disturb, if set, runs beside the workers for the timed part (the
	// leader-kill loop of lock-chaos) and must return, leaving the cluster
	// whole, when its context ends; the invariant check runs after it.
	Disturb func(ctx context.Context) error
}

func (c Config) withDefaults(workload string) Config {
	if c.Duration <= 0 {
		c.Duration = 10 * time.Second
	}
	if c.Conns <= 0 {
		c.Conns = 8
	}
	if c.Workers <= 0 {
		c.Workers = map[string]int{CASSeq: 1, CASParallel: 64, LockContended: 16, LockMany: 32, GetRead: 64}[workload]
	}
	if c.Keys <= 0 {
		c.Keys = 1000
	}
	if c.LockTTL <= 0 {
		c.LockTTL = 10 * time.Second
	}
	if c.OpTimeout <= 0 {
		c.OpTimeout = 30 * time.Second
	}
	return c
}

// Result is one run of one workload against one backend. Latencies are in
// milliseconds: per operation for cas-* and get, the wait to acquire for
// lock-*. Ops counts completed operations (acquisitions for lock-*).
type Result struct {
	Workload  string  `json:"workload"`
	Backend   string  `json:"backend"`
	Round     int     `json:"round"`
	Workers   int     `json:"workers"`
	Ops       int64   `json:"ops"`
	Seconds   float64 `json:"seconds"`
	OpsPerSec float64 `json:"ops_per_sec"`
	Mean      float64 `json:"mean_ms"`
	P50       float64 `json:"p50_ms"`
	P99       float64 `json:"p99_ms"`
	Max       float64 `json:"max_ms"`
	// MinWorkerOps and MaxWorkerOps show starvation: a worker that waited
	// through a whole lock-contended run has 0.
	MinWorkerOps int64 `json:"min_worker_ops"`
	// HoldP50 (lock-*) is the median time from acquired to released: the
	// critical section plus the unlock. A handoff takes 1/OpsPerSec; what
	// HoldP50 leaves of it is the lock protocol's own handoff latency.
	HoldP50 float64 `json:"hold_p50_ms,omitempty"`
	// HoldReadP50 (lock-*) is the median of the linearizable read that
	// starts each hold: the one step of a hand-off that is not a write.
	HoldReadP50 float64 `json:"hold_read_p50_ms,omitempty"`
	// ServerCPUPerOp is the CPU time the cluster's members spent per
	// operation during the timed part, in milliseconds, summed over members
	// (with Config.ServerCPU set).
	ServerCPUPerOp float64 `json:"server_cpu_ms_per_op,omitempty"`
	// ClientCPUPerOp is this process's CPU time per operation during the
	// timed part: the client library's cost, which shares the machine's
	// cores with the cluster.
	ClientCPUPerOp float64 `json:"client_cpu_ms_per_op,omitempty"`
	// MachineBusy is the share of the machine's CPU time, all cores and
	// all processes (other tenants included), that was not idle during the
	// timed part, in percent. Near 100 the workload is bound by CPU, and
	// a backend's ops/s moves with its CPU per op, not with its latency.
	MachineBusy  float64 `json:"machine_busy_pct,omitempty"`
	MaxWorkerOps int64   `json:"max_worker_ops"`
	// Errors is how many calls failed and were retried (Config.Retry).
	Errors int64 `json:"errors,omitempty"`
	// Check is "ok" or what the invariant check found wrong.
	Check string `json:"check"`
	// Stages is where a cxkv write's time went (cxkvbench -stages): the
	// leader's per-stage times over the run, then the client's.
	Stages []Stage `json:"stages,omitempty"`
	// Costs is what the run's operations cost the cluster in synced log
	// writes and peer messages (cxkvbench -stages).
	Costs *Costs `json:"costs,omitempty"`
	// Error is set when the run could not be measured (an operation
	// failed); its figures are then left out of the medians.
	Error string `json:"error,omitempty"`
}

// OK reports whether the run's invariant held.
func (r Result) OK() bool { return r.Check == "ok" }

// Run runs one workload against b for cfg.Duration and checks its
// invariant. An error means the run could not be measured (a connection or
// operation failed); a broken invariant is a Result whose Check says so.
func Run(ctx context.Context, b Backend, workload string, cfg Config) (Result, error) {
	cfg = cfg.withDefaults(workload)
	if cfg.Prefix == "" {
		return Result{}, errors.New("bench: Config.Prefix is required")
	}
	var w worker
	switch workload {
	case CASSeq, CASParallel:
		w = &casWorkload{}
	case LockContended:
		w = &lockWorkload{keys: 1}
	case LockMany:
		w = &lockWorkload{keys: cfg.Keys}
	case GetRead:
		w = &getWorkload{}
	default:
		return Result{}, fmt.Errorf("bench: unknown workload %q", workload)
	}
	// Lock-contended gives each worker its own connection; the others share
	// cfg.Conns.
	nconns := min(cfg.Conns, cfg.Workers)
	if workload == LockContended || workload == CASSeq {
		nconns = cfg.Workers
	}
	conns := make([]Conn, nconns)
	defer func() {
		for _, c := range conns {
			if c != nil {
				c.Close()
			}
		}
	}()
	for i := range conns {
		c, err := b.Connect(ctx)
		if err != nil {
			return Result{}, fmt.Errorf("connect to %s: %w", b.Name(), err)
		}
		conns[i] = c
	}
	r := &runner{ctx: ctx, cfg: cfg, conns: conns}
	if l, ok := w.(*lockWorkload); ok {
		defer l.closeSessions() // after the check, which reads through the same connections
	}
	if err := w.setup(r); err != nil {
		return Result{}, fmt.Errorf("%s setup on %s: %w", workload, b.Name(), err)
	}
	res, err := r.measure(w)
	if err != nil {
		return Result{}, fmt.Errorf("%s on %s: %w", workload, b.Name(), err)
	}
	res.Workload, res.Backend = workload, b.Name()
	if l, ok := w.(*lockWorkload); ok {
		var all, reads []time.Duration
		for g := range l.holds {
			all = append(all, l.holds[g]...)
			reads = append(reads, l.reads[g]...)
		}
		res.HoldP50, _, _ = quantiles(all)
		res.HoldReadP50, _, _ = quantiles(reads)
	}
	res.Check = "ok"
	if err := w.check(r); err != nil {
		res.Check = err.Error()
	}
	return res, nil
}

// worker is a workload: setup runs untimed, op is one timed operation of
// goroutine g (it returns the latency to record, or 0 to record the op's
// own duration), check verifies the invariant after every goroutine ended.
type worker interface {
	setup(r *runner) error
	// op runs one operation; stop ends the run before the operation
	// started (the deadline passed while a lock was awaited).
	op(r *runner, g int, rng *rand.Rand, stop context.Context) (latency time.Duration, done bool, err error)
	check(r *runner) error
}

type runner struct {
	ctx   context.Context
	cfg   Config
	conns []Conn
	errs  atomic.Int64 // failed calls retried (Config.Retry)
}

// call runs f, and with Config.Retry set, again after each failure until
// it succeeds or ctx ends; each attempt is limited to Config.Retry. Only
// calls that are safe to repeat go through it: a read, an unguarded write
// of the same value under a held lock, releasing one's own lock.
func (r *runner) call(ctx context.Context, f func(ctx context.Context) error) error {
	if r.cfg.Retry <= 0 {
		return f(ctx)
	}
	for {
		actx, cancel := context.WithTimeout(ctx, r.cfg.Retry)
		err := f(actx)
		cancel()
		if err == nil || ctx.Err() != nil {
			return err
		}
		r.errs.Add(1)
		time.Sleep(5 * time.Millisecond) // a refusal comes at once: don't spin
	}
}

func (r *runner) conn(g int) Conn { return r.conns[g%len(r.conns)] }

// opCtx bounds one operation. It derives from the run's parent context, not
// the deadline, so an operation started before the deadline completes and
// the invariant check sees whole critical sections only.
func (r *runner) opCtx() (context.Context, context.CancelFunc) {
	return context.WithTimeout(r.ctx, r.cfg.OpTimeout)
}

func (r *runner) key(parts ...any) string {
	k := r.cfg.Prefix
	for _, p := range parts {
		k += "/" + fmt.Sprint(p)
	}
	return k
}

// measure runs cfg.Workers goroutines of w.op until the deadline; the first
// error stops them all.
func (r *runner) measure(w worker) (Result, error) {
	stop, cancel := context.WithTimeout(r.ctx, r.cfg.Duration)
	defer cancel()
	var (
		wg       sync.WaitGroup
		mu       sync.Mutex
		all      []time.Duration
		perG     = make([]int64, r.cfg.Workers)
		firstErr atomic.Pointer[error]
	)
	var cpu0 time.Duration
	if r.cfg.ServerCPU != nil {
		cpu0 = r.cfg.ServerCPU()
	}
	self0 := selfCPU()
	machine0 := machineCPU()
	start := time.Now()
	if r.cfg.Disturb != nil {
		wg.Add(1)
		go func() {
			defer wg.Done()
			if err := r.cfg.Disturb(stop); err != nil {
				err = fmt.Errorf("disturb: %w", err)
				firstErr.CompareAndSwap(nil, &err)
				cancel()
			}
		}()
	}
	for g := range r.cfg.Workers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			rng := rand.New(rand.NewPCG(uint64(g), uint64(start.UnixNano())))
			var mine samples
			for stop.Err() == nil {
				t0 := time.Now()
				lat, done, err := w.op(r, g, rng, stop)
				if err != nil {
					firstErr.CompareAndSwap(nil, &err)
					cancel()
					break
				}
				if !done {
					break
				}
				if lat == 0 {
					lat = time.Since(t0)
				}
				mine = append(mine, lat)
				perG[g]++
			}
			mu.Lock()
			all = append(all, mine...)
			mu.Unlock()
		}()
	}
	wg.Wait()
	elapsed := time.Since(start)
	self := selfCPU() - self0
	machine := machineCPU().since(machine0)
	var cpu time.Duration
	if r.cfg.ServerCPU != nil {
		cpu = r.cfg.ServerCPU() - cpu0
	}
	if p := firstErr.Load(); p != nil {
		return Result{}, *p
	}
	if err := r.ctx.Err(); err != nil {
		return Result{}, err
	}
	res := Result{Workers: r.cfg.Workers, Ops: int64(len(all)), Seconds: elapsed.Seconds(), Errors: r.errs.Load()}
	res.OpsPerSec = float64(res.Ops) / res.Seconds
	if res.Ops > 0 {
		res.ServerCPUPerOp = ms(cpu) / float64(res.Ops)
		res.ClientCPUPerOp = ms(self) / float64(res.Ops)
	}
	res.MachineBusy = machine.busyPercent()
	res.Mean = mean(all)
	res.P50, res.P99, res.Max = quantiles(all)
	res.MinWorkerOps, res.MaxWorkerOps = perG[0], perG[0]
	for _, n := range perG {
		res.MinWorkerOps, res.MaxWorkerOps = min(res.MinWorkerOps, n), max(res.MaxWorkerOps, n)
	}
	return res, nil
}

// casWorkload is cas-seq (one goroutine) and cas-parallel: each goroutine
// owns one key and writes it in a chain of put-if-index, each expecting the
// revision the previous put returned. Every put must succeed, and the key
// must end holding the goroutine's last write.
type casWorkload struct {
	last   []uint64 // per goroutine: revision of its last write
	writes []int64
}

func (w *casWorkload) setup(r *runner) error {
	w.last = make([]uint64, r.cfg.Workers)
	w.writes = make([]int64, r.cfg.Workers)
	return nil
}

func (w *casWorkload) op(r *runner, g int, _ *rand.Rand, _ context.Context) (time.Duration, bool, error) {
	ctx, cancel := r.opCtx()
	defer cancel()
	n := w.writes[g] + 1
	ok, rev, err := r.conn(g).CAS(ctx, r.key("k", g), []byte(strconv.FormatInt(n, 10)), w.last[g])
	if err != nil {
		return 0, false, err
	}
	if !ok {
		return 0, false, fmt.Errorf("put-if-index on %s expecting %d failed its compare: another writer, or a wrong revision returned", r.key("k", g), w.last[g])
	}
	w.last[g], w.writes[g] = rev, n
	return 0, true, nil
}

func (w *casWorkload) check(r *runner) error {
	for g := range w.last {
		if w.writes[g] == 0 {
			continue
		}
		if err := r.expect(r.key("k", g), strconv.FormatInt(w.writes[g], 10), w.last[g]); err != nil {
			return err
		}
	}
	return nil
}

// expect reads key and compares it with what the workload last wrote; rev 0
// skips the revision.
func (r *runner) expect(key, value string, rev uint64) error {
	ctx, cancel := r.opCtx()
	defer cancel()
	v, got, err := r.conn(0).Get(ctx, key)
	if err != nil {
		return fmt.Errorf("check read %s: %w", key, err)
	}
	if string(v) != value || (rev != 0 && got != rev) {
		return fmt.Errorf("%s holds %q at revision %d, want %q at %d", key, v, got, value, rev)
	}
	return nil
}

// lockWorkload is lock-contended (one lock) and lock-many (keys locks,
// picked at random): acquire, read a counter, write it plus one with an
// unguarded write, release. Only mutual exclusion keeps the increments from
// being lost, so each counter must end equal to its lock's acquisitions.
type lockWorkload struct {
	keys     int
	sessions []LockSession
	acquired []atomic.Int64 // per lock
	holds    []samples      // per goroutine
	reads    []samples      // per goroutine: the read that starts each hold
	// closing is the sessions given up after a failed acquire (Config.Retry),
	// closed in the background so a dead leader does not stall the worker.
	closing sync.WaitGroup
}

func (w *lockWorkload) setup(r *runner) error {
	w.acquired = make([]atomic.Int64, w.keys)
	w.holds = make([]samples, r.cfg.Workers)
	w.reads = make([]samples, r.cfg.Workers)
	w.sessions = make([]LockSession, r.cfg.Workers)
	for g := range w.sessions {
		// The session lives for the whole run (etcd ties its lease
		// keep-alive to this context), not just until the deadline.
		s, err := r.conn(g).Session(r.ctx, r.cfg.LockTTL)
		if err != nil {
			return err
		}
		w.sessions[g] = s
	}
	return nil
}

func (w *lockWorkload) closeSessions() {
	w.closing.Wait()
	for _, s := range w.sessions {
		if s != nil {
			s.Close()
		}
	}
}

func (w *lockWorkload) op(r *runner, g int, rng *rand.Rand, stop context.Context) (time.Duration, bool, error) {
	k := 0
	if w.keys > 1 {
		k = rng.IntN(w.keys)
	}
	t0 := time.Now()
	h, err := w.lock(r, g, stop, r.key("lock", k))
	if err != nil {
		if stop.Err() != nil {
			return 0, false, nil // the run ended while this worker waited
		}
		return 0, false, fmt.Errorf("lock: %w", err)
	}
	acquired := time.Now()
	waited := acquired.Sub(t0)
	ctx, cancel := r.opCtx()
	defer cancel()
	counter := r.key("counter", k)
	var v []byte
	err = r.call(ctx, func(ctx context.Context) (err error) {
		v, _, err = r.conn(g).Get(ctx, counter)
		return err
	})
	w.reads[g] = append(w.reads[g], time.Since(acquired))
	if err == nil {
		n, _ := strconv.ParseInt(string(v), 10, 64)
		err = r.call(ctx, func(ctx context.Context) error {
			return r.conn(g).Set(ctx, counter, []byte(strconv.FormatInt(n+1, 10)))
		})
	}
	w.acquired[k].Add(1)
	if uerr := r.call(ctx, h.Unlock); err == nil && uerr != nil {
		err = fmt.Errorf("unlock: %w", uerr)
	}
	w.holds[g] = append(w.holds[g], time.Since(acquired))
	return waited, err == nil, err
}

// lock acquires name for goroutine g. With Config.Retry set, an attempt
// that fails or waits longer than a TTL gives its session up and tries
// again on a fresh one, counting the failure, until it holds the lock or
// stop ends.
func (w *lockWorkload) lock(r *runner, g int, stop context.Context, name string) (Held, error) {
	if r.cfg.Retry <= 0 {
		return w.sessions[g].Lock(stop, name)
	}
	for {
		if w.sessions[g] == nil {
			s, err := w.openSession(r, g)
			if err != nil {
				if stop.Err() != nil {
					return nil, err
				}
				r.errs.Add(1)
				time.Sleep(5 * time.Millisecond)
				continue
			}
			w.sessions[g] = s
		}
		actx, cancel := context.WithTimeout(stop, r.cfg.LockTTL)
		h, err := w.sessions[g].Lock(actx, name)
		cancel()
		if err == nil || stop.Err() != nil {
			return h, err
		}
		r.errs.Add(1)
		old := w.sessions[g]
		w.sessions[g] = nil
		w.closing.Add(1)
		go func() {
			defer w.closing.Done()
			old.Close()
		}()
	}
}

// openSession opens a fresh session for goroutine g, giving up after
// Config.Retry as on any call. The session lives for the whole run (etcd
// ties its lease keep-alive to the context it was opened with), so the
// bound is a timer, not a context: a session that arrives after its caller
// gave up is closed (etcd's lease grant was seen blocking for tens of
// seconds across a leader kill).
func (w *lockWorkload) openSession(r *runner, g int) (LockSession, error) {
	type opened struct {
		s   LockSession
		err error
	}
	ch := make(chan opened, 1)
	w.closing.Add(1)
	go func() {
		defer w.closing.Done()
		s, err := r.conn(g).Session(r.ctx, r.cfg.LockTTL)
		ch <- opened{s, err}
	}()
	t := time.NewTimer(r.cfg.Retry)
	defer t.Stop()
	select {
	case o := <-ch:
		return o.s, o.err
	case <-t.C:
		w.closing.Add(1)
		go func() {
			defer w.closing.Done()
			if o := <-ch; o.s != nil {
				o.s.Close()
			}
		}()
		return nil, fmt.Errorf("open a session: no answer in %v", r.cfg.Retry)
	}
}

func (w *lockWorkload) check(r *runner) error {
	var bad []string
	var total, lost int64
	for k := range w.acquired {
		n := w.acquired[k].Load()
		if n == 0 {
			continue
		}
		total += n
		ctx, cancel := r.opCtx()
		var v []byte
		err := r.call(ctx, func(ctx context.Context) (err error) {
			v, _, err = r.conn(0).Get(ctx, r.key("counter", k))
			return err
		})
		cancel()
		if err != nil {
			return fmt.Errorf("check read: %w", err)
		}
		got, _ := strconv.ParseInt(string(v), 10, 64)
		if got != n {
			lost += n - got
			if len(bad) < 3 {
				bad = append(bad, fmt.Sprintf("%s=%d after %d acquisitions", r.key("counter", k), got, n))
			}
		}
	}
	if bad != nil {
		return fmt.Errorf("mutual exclusion broken: %d of %d increments lost (%s)", lost, total, joinShort(bad))
	}
	return nil
}

func joinShort(s []string) string {
	var b bytes.Buffer
	for i, x := range s {
		if i > 0 {
			b.WriteString("; ")
		}
		b.WriteString(x)
	}
	return b.String()
}

// getWorkload is get: linearizable reads of random keys out of cfg.Keys,
// written before the clock starts. Every read must return what was written.
type getWorkload struct {
	bad atomic.Int64
	eg  atomic.Pointer[string]
}

func getValue(k int) string { return "value-" + strconv.Itoa(k) }

func (w *getWorkload) setup(r *runner) error {
	var wg sync.WaitGroup
	errs := make(chan error, 1)
	const writers = 16
	for i := range writers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for k := i; k < r.cfg.Keys; k += writers {
				ctx, cancel := r.opCtx()
				err := r.conn(i).Set(ctx, r.key("k", k), []byte(getValue(k)))
				cancel()
				if err != nil {
					select {
					case errs <- err:
					default:
					}
					return
				}
			}
		}()
	}
	wg.Wait()
	select {
	case err := <-errs:
		return err
	default:
		return nil
	}
}

func (w *getWorkload) op(r *runner, g int, rng *rand.Rand, _ context.Context) (time.Duration, bool, error) {
	ctx, cancel := r.opCtx()
	defer cancel()
	k := rng.IntN(r.cfg.Keys)
	v, rev, err := r.conn(g).Get(ctx, r.key("k", k))
	if err != nil {
		return 0, false, err
	}
	if string(v) != getValue(k) || rev == 0 {
		if w.bad.Add(1) == 1 {
			s := fmt.Sprintf("%s read %q at revision %d, want %q", r.key("k", k), v, rev, getValue(k))
			w.eg.Store(&s)
		}
	}
	return 0, true, nil
}

func (w *getWorkload) check(*runner) error {
	if n := w.bad.Load(); n > 0 {
		return fmt.Errorf("%d reads returned the wrong value (first: %s)", n, *w.eg.Load())
	}
	return nil
}
