package raftnode

import (
	"context"
	"time"

	"github.com/cxkv/cxkv/api/cxkvpb"
	"google.golang.org/grpc"
	"google.golang.org/grpc/status"
)

// slowUnary logs every client request that took Config.SlowRequest or
// longer, with its method, the key it named and its outcome, at WARN. Zero
// turns it off. Peer traffic is streams, so it never shows here.
func (n *Node) slowUnary(ctx context.Context, req any, info *grpc.UnaryServerInfo, handler grpc.UnaryHandler) (any, error) {
	if n.cfg.SlowRequest <= 0 {
		return handler(ctx, req)
	}
	start := time.Now()
	resp, err := handler(ctx, req)
	if took := time.Since(start); took >= n.cfg.SlowRequest {
		n.cfg.Logger.Warn("slow request", "method", info.FullMethod, "key", requestKey(req), "took", took, "code", status.Code(err).String())
	}
	return resp, err
}

// requestKey is the key (or prefix) a request names, for the log: a Txn
// names its first compare's or operation's key.
func requestKey(req any) string {
	switch r := req.(type) {
	case interface{ GetKey() string }:
		return r.GetKey()
	case interface{ GetPrefix() string }:
		return r.GetPrefix()
	case *cxkvpb.TxnRequest:
		if c := r.GetCompares(); len(c) > 0 {
			return c[0].GetKey()
		}
		if o := r.GetOps(); len(o) > 0 {
			return o[0].GetKey()
		}
	}
	return ""
}
