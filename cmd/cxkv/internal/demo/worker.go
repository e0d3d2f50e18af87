package demo

import (
	"context"
	"crypto/tls"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"sync/atomic"
	"time"

	"github.com/cxkv/cxkv/client"
	"github.com/cxkv/cxkv/client/lock"
)

// WorkerConfig is one `cxkv demo worker`.
type WorkerConfig struct {
	Endpoints []string
	TLS       *tls.Config // nil: plaintext
	Scenario  string      // rooms, bank or interactive
	ID        string      // names the worker in records, lock owners and output
	Record    string      // JSON-lines file of what the worker did; "" records nothing
	Mode      string      // bank: lock or optimistic
	Duration  time.Duration
	LockTTL   time.Duration
	LockMode  lock.Mode
	Stats     bool // print JSON stats lines on stdout (for `demo run`) instead of a line per operation

	Rooms RoomsConfig
	Bank  BankConfig

	Out io.Writer
	In  io.Reader // interactive only
}

// Scenarios and modes.
const (
	ScenarioRooms       = "rooms"
	ScenarioBank        = "bank"
	ScenarioInteractive = "interactive"
	ModeLock            = "lock"
	ModeOptimistic      = "optimistic"
)

// Every key the demo writes lives under these prefixes; locks have their own
// so that lock.List sees only locks.
const (
	dataPrefix = "demo/"
	lockPrefix = "demo-locks/"
)

// opTimeout bounds one write, including the SDK's retries across a
// failover. Operations do not use the worker's stop context: a write is
// never abandoned half-way because the run ended.
const opTimeout = 20 * time.Second

// counters are what a worker has done so far, for its stats lines.
type counters struct {
	ops, conflicts, waits, lost, unknown atomic.Int64
	held                                 atomic.Int64 // locks held right now
}

// statsLine is what a worker prints every statsEvery with --stats.
type statsLine struct {
	Worker    string `json:"worker"`
	Ops       int64  `json:"ops"`
	Conflicts int64  `json:"conflicts"`
	Waits     int64  `json:"waits"`
	Lost      int64  `json:"lost"`
	Held      int64  `json:"held"`
	Done      bool   `json:"done,omitempty"`
}

const statsEvery = 250 * time.Millisecond

// worker is the state every scenario shares.
type worker struct {
	cfg WorkerConfig
	c   *client.Client
	mon *lock.ProcessMonitor
	rec *Recorder
	n   counters
	seq int
}

func (w *worker) nextReq() string {
	w.seq++
	return fmt.Sprintf("%s/%d", w.cfg.ID, w.seq)
}

// say prints a line for a person watching this worker's terminal.
func (w *worker) say(format string, args ...any) {
	if !w.cfg.Stats {
		fmt.Fprintf(w.cfg.Out, "[%s] %s\n", w.cfg.ID, fmt.Sprintf(format, args...))
	}
}

// scenario is one workload. step does one operation; done says the
// workload has nothing left to do.
type scenario interface {
	setup(ctx context.Context) error
	step(ctx context.Context) (done bool, err error)
}

// RunWorker runs one worker until its duration ends, ctx ends (SIGINT or
// SIGTERM in the command), or its scenario is done. Locks still held are
// released on the way out.
func RunWorker(ctx context.Context, cfg WorkerConfig) error {
	if cfg.ID == "" {
		return errors.New("worker needs an --id")
	}
	if cfg.LockTTL == 0 {
		cfg.LockTTL = 3 * time.Second
		if cfg.Scenario == ScenarioInteractive {
			cfg.LockTTL = 5 * time.Second // long enough to watch a crashed holder's lock run out
		}
	}
	c, err := client.New(client.Config{Endpoints: cfg.Endpoints, TLS: cfg.TLS})
	if err != nil {
		return err
	}
	defer c.Close()
	rec, err := OpenRecorder(cfg.Record, cfg.ID)
	if err != nil {
		return err
	}
	defer rec.Close()
	w := &worker{cfg: cfg, c: c, rec: rec}
	w.mon = lock.NewProcessMonitor(c, lock.Options{TTL: cfg.LockTTL, Mode: cfg.LockMode, Name: cfg.ID})
	defer w.mon.Close()

	if cfg.Scenario == ScenarioInteractive {
		return runInteractive(ctx, w)
	}
	var sc scenario
	switch cfg.Scenario {
	case ScenarioRooms:
		sc = &roomsWorker{w: w, cfg: cfg.Rooms.withDefaults()}
	case ScenarioBank:
		if cfg.Mode != ModeLock && cfg.Mode != ModeOptimistic {
			return fmt.Errorf("--mode %q: want lock or optimistic", cfg.Mode)
		}
		sc = &bankWorker{w: w, cfg: cfg.Bank.withDefaults()}
	default:
		return fmt.Errorf("--scenario %q: want rooms, bank or interactive", cfg.Scenario)
	}
	if cfg.Duration > 0 {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, cfg.Duration)
		defer cancel()
	}
	setupCtx, cancel := context.WithTimeout(context.Background(), opTimeout)
	err = sc.setup(setupCtx)
	cancel()
	if err != nil {
		return fmt.Errorf("setup: %w", err)
	}
	rec.Add(Entry{Op: OpStart, Mode: cfg.Mode})
	stopStats := w.printStats()
	defer stopStats()
	w.say("started: scenario %s%s", cfg.Scenario, map[bool]string{true: ", mode " + cfg.Mode}[cfg.Mode != "" && cfg.Scenario == ScenarioBank])
	for ctx.Err() == nil {
		done, err := sc.step(ctx)
		if err != nil {
			if ctx.Err() != nil {
				break
			}
			w.say("error: %v", err)
			time.Sleep(100 * time.Millisecond) // the cluster may be electing; do not spin
		}
		if done {
			break
		}
	}
	rec.Add(Entry{Op: OpStop})
	w.say("stopped: %d operations, %d conflicts retried, %d lock waits, %d locks lost", w.n.ops.Load(), w.n.conflicts.Load(), w.n.waits.Load(), w.n.lost.Load())
	return nil
}

// printStats prints a stats line every statsEvery (with --stats) until the
// returned func is called, which prints the final one.
func (w *worker) printStats() func() {
	if !w.cfg.Stats {
		return func() {}
	}
	print := func(done bool) {
		b, _ := json.Marshal(statsLine{Worker: w.cfg.ID, Ops: w.n.ops.Load(), Conflicts: w.n.conflicts.Load(),
			Waits: w.n.waits.Load(), Lost: w.n.lost.Load(), Held: w.n.held.Load(), Done: done})
		fmt.Fprintf(w.cfg.Out, "%s\n", b)
	}
	stop := make(chan struct{})
	finished := make(chan struct{})
	go func() {
		defer close(finished)
		t := time.NewTicker(statsEvery)
		defer t.Stop()
		for {
			select {
			case <-stop:
				return
			case <-t.C:
				print(false)
			}
		}
	}()
	return func() { close(stop); <-finished; print(true) }
}

// acquire takes the lock called name, recording how long it took and
// whether another process held it when asked.
func (w *worker) acquire(ctx context.Context, name string) (*lock.Lock, error) {
	held := false
	if infos, err := lock.List(ctx, w.c, name); err == nil {
		for _, li := range infos {
			if li.Name == name {
				held = true
			}
		}
	}
	l, err := w.mon.Lock(ctx, name)
	if err != nil {
		return nil, err
	}
	w.n.held.Add(1)
	if held {
		w.n.waits.Add(1)
	}
	w.rec.Add(Entry{Op: OpAcquire, Lock: name, Token: l.Token(), WaitUS: l.Waited().Microseconds(), Waited: held})
	return l, nil
}

// release unlocks l; a lock found lost is counted, not fatal: the guarded
// writes already refused to write under it.
func (w *worker) release(l *lock.Lock) {
	w.n.held.Add(-1)
	ctx, cancel := context.WithTimeout(context.Background(), opTimeout)
	defer cancel()
	if err := l.UnlockContext(ctx); err != nil {
		if errors.Is(err, lock.ErrLost) {
			w.n.lost.Add(1)
		}
		w.say("unlock %s: %v", l.Name(), err)
	}
}

func opContext() (context.Context, context.CancelFunc) {
	return context.WithTimeout(context.Background(), opTimeout)
}

// ParseLockMode reads --lock-mode.
func ParseLockMode(s string) (lock.Mode, error) {
	switch s {
	case "queue":
		return lock.Queue, nil
	case "plain":
		return lock.Plain, nil
	}
	return 0, fmt.Errorf("--lock-mode %q: want queue or plain", s)
}
