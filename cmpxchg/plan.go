package cmpxchg

import (
	"fmt"
	"strings"

	"github.com/cxkv/cxkv/api/cxkvpb"
	"github.com/cxkv/cxkv/kv"
)

// plan collects the writes of one command before any is made, so a command
// is refused whole (nothing written) whatever stage finds it wrong: a
// transaction's answer over MaxAnswerBytes, an attach to a missing or full
// session, too many events at one index. Every write goes through it, so
// the session rules hold for Put, Delete, Txn and Expire alike:
//
//   - removing a session's key (delete, txn delete, expire) removes every
//     key attached to that session, in the same entry, after it, with the
//     same event type, in a deterministic order (the stored attached keys
//     in key order, then those the command attached, in write order);
//   - a put may attach its key only to a session that exists at that point
//     of the command, and only while the session stays within
//     MaxSessionKeys and MaxSessionBytes;
//   - a session belongs to the identity that created its key (its owner,
//     kept in the record); with auth enabled, renewing it (a put over its
//     key), closing it (a command's delete of its key) or attaching a key to
//     it is refused unless the command's identity is its owner with write
//     on its key, or holds admin on its key. Expiry is no one's act and is
//     never refused.
//
// Later writes see earlier ones through the overlay: the state the last
// planned write of a key leaves it in. Maps here are only looked up, never
// iterated: what is written, and in which order, follows the writes slice.
type plan struct {
	b     *kv.Batch
	index uint64
	who   actor
	// overlay indexes writes by key once there are more than
	// smallPlan of them; below that (nearly every command) the writes are
	// searched, which allocates nothing.
	overlay map[string]planned
	// reads remembers what get read from the batch, so a command that
	// looks at one key many times (every attach of a transaction reads its
	// session's key) reads the store once. The overlay comes first.
	reads   smallMap[planned]
	tallies smallMap[kv.Tally] // sessions whose tally the plan changed
	writes  []planWrite
	first   [1]planWrite // writes' room for the one write most commands make
	// events and eventBytes count what the writes will add to the history:
	// one index's events must fit kv.MaxEventsPerIndex and one answer.
	events, eventBytes int
}

type planned struct {
	rec   kv.Record
	found bool
}

// planWrite is a put of rec, or (put false) the removal of rec with an
// event of type kind.
type planWrite struct {
	rec  kv.Record
	put  bool
	kind kv.EventType
}

// leaves is the state the write leaves its key in.
func (w *planWrite) leaves() planned {
	if w.put {
		return planned{w.rec, true}
	}
	return planned{kv.Record{Key: w.rec.Key}, false}
}

// smallPlan is how many writes a plan searches before it indexes them.
const smallPlan = 8

// actor is who a command acts as, for the rules that depend on the records
// it meets as well as on the keys it names (CheckCommand has judged those).
// The zero actor is the leader's expiry: no rule applies.
type actor struct {
	auth     *Auth
	identity string
}

// newPlan starts a plan. Its maps are made when first needed (a nil map
// reads as empty): most commands write one key and never read through the
// plan or touch a session, and three maps per command were a sixth of
// Apply's allocations.
func newPlan(b *kv.Batch, index uint64, who actor) *plan {
	return &plan{b: b, index: index, who: who}
}

// add plans a write, after every write planned so far.
func (p *plan) add(w planWrite) {
	if p.writes == nil {
		p.writes = p.first[:0]
	}
	p.writes = append(p.writes, w)
	if p.overlay != nil {
		p.overlay[w.rec.Key] = w.leaves()
	}
}

// overlaid returns the state the planned writes leave key in, and whether
// any of them writes it.
func (p *plan) overlaid(key string) (planned, bool) {
	if p.overlay == nil && len(p.writes) > smallPlan {
		p.overlay = make(map[string]planned, len(p.writes))
		for i := range p.writes {
			p.overlay[p.writes[i].rec.Key] = p.writes[i].leaves()
		}
	}
	if p.overlay != nil {
		s, ok := p.overlay[key]
		return s, ok
	}
	for i := len(p.writes) - 1; i >= 0; i-- {
		if p.writes[i].rec.Key == key {
			return p.writes[i].leaves(), true
		}
	}
	return planned{}, false
}

func (p *plan) setTally(session string, t kv.Tally) { p.tallies.set(session, t) }

// get reads key as the writes planned so far would leave it.
func (p *plan) get(key string) (kv.Record, bool, error) {
	if s, ok := p.overlaid(key); ok {
		return s.rec, s.found, nil
	}
	if s, ok := p.reads.get(key); ok {
		return s.rec, s.found, nil
	}
	r, found, err := p.b.Get(key)
	if err == nil {
		p.reads.set(key, planned{r, found})
	}
	return r, found, err
}

func (p *plan) tally(session string) (kv.Tally, error) {
	if t, ok := p.tallies.get(session); ok {
		return t, nil
	}
	return p.b.Tally(session)
}

// put plans writing r over cur (found: whether cur exists). It refuses an
// attach to a session that does not exist or that r would overfill.
func (p *plan) put(cur kv.Record, found bool, r kv.Record) error {
	if r.Session != "" {
		s, exists, err := p.get(cxkvpb.SessionKey(r.Session))
		if err != nil {
			return err
		} else if !exists {
			return refusal(CodeNoSession, "session %q does not exist (it expired, was closed, or was never opened): %q was not written", r.Session, r.Key)
		}
		if err := p.mayUseSession(s, fmt.Sprintf("attach key %q to", r.Key)); err != nil {
			return err
		}
	}
	if isSessionKey(r.Key) {
		if found {
			if err := p.mayUseSession(cur, "renew"); err != nil {
				return err
			}
			r.Owner = cur.Owner
		} else {
			r.Owner = p.who.identity
		}
	}
	if err := p.detach(cur, found); err != nil {
		return err
	}
	if r.Session != "" {
		t, err := p.tally(r.Session)
		if err != nil {
			return err
		}
		t.Keys++
		t.Bytes += uint64(r.AnswerBytes())
		if t.Keys > MaxSessionKeys || t.Bytes > MaxSessionBytes {
			return refusal(CodeSessionFull,
				"session %q would hold %d keys of %d bytes with %q; a session holds at most %d keys and %d bytes (keys + values + 64 each), so that its end fits one log entry: nothing was written",
				r.Session, t.Keys, t.Bytes, r.Key, MaxSessionKeys, MaxSessionBytes)
		}
		p.setTally(r.Session, t)
	}
	p.add(planWrite{rec: r, put: true})
	p.events++
	p.eventBytes += r.AnswerBytes()
	return nil
}

// detach takes cur (if it exists and is attached) off its session's tally.
func (p *plan) detach(cur kv.Record, found bool) error {
	if !found || cur.Session == "" {
		return nil
	}
	t, err := p.tally(cur.Session)
	if err != nil {
		return err
	}
	t.Keys--
	t.Bytes -= uint64(cur.AnswerBytes())
	p.setTally(cur.Session, t)
	return nil
}

// delete plans a command's delete of cur, which exists (a session's key
// only by those who may close it), with whatever removing it removes.
func (p *plan) delete(cur kv.Record) error {
	if isSessionKey(cur.Key) {
		if err := p.mayUseSession(cur, "close"); err != nil {
			return err
		}
	}
	return p.remove(cur, kv.EventDelete)
}

// mayUseSession refuses the command's action (renew, close, attach a key
// to) on the session whose key's record is s, unless its identity owns the
// session and may write its key, or holds admin on its key.
func (p *plan) mayUseSession(s kv.Record, action string) error {
	a, id := p.who.auth, p.who.identity
	if a == nil || !a.Enabled() {
		return nil
	}
	if (id != "" && id == s.Owner && a.Allowed(id, Write, s.Key)) || a.Allowed(id, Admin, s.Key) {
		return nil
	}
	return deny(id, fmt.Sprintf("%s session %q (key %q), opened by %s", action, strings.TrimPrefix(s.Key, cxkvpb.SessionKeyPrefix), s.Key, identityName(s.Owner)),
		"admin on a prefix of the key")
}

func isSessionKey(key string) bool { return strings.HasPrefix(key, cxkvpb.SessionKeyPrefix) }

// remove plans removing cur, which exists, and if cur is a session's key,
// every key attached to that session.
func (p *plan) remove(cur kv.Record, kind kv.EventType) error {
	if err := p.detach(cur, true); err != nil {
		return err
	}
	p.add(planWrite{rec: cur, kind: kind})
	p.events++
	p.eventBytes += cur.AnswerBytes()
	id, ok := strings.CutPrefix(cur.Key, cxkvpb.SessionKeyPrefix)
	if !ok {
		return nil
	}
	keys, err := p.attached(id)
	if err != nil {
		return err
	}
	for _, k := range keys {
		rec, _, err := p.get(k)
		if err != nil {
			return err
		}
		// Attached keys are never session keys, so this goes one level.
		if err := p.remove(rec, kind); err != nil {
			return err
		}
	}
	return nil
}

// attached lists the keys attached to session as the plan leaves them: the
// stored ones the plan has not touched, in key order, then those the plan
// wrote that are attached to it, in the order first written.
func (p *plan) attached(session string) ([]string, error) {
	stored, err := p.b.Attached(session)
	if err != nil {
		return nil, err
	}
	var keys []string
	for _, k := range stored {
		if _, touched := p.overlaid(k); !touched {
			keys = append(keys, k)
		}
	}
	listed := map[string]bool{}
	for _, w := range p.writes {
		k := w.rec.Key
		if listed[k] {
			continue
		}
		listed[k] = true
		if s, _ := p.overlaid(k); s.found && s.rec.Session == session {
			keys = append(keys, k)
		}
	}
	return keys, nil
}

// head returns the record under prefix that precedes every other
// (kv.QueueBefore: the lowest create index), as the plan leaves the state.
func (p *plan) head(prefix string) (kv.Record, bool, error) {
	var best kv.Record
	found := false
	consider := func(r kv.Record) {
		if !found || kv.QueueBefore(r, best) {
			best, found = r, true
		}
	}
	err := p.b.Scan(prefix, func(r kv.Record) error {
		if _, touched := p.overlaid(r.Key); !touched {
			consider(r)
		}
		return nil
	})
	if err != nil {
		return kv.Record{}, false, err
	}
	for _, w := range p.writes {
		if s, _ := p.overlaid(w.rec.Key); s.found && strings.HasPrefix(w.rec.Key, prefix) {
			consider(s.rec)
		}
	}
	if !found {
		return kv.Record{Key: prefix}, false, nil
	}
	return best, true, nil
}

// commit makes the planned writes, in order, with their events.
func (p *plan) commit() error {
	for _, w := range p.writes {
		if w.put {
			if err := p.b.Put(w.rec); err != nil {
				return err
			}
			if err := p.b.AddEvent(kv.Event{Type: kv.EventPut, Record: w.rec}); err != nil {
				return err
			}
			continue
		}
		if err := p.b.Delete(w.rec.Key); err != nil {
			return err
		}
		ev := w.rec
		ev.Index = p.index
		if err := p.b.AddEvent(kv.Event{Type: w.kind, Record: ev}); err != nil {
			return err
		}
	}
	return nil
}
