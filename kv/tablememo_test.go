package kv

import (
	"bytes"
	"testing"

	"github.com/cockroachdb/pebble/v2/vfs"
)

// The exactly-once table's hot part is kept in memory (tablememo.go); what
// Lookup tells must follow every way the stored table changes: a committed
// batch, a batch closed without committing, a snapshot installed over the
// state, and writes of one client arriving out of seq order.
func TestTableMemoFollowsCommitsDiscardsAndInstalls(t *testing.T) {
	s := openMem(t, vfs.NewMem())
	defer s.Close()
	inBatch := func(commit bool, fn func(b *Batch)) {
		t.Helper()
		b := s.NewBatch()
		defer b.Close()
		fn(b)
		if commit {
			if err := b.Commit(false); err != nil {
				t.Fatal(err)
			}
		}
	}
	answered := func(what string, client, seq uint64, now int64, want string) {
		t.Helper()
		inBatch(false, func(b *Batch) {
			got, ok := storedResult(t, b, client, seq, now)
			if want == "" && ok {
				t.Fatalf("%s: seq %d answered with %q, want fresh", what, seq, got)
			}
			if want != "" && (!ok || string(got) != want) {
				t.Fatalf("%s: seq %d: answered=%v %q, want %q", what, seq, ok, got, want)
			}
		})
	}

	inBatch(true, func(b *Batch) { recordResult(t, b, 7, 1, 10, []byte("r1")) })
	answered("committed", 7, 1, 11, "r1")
	inBatch(false, func(b *Batch) { recordResult(t, b, 7, 2, 12, []byte("r2")) })
	answered("closed without commit", 7, 2, 13, "")

	// Out of order: seq 5 is recorded, then 3 arrives below the top.
	inBatch(true, func(b *Batch) { recordResult(t, b, 7, 5, 14, []byte("r5")) })
	answered("below the top, never applied", 7, 3, 15, "")
	inBatch(true, func(b *Batch) { recordResult(t, b, 7, 3, 16, []byte("r3")) })
	answered("below the top, applied", 7, 3, 17, "r3")
	answered("the top", 7, 5, 17, "r5")

	// A snapshot of the table as it is, then more writes, then the
	// snapshot installed: the later writes must be gone from what Lookup
	// tells, and the table's time must be the snapshot's.
	var snap bytes.Buffer
	ss := s.NewStateSnapshot()
	if _, err := ss.WriteTo(&snap); err != nil {
		t.Fatal(err)
	}
	ss.Close()
	inBatch(true, func(b *Batch) { recordResult(t, b, 7, 6, 500, []byte("r6")) })
	answered("after the snapshot", 7, 6, 501, "r6")
	if err := s.RestoreState(&snap); err != nil {
		t.Fatal(err)
	}
	answered("snapshot installed", 7, 6, 20, "")
	answered("snapshot installed", 7, 5, 20, "r5")
	inBatch(false, func(b *Batch) {
		tbl, err := b.Sessions(testSessionLimits, 0)
		if err != nil || tbl.now != 16 {
			t.Fatalf("table time after the install: %d (%v), want the snapshot's 16", tbl.now, err)
		}
	})
}

// A committed batch leaves the table's hot part in memory: the next
// command reads no header, clock or floor from Pebble. Shown by garbling
// the stored header behind the memo's back: a Lookup that read it would
// fail.
func TestTableMemoAnswersWithoutReadingPebble(t *testing.T) {
	s := openMem(t, vfs.NewMem())
	defer s.Close()
	b := s.NewBatch()
	recordResult(t, b, 7, 1, 10, []byte("r1"))
	if err := b.Commit(false); err != nil {
		t.Fatal(err)
	}
	b.Close()
	for _, k := range [][]byte{sessionKey(7), sessionClockKey, sessionFloorKey} {
		if err := s.db.Set(k, []byte("garbled"), nil); err != nil {
			t.Fatal(err)
		}
	}
	b = s.NewBatch()
	defer b.Close()
	if r, ok := storedResult(t, b, 7, 1, 11); !ok || string(r) != "r1" {
		t.Fatalf("seq 1: answered=%v %q, want r1", ok, r)
	}
	recordResult(t, b, 7, 2, 12, []byte("r2"))
}

// A batch writes the applied index and the table's time and floor once,
// when it commits, and the time and floor only if they changed: they are
// read through the memo, never through the batch. What it writes must be
// what a reopened store reads.
func TestBatchWritesAppliedAndTableTimeOnceAtCommit(t *testing.T) {
	fs := vfs.NewMem()
	s := openMem(t, fs)
	b := s.NewBatch()
	for seq := uint64(1); seq <= 3; seq++ {
		if err := b.SetApplied(seq); err != nil {
			t.Fatal(err)
		}
		recordResult(t, b, 7, seq, 100+int64(seq), []byte("r"))
	}
	for _, k := range [][]byte{metaKey(metaApplied), sessionClockKey, sessionFloorKey} {
		if _, found, err := getRaw(b.b, k); err != nil || found {
			t.Fatalf("%q written before the commit (found=%v err=%v)", k, found, err)
		}
	}
	mustCommit(t, b, false)

	b = s.NewBatch()
	if _, err := b.Sessions(testSessionLimits, 50); err != nil { // behind the table's time: unchanged
		t.Fatal(err)
	}
	if !b.Empty() {
		t.Fatal("a batch that changed neither the table's time nor its floor wrote them")
	}
	b.Close()
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}

	s = openMem(t, fs)
	defer s.Close()
	if applied, err := s.Applied(); err != nil || applied != 3 {
		t.Fatalf("reopened: applied %d (%v), want 3", applied, err)
	}
	if clock, err := s.SessionClock(); err != nil || clock != 103 {
		t.Fatalf("reopened: table time %d (%v), want 103", clock, err)
	}
	b = s.NewBatch()
	defer b.Close()
	if floor, found, err := getInt64(b.b, sessionFloorKey); err != nil || !found || floor != 101 {
		t.Fatalf("reopened: floor %d found=%v (%v), want 101", floor, found, err)
	}
	if r, ok := storedResult(t, b, 7, 3, 104); !ok || string(r) != "r" {
		t.Fatalf("reopened: seq 3 answered=%v %q", ok, r)
	}
}

// A batch takes a client's entry out of the memo instead of copying it
// (the copy was two allocations per client per batch): while it holds the
// entry the memo has none, a commit hands it back, and a batch closed
// without committing leaves the memo without it (the next read goes to
// Pebble, which TestTableMemoFollowsCommitsDiscardsAndInstalls covers).
func TestTableMemoEntryIsTakenNotCopied(t *testing.T) {
	s := openMem(t, vfs.NewMem())
	defer s.Close()
	b := s.NewBatch()
	recordResult(t, b, 7, 1, 10, []byte("r1"))
	mustCommit(t, b, false)
	inMemo := func() *memoClient {
		s.table.mu.Lock()
		defer s.table.mu.Unlock()
		return s.table.clients[7]
	}
	kept := inMemo()
	if kept == nil {
		t.Fatal("no memo entry for client 7 after a committed batch")
	}
	for _, commit := range []bool{true, false} {
		b := s.NewBatch()
		c, err := b.memoClient(7)
		if err != nil {
			t.Fatal(err)
		}
		if c != kept {
			t.Fatalf("the batch got a copy of the memo's entry, not the entry")
		}
		if inMemo() != nil {
			t.Fatalf("the memo still holds the entry a batch took")
		}
		if commit {
			if err := b.Commit(false); err != nil {
				t.Fatal(err)
			}
			if inMemo() != kept {
				t.Fatalf("commit did not hand the entry back")
			}
		}
		b.Close()
	}
	if inMemo() != nil {
		t.Fatalf("a batch closed without committing handed its entry back")
	}
}
