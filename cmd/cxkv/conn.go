package main

import (
	"context"
	"fmt"
	"os"
	"strings"
	"time"

	"github.com/cxkv/cxkv/api/cxkvpb"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/status"
)

const defaultTimeout = 5 * time.Second

type globals struct {
	endpoints string
	timeout   time.Duration
	output    string
}

func envOr(name, def string) string {
	if v := os.Getenv(name); v != "" {
		return v
	}
	return def
}

// call runs f against each endpoint in turn until one answers with anything
// but Unavailable. Writes are not retried after they reached a member that
// answered: the CLI reports what happened, it never applies a write twice.
func (g *globals) call(ctx context.Context, f func(context.Context, cxkvpb.KVClient) error) error {
	if g.output != "table" && g.output != "json" {
		return usageError{fmt.Errorf("-o %q: want table or json", g.output)}
	}
	var last error
	for _, ep := range strings.Split(g.endpoints, ",") {
		ep = strings.TrimSpace(ep)
		if ep == "" {
			continue
		}
		conn, err := grpc.NewClient(ep, grpc.WithTransportCredentials(insecure.NewCredentials()))
		if err != nil {
			return usageError{fmt.Errorf("endpoint %q: %v", ep, err)}
		}
		cctx, cancel := context.WithTimeout(ctx, g.timeout)
		err = f(cctx, cxkvpb.NewKVClient(conn))
		cancel()
		conn.Close()
		if status.Code(err) != codes.Unavailable {
			return err
		}
		last = err
	}
	if last == nil {
		return usageError{fmt.Errorf("no endpoints")}
	}
	return status.Errorf(codes.Unavailable, "no member of %s answered: %s", g.endpoints, status.Convert(last).Message())
}

func splitEndpoints(s string) []string {
	var out []string
	for _, ep := range strings.Split(s, ",") {
		if ep = strings.TrimSpace(ep); ep != "" {
			out = append(out, ep)
		}
	}
	if len(out) == 0 {
		out = []string{"127.0.0.1:7001"}
	}
	return out
}

func dial(ep string) (*grpc.ClientConn, error) {
	return grpc.NewClient(ep, grpc.WithTransportCredentials(insecure.NewCredentials()))
}

func unavailableErr(msg string) error { return status.Error(codes.Unavailable, msg) }
