package client

import (
	"context"
	"crypto/rand"
	"crypto/tls"
	"encoding/binary"
	"fmt"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/cxkv/cxkv/api/cxkvpb"
	"github.com/cxkv/cxkv/api/cxkvrpc"
	"github.com/jonboulle/clockwork"
	"golang.org/x/sync/singleflight"
	"google.golang.org/grpc"
	"google.golang.org/grpc/backoff"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/credentials/insecure"
)

// Config configures a Client. Only Endpoints is required.
type Config struct {
	// Endpoints are the members' client addresses (host:port). Any subset
	// works; the Client learns which one leads.
	Endpoints []string
	// DialTimeout bounds how long one attempt waits for a connection to a
	// member before trying the next. Default 2s.
	DialTimeout time.Duration
	// RequestTimeout bounds one attempt on one member. Default 5s.
	RequestTimeout time.Duration
	// RetryTimeout bounds all attempts of a call whose context has no
	// earlier deadline. Default 30s.
	RetryTimeout time.Duration
	// TLS, if set, secures the connections to the members: RootCAs is the
	// CA that signed their client-port certificates, and Certificates the
	// client's own where they require one (--client-cert-auth; its common
	// name is the client's identity). Nil: plaintext.
	TLS *tls.Config
	// Username and Password authenticate the client as a user (client/auth.go);
	// empty Username: no user (auth disabled, or a client certificate names
	// the identity).
	Username, Password string
	// DialOptions are added to the gRPC dial options, after TLS.
	DialOptions []grpc.DialOption
	// UnaryWrites sends every Put, Delete, Txn and Get as a unary call of
	// its own instead of on the one KV.Calls stream per member
	// (client/callstream.go), as the SDK did before the stream existed.
	UnaryWrites bool
	// WatchStallTimeout is how long a Watch's stream may bring nothing
	// before the SDK checks whether its member was left behind by the
	// others; one left behind for another such period is given up and the
	// watch resumes on another member (client/watchstall.go). Default 2s;
	// at least 200ms, since a member that applies sends a progress notice
	// every 100ms at most.
	WatchStallTimeout time.Duration
	// Clock times lock leases and renewals, the token's renewal, and when a
	// member without the Calls stream is asked for it again (default: the
	// real clock). Tests pass one that jumps.
	Clock clockwork.Clock
}

// Client is a connection to a cxkv cluster. It is safe for concurrent use;
// share one per process.
type Client struct {
	cfg       Config
	endpoints []*endpoint
	preferred atomic.Int32
	writes    writeSeq
	probing   atomic.Bool
	// stallAsks shares the Status asks of watches' stall checks
	// (client/watchstall.go).
	stallAsks singleflight.Group
	closed    atomic.Bool
	mu        sync.Mutex // orders bg.Add against Close's bg.Wait
	bg        sync.WaitGroup
	// ctx ends when the Client is closed; background work derives from it.
	ctx    context.Context
	cancel context.CancelFunc
}

type endpoint struct {
	addr string
	conn *grpc.ClientConn
	kv   cxkvrpc.KVClient
	// calls carries the connection's Puts, Deletes, Txns and Gets.
	calls *callStreams
	id    atomic.Uint64 // member id, once a response named it
	// applied is the highest applied index the member reported while it
	// led, and progressed the time (UnixNano) of the last answer that
	// showed progress: a leader's higher applied index, or a leader's
	// word that it is in contact with a quorum (client/progress.go).
	applied    atomic.Uint64
	progressed atomic.Int64
	// seen is the applied index the member reported in its last answer
	// to Client.ask, and askedAt when (UnixNano) that was: what a watch's
	// stall check compares (client/watchstall.go).
	seen    atomic.Uint64
	askedAt atomic.Int64
}

// New returns a Client for the cluster at cfg.Endpoints. It does not wait for
// a connection: the first call does.
func New(cfg Config) (*Client, error) {
	if len(cfg.Endpoints) == 0 {
		return nil, fmt.Errorf("cxkv: no endpoints given")
	}
	if cfg.DialTimeout <= 0 {
		cfg.DialTimeout = 2 * time.Second
	}
	if cfg.RequestTimeout <= 0 {
		cfg.RequestTimeout = 5 * time.Second
	}
	if cfg.WatchStallTimeout <= 0 {
		cfg.WatchStallTimeout = 2 * time.Second
	}
	cfg.WatchStallTimeout = max(cfg.WatchStallTimeout, minWatchStallTimeout)
	if cfg.RetryTimeout <= 0 {
		cfg.RetryTimeout = 30 * time.Second
	}
	if cfg.Clock == nil {
		cfg.Clock = clockwork.NewRealClock()
	}
	c := &Client{cfg: cfg}
	c.ctx, c.cancel = context.WithCancel(context.Background())
	c.writes.init()
	creds := insecure.NewCredentials()
	if cfg.TLS != nil {
		creds = credentials.NewTLS(cfg.TLS)
	}
	opts := append([]grpc.DialOption{
		grpc.WithTransportCredentials(creds),
		// The cluster keeps every answer below this limit, and takes
		// requests up to it.
		grpc.WithDefaultCallOptions(grpc.MaxCallRecvMsgSize(cxkvpb.MaxMessageBytes), grpc.MaxCallSendMsgSize(cxkvpb.MaxMessageBytes),
			grpc.ForceCodecV2(cxkvrpc.Codec{})),
		// A restarted member is back in a second, not after gRPC's default
		// reconnect backoff of up to two minutes.
		grpc.WithConnectParams(grpc.ConnectParams{
			Backoff:           backoff.Config{BaseDelay: 50 * time.Millisecond, Multiplier: 1.6, Jitter: 0.2, MaxDelay: time.Second},
			MinConnectTimeout: cfg.DialTimeout,
		}),
		// Static flow-control windows: with gRPC's dynamic ones the client
		// answers nearly every response with a bandwidth-estimation PING,
		// which costs the member a read and a write per request. 16 MiB,
		// what the dynamic windows grow to, holds the largest answer.
		grpc.WithStaticStreamWindowSize(cxkvpb.MaxMessageBytes), grpc.WithStaticConnWindowSize(cxkvpb.MaxMessageBytes),
		// Tells a write whose request never left this process (so cannot
		// have applied) from one that may have: see outcomeOf.
		grpc.WithStatsHandler(sendProbe{}),
	}, append(c.authDialOptions(), cfg.DialOptions...)...)
	if !cfg.UnaryWrites {
		// Last, so innermost: client/callstream.go.
		opts = append(opts, grpc.WithChainUnaryInterceptor(c.streamInterceptor))
	}
	for _, addr := range cfg.Endpoints {
		addr = strings.TrimSpace(addr)
		if addr == "" {
			continue
		}
		conn, err := grpc.NewClient(addr, opts...)
		if err != nil {
			c.Close()
			return nil, fmt.Errorf("cxkv: endpoint %q: %w", addr, err)
		}
		kv := cxkvrpc.NewKVClient(conn)
		c.endpoints = append(c.endpoints, &endpoint{addr: addr, conn: conn, kv: kv, calls: &callStreams{c: c, kv: kv}})
	}
	if len(c.endpoints) == 0 {
		return nil, fmt.Errorf("cxkv: no endpoints given")
	}
	return c, nil
}

// ParseEndpoints splits a comma-separated endpoint list, as the CLI's
// --endpoints flag and CXKV_ENDPOINTS take it.
func ParseEndpoints(s string) []string {
	var out []string
	for _, ep := range strings.Split(s, ",") {
		if ep = strings.TrimSpace(ep); ep != "" {
			out = append(out, ep)
		}
	}
	return out
}

// Close closes the connections. Calls in flight end with an error.
func (c *Client) Close() error {
	c.mu.Lock()
	already := c.closed.Swap(true)
	c.mu.Unlock()
	if already {
		return nil
	}
	c.cancel()
	c.bg.Wait()
	for _, ep := range c.endpoints {
		ep.conn.Close()
	}
	return nil
}

// Config returns the configuration the Client runs with, defaults filled
// in: what a recipe built over the Client (client/lock) times its work by.
func (c *Client) Config() Config { return c.cfg }

// Ctx is a context that ends when the Client is closed: background work
// built over the Client (a lock session's renewals) stops with it.
func (c *Client) Ctx() context.Context { return c.ctx }

// Endpoints returns the configured endpoints.
func (c *Client) Endpoints() []string {
	out := make([]string, len(c.endpoints))
	for i, ep := range c.endpoints {
		out[i] = ep.addr
	}
	return out
}

func (c *Client) pick() (int, *endpoint) {
	i := int(c.preferred.Load()) % len(c.endpoints)
	return i, c.endpoints[i]
}

// endpointOf is the position of the endpoint of member id, if this client
// has learned it.
func (c *Client) endpointOf(id uint64) (int, bool) {
	if id == 0 {
		return 0, false
	}
	for i, ep := range c.endpoints {
		if ep.id.Load() == id {
			return i, true
		}
	}
	return 0, false
}

// failed moves the preference off endpoint i, unless another call already did.
func (c *Client) failed(i int) {
	c.preferred.CompareAndSwap(int32(i), int32((i+1)%len(c.endpoints)))
}

// observe learns from a response's header which member answered and which
// leads, and follows the leader.
func (c *Client) observe(ep *endpoint, h *cxkvpb.Header) {
	if h == nil || h.GetMemberId() == 0 {
		return
	}
	ep.id.Store(h.GetMemberId())
	if h.GetLeaderId() == h.GetMemberId() {
		if h.GetQuorumContact() {
			ep.progressed.Store(time.Now().UnixNano())
		}
		for seen := ep.applied.Load(); h.GetAppliedIndex() > seen; seen = ep.applied.Load() {
			if ep.applied.CompareAndSwap(seen, h.GetAppliedIndex()) {
				ep.progressed.Store(time.Now().UnixNano())
				break
			}
		}
	}
	if leader := h.GetLeaderId(); leader != h.GetMemberId() {
		c.follow(leader)
	}
}

// follow moves the preference to the endpoint of member leader (named by a
// header or an error's leader hint) when its endpoint is known. Unknown
// endpoints are asked for their ids in the background, once at a time.
func (c *Client) follow(leader uint64) {
	if leader == 0 {
		return
	}
	if i, ok := c.endpointOf(leader); ok {
		c.preferred.Store(int32(i))
		return
	}
	if !c.probing.CompareAndSwap(false, true) {
		return
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.closed.Load() {
		c.probing.Store(false)
		return
	}
	c.bg.Add(1)
	go func() {
		defer c.bg.Done()
		defer c.probing.Store(false)
		ctx, cancel := context.WithTimeout(c.ctx, c.cfg.DialTimeout)
		defer cancel()
		for i, other := range c.endpoints {
			if other.id.Load() != 0 {
				continue
			}
			resp, err := other.kv.Status(ctx, &cxkvpb.StatusRequest{})
			if err != nil {
				continue
			}
			other.id.Store(resp.GetHeader().GetMemberId())
			if other.id.Load() == leader {
				c.preferred.Store(int32(i))
				return
			}
		}
	}()
}

// newClientID draws the id that names this client's writes. Ids are random:
// two clients sharing one would see each other's results.
func newClientID() uint64 {
	var b [8]byte
	rand.Read(b[:])
	return binary.BigEndian.Uint64(b[:]) | 1
}
