package kv

import (
	"bytes"
	"testing"

	"github.com/cockroachdb/pebble/v2/vfs"
)

// The auth state is read on every request, so the store keeps it in memory;
// what it hands out must follow every way the stored value changes: a
// committed batch, and a snapshot installed over the state.
func TestAuthStateFollowsCommitsAndInstalls(t *testing.T) {
	s := openMem(t, vfs.NewMem())
	defer s.Close()
	want := func(what string, v []byte) {
		t.Helper()
		for range 2 { // the second read is served from memory
			got, err := s.AuthState()
			if err != nil || !bytes.Equal(got, v) {
				t.Fatalf("%s: AuthState() = %q, %v; want %q", what, got, err, v)
			}
		}
	}
	set := func(v string, commit bool) {
		t.Helper()
		b := s.NewBatch()
		defer b.Close()
		if err := b.SetAuthState([]byte(v)); err != nil {
			t.Fatal(err)
		}
		if commit {
			if err := b.Commit(false); err != nil {
				t.Fatal(err)
			}
		}
	}
	want("empty store", nil)
	set("a", false)
	want("uncommitted batch", nil)
	b0 := s.NewBatch()
	if err := b0.SetAuthState([]byte("in a batch")); err != nil {
		t.Fatal(err)
	}
	if got, err := b0.AuthState(); err != nil || string(got) != "in a batch" {
		t.Fatalf("a batch that set the auth state reads %q, %v", got, err)
	}
	b0.Close()
	set("a", true)
	want("committed", []byte("a"))
	set("b", true)
	want("committed again", []byte("b"))

	other := openMem(t, vfs.NewMem())
	defer other.Close()
	b := other.NewBatch()
	if err := b.SetAuthState([]byte("from a snapshot")); err != nil {
		t.Fatal(err)
	}
	if err := b.Commit(false); err != nil {
		t.Fatal(err)
	}
	b.Close()
	var snap bytes.Buffer
	ss := other.NewStateSnapshot()
	if _, err := ss.WriteTo(&snap); err != nil {
		t.Fatal(err)
	}
	ss.Close()
	if err := s.RestoreState(&snap); err != nil {
		t.Fatal(err)
	}
	want("snapshot installed", []byte("from a snapshot"))
}

// BenchmarkAuthState is the cost a request pays to learn the auth state.
func BenchmarkAuthState(b *testing.B) {
	s := openMem(b, vfs.NewMem())
	defer s.Close()
	batch := s.NewBatch()
	if err := batch.SetAuthState(bytes.Repeat([]byte("x"), 200)); err != nil {
		b.Fatal(err)
	}
	if err := batch.Commit(false); err != nil {
		b.Fatal(err)
	}
	batch.Close()
	for b.Loop() {
		if _, err := s.AuthState(); err != nil {
			b.Fatal(err)
		}
	}
}
