package raftnode_test

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"sync/atomic"
	"testing"

	"github.com/cxkv/cxkv/api/cxkvpb"
	"github.com/cxkv/cxkv/api/cxkvrpc"
	"github.com/cxkv/cxkv/raftnode/raftnodetest"
	"golang.org/x/net/http2"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
)

// A member's server sends no PINGs of its own while requests come one at a
// time. With gRPC's dynamic flow-control windows it sent a
// bandwidth-estimation PING after nearly every request, which the client
// answered: two more socket writes and reads per request on each side, and
// the same on every peer stream per raft message.
func TestServerSendsNoBandwidthPings(t *testing.T) {
	c := raftnodetest.Start(t, 1)
	c.WaitLeader()
	var pings atomic.Int64
	conn, err := grpc.NewClient(c.Endpoints()[0], grpc.WithTransportCredentials(insecure.NewCredentials()),
		grpc.WithContextDialer(func(ctx context.Context, addr string) (net.Conn, error) {
			raw, err := (&net.Dialer{}).DialContext(ctx, "tcp", addr)
			if err != nil {
				return nil, err
			}
			return countPings(raw, &pings), nil
		}))
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	kv := cxkvrpc.NewKVClient(conn)
	const puts = 20
	for i := range puts {
		if _, err := kv.Put(context.Background(), &cxkvpb.PutRequest{Key: fmt.Sprintf("k%d", i), Value: []byte("v")}); err != nil {
			t.Fatal(err)
		}
	}
	if n := pings.Load(); n != 0 {
		t.Fatalf("the server sent %d PINGs during %d sequential puts, want none", n, puts)
	}
}

// countPings wraps a client's connection so that every PING frame the
// server sends it (acknowledgements of the client's own aside) is counted.
func countPings(conn net.Conn, pings *atomic.Int64) net.Conn {
	pr, pw := io.Pipe()
	go func() {
		fr := http2.NewFramer(nil, pr)
		for {
			f, err := fr.ReadFrame()
			var se http2.StreamError
			if errors.As(err, &se) {
				continue
			}
			if err != nil {
				pr.CloseWithError(err)
				return
			}
			if p, ok := f.(*http2.PingFrame); ok && !p.IsAck() {
				pings.Add(1)
			}
		}
	}()
	return &teeConn{Conn: conn, w: pw}
}

// teeConn copies what is read from Conn to w.
type teeConn struct {
	net.Conn
	w *io.PipeWriter
}

func (c *teeConn) Read(b []byte) (int, error) {
	n, err := c.Conn.Read(b)
	if n > 0 {
		c.w.Write(b[:n])
	}
	if err != nil {
		c.w.CloseWithError(err)
	}
	return n, err
}
