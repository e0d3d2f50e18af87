package raftnode

// doorbell tells one waiter that something is pending without ever blocking
// whoever rings it. It holds at most one ring: rings while the waiter is
// busy cost it one wake-up and none is lost, so the waiter must take
// everything pending each time it wakes.
type doorbell chan struct{}

func newDoorbell() doorbell { return make(doorbell, 1) }

func (d doorbell) ring() {
	select {
	case d <- struct{}{}:
	default:
	}
}
