package client_test

import (
	"context"
	"sync/atomic"
	"syscall"
	"testing"

	"github.com/cxkv/cxkv/api/cxkvpb"
	"github.com/cxkv/cxkv/api/cxkvrpc"
	"github.com/cxkv/cxkv/client"
)

// echoMember answers every call on the Calls stream at once, as a leader
// that applied it: what is left of a call's cost is the SDK's and gRPC's.
type echoMember struct {
	cxkvrpc.UnimplementedKVServer
	index atomic.Uint64
}

func (m *echoMember) Calls(stream cxkvrpc.KV_CallsServer) error {
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
// cas-parallel does.
func BenchmarkClientCall(b *testing.B) {
	c, err := client.New(client.Config{Endpoints: []string{serveKV(b, &echoMember{})}})
	if err != nil {
		b.Fatal(err)
	}
	defer c.Close()
	ctx := context.Background()
	if _, err := c.Get(ctx, "warm"); err != nil {
		b.Fatal(err)
	}
	for _, op := range []string{"put", "get"} {
		b.Run(op, func(b *testing.B) {
			b.ReportAllocs()
			b.SetParallelism(32) // 64 callers on 2 cores
			cpu0 := processCPU(b)
			b.RunParallel(func(pb *testing.PB) {
				for pb.Next() {
					var err error
					if op == "put" {
						_, err = c.Put(ctx, "bench/key", []byte("value"), 0)
					} else {
						_, err = c.Get(ctx, "bench/key")
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
