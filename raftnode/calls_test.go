package raftnode_test

import (
	"context"
	"math"
	"strings"
	"testing"
	"time"

	"github.com/cxkv/cxkv/api/cxkvpb"
	"github.com/cxkv/cxkv/api/cxkvrpc"
	"github.com/cxkv/cxkv/cmpxchg/cmpxchgtest"
	"github.com/cxkv/cxkv/raftnode"
	"github.com/cxkv/cxkv/raftnode/raftnodetest"
	spb "google.golang.org/genproto/googleapis/rpc/status"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"
)

// callsTarget runs a script's Gets, Lists and writes on KV.Calls streams, one per
// member, each request on the next member in turn as clusterTarget does
// with unary calls; a request's token goes in its call, as the SDK sends
// it. The scripts' expected answers are the unary calls': a stream must
// answer exactly as they do, errors, codes and auth checks included.
type callsTarget struct {
	*clusterTarget
	ctx     context.Context // the streams'
	streams map[int]cxkvrpc.KV_CallsClient
	id      uint64
}

func newCallsTarget(t *testing.T, c *clusterTarget) *callsTarget {
	ctx, cancel := context.WithCancel(context.Background())
	t.Cleanup(cancel)
	return &callsTarget{clusterTarget: c, ctx: ctx, streams: map[int]cxkvrpc.KV_CallsClient{}}
}

// call sends req on member i's stream and waits for its answer.
func (t *callsTarget) call(ctx context.Context, i int, req *cxkvpb.CallRequest) (*cxkvpb.CallResponse, error) {
	st := t.streams[i]
	if st == nil {
		var err error
		if st, err = t.c.Client(i).Calls(t.ctx); err != nil {
			return nil, err
		}
		t.streams[i] = st
	}
	t.id++
	req.Id = t.id
	if md, ok := metadata.FromOutgoingContext(ctx); ok && len(md.Get("authorization")) > 0 {
		req.Authorization = md.Get("authorization")[0]
	}
	if dl, ok := ctx.Deadline(); ok {
		req.TimeoutUs = time.Until(dl).Microseconds()
	}
	if err := st.Send(req); err != nil {
		return nil, err
	}
	resp, err := st.Recv()
	if err != nil {
		return nil, err
	}
	if resp.GetId() != req.Id {
		return nil, status.Errorf(codes.Internal, "answer to call %d, want %d", resp.GetId(), req.Id)
	}
	return resp, callError(resp)
}

// callError is the error an answer carries, nil if none.
func callError(resp *cxkvpb.CallResponse) error {
	if len(resp.GetStatus()) == 0 {
		return nil
	}
	var st spb.Status
	if err := proto.Unmarshal(resp.GetStatus(), &st); err != nil {
		return err
	}
	return status.FromProto(&st).Err()
}

func (t *callsTarget) next() int {
	t.clusterTarget.next++
	return t.clusterTarget.next % len(t.c.Members)
}

func (t *callsTarget) Get(ctx context.Context, r *cxkvpb.GetRequest) (*cxkvpb.GetResponse, error) {
	resp, err := t.call(ctx, t.next(), &cxkvpb.CallRequest{Op: &cxkvpb.CallRequest_Get{Get: r}})
	return resp.GetGet(), err
}
func (t *callsTarget) Put(ctx context.Context, r *cxkvpb.PutRequest) (*cxkvpb.PutResponse, error) {
	resp, err := t.call(ctx, t.next(), &cxkvpb.CallRequest{Op: &cxkvpb.CallRequest_Put{Put: r}})
	return resp.GetPut(), err
}
func (t *callsTarget) Delete(ctx context.Context, r *cxkvpb.DeleteRequest) (*cxkvpb.DeleteResponse, error) {
	resp, err := t.call(ctx, t.next(), &cxkvpb.CallRequest{Op: &cxkvpb.CallRequest_Delete{Delete: r}})
	return resp.GetDelete(), err
}
func (t *callsTarget) Txn(ctx context.Context, r *cxkvpb.TxnRequest) (*cxkvpb.TxnResponse, error) {
	resp, err := t.call(ctx, t.next(), &cxkvpb.CallRequest{Op: &cxkvpb.CallRequest_Txn{Txn: r}})
	return resp.GetTxn(), err
}
func (t *callsTarget) List(ctx context.Context, r *cxkvpb.ListRequest) (*cxkvpb.ListResponse, error) {
	resp, err := t.call(ctx, t.next(), &cxkvpb.CallRequest{Op: &cxkvpb.CallRequest_List{List: r}})
	return resp.GetList(), err
}

// The semantics suite over the Calls stream.
//
// These two suites are the race pass's (-short) run of the scripts on a
// live cluster: under the race detector a loaded machine stalls a Ready
// loop past the harness's 100 ms elections, and a script's write then
// fails with "leadership changed" (1 in 5 race runs), so their clusters
// elect patiently.
func TestScriptsOverCallsStream(t *testing.T) {
	cmpxchgtest.RunScripts(t, "../testdata/cmpxchg", func(t *testing.T) cmpxchgtest.Target {
		return newCallsTarget(t, &clusterTarget{c: raftnodetest.Start(t, 3, patientElections)})
	})
}

// The auth suite over the Calls stream: each call is checked with its own
// token against the member's auth state at that call, so a grant revoked
// or a password changed while the stream is open is seen by its next call.
func TestAuthScriptsOverCallsStream(t *testing.T) {
	cmpxchgtest.RunScripts(t, "../testdata/auth", func(t *testing.T) cmpxchgtest.Target {
		return newCallsTarget(t, &clusterTarget{c: raftnodetest.Start(t, 3, patientElections)})
	})
}

// A call on the stream is counted in the member's request metrics under
// its unary method's name, as the unary call is.
func TestCallsAreCountedAsTheirMethods(t *testing.T) {
	c := raftnodetest.Start(t, 1)
	target := newCallsTarget(t, &clusterTarget{c: c})
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	before := handled(t, c.Members[0], "Put")
	if _, err := target.call(ctx, 0, &cxkvpb.CallRequest{Op: &cxkvpb.CallRequest_Put{Put: &cxkvpb.PutRequest{Key: "k", Value: []byte("v")}}}); err != nil {
		t.Fatal(err)
	}
	if _, err := target.call(ctx, 0, &cxkvpb.CallRequest{Op: &cxkvpb.CallRequest_Put{Put: &cxkvpb.PutRequest{Key: ""}}}); status.Code(err) != codes.InvalidArgument {
		t.Fatalf("put of an empty key on the stream: %v, want InvalidArgument", err)
	}
	if got := handled(t, c.Members[0], "Put"); got != before+2 {
		t.Fatalf("grpc_server_handled_total for Put went from %v to %v over two calls on the stream", before, got)
	}
}

// A member names the calls it takes on the stream beyond the first four in
// the stream's header, which comes with the first answer: a client sends a
// List there only once it is named (an older member refuses it). A List
// on the stream is counted as a List, and pages as the unary call does.
func TestCallsStreamOffersList(t *testing.T) {
	c := raftnodetest.Start(t, 1)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	st, err := c.Client(0).Calls(ctx)
	if err != nil {
		t.Fatal(err)
	}
	for i, key := range []string{"q/a", "q/b", "q/c"} {
		if err := st.Send(putCall(uint64(i+1), key, 5*time.Second)); err != nil {
			t.Fatal(err)
		}
		if resp, err := st.Recv(); err != nil || callError(resp) != nil {
			t.Fatalf("put %s: %v %v", key, err, callError(resp))
		}
	}
	md, err := st.Header()
	if err != nil {
		t.Fatal(err)
	}
	if !cxkvpb.NamesCallsOp(md.Get(cxkvpb.CallsOpsHeader), cxkvpb.CallsOpList) {
		t.Fatalf("the stream's header %s is %q; want it to name %q", cxkvpb.CallsOpsHeader, md.Get(cxkvpb.CallsOpsHeader), cxkvpb.CallsOpList)
	}
	before := handled(t, c.Members[0], "List")
	var got []string
	after := ""
	for id := uint64(10); ; id++ {
		req := &cxkvpb.CallRequest{Id: id, Op: &cxkvpb.CallRequest_List{List: &cxkvpb.ListRequest{Prefix: "q/", After: after, Limit: 2}}}
		if err := st.Send(req); err != nil {
			t.Fatal(err)
		}
		resp, err := st.Recv()
		if err != nil || callError(resp) != nil {
			t.Fatalf("list on the stream: %v %v", err, callError(resp))
		}
		for _, r := range resp.GetList().GetRecords() {
			got = append(got, r.GetKey())
			after = r.GetKey()
		}
		if !resp.GetList().GetMore() {
			break
		}
	}
	if want := "q/a q/b q/c"; strings.Join(got, " ") != want {
		t.Fatalf("listed %q over two pages; want %q", got, want)
	}
	if n := handled(t, c.Members[0], "List"); n != before+2 {
		t.Fatalf("grpc_server_handled_total for List went from %v to %v over two calls on the stream", before, n)
	}
}

func TestNamesCallsOp(t *testing.T) {
	for _, tc := range []struct {
		values []string
		want   bool
	}{
		{nil, false},
		{[]string{""}, false},
		{[]string{"list"}, true},
		{[]string{"watch, list"}, true},
		{[]string{"lists"}, false},
		{[]string{"watch", "list"}, true},
	} {
		if got := cxkvpb.NamesCallsOp(tc.values, cxkvpb.CallsOpList); got != tc.want {
			t.Errorf("NamesCallsOp(%q, list) = %v, want %v", tc.values, got, tc.want)
		}
	}
}

// handled is the member's count of handled calls of a KV method, any code.
func handled(t *testing.T, n *raftnode.Node, method string) float64 {
	t.Helper()
	mfs, err := n.Registry().Gather()
	if err != nil {
		t.Fatal(err)
	}
	var sum float64
	for _, mf := range mfs {
		if mf.GetName() != "cxkv_grpc_server_handled_total" {
			continue
		}
		for _, m := range mf.GetMetric() {
			labels := map[string]string{}
			for _, l := range m.GetLabel() {
				labels[l.GetName()] = l.GetValue()
			}
			if labels["grpc_service"] == "cxkv.v1.KV" && labels["grpc_method"] == method {
				sum += m.GetCounter().GetValue()
			}
		}
	}
	return sum
}

// stalledLeader is a 3-member cluster whose followers are stopped: its
// leader's writes wait for a quorum until it steps down, an election
// timeout (2 s) later.
func stalledLeader(t *testing.T) (*raftnodetest.Cluster, int) {
	c := raftnodetest.Start(t, 3, func(cfg *raftnode.Config) { cfg.ElectionTicks = 200 })
	l := c.WaitLeader()
	for i := range c.Members {
		if i != l {
			c.Stop(i)
		}
	}
	return c, l
}

func putCall(id uint64, key string, timeout time.Duration) *cxkvpb.CallRequest {
	return &cxkvpb.CallRequest{Id: id, TimeoutUs: timeout.Microseconds(), Op: &cxkvpb.CallRequest_Put{Put: &cxkvpb.PutRequest{Key: key, Value: []byte("v")}}}
}

// A call ends by its own timeout, or by a cancel naming it, as a unary
// call does, and the stream goes on serving the calls after it.
func TestCallsEndByTimeoutOrCancelAlone(t *testing.T) {
	c, l := stalledLeader(t)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	st, err := c.Client(l).Calls(ctx)
	if err != nil {
		t.Fatal(err)
	}
	send := func(req *cxkvpb.CallRequest) {
		t.Helper()
		if err := st.Send(req); err != nil {
			t.Fatal(err)
		}
	}
	recv := func() *cxkvpb.CallResponse {
		t.Helper()
		resp, err := st.Recv()
		if err != nil {
			t.Fatal(err)
		}
		return resp
	}
	send(putCall(1, "waits", 0))
	send(putCall(2, "times-out", 50*time.Millisecond))
	if r := recv(); r.GetId() != 2 || status.Code(callError(r)) != codes.DeadlineExceeded {
		t.Fatalf("first answer: call %d, %v; want call 2 ending with DeadlineExceeded by its 50 ms timeout", r.GetId(), callError(r))
	}
	send(&cxkvpb.CallRequest{Id: 1, Op: &cxkvpb.CallRequest_Cancel{Cancel: true}})
	if r := recv(); r.GetId() != 1 || status.Code(callError(r)) != codes.Canceled {
		t.Fatalf("answer after cancelling call 1: call %d, %v; want call 1 ending with Canceled", r.GetId(), callError(r))
	}
	send(&cxkvpb.CallRequest{Id: 3, Op: &cxkvpb.CallRequest_Get{Get: &cxkvpb.GetRequest{Key: "k", Serializable: true}}})
	if r := recv(); r.GetId() != 3 || callError(r) != nil || r.GetGet() == nil {
		t.Fatalf("a read after the two: call %d, %v, %v; want call 3 answered", r.GetId(), r.GetGet(), callError(r))
	}
}

// A member runs at most cxkvpb.MaxCallsInFlight calls of one stream at
// once, reading no further until one ends: with that many writes waiting,
// a read sent after them is answered only after one of them ended.
func TestCallsInFlightAreBounded(t *testing.T) {
	c, l := stalledLeader(t)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	st, err := c.Client(l).Calls(ctx)
	if err != nil {
		t.Fatal(err)
	}
	// Call 1 ends first, by its timeout; the others wait for the quorum.
	if err := st.Send(putCall(1, "first", 300*time.Millisecond)); err != nil {
		t.Fatal(err)
	}
	for id := uint64(2); id <= cxkvpb.MaxCallsInFlight; id++ {
		if err := st.Send(putCall(id, "waits", 0)); err != nil {
			t.Fatal(err)
		}
	}
	read := uint64(cxkvpb.MaxCallsInFlight + 1)
	if err := st.Send(&cxkvpb.CallRequest{Id: read, Op: &cxkvpb.CallRequest_Get{Get: &cxkvpb.GetRequest{Key: "k", Serializable: true}}}); err != nil {
		t.Fatal(err)
	}
	first, err := st.Recv()
	if err != nil {
		t.Fatal(err)
	}
	if first.GetId() != 1 {
		t.Fatalf("first answer is to call %d (%v); want call 1, ending by its timeout, before the read that waits for its slot", first.GetId(), callError(first))
	}
	second, err := st.Recv()
	if err != nil {
		t.Fatal(err)
	}
	if second.GetId() != read || callError(second) != nil {
		t.Fatalf("second answer is to call %d (%v); want the read, in the slot call 1 freed", second.GetId(), callError(second))
	}
}

// A call's timeout_us is the caller's to choose, up to the largest an
// int64 holds: a timeout too large for a time.Duration is no timeout, not
// one already past.
func TestCallWithHugeTimeoutIsServed(t *testing.T) {
	c := raftnodetest.Start(t, 1)
	l := c.WaitLeader()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	st, err := c.Client(l).Calls(ctx)
	if err != nil {
		t.Fatal(err)
	}
	for i, us := range []int64{math.MaxInt64, math.MaxInt64 / 1000, math.MaxInt64/1000 + 1} {
		req := putCall(uint64(i+1), "k", 0)
		req.TimeoutUs = us
		if err := st.Send(req); err != nil {
			t.Fatal(err)
		}
		r, err := st.Recv()
		if err != nil {
			t.Fatal(err)
		}
		if r.GetId() != req.Id || callError(r) != nil || r.GetPut() == nil {
			t.Fatalf("put with timeout_us %d: call %d, %v; want it applied", us, r.GetId(), callError(r))
		}
	}
}

// Stop ends every stream by itself, so no answer is lost to a cut: a
// member's incoming peer streams end, and a Calls stream answers the calls
// it took (here writes waiting for a quorum, ended as the member stops)
// before it ends. Had a stream stayed open, Stop would have had to cut the
// connections when its grace ran out, and the answers with them.
func TestStopEndsStreamsAndAnswersCallsTaken(t *testing.T) {
	c := raftnodetest.Start(t, 3, func(cfg *raftnode.Config) { cfg.ElectionTicks = 200 })
	l := c.WaitLeader()
	for i, m := range c.Members {
		if i == l {
			continue
		}
		c.Stop(i) // it has the leader's peer stream open
		if m.StopCutConnections() {
			t.Fatalf("member %d's Stop cut its connections: a peer stream did not end by itself", i+1)
		}
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	st, err := c.Client(l).Calls(ctx)
	if err != nil {
		t.Fatal(err)
	}
	const writes = 3
	for id := uint64(1); id <= writes; id++ {
		if err := st.Send(putCall(id, "waits", 0)); err != nil {
			t.Fatal(err)
		}
	}
	// The stream takes its calls in order: with the read answered, the
	// writes before it are taken and waiting.
	read := uint64(writes + 1)
	if err := st.Send(&cxkvpb.CallRequest{Id: read, Op: &cxkvpb.CallRequest_Get{Get: &cxkvpb.GetRequest{Key: "k", Serializable: true}}}); err != nil {
		t.Fatal(err)
	}
	if r, err := st.Recv(); err != nil || r.GetId() != read {
		t.Fatalf("first answer: %v, %v; want the read's", r, err)
	}
	leader := c.Members[l]
	c.Stop(l)
	for range writes {
		r, err := st.Recv()
		if err != nil {
			t.Fatalf("a write the stream took got no answer, the stream ended: %v", err)
		}
		// As on a stopping member's unary call: the stop (Unavailable)
		// or the member's cancel of the call (Canceled), whichever the
		// call saw first; the SDK retries both.
		if code := status.Code(callError(r)); code != codes.Unavailable && code != codes.Canceled {
			t.Fatalf("call %d ended with %v; want Unavailable or Canceled, as the member stops", r.GetId(), callError(r))
		}
	}
	if _, err := st.Recv(); status.Code(err) != codes.Unavailable {
		t.Fatalf("the stream ended with %v after its answers; want Unavailable", err)
	}
	if leader.StopCutConnections() {
		t.Fatal("the leader's Stop cut its connections: a stream did not end by itself")
	}
}
