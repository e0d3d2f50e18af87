package kv

import (
	"bytes"
	"fmt"
	"math/rand/v2"
	"reflect"
	"strings"
	"testing"

	"github.com/cockroachdb/pebble/v2/vfs"
)

func openMem(t testing.TB, fs vfs.FS) *Store {
	t.Helper()
	s, err := Open("db", Options{FS: fs})
	if err != nil {
		t.Fatal(err)
	}
	return s
}

func mustCommit(t *testing.T, b *Batch, sync bool) {
	t.Helper()
	if err := b.Commit(sync); err != nil {
		t.Fatal(err)
	}
	b.Close()
}

func TestBatchReadsItsOwnWritesAndListPages(t *testing.T) {
	s := openMem(t, vfs.NewMem())
	defer s.Close()
	b := s.NewBatch()
	for i, k := range []string{"a/1", "a/2", "a/3", "b/1"} {
		if err := b.Put(Record{Key: k, Value: []byte(k), Index: uint64(i + 1), CreateIndex: uint64(i + 1)}); err != nil {
			t.Fatal(err)
		}
	}
	if r, ok, err := b.Get("a/2"); err != nil || !ok || string(r.Value) != "a/2" || r.Index != 2 {
		t.Fatalf("batch read: %+v %v %v", r, ok, err)
	}
	if _, ok, _ := s.Get("a/2"); ok {
		t.Fatal("uncommitted write visible outside the batch")
	}
	if err := b.Delete("a/3"); err != nil {
		t.Fatal(err)
	}
	mustCommit(t, b, false)

	page, more, err := s.List("a/", "", 1, 1<<30)
	if err != nil || len(page) != 1 || page[0].Key != "a/1" || !more {
		t.Fatalf("page 1: %+v more=%v err=%v", page, more, err)
	}
	page, more, err = s.List("a/", "a/1", 10, 1<<30)
	if err != nil || len(page) != 1 || page[0].Key != "a/2" || more {
		t.Fatalf("page 2: %+v more=%v err=%v", page, more, err)
	}
}

func TestEventsInLogOrderAndCompaction(t *testing.T) {
	s := openMem(t, vfs.NewMem())
	defer s.Close()
	b := s.NewBatch()
	for i := uint64(1); i <= 5; i++ {
		for _, k := range []string{"x/b", "x/a", "y"} { // two events of one index keep their order
			if err := b.AddEvent(Event{Type: EventPut, Record: Record{Key: k, Index: i}}); err != nil {
				t.Fatal(err)
			}
		}
	}
	mustCommit(t, b, false)
	evs, err := s.Events("x/", 3, 100, 1<<30)
	if err != nil {
		t.Fatal(err)
	}
	var got []string
	for _, e := range evs {
		got = append(got, fmt.Sprintf("%d:%s", e.Record.Index, e.Record.Key))
	}
	if want := "4:x/b 4:x/a 5:x/b 5:x/a"; strings.Join(got, " ") != want {
		t.Fatalf("events = %v, want %s", got, want)
	}
	if err := s.CompactEvents(4); err != nil {
		t.Fatal(err)
	}
	first, _ := s.FirstEventIndex()
	evs, _ = s.Events("", 0, 100, 1<<30)
	if first != 4 || len(evs) != 6 || evs[0].Record.Index != 4 {
		t.Fatalf("after compaction first=%d events=%d", first, len(evs))
	}
}

func TestTTLIndexFollowsRecords(t *testing.T) {
	s := openMem(t, vfs.NewMem())
	defer s.Close()
	b := s.NewBatch()
	b.Put(Record{Key: "lease", TTLMillis: 1000, Index: 1})
	b.Put(Record{Key: "plain", Index: 2})
	b.Put(Record{Key: "was-lease", TTLMillis: 1000, Index: 3})
	b.Put(Record{Key: "was-lease", Index: 4}) // renewed without TTL
	b.Put(Record{Key: "gone", TTLMillis: 5, Index: 5})
	b.Delete("gone")
	mustCommit(t, b, false)
	var keys []string
	if err := s.TTLRecords(func(r Record) error { keys = append(keys, r.Key); return nil }); err != nil {
		t.Fatal(err)
	}
	if strings.Join(keys, ",") != "lease" {
		t.Fatalf("TTL records = %v, want [lease]", keys)
	}

	// A record that had no TTL and gets none leaves the TTL index alone:
	// one batch entry, the record's.
	b = s.NewBatch()
	defer b.Close()
	before := b.b.Count()
	if err := b.Put(Record{Key: "plain", Value: []byte("v2"), Index: 6}); err != nil {
		t.Fatal(err)
	}
	if n := b.b.Count() - before; n != 1 {
		t.Fatalf("a put over a record without TTL wrote %d batch entries, want 1", n)
	}
}

// A synced commit survives a crash; that is the whole promise the Raft log
// relies on. Unsynced state may vanish, and the applied index vanishes with
// it, because both are written in the same batch.
func TestCrashKeepsSyncedWritesAndAppliedIndexWithItsState(t *testing.T) {
	fs := vfs.NewCrashableMem()
	s := openMem(t, fs)
	b := s.NewBatch()
	b.Put(Record{Key: "synced", Value: []byte("v"), Index: 1})
	b.SetApplied(1)
	mustCommit(t, b, true)
	b = s.NewBatch()
	b.Put(Record{Key: "unsynced", Value: []byte("v"), Index: 2})
	b.SetApplied(2)
	mustCommit(t, b, false)

	for seed := int64(0); seed < 4; seed++ {
		crashed := fs.CrashClone(vfs.CrashCloneCfg{UnsyncedDataPercent: 50, RNG: rand.New(rand.NewPCG(uint64(seed), 1))})
		s2 := openMem(t, crashed)
		if r, ok, err := s2.Get("synced"); err != nil || !ok || r.Index != 1 {
			t.Fatalf("seed %d: synced write lost: %+v %v %v", seed, r, ok, err)
		}
		applied, _ := s2.Applied()
		_, has2, _ := s2.Get("unsynced")
		if has2 != (applied == 2) {
			t.Fatalf("seed %d: applied=%d but unsynced record present=%v", seed, applied, has2)
		}
		s2.Close()
	}
	s.Close()
}

func TestSnapshotRoundTripAndCorruptionRejected(t *testing.T) {
	src := openMem(t, vfs.NewMem())
	defer src.Close()
	b := src.NewBatch()
	b.Put(Record{Key: "k", Value: []byte("v"), Index: 7, CreateIndex: 3, TTLMillis: 10})
	b.AddEvent(Event{Type: EventPut, Record: Record{Key: "k", Index: 7}})
	recordResult(t, b, 9, 1, 100, []byte("result"))
	b.SetApplied(7)
	b.SetConfState([]byte("conf"))
	mustCommit(t, b, false)

	ss := src.NewStateSnapshot()
	var stream bytes.Buffer
	if _, err := ss.WriteTo(&stream); err != nil {
		t.Fatal(err)
	}
	ss.Close()

	dst := openMem(t, vfs.NewMem())
	defer dst.Close()
	b = dst.NewBatch()
	b.Put(Record{Key: "stale", Index: 1})
	b.SetApplied(1)
	mustCommit(t, b, false)

	// Every truncation and every single-byte flip must be refused, leaving the
	// old state in place.
	data := stream.Bytes()
	for cut := 0; cut < len(data); cut += 1 + len(data)/40 {
		if err := dst.RestoreState(bytes.NewReader(data[:cut])); err == nil {
			t.Fatalf("truncated stream (%d of %d bytes) accepted", cut, len(data))
		}
	}
	for i := range data {
		bad := append([]byte(nil), data...)
		bad[i] ^= 0x40
		if err := dst.RestoreState(bytes.NewReader(bad)); err == nil {
			t.Fatalf("stream with byte %d flipped accepted", i)
		}
	}
	if _, ok, _ := dst.Get("stale"); !ok {
		t.Fatal("a refused restore changed the state")
	}
	if n, err := dst.StagedCount(); err != nil || n != 0 {
		t.Fatalf("refused restores left %d staged files (%v)", n, err)
	}

	if err := dst.RestoreState(bytes.NewReader(data)); err != nil {
		t.Fatal(err)
	}
	if _, ok, _ := dst.Get("stale"); ok {
		t.Fatal("restore kept a key the snapshot does not have")
	}
	r, ok, _ := dst.Get("k")
	applied, _ := dst.Applied()
	cs, _ := dst.ConfState()
	first, _ := dst.FirstEventIndex()
	b = dst.NewBatch()
	res, hasRes := storedResult(t, b, 9, 1, 100)
	b.Close()
	if !ok || r.Index != 7 || r.CreateIndex != 3 || string(r.Value) != "v" || applied != 7 || string(cs) != "conf" || !hasRes || string(res) != "result" || first != 8 {
		t.Fatalf("restored: rec=%+v applied=%d conf=%q result=%q first event=%d", r, applied, cs, res, first)
	}
}

// A record's owner (kept for sessions' keys) is stored with it and read back,
// whether or not the record is attached, and a stored record without one
// reads back without one.
func TestRecordOwnerRoundTrips(t *testing.T) {
	for _, r := range []Record{
		{Key: "k", Value: []byte("v"), Index: 4, CreateIndex: 2, TTLMillis: 10, ExpiresAtUnixMs: 99, Owner: "alice"},
		{Key: "k", Value: []byte("v"), Index: 4, CreateIndex: 2, Session: "s", Owner: "bob"},
		{Key: "k", Value: []byte("v"), Index: 4, CreateIndex: 2, Session: "s"},
		{Key: "k", Value: []byte("v"), Index: 4, CreateIndex: 2},
	} {
		got, err := decodeRecord(r.Key, encodeRecord(nil, r))
		if err != nil || !reflect.DeepEqual(got, r) {
			t.Fatalf("%+v decodes to %+v, %v", r, got, err)
		}
		peek, err := peekRecord(r.Key, encodeRecord(nil, r))
		want := seenRecord{found: true, session: r.Session, answerBytes: uint64(r.AnswerBytes()), ttl: r.TTLMillis > 0}
		if err != nil || peek != want {
			t.Fatalf("%+v peeks as %+v, %v; want %+v", r, peek, err, want)
		}
	}
}

func FuzzDecodeRecord(f *testing.F) {
	f.Add(encodeRecord(nil, Record{Value: []byte("v"), Index: 3, CreateIndex: 1, TTLMillis: 5, ExpiresAtUnixMs: 9}))
	f.Add(encodeRecord(nil, Record{Value: []byte("v"), Index: 3, Session: "s"}))
	f.Add(encodeRecord(nil, Record{Value: []byte("v"), Index: 3, Owner: "alice"}))
	f.Add([]byte{})
	f.Add([]byte{1, 0xff})
	f.Fuzz(func(t *testing.T, buf []byte) {
		r, err := decodeRecord("k", buf)
		if err != nil {
			return
		}
		again, err := decodeRecord("k", encodeRecord(nil, r))
		if err != nil || !reflect.DeepEqual(again, r) && !(len(r.Value) == 0 && len(again.Value) == 0) {
			t.Fatalf("re-encoding %+v does not decode to itself: %+v %v", r, again, err)
		}
	})
}

func FuzzDecodeEvent(f *testing.F) {
	f.Add(encodeEvent(nil, Event{Type: EventExpire, Record: Record{Key: "k", Index: 2}}))
	f.Add([]byte{9, 1, 'k'})
	f.Fuzz(func(t *testing.T, buf []byte) {
		e, err := decodeEvent(buf)
		if err != nil {
			return
		}
		if e.Type > EventExpire {
			t.Fatalf("accepted unknown event type %d", e.Type)
		}
	})
}

// Pages are bounded by bytes as well as count; a record larger than the
// bound still comes, alone; an index's events are never split, and the
// first index of a page comes whole whatever its size.
func TestPagesBoundedByBytes(t *testing.T) {
	s := openMem(t, vfs.NewMem())
	defer s.Close()
	b := s.NewBatch()
	val := make([]byte, 100)
	for i, k := range []string{"p/1", "p/2", "p/3", "p/4"} {
		r := Record{Key: k, Value: val, Index: uint64(i + 1)}
		if k == "p/3" {
			r.Value = make([]byte, 1000)
		}
		if err := b.Put(r); err != nil {
			t.Fatal(err)
		}
		if err := b.AddEvent(Event{Type: EventPut, Record: r}); err != nil {
			t.Fatal(err)
		}
		if k == "p/3" { // index 3 holds two events, 1167 AnswerBytes together
			if err := b.AddEvent(Event{Type: EventPut, Record: Record{Key: "p/3b", Index: 3}}); err != nil {
				t.Fatal(err)
			}
		}
	}
	mustCommit(t, b, false)
	one := Record{Key: "p/1", Value: val}.AnswerBytes()

	var keys []string
	pages := 0
	for after, more := "", true; more; pages++ {
		page, m, err := s.List("p/", after, 100, 2*one)
		if err != nil || len(page) == 0 {
			t.Fatalf("List after %q: %v, %v", after, page, err)
		}
		for _, r := range page {
			keys = append(keys, r.Key)
		}
		after, more = page[len(page)-1].Key, m
	}
	if got := strings.Join(keys, " "); got != "p/1 p/2 p/3 p/4" || pages != 3 {
		t.Fatalf("List pages of %d bytes: %d pages, %s; want p/1 p/2 | p/3 | p/4", 2*one, pages, got)
	}

	var idx []string
	pages = 0
	for from := uint64(0); from < 4; pages++ {
		evs, err := s.Events("p/", from, 100, 2*one)
		if err != nil || len(evs) == 0 {
			t.Fatalf("Events after %d: %v, %v", from, evs, err)
		}
		for _, e := range evs {
			idx = append(idx, fmt.Sprintf("%d:%s", e.Record.Index, e.Record.Key))
		}
		from = evs[len(evs)-1].Record.Index
	}
	if got := strings.Join(idx, " "); got != "1:p/1 2:p/2 3:p/3 3:p/3b 4:p/4" || pages != 3 {
		t.Fatalf("Events pages of %d bytes: %d pages, %s", 2*one, pages, got)
	}
	if evs, _ := s.Events("p/", 1, 100, one+1); len(evs) != 1 || evs[0].Record.Index != 2 {
		t.Fatalf("index 3 must not follow index 2 into a page it overflows: %v", evs)
	}
}

// snapshotStream is the store's state as a snapshot stream.
func snapshotStream(t *testing.T, s *Store) []byte {
	t.Helper()
	ss := s.NewStateSnapshot()
	defer ss.Close()
	var stream bytes.Buffer
	if _, err := ss.WriteTo(&stream); err != nil {
		t.Fatal(err)
	}
	return stream.Bytes()
}

// A snapshot staged but never installed is gone when the store reopens
// (raft asks for it again), and its directory does not disturb Pebble; a
// staged snapshot describes the stream it came from.
func TestStagedSnapshotIsClearedOnOpen(t *testing.T) {
	fs := vfs.NewMem()
	s := openMem(t, fs)
	b := s.NewBatch()
	b.Put(Record{Key: "a", Value: []byte("1"), Index: 5, CreateIndex: 5})
	b.SetApplied(6)
	mustCommit(t, b, true)
	stream := bytes.NewBuffer(snapshotStream(t, s))
	size := stream.Len()
	st, err := s.StageState(stream, nil)
	if err != nil {
		t.Fatal(err)
	}
	if st.Applied != 6 || st.Records != 1 || st.Bytes != int64(size) {
		t.Fatalf("staged %+v; want applied 6, 1 record, %d bytes", st.SnapshotInfo, size)
	}
	if n, _ := s.StagedCount(); n != 1 {
		t.Fatalf("%d staged, want 1", n)
	}
	s.Close()
	s = openMem(t, fs)
	defer s.Close()
	if n, err := s.StagedCount(); err != nil || n != 0 {
		t.Fatalf("%d staged after reopening (%v), want 0", n, err)
	}
	if err := s.InstallStaged(st.Name); err == nil {
		t.Fatal("installed a staged snapshot that was cleared")
	}
	if r, ok, err := s.Get("a"); err != nil || !ok || r.Index != 5 {
		t.Fatalf("after reopening: %+v %v %v", r, ok, err)
	}
}

// Short-lived keys, written and deleted behind within MemTableSize, as the
// raft log's entries are between a write and the log's compaction, are
// dropped by the flush instead of being written to tables (and compacted
// again). Writing 64 MiB and truncating every 4096 entries to the last
// 2048 (2-6 MiB live), Pebble's default 4 MiB memtable flushed 17 MiB of
// it in 16 flushes, then compacted them 10 times; MemTableSize (32 MiB)
// memtables flush about 2 MiB of it.
func TestShortLivedKeysAreNotFlushed(t *testing.T) {
	s := openMem(t, vfs.NewMem())
	defer s.Close()
	value := make([]byte, 1024)
	for i := range value {
		value[i] = byte(rand.Uint32()) // incompressible: tables hold what was written
	}
	const n, every, keep = 65536, 4096, 2048
	for i := 1; i <= n; i++ {
		b := s.db.NewBatch()
		if err := b.Set(raftEntryKey(uint64(i)), value, nil); err != nil {
			t.Fatal(err)
		}
		if i%every == 0 {
			if err := b.DeleteRange(raftEntryKey(0), raftEntryKey(uint64(i-keep)), nil); err != nil {
				t.Fatal(err)
			}
		}
		if err := b.Commit(nil); err != nil {
			t.Fatal(err)
		}
	}
	written := uint64(n * len(value))
	if flushed := s.db.Metrics().Levels[0].TableBytesFlushed; flushed > written/8 {
		t.Fatalf("%d of %d MiB written reached tables, want at most an eighth (memtable size %d MiB)", flushed>>20, written>>20, MemTableSize>>20)
	}
}

// Events are numbered within their index in the order they were added, and
// an event for an index below the last one's is refused: numbering follows
// the log, so a batch cannot number an earlier index again.
func TestEventsAreNumberedInLogOrder(t *testing.T) {
	s := openMem(t, vfs.NewMem())
	defer s.Close()
	b := s.NewBatch()
	defer b.Close()
	b.Reserve(2)
	for _, e := range []struct {
		index uint64
		key   string
	}{{5, "a"}, {5, "b"}, {5, "c"}, {6, "d"}, {8, "e"}, {8, "f"}} {
		if err := b.AddEvent(Event{Type: EventPut, Record: Record{Key: e.key, Index: e.index}}); err != nil {
			t.Fatal(err)
		}
	}
	if err := b.AddEvent(Event{Type: EventPut, Record: Record{Key: "late", Index: 6}}); err == nil || !strings.Contains(err.Error(), "log order") {
		t.Fatalf("an event at index 6 after index 8: %v, want a refusal", err)
	}
	mustCommit(t, b, false)
	evs, err := s.Events("", 0, 100, 1<<20)
	if err != nil {
		t.Fatal(err)
	}
	var got []string
	for _, e := range evs {
		got = append(got, fmt.Sprintf("%d%s", e.Record.Index, e.Record.Key))
	}
	if strings.Join(got, " ") != "5a 5b 5c 6d 8e 8f" {
		t.Fatalf("events read back: %v", got)
	}
}
