package raftnode

import (
	"bytes"
	"strings"
	"sync"
	"time"

	"github.com/cxkv/cxkv/kv"
	"github.com/prometheus/client_golang/prometheus"
)

// censusEvery is the longest a scrape reuses the previous count of the
// state. Counting walks every record (values included, to recognise
// locks), so a member scraped every few seconds counts at most this often,
// and cxkv_state_census_seconds says what each count cost.
var censusEvery = 10 * time.Second

// The lock layout of the Go SDK (client/lock: lock.go, owner.go): a queue
// lock NAME is a queue of entries NAME/.lock/<id>, the oldest of which holds
// it; a plain lock is the key NAME itself. Either way the value is the
// owner's JSON, which starts with its "owner" field. Locks are counted by
// this layout, never by name, so the metrics' cardinality stays fixed.
const (
	lockQueueInfix   = "/.lock/"
	lockOwnerPrefix  = `{"owner":"`
	censusCollecting = "cxkv_state_census_seconds"
)

// censusCollector counts keys, keys with a TTL, exactly-once sessions and
// locks from the member's own state when scraped, at most once per
// censusEvery.
type censusCollector struct {
	n *Node

	keys, ttl, sessions, open, attached, held, waiting, took *prometheus.Desc

	mu   sync.Mutex
	at   time.Time
	last census
	ok   bool
}

type census struct {
	kv.Census
	locksHeld, locksWaiting int
	took                    time.Duration
}

func newCensusCollector(n *Node) *censusCollector {
	d := func(name, help string) *prometheus.Desc { return prometheus.NewDesc(name, help, nil, nil) }
	return &censusCollector{
		n:        n,
		keys:     d("cxkv_keys", "Keys in the store."),
		ttl:      d("cxkv_keys_with_ttl", "Keys with a TTL (they expire unless renewed)."),
		sessions: d("cxkv_sessions", "Exactly-once client sessions the state machine remembers."),
		open:     d("cxkv_sessions_open", "Sessions (leases: keys under cxkv/sessions/) open, whose end deletes the keys attached to them."),
		attached: d("cxkv_session_attached_keys", "Keys attached to sessions (deleted with their session)."),
		held:     d("cxkv_locks_held", "Locks held, by the Go SDK's key layout: queue locks with at least one entry plus plain lock keys."),
		waiting:  d("cxkv_locks_waiting", "Waiters queued behind a held queue lock (plain-lock waiters leave no trace in the state)."),
		took:     d(censusCollecting, "Time the last count of keys, sessions and locks took (it runs at most every 10s, on scrape)."),
	}
}

func (c *censusCollector) Describe(ch chan<- *prometheus.Desc) {
	for _, d := range []*prometheus.Desc{c.keys, c.ttl, c.sessions, c.open, c.attached, c.held, c.waiting, c.took} {
		ch <- d
	}
}

func (c *censusCollector) Collect(ch chan<- prometheus.Metric) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if !c.ok || time.Since(c.at) >= censusEvery {
		c.n.metrics.withStore(func() {
			cs, err := countState(c.n.store)
			if err != nil {
				c.n.cfg.Logger.Warn("counting the state for metrics failed", "err", err)
				return
			}
			c.last, c.at, c.ok = cs, time.Now(), true
		})
	}
	if !c.ok {
		return
	}
	g := func(d *prometheus.Desc, v float64) { ch <- prometheus.MustNewConstMetric(d, prometheus.GaugeValue, v) }
	g(c.keys, float64(c.last.Keys))
	g(c.ttl, float64(c.last.KeysWithTTL))
	g(c.sessions, float64(c.last.Sessions))
	g(c.open, float64(c.last.OpenSessions))
	g(c.attached, float64(c.last.AttachedKeys))
	g(c.held, float64(c.last.locksHeld))
	g(c.waiting, float64(c.last.locksWaiting))
	g(c.took, c.last.took.Seconds())
}

// countState walks the state once. Keys arrive in order, so the entries of
// one queue lock are adjacent: the first of a run holds, the rest wait.
func countState(s *kv.Store) (census, error) {
	start := time.Now()
	var out census
	var queue string // the lock name of the current run of queue entries
	cs, err := s.Census(func(r kv.Record) {
		if i := strings.Index(r.Key, lockQueueInfix); i >= 0 && bytes.HasPrefix(r.Value, []byte(lockOwnerPrefix)) {
			name := r.Key[:i]
			if name == queue {
				out.locksWaiting++
			} else {
				queue = name
				out.locksHeld++
			}
			return
		}
		if bytes.HasPrefix(r.Value, []byte(lockOwnerPrefix)) {
			out.locksHeld++
		}
	})
	out.Census = cs
	out.took = time.Since(start)
	return out, err
}
