package raftnodetest

import (
	"sync"
	"time"

	"github.com/jonboulle/clockwork"
)

// JumpClock is a clockwork.Clock that runs at the real clock's pace from
// an offset a test can move: Jump(d) moves it forward or back at once, as a
// member's clock does when its machine is suspended and resumed, or is set
// wrong. Timers and tickers follow the jump: one whose deadline the clock
// jumped past fires at once; after a jump back, each waits out the extra
// time. A ticker fires once for a jump however many periods it skipped, as
// time.Ticker drops ticks a slow reader missed.
//
// clockwork's own fake clock stands still unless advanced, which suits a
// unit test but not a cluster that must run in real time while one member's
// clock is wrong; hence this one.
type JumpClock struct {
	mu     sync.Mutex
	offset time.Duration
	timers map[*jumpTimer]bool // armed
}

var _ clockwork.Clock = (*JumpClock)(nil)

// NewJumpClock is a clock that reads the real time until it jumps.
func NewJumpClock() *JumpClock { return &JumpClock{timers: map[*jumpTimer]bool{}} }

// Jump moves the clock by d (negative: back).
func (c *JumpClock) Jump(d time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.offset += d
	for t := range c.timers {
		t.armLocked()
	}
}

// Offset is how far the clock is from the real one.
func (c *JumpClock) Offset() time.Duration {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.offset
}

func (c *JumpClock) nowLocked() time.Time                   { return time.Now().Add(c.offset) }
func (c *JumpClock) Now() time.Time                         { c.mu.Lock(); defer c.mu.Unlock(); return c.nowLocked() }
func (c *JumpClock) Since(t time.Time) time.Duration        { return c.Now().Sub(t) }
func (c *JumpClock) Until(t time.Time) time.Duration        { return t.Sub(c.Now()) }
func (c *JumpClock) After(d time.Duration) <-chan time.Time { return c.NewTimer(d).Chan() }
func (c *JumpClock) Sleep(d time.Duration)                  { <-c.After(d) }

func (c *JumpClock) NewTimer(d time.Duration) clockwork.Timer {
	return c.newTimer(d, 0, nil)
}

func (c *JumpClock) AfterFunc(d time.Duration, f func()) clockwork.Timer {
	return c.newTimer(d, 0, f)
}

func (c *JumpClock) NewTicker(d time.Duration) clockwork.Ticker {
	if d <= 0 {
		panic("raftnodetest: non-positive ticker period")
	}
	return jumpTicker{c.newTimer(d, d, nil)}
}

func (c *JumpClock) newTimer(d, period time.Duration, f func()) *jumpTimer {
	c.mu.Lock()
	defer c.mu.Unlock()
	t := &jumpTimer{c: c, ch: make(chan time.Time, 1), f: f, period: period, deadline: c.nowLocked().Add(d)}
	c.timers[t] = true
	t.armLocked()
	return t
}

// jumpTimer is a timer or (period > 0) a ticker on a JumpClock. It waits on
// a real timer for the time left to its deadline, re-armed at every jump.
type jumpTimer struct {
	c        *JumpClock
	ch       chan time.Time
	f        func()
	period   time.Duration
	deadline time.Time
	real     *time.Timer
	gen      uint64 // the arming the real timer belongs to
}

func (t *jumpTimer) armLocked() {
	if t.real != nil {
		t.real.Stop()
	}
	t.gen++
	gen := t.gen
	t.real = time.AfterFunc(t.deadline.Sub(t.c.nowLocked()), func() { t.fire(gen) })
}

func (t *jumpTimer) fire(gen uint64) {
	c := t.c
	c.mu.Lock()
	if gen != t.gen || !c.timers[t] {
		c.mu.Unlock()
		return // re-armed or stopped since
	}
	now := c.nowLocked()
	if now.Before(t.deadline) { // the real timer ran early relative to the clock: wait on
		t.armLocked()
		c.mu.Unlock()
		return
	}
	if t.period > 0 {
		for !t.deadline.After(now) {
			t.deadline = t.deadline.Add(t.period)
		}
		t.armLocked()
	} else {
		delete(c.timers, t)
	}
	f := t.f
	c.mu.Unlock()
	if f != nil {
		go f()
		return
	}
	select {
	case t.ch <- now:
	default: // a tick nobody read yet stands for this one
	}
}

func (t *jumpTimer) Chan() <-chan time.Time { return t.ch }

func (t *jumpTimer) Stop() bool {
	c := t.c
	c.mu.Lock()
	defer c.mu.Unlock()
	active := c.timers[t]
	delete(c.timers, t)
	if t.real != nil {
		t.real.Stop()
	}
	return active
}

func (t *jumpTimer) Reset(d time.Duration) bool {
	c := t.c
	c.mu.Lock()
	defer c.mu.Unlock()
	active := c.timers[t]
	if t.period > 0 {
		t.period = d
	}
	t.deadline = c.nowLocked().Add(d)
	c.timers[t] = true
	t.armLocked()
	return active
}

type jumpTicker struct{ t *jumpTimer }

func (k jumpTicker) Chan() <-chan time.Time { return k.t.ch }
func (k jumpTicker) Reset(d time.Duration)  { k.t.Reset(d) }
func (k jumpTicker) Stop()                  { k.t.Stop() }
