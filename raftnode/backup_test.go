package raftnode_test

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/cxkv/cxkv/api/cxkvpb"
	"github.com/cxkv/cxkv/api/cxkvrpc"
	"github.com/cxkv/cxkv/kv"
	"github.com/cxkv/cxkv/raftnode"
	"github.com/cxkv/cxkv/raftnode/raftnodetest"
)

// backup streams a member's backup into memory and returns it with the
// index it names.
func backup(t *testing.T, c cxkvrpc.KVClient) ([]byte, uint64) {
	t.Helper()
	s, err := c.Snapshot(context.Background(), &cxkvpb.SnapshotRequest{})
	if err != nil {
		t.Fatal(err)
	}
	var buf bytes.Buffer
	var index uint64
	for {
		resp, err := s.Recv()
		if errors.Is(err, io.EOF) {
			return buf.Bytes(), index
		}
		if err != nil {
			t.Fatal(err)
		}
		if h := resp.GetHeader(); h != nil {
			index = h.GetAppliedIndex()
		}
		buf.Write(resp.GetData())
	}
}

func openBytes(b []byte) func() (io.ReadCloser, error) {
	return func() (io.ReadCloser, error) { return io.NopCloser(bytes.NewReader(b)), nil }
}

// A backup of a live cluster, taken while writers run, restores into a new
// 3-member cluster that holds exactly the state at the backup's index:
// every key written at or below it with its last value and index, none
// written after, and new writes get indexes above it.
func TestBackupOfLiveClusterRestoresIntoNewCluster(t *testing.T) {
	src := raftnodetest.Start(t, 3, patientElections)
	lead := src.WaitLeader()
	type write struct {
		value string
		index uint64
	}
	var mu sync.Mutex
	acked := map[string][]write{}
	stop := make(chan struct{})
	var wg sync.WaitGroup
	for w := range 4 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			last := map[string]uint64{} // this writer owns its keys
			for i := 0; ; i++ {
				select {
				case <-stop:
					return
				default:
				}
				key := fmt.Sprintf("k/%d/%d", w, i%50) // rewrites too
				value := fmt.Sprintf("v%d", i)
				resp, err := src.Client(lead).Put(context.Background(), &cxkvpb.PutRequest{Key: key, Value: []byte(value), ExpectIndex: last[key]})
				if err != nil || !resp.GetSuccessful() {
					t.Errorf("put %s: %v %v", key, resp, err)
					return
				}
				last[key] = resp.GetRecord().GetIndex()
				mu.Lock()
				acked[key] = append(acked[key], write{value, resp.GetRecord().GetIndex()})
				mu.Unlock()
			}
		}()
	}
	raftnodetest.Eventually(t, 10*time.Second, "writes under way", func() bool {
		mu.Lock()
		defer mu.Unlock()
		return len(acked) >= 100
	})
	data, at := backup(t, src.Client((lead+1)%3)) // a follower's
	raftnodetest.Eventually(t, 10*time.Second, "writes after the backup", func() bool {
		return src.Members[lead].Status().Applied > at+100
	})
	close(stop)
	wg.Wait()

	info, err := kv.InspectSnapshot(bytes.NewReader(data))
	if err != nil || info.Applied != at {
		t.Fatalf("backup: %+v, %v; want index %d", info, err, at)
	}
	want := map[string]write{}
	for key, ws := range acked {
		for _, w := range ws {
			if w.index <= at && w.index > want[key].index {
				want[key] = w
			}
		}
		if want[key].index == 0 {
			delete(want, key)
		}
	}
	t.Logf("backup at index %d: %d keys, %d bytes", at, info.Records, info.Bytes)
	if uint64(len(want)) != info.Records {
		t.Fatalf("the backup holds %d keys; %d were written at or below its index", info.Records, len(want))
	}

	root := t.TempDir()
	dst := raftnodetest.Start(t, 3, patientElections, func(cfg *raftnode.Config) {
		dir := filepath.Join(root, fmt.Sprint(cfg.ID))
		if _, err := raftnode.RestoreBackup(raftnode.RestoreConfig{DataDir: dir, ID: cfg.ID, Peers: cfg.Peers}, openBytes(data)); err != nil {
			t.Fatalf("restore member %d: %v", cfg.ID, err)
		}
		cfg.DataDir = dir
	})
	for i := range 3 {
		got := map[string]write{}
		after := ""
		for {
			resp, err := dst.Client(i).List(context.Background(), &cxkvpb.ListRequest{Prefix: "k/", After: after, Limit: 1000})
			if err != nil {
				t.Fatal(err)
			}
			for _, r := range resp.GetRecords() {
				got[r.GetKey()] = write{string(r.GetValue()), r.GetIndex()}
				after = r.GetKey()
			}
			if !resp.GetMore() {
				break
			}
		}
		if len(got) != len(want) {
			t.Fatalf("restored member %d holds %d keys, want %d", i+1, len(got), len(want))
		}
		for k, w := range want {
			if got[k] != w {
				t.Fatalf("restored member %d: %s = %+v, want %+v", i+1, k, got[k], w)
			}
		}
	}
	l := dst.WaitLeader()
	if idx := put(t, dst.Client(l), "after-restore", "x", 0).GetRecord().GetIndex(); idx <= at {
		t.Fatalf("a write to the restored cluster got index %d, not above the backup's %d", idx, at)
	}
}

// A restore is refused, naming the problem and writing nothing, over a
// data dir that is not empty and from a backup that is cut short or has a
// byte changed.
func TestRestoreRefusesBadInput(t *testing.T) {
	c := raftnodetest.Start(t, 1)
	for i := range 20 {
		put(t, c.Client(0), fmt.Sprintf("k%d", i), "v", 0)
	}
	data, _ := backup(t, c.Client(0))
	peers := map[uint64]string{1: "127.0.0.1:1", 2: "127.0.0.1:2", 3: "127.0.0.1:3"}
	root := t.TempDir()

	used := filepath.Join(root, "used")
	if err := os.MkdirAll(used, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(used, "keep"), []byte("x"), 0o644); err != nil {
		t.Fatal(err)
	}
	flipped := bytes.Clone(data)
	flipped[len(flipped)/2] ^= 0x01
	for _, tc := range []struct {
		name, dir string
		backup    []byte
		want      string
	}{
		{"non-empty data dir", used, data, "is not empty"},
		{"truncated", filepath.Join(root, "cut"), data[:len(data)-3], "truncated"},
		{"cut to the header", filepath.Join(root, "cut2"), data[:20], "truncated"},
		{"corrupted", filepath.Join(root, "flip"), flipped, "corrupt"},
		{"not a backup", filepath.Join(root, "junk"), []byte("hello, world"), "not a cxkv snapshot"},
	} {
		_, err := raftnode.RestoreBackup(raftnode.RestoreConfig{DataDir: tc.dir, ID: 1, Peers: peers}, openBytes(tc.backup))
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Fatalf("%s: %v; want an error saying %q", tc.name, err, tc.want)
		}
		t.Logf("%s: %v", tc.name, err)
		if tc.dir == used {
			if names, _ := os.ReadDir(used); len(names) != 1 {
				t.Fatalf("%s: the data dir now holds %d entries", tc.name, len(names))
			}
		} else if _, err := os.Stat(tc.dir); !errors.Is(err, os.ErrNotExist) {
			t.Fatalf("%s: the refused restore left %s (%v)", tc.name, tc.dir, err)
		}
	}
}
