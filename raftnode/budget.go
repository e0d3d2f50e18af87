package raftnode

import (
	"context"
	"fmt"

	"golang.org/x/sync/semaphore"
)

// Memory bounds by bytes. Counts alone (4096 proposals, 4096 received
// messages) let a member hold gigabytes once values are a MiB each.
//
//   - Writes in flight through a member, from the handler's encoding to its
//     answer, are at most maxProposalBytes. A write beyond it is refused at
//     once with ResourceExhausted, before it is proposed: the client backs
//     off and retries, and the outcome is known (not applied).
//   - The leader's uncommitted log tail is at most maxUncommittedBytes
//     (raft's MaxUncommittedEntriesSize); a proposal beyond it is dropped by
//     raft and refused the same way.
//   - Raft messages received and not yet taken in by the Ready loop are at
//     most maxReceivedBytes; a peer stream waits for room, so gRPC's flow
//     control slows the sender, whose own queue is bounded (transport.go).
//
// A single item larger than a whole budget is let through alone, when the
// budget is otherwise empty, so the largest request still makes progress.
const (
	maxUncommittedBytes = 64 << 20
	maxReceivedBytes    = 64 << 20
)

// maxProposalBytes is a variable only so that a test can make it small.
var maxProposalBytes int64 = 64 << 20

// byteBudget is a weighted semaphore (golang.org/x/sync) with items larger
// than it counted as the whole budget.
type byteBudget struct {
	sem  *semaphore.Weighted
	size int64
}

func newByteBudget(size int64) *byteBudget {
	return &byteBudget{sem: semaphore.NewWeighted(size), size: size}
}

func (b *byteBudget) weight(n int) int64 { return min(int64(n), b.size) }

// tryTake takes n bytes if they fit now.
func (b *byteBudget) tryTake(n int) bool { return b.sem.TryAcquire(b.weight(n)) }

// take waits until n bytes fit or ctx ends.
func (b *byteBudget) take(ctx context.Context, n int) error { return b.sem.Acquire(ctx, b.weight(n)) }

// give returns n bytes taken before.
func (b *byteBudget) give(n int) { b.sem.Release(b.weight(n)) }

// errBusy refuses a write the member did not propose because a memory bound
// is reached: retryable after a pause, and certainly not applied.
func errBusy(member uint64, format string, args ...any) error {
	return beforeProposing(fmt.Errorf("member %d is busy: "+format+"; %w", append(append([]any{member}, args...), errOverloaded)...))
}
