package main

import (
	"os"
	"path/filepath"
	"runtime/debug"
	"testing"
)

// cxkv is built with a CPU profile of its members under the bench's
// workloads (default.pgo, make pgo): the compiler inlines and lays out the
// hot paths by it, which was worth about 10% of lock-many's acquisitions
// in alternated pairs (BENCHMARKS.md, sixteenth round). go build picks the
// file up by its name and place; this fails if it is moved, renamed or
// removed.
func TestBuiltWithTheProfile(t *testing.T) {
	info, ok := debug.ReadBuildInfo()
	if !ok {
		t.Fatal("no build information")
	}
	var pgo string
	for _, s := range info.Settings {
		if s.Key == "-pgo" {
			pgo = s.Value
		}
	}
	if filepath.Base(pgo) != "default.pgo" {
		t.Fatalf("built with -pgo=%q, want cmd/cxkv/default.pgo", pgo)
	}
	if fi, err := os.Stat("default.pgo"); err != nil || fi.Size() < 1024 {
		t.Fatalf("default.pgo: %v (%v bytes)", err, fi)
	}
}
