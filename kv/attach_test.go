package kv

import (
	"reflect"
	"testing"

	"github.com/cockroachdb/pebble/v2/vfs"
)

// A batch reads a record once for both the command and the session index
// (Batch.view), so the index must follow every rewrite of a key within one
// batch: read, attach, move to another session, re-read, delete.
func TestSessionIndexFollowsRewritesInOneBatch(t *testing.T) {
	s := openMem(t, vfs.NewMem())
	defer s.Close()
	check := func(b *Batch, when, session string, keys []string, want Tally) {
		t.Helper()
		got, err := b.Attached(session)
		if err != nil {
			t.Fatal(err)
		}
		if !reflect.DeepEqual(got, keys) {
			t.Fatalf("%s: keys attached to %s = %q, want %q", when, session, got, keys)
		}
		tally, err := b.Tally(session)
		if err != nil || tally != want {
			t.Fatalf("%s: tally of %s = %+v (%v), want %+v", when, session, tally, err, want)
		}
	}
	rec := func(session, value string) Record {
		return Record{Key: "k", Value: []byte(value), Index: 2, CreateIndex: 2, Session: session}
	}
	size := func(r Record) uint64 { return uint64(r.AnswerBytes()) }

	b := s.NewBatch()
	if _, found, err := b.Get("k"); err != nil || found {
		t.Fatalf("Get of an absent key: found=%v err=%v", found, err)
	}
	if err := b.Put(rec("s1", "v")); err != nil {
		t.Fatal(err)
	}
	check(b, "attached", "s1", []string{"k"}, Tally{1, size(rec("s1", "v"))})
	if err := b.Put(rec("s2", "longer")); err != nil {
		t.Fatal(err)
	}
	check(b, "moved", "s1", nil, Tally{})
	check(b, "moved", "s2", []string{"k"}, Tally{1, size(rec("s2", "longer"))})
	if _, found, err := b.Get("k"); err != nil || !found {
		t.Fatalf("Get after put: found=%v err=%v", found, err)
	}
	if err := b.Put(rec("s2", "x")); err != nil {
		t.Fatal(err)
	}
	check(b, "rewritten", "s2", []string{"k"}, Tally{1, size(rec("s2", "x"))})
	mustCommit(t, b, false)

	b = s.NewBatch()
	defer b.Close()
	if _, found, err := b.Get("k"); err != nil || !found {
		t.Fatalf("Get after commit: found=%v err=%v", found, err)
	}
	if err := b.Delete("k"); err != nil {
		t.Fatal(err)
	}
	check(b, "deleted", "s2", nil, Tally{})
	if err := b.Put(rec("s1", "again")); err != nil {
		t.Fatal(err)
	}
	check(b, "recreated", "s1", []string{"k"}, Tally{1, size(rec("s1", "again"))})
	check(b, "recreated", "s2", nil, Tally{})
}

// A batch reads a session's tally from Pebble once and keeps it as it
// leaves it (Batch.view): a command's check and the attach that follows,
// and every later command of the batch on that session, read no tally
// again. The store's read cache is off here, so every read the batch does
// not answer itself reaches Pebble and is counted.
func TestBatchReadsEachTallyOnce(t *testing.T) {
	s := openMem(t, vfs.NewMem())
	defer s.Close()
	s.cache.limit = 0
	rec := func(key string) Record {
		return Record{Key: key, Value: []byte("v"), Index: 2, CreateIndex: 2, Session: "s1"}
	}
	size := uint64(rec("k1").AnswerBytes())
	b := s.NewBatch()
	if err := b.Put(rec("k1")); err != nil {
		t.Fatal(err)
	}
	mustCommit(t, b, false)

	tallyReads := 0
	s.stateReadHook = func(key []byte) {
		if string(key) == string(tallyKey("s1")) {
			tallyReads++
		}
	}
	b = s.NewBatch()
	defer b.Close()
	if got, err := b.Tally("s1"); err != nil || got != (Tally{1, size}) {
		t.Fatalf("tally of s1 = %+v (%v), want %+v", got, err, Tally{1, size})
	}
	if err := b.Put(rec("k2")); err != nil {
		t.Fatal(err)
	}
	if got, err := b.Tally("s1"); err != nil || got != (Tally{2, 2 * size}) {
		t.Fatalf("tally of s1 after the attach = %+v (%v), want %+v", got, err, Tally{2, 2 * size})
	}
	if tallyReads != 1 {
		t.Fatalf("the batch read the tally of s1 from Pebble %d times, want once", tallyReads)
	}
}
