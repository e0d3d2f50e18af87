package bench

import (
	"fmt"
	"os"
	"path/filepath"
	"sync"
	"time"
)

// FsyncFloor is the disk's cost of what a replicated write must do at
// least once per member: append a small block and make it durable. Read
// every write figure against it.
type FsyncFloor struct {
	// Files is how many files were appended to at once (1, or 3 as three
	// members on one disk do).
	Files     int     `json:"files"`
	Ops       int     `json:"ops"`
	OpsPerSec float64 `json:"ops_per_sec"`
	P50       float64 `json:"p50_ms"`
	P99       float64 `json:"p99_ms"`
}

// MeasureFsync appends 4 KiB and fdatasyncs, in a loop, on files files in
// dir at once, for d.
func MeasureFsync(dir string, files int, d time.Duration) (FsyncFloor, error) {
	block := make([]byte, 4096)
	var (
		wg       sync.WaitGroup
		mu       sync.Mutex
		all      []time.Duration
		firstErr error
	)
	start := time.Now()
	for i := range files {
		wg.Add(1)
		go func() {
			defer wg.Done()
			var mine samples
			err := func() error {
				f, err := os.OpenFile(filepath.Join(dir, fmt.Sprintf("fsync-%d", i)), os.O_CREATE|os.O_WRONLY|os.O_APPEND|os.O_TRUNC, 0o600)
				if err != nil {
					return err
				}
				defer f.Close()
				for time.Since(start) < d {
					t0 := time.Now()
					if _, err := f.Write(block); err != nil {
						return err
					}
					if err := datasync(f); err != nil {
						return err
					}
					mine = append(mine, time.Since(t0))
				}
				return nil
			}()
			mu.Lock()
			defer mu.Unlock()
			all = append(all, mine...)
			if err != nil && firstErr == nil {
				firstErr = err
			}
		}()
	}
	wg.Wait()
	elapsed := time.Since(start)
	if firstErr != nil {
		return FsyncFloor{}, firstErr
	}
	for i := range files {
		os.Remove(filepath.Join(dir, fmt.Sprintf("fsync-%d", i)))
	}
	f := FsyncFloor{Files: files, Ops: len(all), OpsPerSec: float64(len(all)) / elapsed.Seconds()}
	f.P50, f.P99, _ = quantiles(all)
	return f, nil
}
