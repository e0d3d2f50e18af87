package raftnode

import "sync"

// stage is what the applier and the persister share: the Ready loop hands
// each its work in order, waits for what is pending when it needs the
// stage idle, and a stage that failed once skips everything after, so the
// loop halts the member on the first failure and nothing later acts on a
// broken store.
type stage struct {
	pending sync.WaitGroup

	mu  sync.Mutex
	err error // the first failure; later work is skipped
}

// wait returns once every job handed is done (or skipped after a
// failure); only the Ready loop calls it.
func (s *stage) wait() { s.pending.Wait() }

// failed is the error that stopped the stage, nil while all is well.
func (s *stage) failed() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.err
}

// fail records err as the stage's failure, unless one is recorded.
func (s *stage) fail(err error) {
	s.mu.Lock()
	if s.err == nil {
		s.err = err
	}
	s.mu.Unlock()
}
