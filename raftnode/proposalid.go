package raftnode

import (
	"fmt"
	"sync"
)

// A proposal id names a command in the log so the member that proposed it
// can hand the result to its waiter: the member id in the top 16 bits, a
// sequence below. Every member applies every entry, so an id must never
// name two commands of one member, and ids must not repeat across restarts:
// an entry proposed before a restart can still be applied after it (it was
// in a leader's log, or in flight to one), and if a new waiter had its id
// it would get that entry's result.
//
// So the sequence never repeats over a data dir's life. It is reserved from
// the store in blocks (kv.Store.ReserveProposalIDs), durably, before any id
// of a block is used: a restarted member, after a clean stop or a crash,
// continues above every id its earlier runs handed out. A restart skips
// what is left of its block; 2^48 ids are 2^28 blocks.
type proposalIDs struct {
	mu        sync.Mutex
	member    uint64
	next, end uint64 // the unused part of the reserved block
	reserve   func(n uint64) (first uint64, err error)
}

const (
	proposalIDBlock = 1 << 20
	proposalSeqBits = 48
)

// id returns the next proposal id.
func (p *proposalIDs) id() (uint64, error) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.next == p.end {
		first, err := p.reserve(proposalIDBlock)
		if err != nil {
			return 0, fmt.Errorf("reserve proposal ids: %w", err)
		}
		if first+proposalIDBlock > 1<<proposalSeqBits {
			return 0, fmt.Errorf("proposal ids of member %d exhausted at %d", p.member, first)
		}
		p.next, p.end = first, first+proposalIDBlock
	}
	seq := p.next
	p.next++
	return p.member<<proposalSeqBits | seq, nil
}
