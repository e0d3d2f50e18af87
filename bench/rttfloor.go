package bench

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"os/exec"
	"strconv"
	"time"

	"github.com/cxkv/cxkv/internal/loopback"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/health/grpc_health_v1"
	testgrpc "google.golang.org/grpc/interop/grpc_testing"
)

// RoundTripFloor is what gRPC costs here before any work. A replicated
// write pays at least one unary call between the client and the leader
// (measured as a health check of a member: no Raft, no disk) and one
// message each way on a stream between the leader and a follower
// (measured as a ping-pong on a bidirectional stream to another process,
// as members' peer streams are), besides the fsync floor: together they
// bound cas-seq's latency from below (ReplicatedWriteFloor).
type RoundTripFloor struct {
	Ops       int     `json:"ops"`
	OpsPerSec float64 `json:"ops_per_sec"`
	P50       float64 `json:"p50_ms"`
	P99       float64 `json:"p99_ms"`
	// ClientCPU is this process's CPU time per unary call, in µs: the
	// client's share of a call's cost.
	ClientCPU float64 `json:"client_cpu_us"`
	// StreamP50 and StreamP99 are the ping-pong's, in ms.
	StreamP50 float64 `json:"stream_p50_ms"`
	StreamP99 float64 `json:"stream_p99_ms"`
}

// MeasureRoundTrip calls healthAddr's grpc.health.v1 Check in a loop, one
// call at a time, for d; then exchanges one message each way at a time on
// a stream to echoAddr (ServeEcho) for d. Both plaintext.
func MeasureRoundTrip(ctx context.Context, healthAddr, echoAddr string, d time.Duration) (RoundTripFloor, error) {
	var f RoundTripFloor
	all, elapsed, cpu, err := timeCalls(ctx, healthAddr, d, func(cc *grpc.ClientConn) (func() error, func(), error) {
		h := grpc_health_v1.NewHealthClient(cc)
		call := func() error { _, err := h.Check(ctx, &grpc_health_v1.HealthCheckRequest{}); return err }
		return call, func() {}, nil
	})
	if err != nil {
		return f, fmt.Errorf("health check of %s: %w", healthAddr, err)
	}
	f.Ops, f.OpsPerSec = len(all), float64(len(all))/elapsed.Seconds()
	f.P50, f.P99, _ = quantiles(all)
	f.ClientCPU = float64(cpu.Microseconds()) / float64(len(all))
	all, _, _, err = timeCalls(ctx, echoAddr, d, func(cc *grpc.ClientConn) (func() error, func(), error) {
		sctx, cancel := context.WithCancel(ctx)
		st, err := testgrpc.NewTestServiceClient(cc).FullDuplexCall(sctx)
		if err != nil {
			cancel()
			return nil, nil, err
		}
		req := &testgrpc.StreamingOutputCallRequest{}
		call := func() error {
			if err := st.Send(req); err != nil {
				return err
			}
			_, err := st.Recv()
			return err
		}
		return call, cancel, nil
	})
	if err != nil {
		return f, fmt.Errorf("stream ping-pong with %s: %w", echoAddr, err)
	}
	f.StreamP50, f.StreamP99, _ = quantiles(all)
	return f, nil
}

// timeCalls times open's call one at a time for d, after one call off the
// record (it dials), and returns each call's time, the loop's and the
// process's CPU time spent in the loop. It always makes one timed call.
func timeCalls(ctx context.Context, addr string, d time.Duration, open func(*grpc.ClientConn) (call func() error, closeFn func(), err error)) (all []time.Duration, elapsed, cpu time.Duration, err error) {
	cc, err := grpc.NewClient(addr, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		return nil, 0, 0, err
	}
	defer cc.Close()
	call, closeFn, err := open(cc)
	if err != nil {
		return nil, 0, 0, err
	}
	defer closeFn()
	if err := call(); err != nil {
		return nil, 0, 0, err
	}
	cpu0, start := selfCPU(), time.Now()
	for len(all) == 0 || time.Since(start) < d {
		t0 := time.Now()
		if err := call(); err != nil {
			return nil, 0, 0, err
		}
		all = append(all, time.Since(t0))
	}
	return all, time.Since(start), selfCPU() - cpu0, nil
}

// echoServer answers every message of a FullDuplexCall with an empty one.
type echoServer struct {
	testgrpc.UnimplementedTestServiceServer
}

func (echoServer) FullDuplexCall(st testgrpc.TestService_FullDuplexCallServer) error {
	resp := &testgrpc.StreamingOutputCallResponse{}
	for {
		if _, err := st.Recv(); err != nil {
			return nil // the client is done
		}
		if err := st.Send(resp); err != nil {
			return err
		}
	}
}

// ServeEcho serves the ping-pong's other end on lis until it fails.
func ServeEcho(lis net.Listener) error {
	s := grpc.NewServer()
	testgrpc.RegisterTestServiceServer(s, echoServer{})
	return s.Serve(lis)
}

// StartEcho starts self (this harness's binary) as the ping-pong's other
// end, in a process of its own as a peer is: self must run ServeEcho when
// given -echo-serve ADDR. stop kills it.
func StartEcho(self string) (addr string, stop func(), err error) {
	ports, err := loopback.FreePorts(1)
	if err != nil {
		return "", nil, err
	}
	addr = net.JoinHostPort("127.0.0.1", strconv.Itoa(ports[0]))
	cmd := exec.Command(self, "-echo-serve", addr)
	cmd.SysProcAttr = childAttr()
	if err := cmd.Start(); err != nil {
		return "", nil, err
	}
	stop = func() { cmd.Process.Kill(); cmd.Wait() }
	for deadline := time.Now().Add(10 * time.Second); ; time.Sleep(20 * time.Millisecond) {
		c, err := net.DialTimeout("tcp", addr, time.Second)
		if err == nil {
			c.Close()
			return addr, stop, nil
		}
		if time.Now().After(deadline) {
			stop()
			return "", nil, errors.Join(fmt.Errorf("echo process on %s did not listen within 10s", addr), err)
		}
	}
}

// ReplicatedWriteFloor is the least a replicated write's p50 can be here, in
// ms: the client's round trip to the leader, the leader's and a follower's
// overlapping fsyncs (three members on this disk sync at once), and the
// leader's round trip to that follower. It leaves out everything else a
// write does (Raft, the state machine, scheduling), so a system's cas-seq
// p50 sits above it.
func ReplicatedWriteFloor(rt RoundTripFloor, fsync []FsyncFloor) float64 {
	sync := 0.0
	for _, f := range fsync {
		if f.Files >= 3 || sync == 0 {
			sync = f.P50
		}
	}
	return rt.P50 + sync + rt.StreamP50
}

// WriteRoundTrip prints the round-trip floor and, with the fsync floor, a
// replicated write's; given etcd's cas-seq p50 (0: not measured), also
// where cas-seq's target sits against that floor (WriteCASSeqFloor).
func WriteRoundTrip(w io.Writer, rt RoundTripFloor, fsync []FsyncFloor, etcdCASSeqP50 float64, markdown bool) {
	head := []string{"gRPC round trip floor (loopback, one at a time)", "calls/s", "p50 ms", "p99 ms", "client CPU µs/call"}
	lines := [][]string{
		{"unary call (health check of a member)", num(rt.OpsPerSec), num(rt.P50), num(rt.P99), num(rt.ClientCPU)},
		{"stream message each way (to another process)", "-", num(rt.StreamP50), num(rt.StreamP99), "-"},
	}
	writeGrid(w, head, lines, markdown)
	fmt.Fprintln(w)
	WriteCASSeqFloor(w, rt, fsync, etcdCASSeqP50)
}

// WriteCASSeqFloor prints a replicated write's floor and, given etcd's
// cas-seq p50, whether cas-seq's target (half of it) is above it.
func WriteCASSeqFloor(w io.Writer, rt RoundTripFloor, fsync []FsyncFloor, etcdCASSeqP50 float64) {
	floor := ReplicatedWriteFloor(rt, fsync)
	fmt.Fprintf(w, "replicated write floor (unary call + fsync of 3 files at once + stream message each way, p50): %s ms\n", num(floor))
	if etcdCASSeqP50 <= 0 {
		return
	}
	target := etcdCASSeqP50 / 2
	verdict := "above the floor"
	if target < floor {
		verdict = "below the floor: out of reach on this machine"
	}
	fmt.Fprintf(w, "cas-seq target, half of etcd's p50: %s ms, %s\n", num(target), verdict)
}

// EtcdCASSeqP50 is etcd's median cas-seq p50 in rep (0 if not measured).
func EtcdCASSeqP50(rep Report) float64 {
	for _, r := range rep.Summary {
		if r.Workload == CASSeq {
			return r.EtcdP50
		}
	}
	return 0
}
