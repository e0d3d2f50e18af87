package client_test

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"sync/atomic"
	"testing"

	"github.com/cxkv/cxkv/client"
	"github.com/cxkv/cxkv/raftnode/raftnodetest"
	"golang.org/x/net/http2"
	"google.golang.org/grpc"
)

// The client sends no PINGs of its own while its requests go one at a
// time. With gRPC's dynamic flow-control windows it answered nearly every
// response with a bandwidth-estimation PING, a read and a write more per
// request for the member.
func TestClientSendsNoBandwidthPings(t *testing.T) {
	cl := raftnodetest.Start(t, 1)
	cl.WaitLeader()
	var pings atomic.Int64
	c, err := client.New(client.Config{Endpoints: cl.Endpoints(), DialOptions: []grpc.DialOption{
		grpc.WithContextDialer(func(ctx context.Context, addr string) (net.Conn, error) {
			raw, err := (&net.Dialer{}).DialContext(ctx, "tcp", addr)
			if err != nil {
				return nil, err
			}
			return countSentPings(raw, &pings), nil
		})}})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	const puts = 20
	for i := range puts {
		if _, err := c.Put(context.Background(), fmt.Sprintf("k%d", i), []byte("v"), 0); err != nil {
			t.Fatal(err)
		}
	}
	if n := pings.Load(); n != 0 {
		t.Fatalf("the client sent %d PINGs during %d sequential puts, want none", n, puts)
	}
}

// countSentPings wraps a client's connection so that every PING frame it
// writes (acknowledgements of the server's aside) is counted.
func countSentPings(conn net.Conn, pings *atomic.Int64) net.Conn {
	pr, pw := io.Pipe()
	go func() {
		if _, err := io.ReadFull(pr, make([]byte, len(http2.ClientPreface))); err != nil {
			pr.CloseWithError(err)
			return
		}
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
	return &teeWrites{Conn: conn, w: pw}
}

// teeWrites copies what is written to Conn to w.
type teeWrites struct {
	net.Conn
	w *io.PipeWriter
}

func (c *teeWrites) Write(b []byte) (int, error) {
	n, err := c.Conn.Write(b)
	if n > 0 {
		c.w.Write(b[:n])
	}
	return n, err
}

func (c *teeWrites) Close() error {
	c.w.Close()
	return c.Conn.Close()
}
