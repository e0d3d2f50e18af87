package client_test

import (
	"context"
	"sync/atomic"
	"syscall"
	"testing"

	"github.com/cxkv/cxkv/api/cxkvpb"
	"github.com/cxkv/cxkv/api/cxkvrpc"
	"github.com/cxkv/cxkv/client"
	"google.golang.org/grpc/metadata"
)

// echoMember answers every call on the Calls stream at once, as a leader
// that applied it: what is left of a call's cost is the SDK's and gRPC's.
type echoMember struct {
	cxkvrpc.UnimplementedKVServer
	index atomic.Uint64
	// offerList: the stream takes Lists (this version); without it Lists
	// come as unary calls (an older member).
	offerList bool
}

// listAnswer is a page of a lock's queue of 16 waiters.
func listAnswer(h *cxkvpb.Header) *cxkvpb.ListResponse {
	resp := &cxkvpb.ListResponse{Header: h}
	for i := range uint64(16) {
		resp.Records = append(resp.Records, &cxkvpb.Record{Key: "lock/q/0123456789abcdef", Value: []byte("owner"), Index: i + 1, CreateIndex: i + 1})
	}
	return resp
}

func (m *echoMember) List(ctx context.Context, r *cxkvpb.ListRequest) (*cxkvpb.ListResponse, error) {
	i := m.index.Add(1)
	return listAnswer(&cxkvpb.Header{MemberId: 1, LeaderId: 1, Term: 1, AppliedIndex: i, QuorumContact: true}), nil
}

func (m *echoMember) Calls(stream cxkvrpc.KV_CallsServer) error {
	if m.offerList {
		if err := stream.SetHeader(metadata.Pairs(cxkvpb.CallsOpsHeader, cxkvpb.CallsOps)); err != nil {
			return err
		}
	}
	for {
		req, err := stream.Recv()
		if err != nil {
			return nil
		}
		i := m.index.Add(1)
		h := &cxkvpb.Header{MemberId: 1, LeaderId: 1, Term: 1, AppliedIndex: i, QuorumContact: true}
		out := &cxkvpb.CallResponse{Id: req.GetId()}
		switch op := req.GetOp().(type) {
		case *cxkvpb.CallRequest_Put:
			out.Op = &cxkvpb.CallResponse_Put{Put: &cxkvpb.PutResponse{Header: h, Successful: true,
				Record: &cxkvpb.Record{Key: op.Put.GetKey(), Value: op.Put.GetValue(), Index: i, CreateIndex: i}}}
		case *cxkvpb.CallRequest_Get:
			out.Op = &cxkvpb.CallResponse_Get{Get: &cxkvpb.GetResponse{Header: h, Found: true,
				Record: &cxkvpb.Record{Key: op.Get.GetKey(), Value: []byte("value"), Index: i, CreateIndex: 1}}}
		case *cxkvpb.CallRequest_Txn:
			// The write id's opening no-op, and any other transaction:
			// every compare holds.
			out.Op = &cxkvpb.CallResponse_Txn{Txn: &cxkvpb.TxnResponse{Header: h, Successful: true, FailedCompare: -1, Index: i}}
		case *cxkvpb.CallRequest_List:
			out.Op = &cxkvpb.CallResponse_List{List: listAnswer(h)}
		default:
			continue
		}
		if err := stream.Send(out); err != nil {
			return nil
		}
	}
}

// BenchmarkClientCall is the process's CPU per call of the SDK against a
// member that answers at once (echoMember, in this process): the SDK's
// own cost per call, with gRPC's both ways, which an application pays on
// every write and read. 64 callers share one Client, as the bench's
// cas-parallel does. list is a page of 16 records on the stream, as a lock
// waiter reads its queue; list-unary the same from a member whose stream
// does not take Lists.
func BenchmarkClientCall(b *testing.B) {
	c, err := client.New(client.Config{Endpoints: []string{serveKV(b, &echoMember{offerList: true})}})
	if err != nil {
		b.Fatal(err)
	}
	defer c.Close()
	older, err := client.New(client.Config{Endpoints: []string{serveKV(b, &echoMember{})}})
	if err != nil {
		b.Fatal(err)
	}
	defer older.Close()
	ctx := context.Background()
	for _, c := range []*client.Client{c, older} {
		if _, err := c.Get(ctx, "warm"); err != nil {
			b.Fatal(err)
		}
	}
	for _, op := range []string{"put", "get", "list", "list-unary"} {
		b.Run(op, func(b *testing.B) {
			b.ReportAllocs()
			b.SetParallelism(32) // 64 callers on 2 cores
			cpu0 := processCPU(b)
			b.RunParallel(func(pb *testing.PB) {
				for pb.Next() {
					var err error
					switch op {
					case "put":
						_, err = c.Put(ctx, "bench/key", []byte("value"), 0)
					case "get":
						_, err = c.Get(ctx, "bench/key")
					case "list":
						_, err = c.ListPage(ctx, "lock/q/", "", 0)
					case "list-unary":
						_, err = older.ListPage(ctx, "lock/q/", "", 0)
					}
					if err != nil {
						b.Error(err)
						return
					}
				}
			})
			b.ReportMetric(float64(processCPU(b)-cpu0)/float64(b.N), "cpu-ns/op")
		})
	}
}

// processCPU is the CPU time (user and system) this process has used, in
// nanoseconds: on a shared machine it says more of a change than the wall
// time per call does.
func processCPU(b *testing.B) int64 {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		b.Fatal(err)
	}
	return ru.Utime.Nano() + ru.Stime.Nano()
}
