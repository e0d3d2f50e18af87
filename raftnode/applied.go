package raftnode

import (
	"context"
	"sync"
)

// appliedIndex is the applied index with a broadcast: every change closes the
// current channel, waking reads waiting for their index, without the Ready
// loop knowing who waits. Watch streams do not wait on it: the event feed
// rings only those an applied event concerns (feed.go).
type appliedIndex struct {
	mu sync.Mutex
	v  uint64
	ch chan struct{}
}

func (a *appliedIndex) init() { a.ch = make(chan struct{}) }

func (a *appliedIndex) set(v uint64) {
	a.mu.Lock()
	a.v = v
	close(a.ch)
	a.ch = make(chan struct{})
	a.mu.Unlock()
}

func (a *appliedIndex) get() uint64 {
	a.mu.Lock()
	defer a.mu.Unlock()
	return a.v
}

// next returns the applied index and a channel closed when it changes.
func (a *appliedIndex) next() (uint64, <-chan struct{}) {
	a.mu.Lock()
	defer a.mu.Unlock()
	return a.v, a.ch
}

func (a *appliedIndex) wait(ctx context.Context, index uint64, stop <-chan struct{}) error {
	for {
		v, ch := a.next()
		if v >= index {
			return nil
		}
		select {
		case <-ch:
		case <-ctx.Done():
			return contextError(ctx.Err(), false)
		case <-stop:
			return errStopping
		}
	}
}
