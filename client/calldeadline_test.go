package client_test

import (
	"context"
	"testing"
	"time"

	"github.com/cxkv/cxkv/api/cxkvpb"
	"github.com/cxkv/cxkv/api/cxkvrpc"
	"github.com/cxkv/cxkv/client"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"
)

// mutedMember reads calls and never answers them; unavailable answers
// every call at once with Unavailable, which the SDK retries.
type mutedMember struct {
	cxkvrpc.UnimplementedKVServer
	unavailable bool
}

func (m *mutedMember) Calls(stream cxkvrpc.KV_CallsServer) error {
	for {
		req, err := stream.Recv()
		if err != nil {
			return nil
		}
		if m.unavailable {
			b, err := proto.Marshal(status.New(codes.Unavailable, "not now").Proto())
			if err != nil {
				return err
			}
			if err := stream.Send(&cxkvpb.CallResponse{Id: req.GetId(), Status: b}); err != nil {
				return nil
			}
		}
	}
}

// A call ends at the client's RetryTimeout whether its one attempt never
// returns (the attempt carries the call's deadline, not only its own
// RequestTimeout) or its attempts keep failing and are retried.
func TestCallEndsAtRetryTimeout(t *testing.T) {
	for _, tc := range []struct {
		name string
		m    *mutedMember
	}{{"attempt never answered", &mutedMember{}}, {"attempts retried", &mutedMember{unavailable: true}}} {
		t.Run(tc.name, func(t *testing.T) {
			const retry = 300 * time.Millisecond
			c, err := client.New(client.Config{Endpoints: []string{serveKV(t, tc.m)}, RequestTimeout: time.Minute, RetryTimeout: retry})
			if err != nil {
				t.Fatal(err)
			}
			defer c.Close()
			start := time.Now()
			_, err = c.Get(context.Background(), "k")
			took := time.Since(start)
			if err == nil {
				t.Fatal("a read no member answered succeeded")
			}
			if took < retry || took > retry+5*time.Second {
				t.Fatalf("the read ended after %v (%v), want about the RetryTimeout %v", took, err, retry)
			}
		})
	}
}
