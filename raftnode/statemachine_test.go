package raftnode

import (
	"bytes"
	"context"
	"encoding/binary"
	"fmt"
	"io"
	"sync"
	"testing"
	"time"

	"github.com/cxkv/cxkv/api/cxkvpb"
	"github.com/cxkv/cxkv/internal/loopback"
)

// recordingMachine is a StateMachine that keeps, in memory, the key of every
// command it was given in order. It outlives the member, as a state machine
// with its own durable storage would: a restarted member finds it where it
// left it and must resume after its Applied index.
type recordingMachine struct {
	mu      sync.Mutex
	applied uint64
	conf    []byte
	members []byte
	keys    []string // one per applied command, in apply order
	indexes []uint64 // the index of every entry given, in order
	err     error    // the first broken promise seen
}

func (m *recordingMachine) Applied() (uint64, []byte, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.applied, m.conf, nil
}

func (m *recordingMachine) Members() ([]byte, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.members, nil
}

func (m *recordingMachine) Apply(ents []Entry) ([]*cxkvpb.CommandResult, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	out := make([]*cxkvpb.CommandResult, len(ents))
	for i, e := range ents {
		if e.Index != m.applied+1 && m.err == nil {
			m.err = fmt.Errorf("entry %d given after %d", e.Index, m.applied)
		}
		m.applied = e.Index
		m.indexes = append(m.indexes, e.Index)
		if e.ConfState != nil {
			m.conf = e.ConfState
		}
		if e.Members != nil {
			m.members = e.Members
		}
		if p := e.Command.GetPut(); p != nil {
			m.keys = append(m.keys, p.GetKey())
			out[i] = &cxkvpb.CommandResult{Result: &cxkvpb.CommandResult_Put{Put: &cxkvpb.PutResponse{Successful: true}}}
		}
	}
	return out, nil
}

func (m *recordingMachine) Snapshot() (StateSnapshot, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	var buf bytes.Buffer
	for _, k := range m.keys {
		binary.Write(&buf, binary.BigEndian, uint32(len(k)))
		buf.WriteString(k)
	}
	return &memSnapshot{index: m.applied, conf: m.conf, data: buf.Bytes()}, nil
}

func (m *recordingMachine) Stage(io.Reader) (string, error) {
	return "", fmt.Errorf("recordingMachine: a single member never receives a snapshot")
}

func (m *recordingMachine) Restore(string) error {
	return fmt.Errorf("recordingMachine: a single member never restores")
}

func (m *recordingMachine) Discard(string) error { return nil }

type memSnapshot struct {
	index uint64
	conf  []byte
	data  []byte
}

func (s *memSnapshot) Index() uint64     { return s.index }
func (s *memSnapshot) ConfState() []byte { return s.conf }
func (s *memSnapshot) WriteTo(w io.Writer) (int64, error) {
	n, err := w.Write(s.data)
	return int64(n), err
}
func (s *memSnapshot) Close() error { return nil }

// raftnode drives any StateMachine through the interface alone: every
// committed entry reaches it exactly once, in log order with no gap, and a
// restarted member resumes after the machine's Applied index, not from the
// start of the log and not past an entry it never gave.
func TestFakeStateMachineSeesEachEntryOnceAcrossRestart(t *testing.T) {
	sm := &recordingMachine{}
	lis, err := loopback.Listen()
	if err != nil {
		t.Fatal(err)
	}
	addr := lis.Addr().String()
	cfg := Config{
		ID: 1, Addr: addr, Listener: lis, DataDir: t.TempDir(),
		TickInterval: 10 * time.Millisecond, StateMachine: sm,
		SnapshotEntries: 7, CatchUpEntries: 3, // snapshots and truncation happen too
	}
	var want []string
	write := func(n *Node, round int) {
		for deadline := time.Now().Add(5 * time.Second); n.Status().Role != "leader"; time.Sleep(5 * time.Millisecond) {
			if time.Now().After(deadline) {
				t.Fatal("the member did not elect itself")
			}
		}
		for i := 0; i < 15; i++ {
			key := fmt.Sprintf("r%d/k%02d", round, i)
			ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
			res, _, err := n.propose(ctx, &cxkvpb.Command{Op: &cxkvpb.Command_Put{Put: &cxkvpb.PutRequest{Key: key}}})
			cancel()
			if err != nil {
				t.Fatalf("propose %s: %v", key, err)
			}
			if !res.GetPut().GetSuccessful() {
				t.Fatalf("propose %s: the waiter got %v, not the machine's result", key, res)
			}
			want = append(want, key)
		}
	}
	for round := 0; round < 3; round++ {
		n, err := Start(cfg)
		if err != nil {
			t.Fatalf("start %d: %v", round, err)
		}
		write(n, round)
		if err := n.Stop(); err != nil {
			t.Fatal(err)
		}
		cfg.Listener = nil
	}
	sm.mu.Lock()
	defer sm.mu.Unlock()
	if sm.err != nil {
		t.Fatal(sm.err)
	}
	if fmt.Sprint(sm.keys) != fmt.Sprint(want) {
		t.Fatalf("the machine applied\n%v\nwant each proposal once, in order:\n%v", sm.keys, want)
	}
	for i, idx := range sm.indexes {
		if idx != uint64(i+1) {
			t.Fatalf("entry %d given as the %d-th: indexes %v", idx, i+1, sm.indexes)
		}
	}
}
