package bench

import (
	"context"
	"crypto/tls"
	"strings"
	"sync/atomic"
	"time"

	"github.com/cxkv/cxkv/api/cxkvpb"
	"github.com/cxkv/cxkv/client"
	"github.com/cxkv/cxkv/client/lock"
	"google.golang.org/grpc"
)

// Cxkv is a cxkv cluster driven through the project's own SDK, locks
// through its lock.ProcessMonitor in lock mode Mode (the zero value is the
// default, lock.Queue).
type Cxkv struct {
	Endpoints []string
	Mode      lock.Mode
	// Label names the backend in results; default "cxkv".
	Label string
	// TLS is the client's TLS configuration (Cluster.TLS), nil for
	// plaintext.
	TLS *tls.Config
}

// Name implements Backend.
func (x Cxkv) Name() string {
	if x.Label != "" {
		return x.Label
	}
	return "cxkv"
}

// Connect implements Backend.
func (x Cxkv) Connect(ctx context.Context) (Conn, error) {
	conn := &cxkvConn{mode: x.Mode}
	c, err := client.New(client.Config{Endpoints: x.Endpoints, TLS: x.TLS, DialOptions: []grpc.DialOption{grpc.WithChainUnaryInterceptor(conn.countRenewals)}})
	if err != nil {
		return nil, err
	}
	conn.c = c
	return conn, nil
}

type cxkvConn struct {
	c        *client.Client
	mode     lock.Mode
	renewals atomic.Int64
}

// countRenewals counts the writes that renew a session: a Txn whose put
// rewrites a session key (the monitor's open is one too, once).
func (c *cxkvConn) countRenewals(ctx context.Context, method string, req, reply any, cc *grpc.ClientConn, invoker grpc.UnaryInvoker, opts ...grpc.CallOption) error {
	if t, ok := req.(*cxkvpb.TxnRequest); ok {
		for _, op := range t.GetOps() {
			if op.GetType() == cxkvpb.TxnOp_PUT && strings.HasPrefix(op.GetKey(), client.SessionKey("")) {
				c.renewals.Add(1)
				break
			}
		}
	}
	return invoker(ctx, method, req, reply, cc, opts...)
}

// Renewals implements RenewalCounter.
func (c *cxkvConn) Renewals() int64 { return c.renewals.Load() }

func (c *cxkvConn) Get(ctx context.Context, key string) ([]byte, uint64, error) {
	r, err := c.c.Get(ctx, key)
	return r.Value, r.Index, err
}

func (c *cxkvConn) CAS(ctx context.Context, key string, value []byte, expect uint64) (bool, uint64, error) {
	r, err := c.c.Put(ctx, key, value, expect)
	return r.Successful, r.Record.Index, err
}

func (c *cxkvConn) DeleteIf(ctx context.Context, key string, expect uint64) (bool, error) {
	r, err := c.c.Delete(ctx, key, expect)
	return r.Successful, err
}

// Set is a Txn with no compares: cxkv's Put always compares an index.
func (c *cxkvConn) Set(ctx context.Context, key string, value []byte) error {
	_, err := c.c.Txn(ctx, nil, []client.Op{client.PutOp(key, value, 0)})
	return err
}

func (c *cxkvConn) Session(ctx context.Context, ttl time.Duration) (LockSession, error) {
	return cxkvSession{lock.NewProcessMonitor(c.c, lock.Options{TTL: ttl, Mode: c.mode})}, nil
}

func (c *cxkvConn) Close() error { return c.c.Close() }

type cxkvSession struct{ m *lock.ProcessMonitor }

func (s cxkvSession) Lock(ctx context.Context, name string) (Held, error) {
	l, err := s.m.Lock(ctx, name)
	if err != nil {
		return nil, err
	}
	return cxkvHeld{l}, nil
}

func (s cxkvSession) Close() error { return s.m.Close() }

type cxkvHeld struct{ l *lock.Lock }

func (h cxkvHeld) Unlock(ctx context.Context) error { return h.l.UnlockContext(ctx) }

// Watch implements Watcher with the SDK's Watch, which resumes on another
// member by itself.
func (c *cxkvConn) Watch(ctx context.Context, prefix string, from uint64, each func(key string, rev uint64)) error {
	for ev, err := range c.c.Watch(ctx, prefix, from) {
		if err != nil {
			return err
		}
		each(ev.Record.Key, ev.Record.Index)
	}
	return ctx.Err()
}
