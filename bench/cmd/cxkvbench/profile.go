package main

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"os"
	"runtime/pprof"
	"sync"
	"time"
)

// profiler collects, from every cxkv member's --pprof endpoint, the CPU,
// block and mutex profiles of one run (the delta over the run's duration),
// and the harness's own CPU profile over the same run: the client library
// shares the cores with the members, so a write's CPU is theirs and its.
type profiler struct {
	wg     sync.WaitGroup
	client *os.File // the harness's CPU profile, while it runs
}

func startProfiles(ctx context.Context, ports []int, d time.Duration, prefix string) *profiler {
	p := &profiler{}
	if f, err := os.Create(prefix + "-client.cpu.pb.gz"); err != nil {
		fmt.Fprintf(os.Stderr, "pprof of the harness: %v\n", err)
	} else if err := pprof.StartCPUProfile(f); err != nil {
		fmt.Fprintf(os.Stderr, "pprof of the harness: %v\n", err)
		f.Close()
	} else {
		p.client = f
	}
	secs := max(1, int(d/time.Second))
	for i, port := range ports {
		for _, kind := range []string{"profile", "block", "mutex"} {
			p.wg.Add(1)
			go func() {
				defer p.wg.Done()
				url := fmt.Sprintf("http://127.0.0.1:%d/debug/pprof/%s?seconds=%d", port, kind, secs)
				name := kind
				if kind == "profile" {
					name = "cpu"
				}
				path := fmt.Sprintf("%s-m%d.%s.pb.gz", prefix, i+1, name)
				if err := fetch(ctx, url, path); err != nil {
					fmt.Fprintf(os.Stderr, "pprof %s: %v\n", url, err)
				}
			}()
		}
	}
	return p
}

// wait blocks until every profile is saved; nil waits for nothing.
func (p *profiler) wait() {
	if p == nil {
		return
	}
	if p.client != nil {
		pprof.StopCPUProfile()
		if err := p.client.Close(); err != nil {
			fmt.Fprintf(os.Stderr, "pprof of the harness: %v\n", err)
		}
		p.client = nil
	}
	p.wg.Wait()
}

func fetch(ctx context.Context, url, path string) error {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		return err
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		b, _ := io.ReadAll(resp.Body)
		return fmt.Errorf("%s: %s", resp.Status, b)
	}
	f, err := os.Create(path)
	if err != nil {
		return err
	}
	if _, err := io.Copy(f, resp.Body); err != nil {
		f.Close()
		return err
	}
	return f.Close()
}
