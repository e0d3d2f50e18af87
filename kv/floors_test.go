package kv

import (
	"bytes"
	"errors"
	"fmt"
	"maps"
	"math/rand/v2"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"

	"github.com/cockroachdb/pebble/v2/vfs"
)

// queueEntryKey names a queue entry the way the lock recipe does
// (client/lock): the creation time in ns as fixed-width hex, then random
// hex, so entries sort by creation.
func queueEntryKey(prefix string, createdNs int64, r *rand.Rand) string {
	return fmt.Sprintf("%s%016x%016x", prefix, uint64(createdNs), r.Uint64())
}

// A lock's queue entries are created once and deleted once, so its prefix
// accumulates deleted entries (a SET and a DEL each in the memtable) for
// as long as the lock is used. A HEAD (Batch.Scan) or a List of the queue
// must step over a number of internal keys that grows with the queue's
// live entries, not with the lock's history.
func TestQueueScansVisitLiveEntriesNotTheDeadOnes(t *testing.T) {
	s := openMem(t, vfs.NewMem())
	defer s.Close()
	var points uint64
	s.SetScanHook(func(n uint64) { points = n })

	const prefix, live = "jobs/nightly/.lock/", 3
	cycles := 2000
	if testing.Short() {
		cycles = 500 // still a history 100 times the bound below
	}
	r := rand.New(rand.NewPCG(1, 2))
	var queue []string
	for i := range cycles {
		// As the lock recipe: an entry is created with a HEAD of its queue
		// in one command, and the holder's entry is deleted on release.
		key := queueEntryKey(prefix, int64(1_700_000_000_000_000_000+i*1000), r)
		b := s.NewBatch()
		if err := b.Put(Record{Key: key, Value: []byte("owner"), Index: uint64(i + 1), CreateIndex: uint64(i + 1)}); err != nil {
			t.Fatal(err)
		}
		if err := b.Scan(prefix, func(Record) error { return nil }); err != nil {
			t.Fatal(err)
		}
		mustCommit(t, b, false)
		if queue = append(queue, key); len(queue) > live {
			b := s.NewBatch()
			if err := b.Delete(queue[0]); err != nil {
				t.Fatal(err)
			}
			mustCommit(t, b, false)
			queue = queue[1:]
		}
	}

	// Each live entry is a point or two; a handful more for the bounds.
	const most = 2*live + 4
	b := s.NewBatch()
	var got []string
	if err := b.Scan(prefix, func(r Record) error { got = append(got, r.Key); return nil }); err != nil {
		t.Fatal(err)
	}
	b.Close()
	if fmt.Sprint(got) != fmt.Sprint(queue) {
		t.Fatalf("Batch.Scan = %v, want %v", got, queue)
	}
	if points > most {
		t.Errorf("Batch.Scan of %d live entries after %d deleted stepped over %d internal keys, want at most %d", live, cycles-live, points, most)
	}
	recs, _, err := s.List(prefix, "", 100, 1<<20)
	if err != nil || len(recs) != live || recs[0].Key != queue[0] {
		t.Fatalf("List = %v, %v; want %v", recs, err, queue)
	}
	if points > most {
		t.Errorf("List of %d live entries after %d deleted stepped over %d internal keys, want at most %d", live, cycles-live, points, most)
	}
}

// floorsModel is the state the floors must not change any answer of: the
// live keys, committed and as the open batch leaves them.
type floorsModel struct {
	committed, view map[string]bool
}

func (m *floorsModel) under(live map[string]bool, prefix, after string) []string {
	var keys []string
	for k := range live {
		if strings.HasPrefix(k, prefix) && (after == "" || after < prefix || k > after) {
			keys = append(keys, k)
		}
	}
	slices.Sort(keys)
	return keys
}

// Scans and Lists through the floors, and the batch's reads (through its
// view and the read cache, or with no cache), answer as they would
// without them, through
// random puts (above and below the floors), deletes, discarded batches,
// restores of an older state, and eviction, over nested prefixes.
func TestFloorsNeverChangeAnAnswer(t *testing.T) {
	seeds := uint64(40)
	if testing.Short() {
		seeds = 10 // the race detector's run; the full run covers 40
	}
	checkFloorsAgainstModel(t, []string{"q/", "q/a/", "q/a/x", "q/b/", "r/"}, seeds)
}

// The same at the key space's edges: the empty prefix (every record), keys
// equal to their prefix, and prefixes of 0xff bytes, whose end is no key
// (prefixEnd "") or lies outside them ("a\xff" ends at "b").
func TestFloorsAtTheKeySpacesEdges(t *testing.T) {
	seeds := uint64(20)
	if testing.Short() {
		seeds = 5
	}
	checkFloorsAgainstModel(t, []string{"", "a", "a\xff", "a\xffb", "\xff", "\xff\xff"}, seeds)
}

// checkFloorsAgainstModel runs seeds random histories over prefixes, with
// Batch.Scans that stop early and List pages cut by limit or by bytes.
func checkFloorsAgainstModel(t *testing.T, prefixes []string, seeds uint64) {
	errStop := errors.New("enough")
	for seed := range seeds {
		t.Run(fmt.Sprint(seed), func(t *testing.T) {
			r := rand.New(rand.NewPCG(seed, 17))
			s := openMem(t, vfs.NewMem())
			defer s.Close()
			s.SetFloorLimit(1 + r.IntN(4))
			if r.IntN(2) == 0 {
				s.cache.limit = 1 // no read cache: every read reaches Pebble
			}
			m := &floorsModel{committed: map[string]bool{}}
			var saved []byte
			var savedLive map[string]bool
			clock := 0
			key := func() string {
				p := prefixes[r.IntN(len(prefixes))]
				switch r.IntN(8) {
				case 0: // anywhere below the recent ones: may lower a floor
					return fmt.Sprintf("%s%06d", p, r.IntN(clock+1))
				case 1: // just below them: may lower a batch's raise
					return fmt.Sprintf("%s%06d", p, max(0, clock-r.IntN(4)))
				case 2: // the prefix itself, the first key under it
					if p != "" {
						return p
					}
				}
				clock++
				return fmt.Sprintf("%s%06d", p, clock)
			}
			liveKey := func(live map[string]bool) (string, bool) {
				keys := m.under(live, prefixes[r.IntN(len(prefixes))], "")
				if len(keys) == 0 {
					return "", false
				}
				if r.IntN(2) == 0 {
					return keys[0], true // a queue's head, released
				}
				return keys[r.IntN(len(keys))], true
			}
			check := func(what string, got, want []string) {
				t.Helper()
				if !slices.Equal(got, want) {
					t.Fatalf("%s = %q, want %q", what, got, want)
				}
			}
			for step := 0; step < 300; step++ {
				switch op := r.IntN(10); {
				case op < 6: // a batch, as Apply's
					b := s.NewBatch()
					m.view = maps.Clone(m.committed)
					for range 1 + r.IntN(12) {
						switch r.IntN(4) {
						case 0:
							k := key()
							if err := b.Put(Record{Key: k, Value: []byte("v"), Index: 1, CreateIndex: 1}); err != nil {
								t.Fatal(err)
							}
							m.view[k] = true
						case 1:
							if k, ok := liveKey(m.view); ok {
								if err := b.Delete(k); err != nil {
									t.Fatal(err)
								}
								delete(m.view, k)
							}
						case 2:
							// As HEAD, the whole prefix; or stopped after n
							// records by fn, as a caller that found enough.
							p, n := prefixes[r.IntN(len(prefixes))], r.IntN(3)
							var got []string
							err := b.Scan(p, func(rec Record) error {
								if got = append(got, rec.Key); len(got) == n {
									return errStop
								}
								return nil
							})
							if err != nil && !(errors.Is(err, errStop) && len(got) == n) {
								t.Fatal(err)
							}
							want := m.under(m.view, p, "")
							if n > 0 {
								want = want[:min(n, len(want))]
							}
							check(fmt.Sprintf("Batch.Scan(%q) stopped at %d", p, n), got, want)
						case 3:
							// A read, as a compare's: mostly of a key never
							// written, or of one live.
							k := key()
							if lk, ok := liveKey(m.view); ok && r.IntN(3) == 0 {
								k = lk
							}
							_, found, err := b.Get(k)
							if err != nil {
								t.Fatal(err)
							}
							if found != m.view[k] {
								t.Fatalf("Batch.Get(%q) found %v, want %v", k, found, m.view[k])
							}
						}
					}
					if r.IntN(5) == 0 {
						b.Close() // discarded
						continue
					}
					mustCommit(t, b, false)
					m.committed = m.view
				case op < 9: // a List, perhaps a later page
					p := prefixes[r.IntN(len(prefixes))]
					want := m.under(m.committed, p, "")
					after := ""
					if len(want) > 0 && r.IntN(3) == 0 {
						after = want[r.IntN(len(want))]
					}
					want = m.under(m.committed, p, after)
					limit, maxBytes := 1+r.IntN(4), 1<<20
					if r.IntN(3) == 0 {
						maxBytes = r.IntN(3 * answerOverhead) // a page cut by its bytes
					}
					recs, more, err := s.List(p, after, limit, maxBytes)
					if err != nil {
						t.Fatal(err)
					}
					var got []string
					for _, rec := range recs {
						got = append(got, rec.Key)
					}
					// The page's length: up to limit records and maxBytes of
					// them, the first one whatever its size.
					n, size := 0, 0
					for _, k := range want {
						if size += len(k) + len("v") + answerOverhead; n == limit || size > maxBytes && n > 0 {
							break
						}
						n++
					}
					check(fmt.Sprintf("List(%q, after %q, limit %d, %d bytes)", p, after, limit, maxBytes), got, want[:n])
					if more != (len(want) > n) {
						t.Fatalf("List(%q): more = %v with %d of %d", p, more, n, len(want))
					}
				default: // save the state, or go back to the saved one
					if saved == nil || r.IntN(2) == 0 {
						var buf bytes.Buffer
						ss := s.NewStateSnapshot()
						if _, err := ss.WriteTo(&buf); err != nil {
							t.Fatal(err)
						}
						ss.Close()
						saved, savedLive = buf.Bytes(), maps.Clone(m.committed)
						continue
					}
					if err := s.RestoreState(bytes.NewReader(saved)); err != nil {
						t.Fatal(err)
					}
					m.committed = maps.Clone(savedLive)
				}
			}
		})
	}
}

// A batch's scan raises the prefix's floor for that batch; a later put of
// the same batch below it must be seen by the batch's next scan and by
// every scan after the batch commits.
func TestPutBelowABatchsOwnRaiseIsSeen(t *testing.T) {
	s := openMem(t, vfs.NewMem())
	defer s.Close()
	put := func(b *Batch, k string) {
		t.Helper()
		if err := b.Put(Record{Key: k, Value: []byte("v"), Index: 1, CreateIndex: 1}); err != nil {
			t.Fatal(err)
		}
	}
	scan := func(b *Batch) string {
		t.Helper()
		var keys []string
		if err := b.Scan("q/", func(r Record) error { keys = append(keys, r.Key); return nil }); err != nil {
			t.Fatal(err)
		}
		return strings.Join(keys, " ")
	}
	b := s.NewBatch()
	put(b, "q/1")
	put(b, "q/5")
	mustCommit(t, b, false)

	b = s.NewBatch()
	if err := b.Delete("q/1"); err != nil {
		t.Fatal(err)
	}
	if got := scan(b); got != "q/5" {
		t.Fatalf("scan after deleting q/1 = %q, want q/5", got)
	}
	put(b, "q/3") // above the committed floor (q/1), below the batch's raise (q/5)
	if got := scan(b); got != "q/3 q/5" {
		t.Fatalf("scan after putting q/3 = %q, want q/3 q/5", got)
	}
	mustCommit(t, b, false)
	if recs, _, err := s.List("q/", "", 10, 1<<20); err != nil || len(recs) != 2 || recs[0].Key != "q/3" {
		t.Fatalf("List after commit = %v, %v; want q/3 q/5", recs, err)
	}
}

// Lists running beside an applier never miss a key that was live through
// the whole List, nor show one that was not live at some point during it,
// while the applier's scans and puts move the floors under them.
func TestListsBesideTheApplierMissNoLiveKey(t *testing.T) {
	s := openMem(t, vfs.NewMem())
	defer s.Close()
	prefixes := []string{"q/a/", "q/b/", "q/"}

	// life[k] is the batch that put k and the one that deleted it (0: not
	// yet). started is the last batch whose commit began, done the last
	// whose commit returned.
	type life struct{ put, del int64 }
	var (
		mu            sync.Mutex
		lives         = map[string]life{}
		started, done atomic.Int64
		stop          atomic.Bool
	)
	batches := int64(1000)
	if testing.Short() {
		batches = 400 // under the race detector, where each step costs more
	}
	applied := make(chan error, 1)
	go func() {
		r := rand.New(rand.NewPCG(3, 4))
		queues := map[string][]string{}
		var n int64
		defer func() { stop.Store(true) }()
		for batch := int64(1); batch <= batches; batch++ {
			b := s.NewBatch()
			var puts, dels []string
			for range 1 + r.IntN(4) {
				p := prefixes[r.IntN(len(prefixes))]
				switch q := queues[p]; {
				case len(q) > 0 && r.IntN(2) == 0:
					i := 0
					if r.IntN(4) == 0 {
						i = r.IntN(len(q)) // a waiter that gave up
					}
					if err := b.Delete(q[i]); err != nil {
						applied <- err
						return
					}
					dels = append(dels, q[i])
					queues[p] = slices.Delete(q, i, i+1)
				default:
					n++
					k := fmt.Sprintf("%s%08d", p, n)
					if r.IntN(8) == 0 && n > 10 {
						k = fmt.Sprintf("%s%08d-%d", p, n-1-int64(r.IntN(10)), n) // below the newest
					}
					if err := b.Put(Record{Key: k, Value: []byte("v"), Index: 1, CreateIndex: 1}); err != nil {
						applied <- err
						return
					}
					puts = append(puts, k)
					queues[p] = append(queues[p], k)
					slices.Sort(queues[p])
				}
				if err := b.Scan(p, func(Record) error { return nil }); err != nil {
					applied <- err
					return
				}
			}
			mu.Lock()
			for _, k := range puts {
				lives[k] = life{put: batch}
			}
			for _, k := range dels {
				l := lives[k]
				l.del = batch
				lives[k] = l
			}
			mu.Unlock()
			started.Store(batch)
			if err := b.Commit(false); err != nil {
				applied <- err
				return
			}
			b.Close()
			done.Store(batch)
		}
		applied <- nil
	}()

	var wg sync.WaitGroup
	failed := make(chan string, 4)
	for reader := range 3 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			p := prefixes[reader]
			for !stop.Load() {
				before := done.Load()
				recs, _, err := s.List(p, "", 10000, 1<<30)
				after := started.Load()
				if err != nil {
					failed <- err.Error()
					return
				}
				got := map[string]bool{}
				for _, r := range recs {
					got[r.Key] = true
				}
				mu.Lock()
				for k, l := range lives {
					if !strings.HasPrefix(k, p) {
						continue
					}
					throughout := l.put <= before && (l.del == 0 || l.del > after)
					sometime := l.put <= after && (l.del == 0 || l.del > before)
					if throughout && !got[k] || got[k] && !sometime {
						mu.Unlock()
						failed <- fmt.Sprintf("List(%q) between batches %d and %d: %q (put in %d, deleted in %d) listed=%v", p, before, after, k, l.put, l.del, got[k])
						return
					}
				}
				mu.Unlock()
			}
		}()
	}
	if err := <-applied; err != nil {
		t.Fatal(err)
	}
	wg.Wait()
	close(failed)
	for f := range failed {
		t.Error(f)
	}
}

// The reader's protocol, step by step (floors.go): a floor read before a
// put lowered it is not used, and a reader's raise is not published if a
// batch had announced a key when it read, or announced one while it read.
func TestReaderProtocolRefusesStaleFloors(t *testing.T) {
	s := openMem(t, vfs.NewMem())
	defer s.Close()
	write := func(scan bool, put string, del ...string) {
		t.Helper()
		b := s.NewBatch()
		if put != "" {
			if err := b.Put(Record{Key: put, Value: []byte("v"), Index: 1, CreateIndex: 1}); err != nil {
				t.Fatal(err)
			}
		}
		for _, k := range del {
			if err := b.Delete(k); err != nil {
				t.Fatal(err)
			}
		}
		if scan {
			if err := b.Scan("q/", func(Record) error { return nil }); err != nil {
				t.Fatal(err)
			}
		}
		mustCommit(t, b, false)
	}
	floor := func() string { return s.floors.read("q/").key }
	write(true, "q/5")
	write(true, "q/7", "q/5")
	if got := floor(); got != "q/7" {
		t.Fatalf("floor %q, want q/7", got)
	}

	// A put below the floor between the read and the iterator.
	fl := s.floors.read("q/")
	write(false, "q/6")
	if s.floors.unchanged(fl) {
		t.Fatal("a floor lowered after it was read is still usable")
	}

	// A batch that has announced a key when the reader reads: the reader's
	// view may lack the key, so its raise must not be published.
	b := s.NewBatch()
	if err := b.Put(Record{Key: "q/65", Value: []byte("v"), Index: 1, CreateIndex: 1}); err != nil {
		t.Fatal(err)
	}
	fl = s.floors.read("q/")
	if err := b.Delete("q/6"); err != nil {
		t.Fatal(err)
	}
	s.floors.raiseRead(fl, "q/7") // what a view without q/65 (and q/6) finds
	mustCommit(t, b, false)
	if got := floor(); got > "q/65" {
		t.Fatalf("floor raised to %q above the live q/65", got)
	}

	// A batch that announces a key while the reader reads, above the
	// floor, so it lowers nothing.
	write(true, "", "q/65") // the floor is q/7
	write(false, "q/66")    // lowered to q/66
	write(false, "", "q/66")
	fl = s.floors.read("q/")
	write(false, "q/67")
	s.floors.raiseRead(fl, "q/7") // what a view without q/66 and q/67 finds
	if got := floor(); got > "q/67" {
		t.Fatalf("floor raised to %q above the live q/67", got)
	}

	// With no writer, the reader's raise holds.
	write(false, "", "q/67")
	fl = s.floors.read("q/")
	s.floors.raiseRead(fl, "q/7")
	if got := floor(); got != "q/7" {
		t.Fatalf("floor %q after a quiet raise, want q/7", got)
	}
}
