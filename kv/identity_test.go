package kv

import (
	"bytes"
	"testing"

	"github.com/cockroachdb/pebble/v2/vfs"
)

// Proposal ids reserved by a data dir never repeat: not after a reopen, and
// not after a snapshot replaces the state (the mark is the member's, not the
// state's).
func TestProposalIDsNeverRepeat(t *testing.T) {
	fs := vfs.NewMem()
	s := openMem(t, fs)
	reserve := func(n, want uint64) {
		t.Helper()
		first, err := s.ReserveProposalIDs(n)
		if err != nil || first != want {
			t.Fatalf("ReserveProposalIDs(%d) = %d, %v; want %d", n, first, err, want)
		}
	}
	reserve(10, 0)
	reserve(5, 10)
	s.Close()
	s = openMem(t, fs)
	reserve(1, 15)

	other := openMem(t, vfs.NewMem())
	defer other.Close()
	var snap bytes.Buffer
	ss := other.NewStateSnapshot()
	if _, err := ss.WriteTo(&snap); err != nil {
		t.Fatal(err)
	}
	ss.Close()
	if err := s.RestoreState(&snap); err != nil {
		t.Fatal(err)
	}
	reserve(1, 16)
	s.Close()
}
