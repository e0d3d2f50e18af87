package chaos

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"
)

// connectVia opens a tunnel to target through proxy, as gRPC does.
func connectVia(proxy, target string) (net.Conn, error) {
	c, err := net.Dial("tcp", proxy)
	if err != nil {
		return nil, err
	}
	fmt.Fprintf(c, "CONNECT %s HTTP/1.1\r\nHost: %s\r\n\r\n", target, target)
	br := bufio.NewReader(c)
	resp, err := http.ReadResponse(br, nil)
	if err != nil {
		c.Close()
		return nil, err
	}
	if resp.StatusCode != 200 {
		c.Close()
		return nil, fmt.Errorf("CONNECT: %s", resp.Status)
	}
	return c, nil
}

func echoes(c net.Conn) bool {
	c.SetDeadline(time.Now().Add(2 * time.Second))
	if _, err := c.Write([]byte("ping")); err != nil {
		return false
	}
	buf := make([]byte, 4)
	_, err := io.ReadFull(c, buf)
	return err == nil && string(buf) == "ping"
}

// The proxies cut exactly the direction they are told to: member 1's
// connections to member 2, not member 2's to member 1.
func TestProxyCutsOneDirection(t *testing.T) {
	host, _ := os.Hostname()
	if err := checkHost(host); err != nil {
		t.Skip(err)
	}
	members := map[uint64]string{}
	for id := uint64(1); id <= 2; id++ {
		lis, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		defer lis.Close()
		go func() {
			for {
				c, err := lis.Accept()
				if err != nil {
					return
				}
				go io.Copy(c, c)
			}
		}()
		members[id] = net.JoinHostPort(host, strconv.Itoa(lis.Addr().(*net.TCPAddr).Port))
	}
	p, err := newProxies(members, t.Logf)
	if err != nil {
		t.Fatal(err)
	}
	defer p.close()
	proxyOf := func(id uint64) string { return p.lis[id].Addr().String() }

	c12, err := connectVia(proxyOf(1), members[2])
	if err != nil || !echoes(c12) {
		t.Fatalf("1 -> 2 before the cut: %v", err)
	}
	p.block(1, 2)
	if echoes(c12) {
		t.Fatal("1 -> 2: an open connection survived the cut")
	}
	if c, err := connectVia(proxyOf(1), members[2]); err == nil {
		c.Close()
		t.Fatal("1 -> 2: a new connection got through the cut")
	}
	c21, err := connectVia(proxyOf(2), members[1])
	if err != nil || !echoes(c21) {
		t.Fatalf("2 -> 1 during the cut of 1 -> 2: %v", err)
	}
	p.heal()
	c12, err = connectVia(proxyOf(1), members[2])
	if err != nil || !echoes(c12) {
		t.Fatalf("1 -> 2 after healing: %v", err)
	}
}

// A short make chaos: real processes, every fault kind possible, every
// check. CHAOS_SEED replays a seed; CHAOS_DURATION changes the length.
func TestChaosShort(t *testing.T) {
	if testing.Short() {
		t.Skip("runs a cluster of processes under faults for about 30s")
	}
	host, _ := os.Hostname()
	if err := checkHost(host); err != nil {
		t.Skip(err)
	}
	dir := t.TempDir()
	bin := filepath.Join(dir, "cxkv")
	// With the invariants compiled in, as make chaos builds the members.
	if out, err := exec.Command("go", "build", "-tags", "invariants", "-o", bin, "github.com/cxkv/cxkv/cmd/cxkv").CombinedOutput(); err != nil {
		t.Fatalf("build cxkv: %v\n%s", err, out)
	}
	seed := uint64(time.Now().UnixNano())
	if s := os.Getenv("CHAOS_SEED"); s != "" {
		var err error
		if seed, err = strconv.ParseUint(s, 10, 64); err != nil {
			t.Fatal(err)
		}
	}
	d := 20 * time.Second
	if s := os.Getenv("CHAOS_DURATION"); s != "" {
		var err error
		if d, err = time.ParseDuration(s); err != nil {
			t.Fatal(err)
		}
	}
	out := t.TempDir()
	if keep := os.Getenv("CHAOS_OUT"); keep != "" {
		out = keep
	}
	t.Logf("seed %d (replay: CHAOS_SEED=%d go test -run TestChaosShort ./chaos)", seed, seed)
	rep, err := Run(context.Background(), Config{Bin: bin, Dir: out, Host: host, Seed: seed, Duration: d,
		CheckTimeout: 2 * time.Minute, Log: testWriter{t}})
	if err != nil {
		t.Fatal(err)
	}
	var sb strings.Builder
	rep.Print(&sb)
	t.Log("\n" + sb.String())
	total := 0
	for _, n := range rep.Faults {
		total += n
	}
	if total == 0 || rep.KVOps == 0 || rep.LockAcquired == 0 || rep.WatchEvents == 0 {
		t.Errorf("the run checked nothing: %d faults, %d operations, %d locks, %d events", total, rep.KVOps, rep.LockAcquired, rep.WatchEvents)
	}
	if !rep.OK() {
		// CI keeps only the test's output: the members' warnings go in it.
		logMemberLogs(t, rep.Dir)
		t.Errorf("%d anomalies with seed %d; history and logs in %s (set CHAOS_OUT to keep them)", len(rep.Anomalies), seed, rep.Dir)
	}
}

// logMemberLogs logs the last lines of each member's log in dir, leaving out
// gRPC's own (a failed dial per retry while a peer is cut off).
func logMemberLogs(t *testing.T, dir string) {
	const keep = 60
	logs, _ := filepath.Glob(filepath.Join(dir, "m*.log"))
	for _, name := range logs {
		f, err := os.Open(name)
		if err != nil {
			t.Log(err)
			continue
		}
		var lines []string
		sc := bufio.NewScanner(f)
		sc.Buffer(nil, 1<<20)
		for sc.Scan() {
			if l := sc.Text(); !strings.Contains(l, "msg=\"[core]") {
				lines = append(lines, l)
			}
		}
		f.Close()
		t.Logf("%s: %d lines, the last %d:\n%s", filepath.Base(name), len(lines), min(keep, len(lines)),
			strings.Join(lines[max(0, len(lines)-keep):], "\n"))
	}
}

type testWriter struct{ t *testing.T }

func (w testWriter) Write(p []byte) (int, error) {
	w.t.Log(string(p[:len(p)-1]))
	return len(p), nil
}
