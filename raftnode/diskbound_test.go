package raftnode_test

import (
	"context"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strconv"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/cxkv/cxkv/api/cxkvpb"
	"github.com/cxkv/cxkv/raftnode"
	"github.com/cxkv/cxkv/raftnode/raftnodetest"
)

// After CXKV_DISK_WRITES writes (1000000 for the figure) over 10000
// keys, a member's data dir stays within a small multiple of its live data:
// the log is compacted behind snapshots, the history has its own window, and
// Pebble reclaims what both delete. The test reports the sizes and fails
// above 10 times the live data. Off by default: it takes minutes.
//
//	CXKV_DISK_WRITES=1000000 go test -run TestDataDirStaysBounded -v -timeout 60m ./raftnode
func TestDataDirStaysBounded(t *testing.T) {
	writes, _ := strconv.Atoi(os.Getenv("CXKV_DISK_WRITES"))
	if writes <= 0 {
		t.Skip("set CXKV_DISK_WRITES (e.g. 1000000) to run")
	}
	const keys, valueBytes = 10000, 256
	dir := filepath.Join(t.TempDir(), "member")
	c := raftnodetest.Start(t, 1, func(cfg *raftnode.Config) { cfg.DataDir = dir; cfg.ElectionTicks = 50 })
	kv := c.Client(0)
	value := make([]byte, valueBytes)
	const writers = 50 // each owns keys/writers keys, so it knows their indexes
	var failed atomic.Bool
	var wg sync.WaitGroup
	start := time.Now()
	for w := range writers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			last := map[string]uint64{}
			for i := 0; i < writes/writers && !failed.Load(); i++ {
				key := fmt.Sprintf("key/%05d", w+writers*(i%(keys/writers)))
				ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
				resp, err := kv.Put(ctx, &cxkvpb.PutRequest{Key: key, Value: value, ExpectIndex: last[key]})
				cancel()
				if err != nil || !resp.GetSuccessful() {
					failed.Store(true)
					t.Errorf("put %s: %v %v", key, resp, err)
					return
				}
				last[key] = resp.GetRecord().GetIndex()
			}
		}()
	}
	wg.Wait()
	if t.Failed() {
		t.FailNow()
	}
	took := time.Since(start)
	var live int64
	after := ""
	for {
		resp, err := kv.List(context.Background(), &cxkvpb.ListRequest{Prefix: "key/", After: after, Limit: 10000})
		if err != nil {
			t.Fatal(err)
		}
		for _, r := range resp.GetRecords() {
			live += int64(len(r.GetKey()) + len(r.GetValue()))
			after = r.GetKey()
		}
		if !resp.GetMore() {
			break
		}
	}
	size := dirSize(t, dir)
	st, _ := kv.Status(context.Background(), &cxkvpb.StatusRequest{})
	t.Logf("%d writes over %d keys of %d-byte values in %v: live data %.1f MiB, data dir %.1f MiB (%.1fx); log [%d, %d], watch from %d",
		writes, keys, valueBytes, took.Round(time.Second), float64(live)/(1<<20), float64(size)/(1<<20), float64(size)/float64(live),
		st.GetFirstIndex(), st.GetLastIndex(), st.GetWatchFromIndex())
	if size > 10*live {
		t.Fatalf("data dir %d bytes for %d bytes of live data", size, live)
	}
}

func dirSize(t *testing.T, dir string) (n int64) {
	err := filepath.WalkDir(dir, func(_ string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return err
		}
		info, err := d.Info()
		if err == nil {
			n += info.Size()
		}
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	return n
}
