package bench

import (
	"context"
	"crypto/tls"
	"fmt"
	"sync/atomic"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"
	"go.etcd.io/etcd/client/v3/concurrency"
	"go.uber.org/zap"
	"google.golang.org/grpc"
)

// Etcd is an etcd cluster driven through the official v3 client. A
// put-if-index is a Txn on ModRevision (create-if-absent: CreateRevision ==
// 0), the same one-round-trip compare-exchange cxkv's Put is; locks are
// concurrency.Mutex, etcd's own recipe.
type Etcd struct {
	Endpoints []string
	// Label names the backend in results; default "etcd".
	Label string
	// TLS is the client's TLS configuration (Cluster.TLS), nil for
	// plaintext.
	TLS *tls.Config
}

// Name implements Backend.
func (e Etcd) Name() string {
	if e.Label != "" {
		return e.Label
	}
	return "etcd"
}

// Connect implements Backend.
func (e Etcd) Connect(ctx context.Context) (Conn, error) {
	conn := &etcdConn{}
	cli, err := clientv3.New(clientv3.Config{
		Endpoints:   e.Endpoints,
		TLS:         e.TLS,
		DialTimeout: 5 * time.Second,
		Context:     ctx,
		Logger:      zap.NewNop(),
		// Chained, so the client's own retrying interceptors stay.
		DialOptions: []grpc.DialOption{grpc.WithChainStreamInterceptor(conn.countKeepAlives)},
	})
	if err != nil {
		return nil, err
	}
	conn.cli = cli
	return conn, nil
}

type etcdConn struct {
	cli        *clientv3.Client
	keepAlives atomic.Int64
}

// countKeepAlives counts the LeaseKeepAlive requests the client sends:
// one per lease per TTL/3, whatever the number of keys on the lease.
func (c *etcdConn) countKeepAlives(ctx context.Context, desc *grpc.StreamDesc, cc *grpc.ClientConn, method string, streamer grpc.Streamer, opts ...grpc.CallOption) (grpc.ClientStream, error) {
	s, err := streamer(ctx, desc, cc, method, opts...)
	if err != nil || method != "/etcdserverpb.Lease/LeaseKeepAlive" {
		return s, err
	}
	return sendCounter{s, &c.keepAlives}, nil
}

type sendCounter struct {
	grpc.ClientStream
	n *atomic.Int64
}

func (s sendCounter) SendMsg(m any) error {
	s.n.Add(1)
	return s.ClientStream.SendMsg(m)
}

// Renewals implements RenewalCounter.
func (c *etcdConn) Renewals() int64 { return c.keepAlives.Load() }

func (c *etcdConn) Get(ctx context.Context, key string) ([]byte, uint64, error) {
	resp, err := c.cli.Get(ctx, key)
	if err != nil {
		return nil, 0, err
	}
	if len(resp.Kvs) == 0 {
		return nil, 0, nil
	}
	return resp.Kvs[0].Value, uint64(resp.Kvs[0].ModRevision), nil
}

// guard is the compare that makes a write conditional on the key's revision.
func guard(key string, expect uint64) clientv3.Cmp {
	if expect == 0 {
		return clientv3.Compare(clientv3.CreateRevision(key), "=", 0)
	}
	return clientv3.Compare(clientv3.ModRevision(key), "=", int64(expect))
}

func (c *etcdConn) CAS(ctx context.Context, key string, value []byte, expect uint64) (bool, uint64, error) {
	resp, err := c.cli.Txn(ctx).If(guard(key, expect)).Then(clientv3.OpPut(key, string(value))).Commit()
	if err != nil {
		return false, 0, err
	}
	return resp.Succeeded, uint64(resp.Header.Revision), nil
}

func (c *etcdConn) DeleteIf(ctx context.Context, key string, expect uint64) (bool, error) {
	if expect == 0 {
		return false, nil
	}
	resp, err := c.cli.Txn(ctx).If(guard(key, expect)).Then(clientv3.OpDelete(key)).Commit()
	if err != nil {
		return false, err
	}
	return resp.Succeeded, nil
}

func (c *etcdConn) Set(ctx context.Context, key string, value []byte) error {
	_, err := c.cli.Put(ctx, key, string(value))
	return err
}

func (c *etcdConn) Session(ctx context.Context, ttl time.Duration) (LockSession, error) {
	secs := int(ttl / time.Second)
	if secs < 1 {
		return nil, fmt.Errorf("etcd lease TTL %v: etcd counts whole seconds", ttl)
	}
	s, err := concurrency.NewSession(c.cli, concurrency.WithTTL(secs), concurrency.WithContext(ctx))
	if err != nil {
		return nil, err
	}
	return etcdSession{s}, nil
}

func (c *etcdConn) Close() error { return c.cli.Close() }

type etcdSession struct{ s *concurrency.Session }

func (s etcdSession) Lock(ctx context.Context, name string) (Held, error) {
	m := concurrency.NewMutex(s.s, name)
	if err := m.Lock(ctx); err != nil {
		return nil, err
	}
	return etcdHeld{m}, nil
}

// Close revokes the session's lease, releasing its locks; it reports the
// lease ended before (its keep-alives failed), which lost them.
func (s etcdSession) Close() error {
	select {
	case <-s.s.Done():
		return fmt.Errorf("etcd session (lease %x) ended before Close: its locks were lost", s.s.Lease())
	default:
	}
	return s.s.Close()
}

type etcdHeld struct{ m *concurrency.Mutex }

func (h etcdHeld) Unlock(ctx context.Context) error { return h.m.Unlock(ctx) }

// Watch implements Watcher with the client's Watch, which re-opens its
// stream on another member by itself.
func (c *etcdConn) Watch(ctx context.Context, prefix string, from uint64, each func(key string, rev uint64)) error {
	opts := []clientv3.OpOption{clientv3.WithPrefix()}
	if from > 0 {
		opts = append(opts, clientv3.WithRev(int64(from)+1))
	}
	for resp := range c.cli.Watch(ctx, prefix, opts...) {
		if err := resp.Err(); err != nil {
			return err
		}
		for _, ev := range resp.Events {
			each(string(ev.Kv.Key), uint64(ev.Kv.ModRevision))
		}
	}
	return ctx.Err()
}
