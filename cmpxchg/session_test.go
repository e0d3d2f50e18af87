package cmpxchg_test

import (
	"bufio"
	"bytes"
	"encoding/binary"
	"fmt"
	"hash/crc32"
	"io"
	"math/rand"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/cockroachdb/pebble/v2/vfs"
	"github.com/cxkv/cxkv/api/cxkvpb"
	"github.com/cxkv/cxkv/cmpxchg"
	"github.com/cxkv/cxkv/kv"
	"google.golang.org/grpc/codes"
	"google.golang.org/protobuf/proto"
)

// sessionModel is the exactly-once contract written the plain way: every
// command scans for expired clients and results live in a map. The state
// machine keeps hints to skip that work; they must never change an outcome.
type sessionModel struct {
	limits   cmpxchg.Limits
	now      int64 // the table's time: the highest stamp seen
	sessions map[uint64]*modelSession
}

type modelSession struct {
	acked   uint64
	stamp   int64
	results map[uint64]uint64 // seq -> index the write was applied at
}

// oldest is the least recently used client, ties to the lower id, as the
// store orders them (the test uses no negative stamps).
func (m *sessionModel) oldest() (uint64, *modelSession) {
	var client uint64
	var old *modelSession
	for c, s := range m.sessions {
		if old == nil || s.stamp < old.stamp || (s.stamp == old.stamp && c < client) {
			client, old = c, s
		}
	}
	return client, old
}

// apply returns what the machine must answer: the index the write was applied
// at (now or originally), or -1 when it is refused as outcome unknown.
func (m *sessionModel) apply(client, seq, ackedAsked uint64, fresh bool, stamp int64, index uint64) int64 {
	m.now = max(m.now, stamp)
	cutoff := m.now - m.limits.SessionTTL.Milliseconds()
	for {
		c, s := m.oldest()
		if s == nil || s.stamp >= cutoff {
			break
		}
		delete(m.sessions, c)
	}
	s, found := m.sessions[client]
	if found {
		s.stamp = m.now
		if seq <= s.acked {
			return -1
		}
		if at, ok := s.results[seq]; ok {
			return int64(at)
		}
	} else {
		if !fresh || seq != 1 {
			return -1 // no session: a retry of a forgotten write, maybe
		}
		s = &modelSession{stamp: m.now, results: map[uint64]uint64{}}
		m.sessions[client] = s
	}
	acked := max(s.acked, ackedAsked)
	if limit := uint64(m.limits.MaxResultsPerSession); seq > limit {
		acked = max(acked, seq-limit)
	}
	s.acked = acked
	for q := range s.results {
		if q <= acked {
			delete(s.results, q)
		}
	}
	if seq > acked {
		s.results[seq] = index
	}
	for len(m.sessions) > m.limits.MaxSessions {
		c, _ := m.oldest()
		delete(m.sessions, c)
	}
	return int64(index)
}

type machine struct {
	store *kv.Store
	sm    *cmpxchg.StateMachine
}

func newMachine(t *testing.T, l cmpxchg.Limits) *machine {
	s, err := kv.Open("db", kv.Options{FS: vfs.NewMem()})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	return &machine{store: s, sm: cmpxchg.New(l)}
}

func (m *machine) apply(t *testing.T, index uint64, cmd *cxkvpb.Command) int64 {
	t.Helper()
	b := m.store.NewBatch()
	defer b.Close()
	res, err := m.sm.Apply(b, index, cmd)
	if err != nil {
		t.Fatal(err)
	}
	if err := b.Commit(false); err != nil {
		t.Fatal(err)
	}
	if e := res.GetError(); e != nil {
		if !isOutcomeUnknown(e) {
			t.Fatalf("index %d: unexpected error %v", index, e)
		}
		return -1
	}
	if txn := res.GetTxn(); txn != nil {
		if got := txn.GetResults()[0].GetRecord().GetValue(); !bytes.Equal(got, bigValue) {
			t.Fatalf("index %d: the transaction read %d bytes, want the %d of %q", index, len(got), len(bigValue), bigKey)
		}
		return int64(txn.GetIndex())
	}
	return int64(res.GetDelete().GetIndex())
}

// bigKey holds bigValue, which a transaction that reads it carries in its
// result: too large for the table to keep inline in the client's header,
// so that result goes to a key of its own.
var (
	bigKey   = "big"
	bigValue = bytes.Repeat([]byte("v"), 1100)
)

type frame struct{ key, value []byte }

func snapshotFrames(t *testing.T, s *kv.Store) []frame {
	t.Helper()
	ss := s.NewStateSnapshot()
	defer ss.Close()
	var buf bytes.Buffer
	if _, err := ss.WriteTo(&buf); err != nil {
		t.Fatal(err)
	}
	r := bufio.NewReader(bytes.NewReader(buf.Bytes()[len(snapshotMagic):]))
	var out []frame
	for {
		klen, err := binary.ReadUvarint(r)
		if err != nil {
			t.Fatal(err)
		}
		if klen == 0 {
			return out
		}
		k := make([]byte, klen)
		io.ReadFull(r, k)
		vlen, _ := binary.ReadUvarint(r)
		v := make([]byte, vlen)
		if _, err := io.ReadFull(r, v); err != nil {
			t.Fatal(err)
		}
		out = append(out, frame{k, v})
	}
}

// snapshotMagic starts the snapshot streams of this build (version 3);
// oldSnapshotMagic the streams of builds whose table kept every result in
// a key of its own (version 2).
var (
	snapshotMagic    = []byte("cxkvsnap\x03")
	oldSnapshotMagic = []byte("cxkvsnap\x02")
)

func restoreFrames(t *testing.T, s *kv.Store, magic []byte, frames []frame) {
	t.Helper()
	slices.SortFunc(frames, func(a, b frame) int { return bytes.Compare(a.key, b.key) })
	buf := slices.Clone(magic)
	for _, f := range frames {
		buf = binary.AppendUvarint(buf, uint64(len(f.key)))
		buf = append(buf, f.key...)
		buf = binary.AppendUvarint(buf, uint64(len(f.value)))
		buf = append(buf, f.value...)
	}
	buf = append(buf, 0)
	buf = binary.BigEndian.AppendUint32(buf, crc32.Checksum(buf, crc32.MakeTable(crc32.Castagnoli)))
	if err := s.RestoreState(bytes.NewReader(buf)); err != nil {
		t.Fatal(err)
	}
}

// sessionHeader is a stored header of the table, of any of the formats
// kv/sessionheader.go reads.
type sessionHeader struct {
	acked, top, spillTop uint64
	stamp                int64
	inline               map[uint64][]byte
}

func decodeHeader(t *testing.T, v []byte) sessionHeader {
	t.Helper()
	var h sessionHeader
	var n int
	next := func() uint64 {
		x, k := binary.Uvarint(v[n:])
		if k <= 0 {
			t.Fatalf("malformed header %x at byte %d", v, n)
		}
		n += k
		return x
	}
	h.acked = next()
	stamp, k := binary.Varint(v[n:])
	if k <= 0 {
		t.Fatalf("malformed header %x", v)
	}
	h.stamp, n = stamp, n+k
	h.inline = map[uint64][]byte{}
	if n == len(v) {
		return h // first format
	}
	h.top = next()
	if n == len(v) {
		return h // second format
	}
	h.spillTop = next()
	for n < len(v) {
		seq := h.acked + next()
		size := int(next())
		h.inline[seq] = v[n : n+size]
		n += size
	}
	return h
}

// asOlderFormat rewrites a state as an older version of the table stored
// it: every result in a key of its own, headers of (acked, stamp, top)
// (the second format) or, with first, of (acked, stamp) and no session
// floor (the first).
func asOlderFormat(t *testing.T, frames []frame, first bool) []frame {
	var out []frame
	for _, f := range frames {
		switch {
		case first && string(f.key) == "msessionfloor":
			continue
		case f.key[0] == 'S':
			h := decodeHeader(t, f.value)
			for seq, res := range h.inline {
				k := append([]byte{'s'}, f.key[1:9]...)
				out = append(out, frame{binary.BigEndian.AppendUint64(k, seq), res})
			}
			v := binary.AppendUvarint(nil, h.acked)
			v = binary.AppendVarint(v, h.stamp)
			if !first {
				v = binary.AppendUvarint(v, h.top)
			}
			f.value = v
		}
		out = append(out, f)
	}
	return out
}

// checkStored compares the sessions and results in the store with the
// model: a forgotten result or client must leave nothing behind, and no
// result may be both inline and in a key of its own. It returns how many
// results are in keys of their own.
func checkStored(t *testing.T, s *kv.Store, model *sessionModel) (spilled int) {
	t.Helper()
	var clients, results, wantClients, wantResults []string
	for _, f := range snapshotFrames(t, s) {
		switch f.key[0] {
		case 'S':
			c := binary.BigEndian.Uint64(f.key[1:])
			clients = append(clients, fmt.Sprint(c))
			for seq := range decodeHeader(t, f.value).inline {
				results = append(results, fmt.Sprintf("%d/%d", c, seq))
			}
		case 's':
			results = append(results, fmt.Sprintf("%d/%d", binary.BigEndian.Uint64(f.key[1:]), binary.BigEndian.Uint64(f.key[9:])))
			spilled++
		}
	}
	for c, ms := range model.sessions {
		wantClients = append(wantClients, fmt.Sprint(c))
		for q := range ms.results {
			wantResults = append(wantResults, fmt.Sprintf("%d/%d", c, q))
		}
	}
	slices.Sort(clients)
	slices.Sort(results)
	slices.Sort(wantClients)
	slices.Sort(wantResults)
	if !slices.Equal(clients, wantClients) || !slices.Equal(results, wantResults) {
		t.Fatalf("stored sessions %v results %v\nwant sessions %v results %v", clients, results, wantClients, wantResults)
	}
	return spilled
}

// TestSessionsMatchModel drives the machine with random writes from a few
// clients, stamps that sometimes run backwards (a proposer that has not seen
// the latest stamp), and acks that skip ahead, and checks every answer and
// the stored table against the model. A client whose session is gone starts
// over with a new id, as the SDK does. Every third seq is a transaction
// whose result is too large to be held in its client's header. Midway it
// restores snapshots into fresh stores, two of them rewritten as the older
// formats (see asOlderFormat); all must go on answering exactly the same.
func TestSessionsMatchModel(t *testing.T) {
	l := cmpxchg.DefaultLimits()
	l.MaxSessions, l.MaxResultsPerSession, l.SessionTTL = 4, 3, 100*time.Millisecond
	for seed := int64(1); seed <= 8; seed++ {
		t.Run(fmt.Sprint(seed), func(t *testing.T) {
			rng := rand.New(rand.NewSource(seed))
			model := &sessionModel{limits: l, sessions: map[uint64]*modelSession{}}
			machines := []*machine{newMachine(t, l)}
			machines[0].apply(t, 1, &cxkvpb.Command{Op: &cxkvpb.Command_Put{Put: &cxkvpb.PutRequest{Key: bigKey, Value: bigValue}}})
			ids := make([]uint64, 7) // each slot's current client id
			for i := range ids {
				ids[i] = uint64(i + 1)
			}
			nextID := uint64(len(ids) + 1)
			next := map[uint64]uint64{}
			stamp := int64(1000)
			refusedNew := 0
			spilled := 0
			for index := uint64(2); index <= 1500; index++ {
				switch r := rng.Intn(20); {
				case r == 0:
					stamp -= rng.Int63n(150) // behind the last proposer
				case r < 8:
					stamp += rng.Int63n(60)
				}
				slot := rng.Intn(len(ids))
				client := ids[slot]
				seq := next[client] + 1
				retry := rng.Intn(4) == 0 && seq > 1
				if retry { // maybe of a forgotten seq
					seq -= uint64(1 + rng.Intn(min(int(seq-1), 5)))
				}
				next[client] = max(next[client], seq)
				acked := uint64(0)
				if seq > 1 {
					acked = seq - 1 - uint64(rng.Intn(int(min(seq-1, 4))))
				}
				fresh := seq == 1 && !retry
				wid := &cxkvpb.WriteID{ClientId: client, Seq: seq, AckedSeq: acked, NewClient: fresh}
				cmd := &cxkvpb.Command{StampUnixMs: stamp, ClusterMs: proto.Int64(stamp), Op: &cxkvpb.Command_Delete{Delete: &cxkvpb.DeleteRequest{
					Key: "absent", ExpectIndex: 1, WriteId: wid,
				}}}
				if seq%3 == 0 { // a write whose result the table spills
					cmd.Op = &cxkvpb.Command_Txn{Txn: &cxkvpb.TxnRequest{Ops: []*cxkvpb.TxnOp{{Type: cxkvpb.TxnOp_GET, Key: bigKey}}, WriteId: wid}}
				}
				want := model.apply(client, seq, acked, fresh, stamp, index)
				for i, m := range machines {
					if got := m.apply(t, index, cmd); got != want {
						t.Fatalf("machine %d, index %d (client %d seq %d acked %d new %v stamp %d): answer %d, want %d", i, index, client, seq, acked, fresh, stamp, got, want)
					}
				}
				if _, alive := model.sessions[client]; !alive && !retry {
					// Refused for want of a session (or evicted by its own
					// arrival's neighbours): start over as a new client.
					if want == -1 {
						refusedNew++
					}
					ids[slot] = nextID
					nextID++
				}
				if index%100 == 0 {
					for _, m := range machines {
						spilled += checkStored(t, m.store, model)
					}
				}
				if index == 700 {
					frames := snapshotFrames(t, machines[0].store)
					current, second, first := newMachine(t, l), newMachine(t, l), newMachine(t, l)
					restoreFrames(t, current.store, snapshotMagic, frames)
					restoreFrames(t, second.store, oldSnapshotMagic, asOlderFormat(t, frames, false))
					restoreFrames(t, first.store, oldSnapshotMagic, asOlderFormat(t, frames, true))
					machines = append(machines, current, second, first)
				}
			}
			if refusedNew == 0 {
				t.Fatal("no write was refused for want of a session: the run does not reach the rule")
			}
			if spilled == 0 {
				t.Fatal("no result was ever held in a key of its own: the run does not reach spilling")
			}
		})
	}
}

// isOutcomeUnknown reports whether a refusal is the table's "outcome
// unknown" and says nothing it does not know: in particular never that the
// write was applied.
func isOutcomeUnknown(e *cxkvpb.CommandError) bool {
	return codes.Code(e.GetCode()) == codes.FailedPrecondition &&
		strings.Contains(e.GetMessage(), "outcome unknown") && !strings.Contains(e.GetMessage(), "was applied and")
}

// TestWriteBelowWindowIsNotClaimedApplied: a write that was never applied
// arrives after MaxResultsPerSession later writes of its client. The table
// has moved its window past it, so it cannot know the write was never
// applied; it must refuse it as outcome unknown, not apply it and not call
// it applied.
func TestWriteBelowWindowIsNotClaimedApplied(t *testing.T) {
	l := cmpxchg.DefaultLimits()
	m := newMachine(t, l)
	put := func(seq uint64, key string) *cxkvpb.Command {
		return &cxkvpb.Command{StampUnixMs: 1, ClusterMs: proto.Int64(1), Op: &cxkvpb.Command_Put{Put: &cxkvpb.PutRequest{
			Key: key, Value: []byte("v"), WriteId: &cxkvpb.WriteID{ClientId: 5, Seq: seq, NewClient: seq == 1},
		}}}
	}
	index := uint64(0)
	for seq := uint64(1); seq <= uint64(l.MaxResultsPerSession)+2; seq++ {
		if seq == 2 {
			continue // lost on its way: never applied
		}
		index++
		if got := m.apply(t, index, put(seq, fmt.Sprint("k", seq))); got != 0 {
			t.Fatalf("seq %d refused", seq)
		}
	}
	index++
	b := m.store.NewBatch()
	res, err := m.sm.Apply(b, index, put(2, "k2"))
	if err != nil {
		t.Fatal(err)
	}
	if err := b.Commit(false); err != nil {
		t.Fatal(err)
	}
	b.Close()
	if e := res.GetError(); e == nil || !isOutcomeUnknown(e) {
		t.Fatalf("write below the window: got %v, want a refusal as outcome unknown that does not claim it was applied", res)
	}
	if _, found, _ := m.store.Get("k2"); found {
		t.Fatal("the refused write was applied")
	}
}
