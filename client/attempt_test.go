package client_test

import (
	"context"
	"net"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/cxkv/cxkv/api/cxkvpb"
	"github.com/cxkv/cxkv/api/cxkvrpc"
	"github.com/cxkv/cxkv/client"
	"google.golang.org/grpc"
)

// silentMember accepts connections and never answers, as a paused process
// does; it lets go of them at the end of the test.
func silentMember(t *testing.T) string {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	var mu sync.Mutex
	var conns []net.Conn
	done := make(chan struct{})
	go func() {
		defer close(done)
		for {
			c, err := l.Accept()
			if err != nil {
				return
			}
			mu.Lock()
			conns = append(conns, c)
			mu.Unlock()
		}
	}()
	t.Cleanup(func() {
		l.Close()
		<-done
		mu.Lock()
		defer mu.Unlock()
		for _, c := range conns {
			c.Close()
		}
	})
	return l.Addr().String()
}

// A call under WithAttemptTimeout gives up on a member that does not answer
// after that long and goes on to the next; without it, the silent member
// holds the call for the whole RequestTimeout (here longer than the
// caller's deadline).
func TestAttemptTimeoutMovesOffASilentMember(t *testing.T) {
	cl, _ := start(t)
	endpoints := append([]string{silentMember(t)}, cl.Endpoints()...)
	c, err := client.New(client.Config{Endpoints: endpoints, RequestTimeout: time.Minute, DialTimeout: time.Minute})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()

	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if _, err := c.Put(client.WithAttemptTimeout(ctx, 300*time.Millisecond), "k", []byte("v"), 0); err != nil {
		t.Fatalf("put with a silent first member and 300ms attempts: %v", err)
	}

	c2, err := client.New(client.Config{Endpoints: endpoints, RequestTimeout: time.Minute, DialTimeout: time.Minute})
	if err != nil {
		t.Fatal(err)
	}
	defer c2.Close()
	short, cancel2 := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel2()
	if _, err := c2.Get(short, "k"); err == nil {
		t.Fatal("without an attempt timeout the silent first member should hold the call past its 2 s deadline; is it answering?")
	}
}

// busyLeader is a one-member cluster's leader whose writes take writeTime
// to answer, as under a saturated pipeline or a slow disk. If progressing,
// every Status reports a higher applied index; otherwise always the same
// one, as a leader cut off from its peers does, or one syncing the only
// write there is. If contact, every answer says it is in contact with a
// quorum; a member older than that word never says it.
type busyLeader struct {
	cxkvrpc.UnimplementedKVServer
	writeTime   time.Duration
	progressing bool
	contact     bool
	applied     atomic.Uint64
	puts        atomic.Int64
}

func (b *busyLeader) header() *cxkvpb.Header {
	idx := b.applied.Load()
	if b.progressing {
		idx = b.applied.Add(1)
	}
	return &cxkvpb.Header{MemberId: 1, LeaderId: 1, Term: 2, AppliedIndex: idx, QuorumContact: b.contact}
}

func (b *busyLeader) Status(context.Context, *cxkvpb.StatusRequest) (*cxkvpb.StatusResponse, error) {
	return &cxkvpb.StatusResponse{Header: b.header(), Role: "leader"}, nil
}

// Txn answers at once: the SDK's first write on a fresh id is a no-op Txn
// that opens its exactly-once session.
func (b *busyLeader) Txn(context.Context, *cxkvpb.TxnRequest) (*cxkvpb.TxnResponse, error) {
	return &cxkvpb.TxnResponse{Header: b.header(), Successful: true}, nil
}

func (b *busyLeader) Put(ctx context.Context, r *cxkvpb.PutRequest) (*cxkvpb.PutResponse, error) {
	b.puts.Add(1)
	select {
	case <-time.After(b.writeTime):
	case <-ctx.Done():
		return nil, ctx.Err()
	}
	h := b.header()
	return &cxkvpb.PutResponse{Header: h, Successful: true, Record: &cxkvpb.Record{Key: r.GetKey(), Value: r.GetValue(), Index: h.GetAppliedIndex()}}, nil
}

// serveKV serves kv as a member would, on a loopback port, stopped at the
// end of the test; opts are the server's.
func serveKV(t testing.TB, kv cxkvrpc.KVServer, opts ...grpc.ServerOption) string {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	s := grpc.NewServer(opts...)
	cxkvrpc.RegisterKVServer(s, kv)
	go s.Serve(l)
	t.Cleanup(s.Stop)
	return l.Addr().String()
}

// An attempt under WithAttemptTimeout(d) on a leader that keeps applying,
// or that applies nothing but says it is in contact with a quorum, lives
// past d: cut and sent again, a write would join the back of the same
// pipeline (or wait behind the same slow sync) and be cut again, and a
// lock session's renewal would never come back (issue 17). On a leader
// that shows neither it is cut within d, as on a silent member; so is it on
// a member too old to send the contact word, whose applied index stands.
func TestAttemptTimeoutWaitsForALeaderThatApplies(t *testing.T) {
	const d = 200 * time.Millisecond
	for _, tc := range []struct {
		name                 string
		progressing, contact bool
		waited               bool
	}{
		{"applying", true, false, true},
		{"in contact, applying nothing", false, true, true},
		{"neither", false, false, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			b := &busyLeader{writeTime: 5 * d, progressing: tc.progressing, contact: tc.contact}
			c, err := client.New(client.Config{Endpoints: []string{serveKV(t, b)}, RequestTimeout: time.Minute})
			if err != nil {
				t.Fatal(err)
			}
			ctx, cancel := context.WithTimeout(context.Background(), 10*d)
			_, err = c.Put(client.WithAttemptTimeout(ctx, d), "k", []byte("v"), 0)
			cancel()
			c.Close()
			switch {
			case tc.waited && (err != nil || b.puts.Load() != 1):
				t.Errorf("writes taking %v, attempts of %v: %v after %d attempts; want the first attempt answered", b.writeTime, d, err, b.puts.Load())
			case !tc.waited && b.puts.Load() < 2:
				t.Errorf("writes taking %v, attempts of %v: %d attempts (%v); want the first cut and the write sent again", b.writeTime, d, b.puts.Load(), err)
			}
		})
	}
}
