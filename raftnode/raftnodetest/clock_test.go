package raftnodetest

import (
	"testing"
	"time"
)

func TestJumpClockTimersFollowJumps(t *testing.T) {
	c := NewJumpClock()
	before := c.Now()
	tm := c.NewTimer(time.Hour)
	c.Jump(time.Hour + time.Second)
	select {
	case <-tm.Chan():
	case <-time.After(5 * time.Second):
		t.Fatal("a timer the clock jumped past did not fire")
	}
	if got := c.Since(before); got < time.Hour {
		t.Fatalf("Since after a jump of an hour: %v", got)
	}

	tm = c.NewTimer(50 * time.Millisecond)
	c.Jump(-time.Hour)
	select {
	case <-tm.Chan():
		t.Fatal("a timer fired although the clock jumped back an hour before its deadline")
	case <-time.After(300 * time.Millisecond):
	}
	if !tm.Stop() {
		t.Fatal("Stop of a pending timer reported it inactive")
	}

	tk := c.NewTicker(time.Hour)
	defer tk.Stop()
	c.Jump(3 * time.Hour)
	select {
	case <-tk.Chan():
	case <-time.After(5 * time.Second):
		t.Fatal("a ticker the clock jumped past did not tick")
	}
	fired := make(chan struct{})
	c.AfterFunc(time.Minute, func() { close(fired) })
	c.Jump(time.Minute)
	select {
	case <-fired:
	case <-time.After(5 * time.Second):
		t.Fatal("AfterFunc did not run after the clock jumped past it")
	}
}
