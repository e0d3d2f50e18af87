package main

import (
	"context"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/cxkv/cxkv/api/cxkvpb"
	"github.com/cxkv/cxkv/api/cxkvrpc"
	"github.com/cxkv/cxkv/internal/loopback"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
)

// binary builds cxkv once per test run (or uses $CXKV_BIN).
var cxkvBinary = sync.OnceValues(func() (string, error) {
	if b := os.Getenv("CXKV_BIN"); b != "" {
		return b, nil
	}
	dir, err := os.MkdirTemp("", "cxkv-bin")
	if err != nil {
		return "", err
	}
	out := filepath.Join(dir, "cxkv")
	if msg, err := exec.Command("go", "build", "-o", out, ".").CombinedOutput(); err != nil {
		return "", fmt.Errorf("go build: %v\n%s", err, msg)
	}
	return out, nil
})

type proc struct {
	cmd  *exec.Cmd
	args []string
	log  *strings.Builder
}

type procCluster struct {
	t     *testing.T
	bin   string
	addrs []string
	procs []*proc
}

func freeAddrs(t *testing.T, n int) []string {
	ports, err := loopback.FreePorts(n)
	if err != nil {
		t.Fatal(err)
	}
	var out []string
	for _, p := range ports {
		out = append(out, net.JoinHostPort("127.0.0.1", strconv.Itoa(p)))
	}
	return out
}

// startProcCluster starts three members; extra flags go to every one.
func startProcCluster(t *testing.T, extra ...string) *procCluster {
	bin, err := cxkvBinary()
	if err != nil {
		t.Fatal(err)
	}
	pc := &procCluster{t: t, bin: bin, addrs: freeAddrs(t, 3)}
	var spec []string
	for i, a := range pc.addrs {
		spec = append(spec, fmt.Sprintf("%d=%s", i+1, a))
	}
	dir := t.TempDir()
	for i, a := range pc.addrs {
		pc.procs = append(pc.procs, &proc{args: append([]string{"server", "--id", fmt.Sprint(i + 1), "--addr", a,
			"--data-dir", filepath.Join(dir, fmt.Sprint(i+1)), "--cluster", strings.Join(spec, ","), "--tick", "20ms"}, extra...)})
		pc.start(i)
	}
	t.Cleanup(func() {
		for _, p := range pc.procs {
			if p.cmd != nil && p.cmd.ProcessState == nil {
				p.cmd.Process.Kill()
				p.cmd.Wait()
			}
		}
	})
	return pc
}

func (pc *procCluster) start(i int) {
	p := pc.procs[i]
	p.log = &strings.Builder{}
	p.cmd = exec.Command(pc.bin, p.args...)
	p.cmd.Stderr = p.log
	if err := p.cmd.Start(); err != nil {
		pc.t.Fatal(err)
	}
}

func (pc *procCluster) client(i int) cxkvrpc.KVClient {
	conn, err := dial(pc.addrs[i])
	if err != nil {
		pc.t.Fatal(err)
	}
	pc.t.Cleanup(func() { conn.Close() })
	return cxkvrpc.NewKVClient(conn)
}

func (pc *procCluster) leader(clients []cxkvrpc.KVClient) int {
	deadline := time.Now().Add(15 * time.Second)
	for time.Now().Before(deadline) {
		for i, c := range clients {
			ctx, cancel := context.WithTimeout(context.Background(), 200*time.Millisecond)
			st, err := c.Status(ctx, &cxkvpb.StatusRequest{})
			cancel()
			if err == nil && st.GetRole() == "leader" {
				return i
			}
		}
		time.Sleep(20 * time.Millisecond)
	}
	pc.t.Fatal("no leader within 15s")
	return -1
}

// The built binary as three processes; kill -9 of the leader under a stream
// of writes; restart. Every acknowledged write must still be readable with
// the index it was acknowledged with.
func TestKill9LeaderLosesNoAcknowledgedWrite(t *testing.T) {
	pc := startProcCluster(t)
	clients := []cxkvrpc.KVClient{pc.client(0), pc.client(1), pc.client(2)}
	lead := pc.leader(clients)

	var mu sync.Mutex
	acked := map[string]uint64{}
	stop := make(chan struct{})
	var wg sync.WaitGroup
	for w := 0; w < 4; w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := 0; ; i++ {
				select {
				case <-stop:
					return
				default:
				}
				key := fmt.Sprintf("w%d/%d", w, i)
				c := clients[(w+i)%3]
				ctx, cancel := context.WithTimeout(context.Background(), time.Second)
				r, err := c.Put(ctx, &cxkvpb.PutRequest{Key: key, Value: []byte(key)})
				cancel()
				if err == nil && r.GetSuccessful() {
					mu.Lock()
					acked[key] = r.GetRecord().GetIndex()
					mu.Unlock()
				}
			}
		}()
	}
	waitFor := func(what string, cond func() bool) {
		deadline := time.Now().Add(15 * time.Second)
		for !cond() {
			if time.Now().After(deadline) {
				t.Fatalf("timed out: %s", what)
			}
			time.Sleep(10 * time.Millisecond)
		}
	}
	count := func() int { mu.Lock(); defer mu.Unlock(); return len(acked) }
	waitFor("writes before the kill", func() bool { return count() >= 100 })
	pc.procs[lead].cmd.Process.Signal(syscall.SIGKILL)
	pc.procs[lead].cmd.Wait()
	before := count()
	waitFor("writes after the kill", func() bool { return count() >= before+100 })
	pc.start(lead)
	waitFor("writes after the restart", func() bool { return count() >= before+200 })
	close(stop)
	wg.Wait()

	// Read every acknowledged write from the restarted member, linearizably.
	for key, idx := range acked {
		var rec *cxkvpb.Record
		waitFor("read from the restarted member", func() bool {
			ctx, cancel := context.WithTimeout(context.Background(), time.Second)
			defer cancel()
			r, err := clients[lead].Get(ctx, &cxkvpb.GetRequest{Key: key})
			rec = r.GetRecord()
			return err == nil
		})
		if rec.GetIndex() != idx || string(rec.GetValue()) != key {
			t.Fatalf("%s acknowledged at index %d, now %+v", key, idx, rec)
		}
	}
	t.Logf("%d acknowledged writes checked after kill -9 of member %d and its restart", len(acked), lead+1)
}

func TestServerRefusesForeignDataDirAndStopsOnSIGTERM(t *testing.T) {
	bin, err := cxkvBinary()
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	addr := freeAddrs(t, 1)[0]
	srv := exec.Command(bin, "server", "--id", "1", "--addr", addr, "--data-dir", dir)
	if err := srv.Start(); err != nil {
		t.Fatal(err)
	}
	c := cxkvrpc.NewKVClient(must(dial(addr)))
	deadline := time.Now().Add(10 * time.Second)
	for {
		ctx, cancel := context.WithTimeout(context.Background(), time.Second)
		_, err := c.Put(ctx, &cxkvpb.PutRequest{Key: "k", Value: []byte("v")})
		cancel()
		if err == nil {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal(err)
		}
		time.Sleep(20 * time.Millisecond)
	}
	srv.Process.Signal(syscall.SIGTERM)
	done := make(chan error, 1)
	go func() { done <- srv.Wait() }()
	select {
	case err := <-done:
		if err != nil {
			t.Fatalf("SIGTERM: %v", err)
		}
	case <-time.After(10 * time.Second):
		srv.Process.Kill()
		t.Fatal("server did not stop within 10s of SIGTERM")
	}

	other := exec.Command(bin, "server", "--id", "2", "--addr", addr, "--data-dir", dir)
	out, err := other.CombinedOutput()
	if code := other.ProcessState.ExitCode(); err == nil || code == 0 {
		t.Fatalf("member 2 started on member 1's data dir (exit %d): %s", code, out)
	}
	if !strings.Contains(string(out), "belongs to member 1") {
		t.Fatalf("refusal does not say why: %s", out)
	}
}

func must[T any](v T, err error) T {
	if err != nil {
		panic(err)
	}
	return v
}

// dial connects to one member directly: the crash test checks members one
// by one, below the SDK's failover.
func dial(ep string) (*grpc.ClientConn, error) {
	return grpc.NewClient(ep, grpc.WithTransportCredentials(insecure.NewCredentials()))
}
