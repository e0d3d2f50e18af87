package raftnode_test

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/cxkv/cxkv/api/cxkvpb"
	"github.com/cxkv/cxkv/api/cxkvrpc"
	"github.com/cxkv/cxkv/raftnode"
	"github.com/cxkv/cxkv/raftnode/raftnodetest"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
)

// patientElections makes a loaded machine (the race detector, parallel
// packages) unlikely to depose the leader mid-test: the exact counts below
// assume one leader throughout.
func patientElections(cfg *raftnode.Config) { cfg.ElectionTicks = 50 }

// A known workload through the leader moves the leader's counters by
// exactly what it did: scraped over HTTP before and after.
func TestMetricsFollowAWorkload(t *testing.T) {
	defer raftnode.SetCensusEvery(0)()
	c := raftnodetest.Start(t, 3, patientElections)
	li := c.WaitLeader()
	leader := c.Members[li]
	kv := c.Client(li)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()

	// Let the cluster go quiet (the new leader's empty entry applied
	// everywhere) so nothing but the workload moves the counters.
	raftnodetest.Eventually(t, 10*time.Second, "applied catches up with commit", func() bool {
		st := leader.Status()
		return st.Applied == st.Commit && st.Commit > 0
	})
	before := raftnodetest.Scrape(t, leader.Handler())

	watch, err := kv.Watch(ctx, &cxkvpb.WatchRequest{Prefix: "w/"})
	if err != nil {
		t.Fatal(err)
	}
	raftnodetest.Eventually(t, 10*time.Second, "the watch stream counted", func() bool {
		return raftnodetest.Scrape(t, leader.Handler()).Value(t, "cxkv_watch_streams") == 1
	})

	const puts, failedCompares, watched = 10, 3, 4
	for i := 0; i < puts; i++ {
		put(t, kv, fmt.Sprintf("k/%d", i), "v", 0)
	}
	for i := 0; i < failedCompares; i++ {
		if r := put(t, kv, "k/0", "again", 0); r.GetSuccessful() {
			t.Fatal("put-if-absent of an existing key succeeded")
		}
	}
	for i := 0; i < watched; i++ {
		put(t, kv, fmt.Sprintf("w/%d", i), "v", 0)
	}
	for got := 0; got < watched; {
		resp, err := watch.Recv()
		if err != nil {
			t.Fatal(err)
		}
		got += len(resp.GetEvents())
	}
	// Locks as the SDK lays them out: a queue lock with a holder and one
	// waiter, and a plain lock. A key that only looks like one is not counted.
	owner := func(id string) string {
		return `{"owner":"` + id + `","host":"h","pid":1,"expires_at":"2030-01-01T00:00:00Z"}`
	}
	put(t, kv, "jobs/a/.lock/0000000001", owner("o1"), 0)
	put(t, kv, "jobs/a/.lock/0000000002", owner("o2"), 0)
	put(t, kv, "jobs/b", owner("o3"), 0)
	put(t, kv, "jobs/c/.lock/x", "not an owner", 0)
	// One write with a write id opens an exactly-once session.
	if _, err := kv.Put(ctx, &cxkvpb.PutRequest{Key: "s/1", Value: []byte("v"), WriteId: &cxkvpb.WriteID{ClientId: 77, Seq: 1, NewClient: true}}); err != nil {
		t.Fatal(err)
	}
	// A session with two keys attached.
	put(t, kv, cxkvpb.SessionKey("m1"), "owner", 0)
	for _, k := range []string{"att/1", "att/2"} {
		if r, err := kv.Put(ctx, &cxkvpb.PutRequest{Key: k, Value: []byte("v"), Session: "m1"}); err != nil || !r.GetSuccessful() {
			t.Fatalf("attach %s: %v, %v", k, r, err)
		}
	}
	const writes = puts + failedCompares + watched + 4 + 1 + 3

	after := raftnodetest.Scrape(t, leader.Handler())
	delta := func(name string, labels ...string) float64 {
		return after.Value(t, name, labels...) - before.Value(t, name, labels...)
	}
	for _, c := range []struct {
		what string
		got  float64
		want float64
	}{
		{"proposals committed", delta("cxkv_proposals_committed_total"), writes},
		{"proposal latencies observed", delta("cxkv_proposal_duration_seconds"), writes},
		{"proposals failed", delta("cxkv_proposals_failed_total"), 0},
		{"gRPC Put OK", delta("cxkv_grpc_server_handled_total", "grpc_method=Put", "grpc_code=OK"), writes},
		{"gRPC Put latencies", delta("cxkv_grpc_server_handling_seconds", "grpc_method=Put"), writes},
		{"watch events sent", delta("cxkv_watch_events_sent_total"), watched},
		{"keys", after.Value(t, "cxkv_keys"), puts + watched + 4 + 1 + 3},
		{"keys with TTL", after.Value(t, "cxkv_keys_with_ttl"), 0},
		{"sessions", after.Value(t, "cxkv_sessions"), 1},
		{"sessions open", after.Value(t, "cxkv_sessions_open"), 1},
		{"keys attached to sessions", after.Value(t, "cxkv_session_attached_keys"), 2},
		{"locks held", after.Value(t, "cxkv_locks_held"), 2},
		{"locks waiting", after.Value(t, "cxkv_locks_waiting"), 1},
		{"has leader", after.Value(t, "cxkv_has_leader"), 1},
		{"is leader", after.Value(t, "cxkv_is_leader"), 1},
		{"pending proposals", after.Value(t, "cxkv_proposals_pending"), 0},
		{"halted", after.Value(t, "cxkv_halted"), 0},
	} {
		if c.got != c.want {
			t.Errorf("%s: got %v, want %v", c.what, c.got, c.want)
		}
	}
	if d := delta("cxkv_wal_fsync_duration_seconds"); d < 1 || d > writes+10 {
		t.Errorf("fsyncs during %d sequential writes: %v", writes, d)
	}
	if d := delta("cxkv_wal_entries_persisted_total"); d < writes {
		t.Errorf("log entries persisted: %v, want at least %d", d, writes)
	}
	if a, cm := after.Value(t, "cxkv_applied_index"), after.Value(t, "cxkv_commit_index"); a < float64(writes) || a > cm {
		t.Errorf("applied index %v, commit index %v after %d writes", a, cm, writes)
	}
	for _, peer := range []string{"1", "2", "3"} {
		if peer == fmt.Sprint(li+1) {
			continue
		}
		if after.Value(t, "cxkv_peer_messages_sent_total", "peer="+peer) <= before.Value(t, "cxkv_peer_messages_sent_total", "peer="+peer) {
			t.Errorf("no messages counted to peer %s", peer)
		}
		if after.Value(t, "cxkv_peer_connected", "peer="+peer) != 1 {
			t.Errorf("peer %s not counted as connected", peer)
		}
		if after.Value(t, "cxkv_peer_round_trip_seconds", "peer="+peer) == 0 {
			t.Errorf("no round trip to peer %s measured", peer)
		}
	}
	if after.Value(t, "cxkv_pebble_disk_usage_bytes") <= 0 {
		t.Error("Pebble reports no disk usage")
	}
	if after.Value(t, "cxkv_build_info", "go_version="+raftnode.Build().GoVersion, "version="+raftnode.Build().Version) != 1 {
		t.Error("cxkv_build_info does not name this build")
	}
	for _, name := range []string{"go_goroutines", "process_resident_memory_bytes", "cxkv_term", "cxkv_leader_changes_seen_total", "cxkv_pebble_level_tables"} {
		if _, ok := after[name]; !ok {
			t.Errorf("%s missing from the scrape", name)
		}
	}

	// A key with a TTL counts until it expires; the expiry is counted.
	if _, err := kv.Put(ctx, &cxkvpb.PutRequest{Key: "ttl/x", Value: []byte("v"), TtlMs: 300}); err != nil {
		t.Fatal(err)
	}
	if got := raftnodetest.Scrape(t, leader.Handler()).Value(t, "cxkv_keys_with_ttl"); got != 1 {
		t.Errorf("keys with TTL after a put with a TTL: %v, want 1", got)
	}
	raftnodetest.Eventually(t, 10*time.Second, "the expiry counted", func() bool {
		m := raftnodetest.Scrape(t, leader.Handler())
		return m.Value(t, "cxkv_expiries_total")-before.Value(t, "cxkv_expiries_total") == 1 && m.Value(t, "cxkv_keys_with_ttl") == 0
	})

	cancel()
	raftnodetest.Eventually(t, 10*time.Second, "the watch stream closed", func() bool {
		return raftnodetest.Scrape(t, leader.Handler()).Value(t, "cxkv_watch_streams") == 0
	})
}

// A member cut off from its peers is not ready, on /readyz and on the gRPC
// health service, and is ready again once they are back; /livez stays up.
func TestReadinessFollowsQuorum(t *testing.T) {
	c := raftnodetest.Start(t, 3)
	m := c.Members[0]
	srv := httptest.NewServer(m.Handler())
	defer srv.Close()
	conn, err := grpc.NewClient(m.Addr(), grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	health := healthpb.NewHealthClient(conn)
	check := func(want healthpb.HealthCheckResponse_ServingStatus) func() bool {
		return func() bool {
			ctx, cancel := context.WithTimeout(context.Background(), time.Second)
			defer cancel()
			r, err := health.Check(ctx, &healthpb.HealthCheckRequest{Service: cxkvrpc.KV_ServiceDesc.ServiceName})
			return err == nil && r.GetStatus() == want
		}
	}
	get := func(path string) (int, string) {
		resp, err := http.Get(srv.URL + path)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return resp.StatusCode, string(b)
	}
	raftnodetest.Eventually(t, 10*time.Second, "/readyz 200", func() bool { code, _ := get("/readyz"); return code == 200 })
	raftnodetest.Eventually(t, 10*time.Second, "health SERVING", check(healthpb.HealthCheckResponse_SERVING))

	c.Stop(1)
	c.Stop(2)
	raftnodetest.Eventually(t, 10*time.Second, "/readyz 503 once the peers are gone", func() bool { code, _ := get("/readyz"); return code == 503 })
	if _, body := get("/readyz"); !strings.Contains(body, "no leader") {
		t.Errorf("/readyz says %q, want the reason (no leader)", body)
	}
	raftnodetest.Eventually(t, 10*time.Second, "health NOT_SERVING", check(healthpb.HealthCheckResponse_NOT_SERVING))
	if code, _ := get("/livez"); code != 200 {
		t.Errorf("/livez %d on a live member without quorum, want 200", code)
	}

	c.Restart(1)
	c.Restart(2)
	raftnodetest.Eventually(t, 20*time.Second, "/readyz 200 again", func() bool { code, _ := get("/readyz"); return code == 200 })
	raftnodetest.Eventually(t, 10*time.Second, "health SERVING again", check(healthpb.HealthCheckResponse_SERVING))
}

// Snapshots sent by the leader and installed by a member that fell behind
// are counted on both sides.
func TestSnapshotMetrics(t *testing.T) {
	c := raftnodetest.Start(t, 3, patientElections, func(cfg *raftnode.Config) { cfg.SnapshotEntries = 20; cfg.CatchUpEntries = 5 })
	li := c.WaitLeader()
	behind := (li + 1) % 3
	c.Stop(behind)
	kv := c.Client(li)
	for i := 0; i < 60; i++ {
		put(t, kv, fmt.Sprintf("s/%d", i), "v", 0)
	}
	c.Restart(behind)
	raftnodetest.Eventually(t, 20*time.Second, "the member installs a snapshot", func() bool {
		m := raftnodetest.Scrape(t, c.Members[behind].Handler())
		return m.Value(t, "cxkv_snapshots_total", "op=installed", "result=ok") >= 1 &&
			m.Value(t, "cxkv_snapshots_total", "op=received", "result=ok") >= 1
	})
	m := raftnodetest.Scrape(t, c.Members[li].Handler())
	if m.Value(t, "cxkv_snapshots_total", "op=sent", "result=ok") < 1 || m.Value(t, "cxkv_snapshot_duration_seconds", "op=sent") < 1 {
		t.Error("the leader counted no snapshot sent")
	}
}

// A member added after start gets the same per-peer series on the leader
// as the members it started with, and loses them when it is removed.
func TestPeerMetricsFollowMembership(t *testing.T) {
	c := raftnodetest.Start(t, 3)
	waitAllStarted(t, c)
	lead := c.WaitLeader()
	cc := c.ClusterClient(lead)
	l4 := listen(t)
	addr4 := l4.Addr().String()
	if _, err := cc.MemberAdd(ctxFor(t, 5*time.Second), &cxkvpb.MemberAddRequest{Id: 4, Addr: addr4, Learner: true}); err != nil {
		t.Fatal(err)
	}
	clusterID := members(t, c, lead).GetClusterId()
	n4, err := startMember(t, raftnode.Config{ID: 4, Addr: addr4, DataDir: t.TempDir(), Join: c.Endpoints(), JoinClusterID: clusterID, Listener: l4})
	if err != nil {
		t.Fatal(err)
	}
	put(t, c.Client(lead), "k", "v", 0)
	raftnodetest.Eventually(t, 10*time.Second, "the new member applies the write", func() bool {
		return n4.Status().Applied >= c.Members[lead].Status().Applied
	})
	leader := c.Members[lead]
	raftnodetest.Eventually(t, 10*time.Second, "a heartbeat round trip to member 4 measured", func() bool {
		m := raftnodetest.Scrape(t, leader.Handler())
		v, ok := m.Lookup("cxkv_peer_round_trip_seconds", "peer=4")
		return ok && v > 0
	})
	m := raftnodetest.Scrape(t, leader.Handler())
	if got := m.Value(t, "cxkv_peer_messages_sent_total", "peer=4"); got == 0 {
		t.Error("no messages counted to member 4")
	}
	if got := m.Value(t, "cxkv_peer_connected", "peer=4"); got != 1 {
		t.Errorf("member 4 counted as connected %v, want 1", got)
	}
	if _, ok := m.Lookup("cxkv_peer_queued_bytes", "peer=4"); !ok {
		t.Error("no queued bytes reported for member 4")
	}

	if _, err := cc.MemberRemove(ctxFor(t, 5*time.Second), &cxkvpb.MemberRemoveRequest{Id: 4}); err != nil {
		t.Fatal(err)
	}
	raftnodetest.Eventually(t, 10*time.Second, "member 4's series gone once it is removed", func() bool {
		m := raftnodetest.Scrape(t, leader.Handler())
		for _, name := range []string{"cxkv_peer_messages_sent_total", "cxkv_peer_messages_failed_total", "cxkv_peer_connected", "cxkv_peer_round_trip_seconds", "cxkv_peer_queued_bytes"} {
			if _, ok := m.Lookup(name, "peer=4"); ok {
				return false
			}
		}
		return true
	})
}

// The log's positions in one scrape come from one moment: under writes, a
// scrape never shows a member applied past what it knows committed (each
// gauge reading the member's status on its own, a scrape straddled an
// apply and showed applied 33, commit 32). The leader's commit may pass
// its own log's persisted end (the peers' acknowledgements can arrive
// before its own sync), so that pair has no order to check.
func TestStatusMetricsAreOneMoment(t *testing.T) {
	c := raftnodetest.Start(t, 3, patientElections)
	li := c.WaitLeader()
	leader := c.Members[li]
	kv := c.Client(li)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	writing := make(chan struct{})
	go func() {
		defer close(writing)
		for i := 0; ctx.Err() == nil; i++ {
			kv.Put(ctx, &cxkvpb.PutRequest{Key: fmt.Sprintf("m/%d", i%16), Value: []byte("v")})
		}
	}()
	defer func() { cancel(); <-writing }()
	// The old collector failed within ten scrapes. The full run takes 300;
	// the race detector's -short run, where a scrape costs ten times as
	// much, takes 50, enough for it to watch scrapes race with applies.
	scrapes := 300
	if testing.Short() {
		scrapes = 50
	}
	for i := range scrapes {
		s := raftnodetest.Scrape(t, leader.Handler())
		first, applied := s.Value(t, "cxkv_log_first_index"), s.Value(t, "cxkv_applied_index")
		commit := s.Value(t, "cxkv_commit_index")
		if !(first <= applied+1 && applied <= commit) {
			t.Fatalf("scrape %d: log first %v, applied %v, commit %v: not one moment", i, first, applied, commit)
		}
	}
}
