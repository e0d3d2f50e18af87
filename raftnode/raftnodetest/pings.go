package raftnodetest

import (
	"context"
	"errors"
	"io"
	"net"
	"sync/atomic"

	"golang.org/x/net/http2"
)

// PingCounter is a dialer for grpc.WithContextDialer that counts the
// HTTP/2 PING frames each side of its connections starts (acknowledgements
// are not counted): Sent by the client, Received from the server. gRPC's
// dynamic flow-control windows send such a PING after nearly every
// message; a member's servers and the SDK must send none.
type PingCounter struct {
	Sent, Received atomic.Int64
}

// Dial connects to addr over TCP and counts the PINGs on the connection.
func (p *PingCounter) Dial(ctx context.Context, addr string) (net.Conn, error) {
	raw, err := (&net.Dialer{}).DialContext(ctx, "tcp", addr)
	if err != nil {
		return nil, err
	}
	out, in := countPings(&p.Sent, len(http2.ClientPreface)), countPings(&p.Received, 0)
	return &pingConn{Conn: raw, out: out, in: in}, nil
}

// countPings returns a pipe whose reader parses HTTP/2 frames, after skip
// bytes of preface, and counts the PINGs among them until the pipe closes.
func countPings(n *atomic.Int64, skip int) *io.PipeWriter {
	pr, pw := io.Pipe()
	go func() {
		if _, err := io.ReadFull(pr, make([]byte, skip)); err != nil {
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
				n.Add(1)
			}
		}
	}()
	return pw
}

// pingConn copies what is written to Conn to out, and what is read from it
// to in.
type pingConn struct {
	net.Conn
	out, in *io.PipeWriter
}

func (c *pingConn) Write(b []byte) (int, error) {
	n, err := c.Conn.Write(b)
	if n > 0 {
		c.out.Write(b[:n])
	}
	return n, err
}

func (c *pingConn) Read(b []byte) (int, error) {
	n, err := c.Conn.Read(b)
	if n > 0 {
		c.in.Write(b[:n])
	}
	if err != nil {
		c.in.CloseWithError(err)
	}
	return n, err
}

func (c *pingConn) Close() error {
	c.out.Close()
	c.in.Close()
	return c.Conn.Close()
}
