package kv

import (
	"slices"
	"sync"
)

// The exactly-once table's hot part, in memory. Every write with a write id
// reads the table's time and floor and its client's header, and, when its
// seq is at or below the client's top (writes of one client arrive out of
// order when it has many in flight), looks for a stored result that is
// mostly absent. Those Pebble point reads were about a quarter of a
// follower's Apply at cas-parallel. The memo answers them from memory.
//
// It is a cache of the committed state and nothing else: the table's rules
// (sessions.go) decide from what it returns exactly as from Pebble, so Apply
// stays a function of (state, entry). What must hold:
//
//   - A batch reads through its own overlay (batchMemo), then the store's
//     memo, then Pebble. Every write of a key the memo covers (the clock,
//     the floor, a header, a result) goes through Sessions or deleteResults,
//     which keep the overlay in step.
//   - A batch takes the clients it reads out of the store's memo instead
//     of copying them (a copy per client per batch was two allocations of
//     every write), and its overlay goes back only when the batch commits;
//     a batch closed without committing leaves the memo without the
//     clients it took, which the next read finds in Pebble. The batch
//     that takes a client is the only one that can change it: one batch
//     writes at a time.
//   - Installing a snapshot empties the memo (and a batch opened before it
//     is not merged), so a restored state is read afresh: the memo is
//     rebuilt from reads, on open as after an install.
//   - It holds at most maxMemoClients clients, each with at most the
//     client's stored results (MaxResults); dropping any client is always
//     safe.
type tableMemo struct {
	mu      sync.Mutex
	gen     uint64 // bumped by an install
	clock   memoInt
	floor   memoInt
	clients map[uint64]*memoClient
}

// maxMemoClients bounds the memo: at most 4 MB of headers with their inline
// results (maxInlineBytes each), and at the default MaxResults at most 8 MB
// of spilled results' seqs.
const maxMemoClients = 1024

// memoInt is a stored int64 meta value; known says the memo holds it.
type memoInt struct {
	v            int64
	found, known bool
}

// memoClient is one client's header, inline results included, and what
// the memo knows of its spilled results: every seq above since that has an
// 's' key is in results (ascending). A seq at or below since may have an
// 's' key the memo does not know of, so the caller reads Pebble for it. A
// client with no header has no results (sessions.go), so its since is 0.
type memoClient struct {
	found bool
	sessionHeader
	since   uint64
	results []uint64
}

// mayHaveResult reports whether seq may have an 's' key the memo does not
// rule out.
func (c *memoClient) mayHaveResult(seq uint64) bool {
	if seq <= c.since {
		return true
	}
	_, ok := slices.BinarySearch(c.results, seq)
	return ok
}

func (c *memoClient) addResult(seq uint64) {
	if i, ok := slices.BinarySearch(c.results, seq); !ok {
		c.results = slices.Insert(c.results, i, seq)
	}
}

func (c *memoClient) dropResults(first, last uint64) {
	c.results = slices.DeleteFunc(c.results, func(s uint64) bool { return s >= first && s <= last })
}

// batchMemo is one batch's view of the memo: what it read and wrote.
//
// The table's time and floor change with nearly every command but are read
// only through the memo, so the batch writes them to Pebble once, when it
// commits, and only if they changed (clockSet, floorSet): two writes fewer
// per command, each a memtable insertion.
type batchMemo struct {
	gen                uint64
	clock, floor       memoInt
	clockSet, floorSet bool
	clients            map[uint64]*memoClient // the batch's own copies
}

func (o *batchMemo) setClock(v int64) {
	if !o.clock.found || o.clock.v != v {
		o.clock, o.clockSet = memoInt{v: v, found: true, known: true}, true
	}
}

func (o *batchMemo) setFloor(v int64) {
	if !o.floor.found || o.floor.v != v {
		o.floor, o.floorSet = memoInt{v: v, found: true, known: true}, true
	}
}

// flush writes the time and floor the batch changed into its Pebble batch.
func (o *batchMemo) flush(b *Batch) error {
	if o.clockSet {
		if err := b.setUint64(sessionClockKey, uint64(o.clock.v)); err != nil {
			return err
		}
	}
	if o.floorSet {
		if err := b.setUint64(sessionFloorKey, uint64(o.floor.v)); err != nil {
			return err
		}
	}
	o.clockSet, o.floorSet = false, false
	return nil
}

func (m *tableMemo) reset() {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.gen++
	m.clock, m.floor, m.clients = memoInt{}, memoInt{}, nil
}

// overlay returns the batch's view, starting it from the store's memo.
func (b *Batch) overlay() *batchMemo {
	if b.memo == nil {
		m := &b.s.table
		m.mu.Lock()
		b.memo = &batchMemo{gen: m.gen, clock: m.clock, floor: m.floor, clients: map[uint64]*memoClient{}}
		m.mu.Unlock()
	}
	return b.memo
}

// memoClient returns the batch's own entry for client, taken from the
// store's memo or else read from Pebble through the batch. The caller may
// change it.
func (b *Batch) memoClient(client uint64) (*memoClient, error) {
	o := b.overlay()
	if c, ok := o.clients[client]; ok {
		return c, nil
	}
	m := &b.s.table
	m.mu.Lock()
	c, ok := m.clients[client]
	if ok && m.gen == o.gen {
		delete(m.clients, client)
	} else {
		ok = false
	}
	m.mu.Unlock()
	if !ok {
		c = &memoClient{}
		found, err := readValue(b.b, sessionKey(client), func(hdr []byte) (err error) {
			c.sessionHeader, err = decodeSessionHeader(hdr)
			return err
		})
		if err != nil {
			return nil, err
		}
		c.found = found
		if found {
			c.since = min(c.top, c.spillTop)
		}
	}
	o.clients[client] = c
	return c, nil
}

// memoInt returns a meta value from the batch's view, or else from Pebble
// through the batch, and remembers it there.
func (b *Batch) memoInt(v *memoInt, key []byte) (int64, bool, error) {
	if !v.known {
		n, found, err := getInt64(b.b, key)
		if err != nil {
			return 0, false, err
		}
		*v = memoInt{v: n, found: found, known: true}
	}
	return v.v, v.found, nil
}

// mergeMemo hands a committed batch's view to the store's memo.
func (b *Batch) mergeMemo() {
	o := b.memo
	b.memo = nil
	if o == nil {
		return
	}
	m := &b.s.table
	m.mu.Lock()
	defer m.mu.Unlock()
	if o.gen != m.gen {
		return // a snapshot was installed since the batch began: read afresh
	}
	m.clock, m.floor = o.clock, o.floor
	if m.clients == nil {
		m.clients = map[uint64]*memoClient{}
	}
	for id, c := range o.clients {
		m.clients[id] = c
	}
	// Which clients go does not matter: a client not in the memo is read
	// from Pebble.
	for id := range m.clients {
		if len(m.clients) <= maxMemoClients {
			break
		}
		delete(m.clients, id)
	}
}
