package kv

import (
	"encoding/binary"
	"fmt"
	"math"

	"github.com/cockroachdb/pebble/v2"
)

// The exactly-once table. A client names each write (client id, seq); the
// table remembers the result of every applied seq above the client's
// acknowledged mark, so a retry is answered with the stored result instead
// of being applied again. It is part of the replicated state: every decision
// below is made from the table and the command's stamp only, so every member
// applying the same log keeps the same table.
//
// Keys (see keys.go): 'S' client -> header, which holds most results
// inline (sessionheader.go); 's' client seq -> a result too large for the
// header (opaque to kv, as inline ones are); 'L' stamp client -> nothing
// (the clients in least-recently-used order); meta "sessionfloor" -> a
// lower bound of every stamp in 'L'; meta "sessionclock" -> the table's
// time; counter "sessions" -> how many clients have a header. The clock,
// the floor, headers and which results exist are also kept in memory
// (tablememo.go).
//
// Time. The table's time is the highest command stamp it has seen (the
// cluster time raftnode stamps, see raftnode/clock.go); a command stamped
// lower is taken to happen at the table's time. So time in the table never
// goes back, and a client is heard from no earlier than the latest stamp.
// A store without a stored time (older than it) takes the first command's
// stamp as it is.
//
// What a retry can be told. The table answers a retry only while it holds
// the result; otherwise it cannot tell a write that was never applied from
// one whose result it forgot, so it refuses the write (Forgotten) and the
// client learns its outcome is unknown. Two rules keep that sound:
//   - a session is opened only by a write that says it opens one: the first
//     attempt of seq 1 of a client id never used before. A header, once
//     forgotten, never comes back for the same id, so no write of that id is
//     ever applied again; a write of a client without a header is refused
//     and leaves no header behind.
//   - within a session, every applied seq above acked keeps its result until
//     acked passes it; so a seq above acked without a result was never
//     applied, and a seq at or below acked is refused.
//
// A header (sessionheader.go) holds:
//   - acked: results of seq <= acked are forgotten. It only grows: to what
//     the client says it has received, and to seq - MaxResults.
//   - stamp: the stamp of the client's last command; its 'L' key matches it.
//   - top: no result has a seq above it. A header of the first format has no
//     top; it reads as topUnknown (any seq above acked may have a result).
//   - spillTop: no result in an 's' key has a seq above it.
//   - the inline results.
//
// What every command may rely on, and what each write keeps true:
//   - a client's results all have seq in (acked, top] of its header, those
//     in 's' keys in (acked, spillTop], and a client without a header has
//     none. So a fresh seq above top needs no read, and forgetting results
//     deletes known keys one by one instead of leaving a range tombstone
//     that every later read pays for, and none once acked passes spillTop.
//   - a client is forgotten (header, 'L' key and results at once) when it was
//     silent for TTL before the current stamp, oldest first, or when a new
//     client would make more than MaxSessions, least recently used first.
//   - the stored floor is at most every 'L' stamp. It only decides whether
//     the expiry scan can be skipped, which is the case exactly when the scan
//     would remove nothing; so whatever value a member holds, the outcome is
//     that of a scan on every command. A missing floor (an older store)
//     means "scan".

// SessionLimits bound the table; all members must use the same ones.
type SessionLimits struct {
	// MaxSessions is how many clients are remembered (at least one).
	MaxSessions int
	// MaxResults is how many seqs below a client's newest write keep their
	// results: a write of seq forgets every result at or below
	// seq - MaxResults.
	MaxResults uint64
	// TTLMillis is how long (in stamp milliseconds) a silent client is
	// remembered.
	TTLMillis int64
}

// Sessions is the table as one command sees it: Batch.Sessions advances
// the table's time to the command's stamp and forgets the clients that
// expired by it, Lookup says what the table knows of the write, and then
// exactly one of Touch (not applied) or Record (applied) stores what the
// command changed.
type Sessions struct {
	b     *Batch
	l     SessionLimits
	now   int64 // the table's time for this command
	floor int64
}

// Outcome is what the table knows of a write.
type Outcome int

const (
	// Fresh: the write was never applied while remembered. Apply it, then
	// Record its result.
	Fresh Outcome = iota
	// Answered: the write was applied; Write.Result is its stored result.
	Answered
	// Forgotten: the table cannot know whether the write was applied: the
	// client has no session (Write.Session is false), or seq is at or below
	// Write.Acked. The write must not be applied.
	Forgotten
)

// Write is one write's place in the table, from Lookup to Touch or Record.
type Write struct {
	Client, Seq uint64
	Outcome     Outcome
	Result      []byte // the stored result, when Answered
	Acked       uint64 // results of seq <= Acked are forgotten
	Session     bool   // the client has a session (or this write opens one)

	// c is the client's entry in the batch's memo: its header as the
	// command found it, until save writes the new one. Nothing else in the
	// command changes it between Lookup and Touch or Record.
	c *memoClient
}

// sessionCount counts the clients with a header.
const sessionCount = "sessions"

// metaSessionClock holds the table's time.
const metaSessionClock = "sessionclock"

// The meta keys every command reads and writes, made once (a batch copies
// keys and values it is given).
var (
	sessionClockKey = metaKey(metaSessionClock)
	sessionFloorKey = metaKey(metaSessionFloor)
)

// topUnknown is the top of a header written before tops were kept.
const topUnknown = math.MaxUint64

// Sessions opens the table for the command stamped stamp: the table's time
// becomes the later of its own and stamp, and the clients silent for TTL
// before it are forgotten.
func (b *Batch) Sessions(l SessionLimits, stamp int64) (*Sessions, error) {
	t := &Sessions{b: b, l: l, now: stamp}
	o := b.overlay()
	clock, known, err := b.memoInt(&o.clock, sessionClockKey)
	if err != nil {
		return nil, err
	}
	if known {
		t.now = max(clock, stamp)
	}
	o.setClock(t.now)
	return t, t.expire()
}

// SessionClock returns the exactly-once table's time in the applied state
// (0 if it has none): the cluster time no proposal needs to go below.
func (s *Store) SessionClock() (int64, error) {
	v, _, err := getInt64(s.db, sessionClockKey)
	return v, err
}

// Lookup says what the table knows of the write (client, seq). opens says
// the write is the first attempt of seq 1 of a new client id, which may
// open the client's session.
func (t *Sessions) Lookup(client, seq uint64, opens bool) (Write, error) {
	w := Write{Client: client, Seq: seq}
	c, err := t.b.memoClient(client)
	if err != nil {
		return w, fmt.Errorf("kv: session of client %x: %w", client, err)
	}
	w.c = c
	found := c.found
	if found {
		w.Acked = c.acked
	}
	w.Session = found || (opens && seq == 1)
	if !w.Session || (found && seq <= w.Acked) {
		w.Outcome = Forgotten
		return w, nil
	}
	if !found || seq > c.top {
		return w, nil
	}
	if res, ok := c.findInline(seq); ok {
		w.Outcome, w.Result = Answered, res
		return w, nil
	}
	if seq > c.spillTop || !c.mayHaveResult(seq) {
		return w, nil
	}
	res, ok, err := getRaw(t.b.b, resultKey(client, seq))
	if err != nil || !ok {
		return w, err
	}
	w.Outcome, w.Result = Answered, res
	return w, nil
}

// Touch records that the client was heard from now, by a write that was not
// applied (answered from the table or refused). A client without a session
// stays without one.
func (t *Sessions) Touch(w *Write) error {
	if !w.c.found {
		return nil
	}
	return t.save(w)
}

// Record stores the result of a Fresh write that was just applied, opening
// the client's session if the write opens one. ackedAsked is the client's
// own acknowledged mark: every result up to it may be forgotten. The table
// keeps result as it is: the caller must not change it afterwards.
func (t *Sessions) Record(w *Write, ackedAsked uint64, result []byte) error {
	if w.Outcome != Fresh {
		return fmt.Errorf("kv: record of write %d of client %x, which the table did not find fresh", w.Seq, w.Client)
	}
	c := w.c
	acked := max(w.Acked, ackedAsked)
	if w.Seq > t.l.MaxResults {
		acked = max(acked, w.Seq-t.l.MaxResults)
	}
	if acked > w.Acked {
		if err := t.b.deleteResults(w.Client, w.Acked+1, min(acked, c.top, c.spillTop)); err != nil {
			return err
		}
		c.dropInlineThrough(acked)
		w.Acked = acked
	}
	if w.Seq > acked {
		if !c.addInline(w.Seq, result) {
			if err := t.b.b.Set(resultKey(w.Client, w.Seq), result, nil); err != nil {
				return err
			}
			c.addResult(w.Seq)
			c.spillTop = max(c.spillTop, w.Seq)
		}
		c.top = max(c.top, w.Seq)
	}
	return t.save(w)
}

// save writes the client's header at stamp now, moves it in the LRU order,
// and evicts the least recently used client if a new one makes too many.
func (t *Sessions) save(w *Write) error {
	b, c := t.b.b, w.c
	isNew := !c.found
	if isNew || c.stamp != t.now {
		if !isNew {
			if err := b.Delete(sessionLRUKey(c.stamp, w.Client), nil); err != nil {
				return err
			}
		}
		if err := b.Set(sessionLRUKey(t.now, w.Client), nil, nil); err != nil {
			return err
		}
	}
	c.found, c.acked, c.stamp = true, w.Acked, t.now
	c.checkInline(w.Client)
	t.b.hdrBuf = c.appendTo(t.b.hdrBuf[:0])
	if err := b.Set(sessionKey(w.Client), t.b.hdrBuf, nil); err != nil {
		return err
	}
	// Stamps from different proposers need not rise: one may be below the
	// floor.
	t.floor = min(t.floor, t.now)
	t.setFloor(t.floor)
	if !isNew {
		return nil
	}
	n, err := t.b.Counter(sessionCount)
	if err != nil {
		return err
	}
	n++
	for ; n > uint64(max(t.l.MaxSessions, 1)); n-- {
		client, stamp, ok, err := t.oldest()
		if err != nil || !ok {
			return err
		}
		if err := t.forget(client, stamp); err != nil {
			return err
		}
	}
	return t.b.SetCounter(sessionCount, n)
}

// expire forgets the clients silent for TTL before now and leaves t.floor
// at the floor it stores.
func (t *Sessions) expire() error {
	cutoff := t.now - t.l.TTLMillis
	floor, known, err := t.getFloor()
	t.floor = floor
	if err != nil || (known && floor >= cutoff) {
		return err // no client is older than the floor: none expires
	}
	removed := uint64(0)
	for {
		client, last, ok, err := t.oldest()
		if err != nil {
			return err
		}
		if !ok || last >= cutoff {
			break
		}
		if err := t.forget(client, last); err != nil {
			return err
		}
		removed++
	}
	if removed > 0 {
		n, err := t.b.Counter(sessionCount)
		if err != nil {
			return err
		}
		if err := t.b.SetCounter(sessionCount, n-removed); err != nil {
			return err
		}
	}
	// Raise the floor to the lowest stamp left, so the next scan waits until
	// that client could expire. It stays below cutoff only if a negative
	// stamp sorts behind the oldest in the LRU order: then every command
	// scans.
	lowest, ok, err := t.lowestStamp()
	if err != nil {
		return err
	}
	if !ok {
		lowest = math.MaxInt64 // no clients: the next one lowers it
	}
	if known && lowest == floor {
		return nil
	}
	t.floor = lowest
	t.setFloor(lowest)
	return nil
}

// forget deletes a client's header (and its inline results), LRU key and
// spilled results. The caller keeps the count.
func (t *Sessions) forget(client uint64, stamp int64) error {
	c, err := t.b.memoClient(client)
	if err != nil {
		return fmt.Errorf("kv: session of client %x: %w", client, err)
	}
	acked, top := uint64(0), uint64(topUnknown) // no header: sweep them all
	if c.found {
		acked, top = c.acked, min(c.top, c.spillTop)
	}
	if acked < top {
		if err := t.b.deleteResults(client, acked+1, top); err != nil {
			return err
		}
	}
	if err := t.b.b.Delete(sessionLRUKey(stamp, client), nil); err != nil {
		return err
	}
	if err := t.b.b.Delete(sessionKey(client), nil); err != nil {
		return err
	}
	*c = memoClient{} // no header, so no results
	return nil
}

// oldest returns the least recently used client and its stamp: the first
// in the LRU order, which puts negative stamps after all others.
func (t *Sessions) oldest() (client uint64, stamp int64, ok bool, err error) {
	it, err := t.newLRUIter()
	if err != nil {
		return 0, 0, false, err
	}
	defer it.Close()
	if !it.First() {
		return 0, 0, false, it.Error()
	}
	client, stamp = decodeLRUKey(it.Key())
	return client, stamp, true, nil
}

// lowestStamp returns the smallest stamp of any client as a signed number,
// which is oldest's only when no stamp is negative.
func (t *Sessions) lowestStamp() (stamp int64, ok bool, err error) {
	it, err := t.newLRUIter()
	if err != nil {
		return 0, false, err
	}
	defer it.Close()
	if !it.First() {
		return 0, false, it.Error()
	}
	_, stamp = decodeLRUKey(it.Key())
	if stamp < 0 {
		return stamp, true, nil // every stamp is negative; the order is theirs
	}
	if it.SeekGE(sessionLRUKey(math.MinInt64, 0)) {
		_, stamp = decodeLRUKey(it.Key())
	}
	return stamp, true, it.Error()
}

func (t *Sessions) newLRUIter() (*pebble.Iterator, error) {
	return t.b.b.NewIter(&pebble.IterOptions{LowerBound: []byte{prefixSessionLRU}, UpperBound: []byte{prefixSessionLRU + 1}})
}

func decodeLRUKey(k []byte) (client uint64, stamp int64) {
	return binary.BigEndian.Uint64(k[9:]), int64(binary.BigEndian.Uint64(k[1:]))
}

func (t *Sessions) getFloor() (int64, bool, error) {
	return t.b.memoInt(&t.b.overlay().floor, sessionFloorKey)
}

// setFloor sets the stored floor; the batch writes it when it commits
// (batchMemo.flush).
func (t *Sessions) setFloor(stamp int64) { t.b.overlay().setFloor(stamp) }

// maxPointDeletes is how many results deleteResults forgets one key at a
// time before it falls back to one range deletion. A range tombstone in the
// memtable makes every later read of the state re-fragment all tombstones
// there until the next flush, so one per command turns each read O(commands
// since the flush); point deletions cost one batch entry each and nothing
// after. The bound is one client's results at the default MaxResults, so the
// range form is left for headers of the first format (no top).
const maxPointDeletes = 1024

// deleteResults forgets a client's results with seq in [first, last]. The
// cost is that of the range, whether or not the results exist.
func (b *Batch) deleteResults(client, first, last uint64) error {
	if first > last {
		return nil
	}
	c, err := b.memoClient(client)
	if err != nil {
		return err
	}
	c.dropResults(first, last)
	if last-first < maxPointDeletes {
		k := resultKey(client, 0)
		for seq := first; ; seq++ {
			binary.BigEndian.PutUint64(k[9:], seq)
			if err := b.b.Delete(k, nil); err != nil {
				return err
			}
			if seq == last {
				return nil
			}
		}
	}
	end := prefixEnd(resultKey(client, 0)[:9])
	if last < math.MaxUint64 {
		end = resultKey(client, last+1)
	}
	return b.b.DeleteRange(resultKey(client, first), end, nil)
}
