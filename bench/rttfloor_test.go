package bench

import (
	"bytes"
	"context"
	"net"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/cxkv/cxkv/internal/loopback"
	"google.golang.org/grpc"
	"google.golang.org/grpc/health"
	"google.golang.org/grpc/health/grpc_health_v1"
)

func TestRoundTripFloorTimesHealthChecks(t *testing.T) {
	healthAddr := startHealth(t)
	echo, err := loopback.Listen()
	if err != nil {
		t.Fatal(err)
	}
	defer echo.Close()
	go ServeEcho(echo)

	rt, err := MeasureRoundTrip(context.Background(), healthAddr, echo.Addr().String(), 200*time.Millisecond)
	if err != nil {
		t.Fatal(err)
	}
	if rt.Ops == 0 || rt.OpsPerSec <= 0 || rt.P50 <= 0 || rt.P99 < rt.P50 || rt.StreamP50 <= 0 || rt.StreamP99 < rt.StreamP50 {
		t.Fatalf("round trip floor %+v: want calls, positive p50s and p99s at or above them", rt)
	}
}

// startHealth serves grpc.health.v1 in the test's process until it ends.
func startHealth(t *testing.T) string {
	t.Helper()
	lis, err := loopback.Listen()
	if err != nil {
		t.Fatal(err)
	}
	srv := grpc.NewServer()
	grpc_health_v1.RegisterHealthServer(srv, health.NewServer())
	go srv.Serve(lis)
	t.Cleanup(srv.Stop)
	return lis.Addr().String()
}

func TestRoundTripFloorNamesAMemberThatDoesNotAnswer(t *testing.T) {
	lis, err := loopback.Listen()
	if err != nil {
		t.Fatal(err)
	}
	addr := lis.Addr().String()
	lis.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	_, err = MeasureRoundTrip(ctx, addr, addr, 100*time.Millisecond)
	if err == nil || !strings.Contains(err.Error(), addr) {
		t.Fatalf("measuring a closed port: err %v, want one naming %s", err, addr)
	}
}

func TestCASSeqFloorJudgesTheTarget(t *testing.T) {
	rt := RoundTripFloor{P50: 0.25, StreamP50: 0.15}
	fsync := []FsyncFloor{{Files: 1, P50: 0.3}, {Files: 3, P50: 0.5}}
	if got := ReplicatedWriteFloor(rt, fsync); got != 0.9 {
		t.Fatalf("floor %v, want 0.9 (a unary call of 0.25, the three-file fsync of 0.5, a stream exchange of 0.15)", got)
	}
	for _, c := range []struct {
		etcd float64
		want string
	}{
		{1.5, "0.75 ms, below the floor: out of reach"},
		{2.0, "1.00 ms, above the floor"},
	} {
		var b bytes.Buffer
		WriteCASSeqFloor(&b, rt, fsync, c.etcd)
		if !strings.Contains(b.String(), c.want) {
			t.Errorf("etcd p50 %v ms: printed %q, want it to say %q", c.etcd, b.String(), c.want)
		}
	}
}

// The harness measures the stream exchange against itself started with
// -echo-serve, a process of its own as a peer is.
func TestEchoRunsInAProcessOfItsOwn(t *testing.T) {
	if testing.Short() {
		t.Skip("builds and runs cxkvbench")
	}
	bin := filepath.Join(t.TempDir(), "cxkvbench")
	if out, err := exec.Command("go", "build", "-o", bin, "./cmd/cxkvbench").CombinedOutput(); err != nil {
		t.Fatalf("build cxkvbench: %v\n%s", err, out)
	}
	addr, stop, err := StartEcho(bin)
	if err != nil {
		t.Fatal(err)
	}
	health := startHealth(t)
	rt, err := MeasureRoundTrip(t.Context(), health, addr, 100*time.Millisecond)
	if err != nil {
		stop()
		t.Fatal(err)
	}
	if rt.StreamP50 <= 0 {
		t.Errorf("stream exchange p50 %v ms with the echo process, want it timed", rt.StreamP50)
	}
	stop()
	if c, err := net.DialTimeout("tcp", addr, time.Second); err == nil {
		c.Close()
		t.Fatalf("the echo process still listens on %s after stop", addr)
	}
}
