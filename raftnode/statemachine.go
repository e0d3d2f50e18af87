package raftnode

import (
	"fmt"
	"io"

	"github.com/cxkv/cxkv/api/cxkvpb"
	"github.com/cxkv/cxkv/cmpxchg"
	"github.com/cxkv/cxkv/kv"
)

// StateMachine is the replicated state a member builds from its Raft log.
// raftnode drives it from the Ready goroutine only: Apply, Snapshot and
// Restore are never called concurrently with each other, and Applied only
// before the first of them. The contract, which the member's safety rests
// on:
//
//   - Apply is deterministic: the same entries applied to the same state give
//     the same state and the same results on every member. It reads no clock,
//     starts no goroutine and does no I/O but its own storage.
//   - Apply applies ents, which are consecutive committed entries in log
//     order, each after the previous Applied index, as one unit: after a crash
//     the state holds all of them or none, and Applied says which. It need not
//     be durable when Apply returns: raftnode replays the synced log from
//     Applied on open.
//   - A command the state machine refuses is a result, never an error. An
//     error from Apply means the storage failed: the state is unknown, and
//     the member halts rather than apply anything else.
//   - Snapshot returns a consistent, read-only view of the state at exactly
//     the index of the last entry applied, which stays valid while Apply goes
//     on, until it is closed. Its stream is what Restore takes.
//   - Stage reads a stream from Snapshot onto the member's disk, checking it
//     in full, without touching the state, and names what it staged. It may
//     run on any goroutine, concurrently with the others: a snapshot is
//     received while the member applies. Its memory must not grow with the
//     stream.
//   - Restore replaces the whole state by a staged snapshot, atomically and
//     durably, and consumes it: when it returns nil the state is the
//     snapshot's and Applied is its index, even after a crash; when it
//     fails, or the process dies before it returns, the state is as it was
//     or the snapshot's, never a mix.
//   - Discard drops a staged snapshot that will not be restored. What is
//     staged need not survive a restart.
type StateMachine interface {
	// Applied returns the index of the last entry in the stored state (0 if
	// none) and the Raft configuration stored with it (nil if none).
	Applied() (index uint64, confState []byte, err error)
	// Members returns the member table stored with the state (nil if
	// none): the one the last Apply, or Restore, left.
	Members() ([]byte, error)
	// Apply applies ents and returns one result per entry: the command's
	// result, or nil for an entry that carries no command.
	Apply(ents []Entry) ([]*cxkvpb.CommandResult, error)
	// Snapshot captures the state at the last applied index.
	Snapshot() (StateSnapshot, error)
	// Stage keeps a snapshot stream on disk for Restore.
	Stage(r io.Reader) (name string, err error)
	// Restore replaces the state by a staged snapshot.
	Restore(name string) error
	// Discard drops a staged snapshot.
	Discard(name string) error
}

// Entry is one committed log entry as the state machine sees it.
type Entry struct {
	Index uint64
	// Command is the entry's command; nil for an entry that carries none (a
	// new leader's empty entry, a configuration change, or an entry that does
	// not decode), which only advances the applied index.
	Command *cxkvpb.Command
	// ConfState, if set, is the Raft configuration from this entry on (the
	// entry was a configuration change): it is stored with the state so a
	// restart or a snapshot carries it.
	ConfState []byte
	// Members, if set, is the member table from this entry on (with
	// ConfState): stored with the state like it.
	Members []byte
}

// StateSnapshot is a view of the state taken by StateMachine.Snapshot.
type StateSnapshot interface {
	// Index is the index of the last entry the view holds.
	Index() uint64
	// ConfState is the Raft configuration stored with the view.
	ConfState() []byte
	// WriteTo streams the view in the form Restore takes.
	WriteTo(w io.Writer) (int64, error)
	// Close releases the view.
	Close() error
}

// eventSource is what a state machine that keeps a change history offers
// the watch feed: the events of the last Apply, in log order.
type eventSource interface {
	lastEvents() []kv.Event
}

// kvMachine is the cxkv state machine (cmpxchg) on the member's kv store:
// each Apply is one unsynced kv batch, the applied index and conf state live
// in the same batch as the writes, and a snapshot is a Pebble snapshot.
type kvMachine struct {
	store  *kv.Store
	sm     *cmpxchg.StateMachine
	events []kv.Event
}

func newKVMachine(store *kv.Store, limits cmpxchg.Limits) *kvMachine {
	return &kvMachine{store: store, sm: cmpxchg.New(limits)}
}

func (m *kvMachine) Applied() (uint64, []byte, error) {
	applied, err := m.store.Applied()
	if err != nil {
		return 0, nil, err
	}
	cs, err := m.store.ConfState()
	return applied, cs, err
}

func (m *kvMachine) Apply(ents []Entry) ([]*cxkvpb.CommandResult, error) {
	m.events = nil
	b := m.store.NewBatch()
	defer b.Close()
	b.Reserve(len(ents))
	out := make([]*cxkvpb.CommandResult, len(ents))
	for i, e := range ents {
		if e.ConfState != nil {
			if err := b.SetConfState(e.ConfState); err != nil {
				return nil, err
			}
		}
		if e.Members != nil {
			if err := b.SetMembers(e.Members); err != nil {
				return nil, err
			}
		}
		if e.Command == nil {
			if err := b.SetApplied(e.Index); err != nil {
				return nil, err
			}
			continue
		}
		res, err := m.sm.Apply(b, e.Index, e.Command)
		if err != nil {
			return nil, fmt.Errorf("apply entry %d: %w", e.Index, err)
		}
		out[i] = res
	}
	if err := b.Commit(false); err != nil {
		return nil, fmt.Errorf("commit applied state: %w", err)
	}
	m.events = b.Events()
	return out, nil
}

func (m *kvMachine) Members() ([]byte, error) { return m.store.Members() }

func (m *kvMachine) lastEvents() []kv.Event { return m.events }

func (m *kvMachine) Snapshot() (StateSnapshot, error) {
	ss := m.store.NewStateSnapshot()
	index, err := ss.Applied()
	if err != nil {
		ss.Close()
		return nil, err
	}
	cs, err := ss.ConfState()
	if err != nil {
		ss.Close()
		return nil, err
	}
	return &kvSnapshot{StateSnapshot: ss, index: index, confState: cs}, nil
}

func (m *kvMachine) Stage(r io.Reader) (string, error) {
	st, err := m.store.StageState(r, nil)
	return st.Name, err
}

func (m *kvMachine) Restore(name string) error { return m.store.InstallStaged(name) }
func (m *kvMachine) Discard(name string) error { return m.store.DiscardStaged(name) }

type kvSnapshot struct {
	*kv.StateSnapshot
	index     uint64
	confState []byte
}

func (s *kvSnapshot) Index() uint64     { return s.index }
func (s *kvSnapshot) ConfState() []byte { return s.confState }
