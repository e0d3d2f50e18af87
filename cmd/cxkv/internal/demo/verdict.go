package demo

import (
	"context"
	"encoding/json"
	"fmt"
	"slices"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/cxkv/cxkv/client"
)

// Verdict is what the workers' records and the store say together. Facts
// are what held; Problems are broken invariants, each naming the evidence.
type Verdict struct {
	Facts    []string
	Problems []string
}

// OK reports whether every invariant held.
func (v *Verdict) OK() bool { return len(v.Problems) == 0 }

func (v *Verdict) fact(format string, args ...any) {
	v.Facts = append(v.Facts, fmt.Sprintf(format, args...))
}
func (v *Verdict) fail(format string, args ...any) {
	// A broken run can break the same way thousands of times; the first
	// few say enough.
	const most = 20
	if len(v.Problems) == most {
		v.Problems = append(v.Problems, "... (more problems not shown)")
	}
	if len(v.Problems) < most {
		v.Problems = append(v.Problems, fmt.Sprintf(format, args...))
	}
}

// Store is the demo's keys as read after the workers stopped.
type Store map[string]client.Record

// ReadStore reads every key under the demo's data prefix.
func ReadStore(ctx context.Context, c *client.Client) (Store, error) {
	out := Store{}
	for r, err := range c.List(ctx, dataPrefix) {
		if err != nil {
			return nil, err
		}
		out[r.Key] = r
	}
	return out, nil
}

// Check runs the scenario's verdict.
func Check(scenario string, entries []Entry, st Store) Verdict {
	switch scenario {
	case ScenarioRooms:
		return CheckRooms(entries, st)
	case ScenarioBank:
		return CheckBank(entries, st)
	}
	return Verdict{Problems: []string{"no verdict for scenario " + scenario}}
}

// recordIndex groups the workers' entries by request.
type recordIndex struct {
	intents map[string]Entry
	results map[string][]Entry // OpBook/OpTransfer/OpAborted/OpUnknown per req
}

func indexRecords(entries []Entry, v *Verdict) recordIndex {
	ri := recordIndex{intents: map[string]Entry{}, results: map[string][]Entry{}}
	for _, e := range entries {
		switch e.Op {
		case OpIntent:
			if _, dup := ri.intents[e.Req]; dup {
				v.fail("request %s announced twice", e.Req)
			}
			ri.intents[e.Req] = e
		case OpBook, OpTransfer, OpAborted, OpUnknown:
			ri.results[e.Req] = append(ri.results[e.Req], e)
		case OpConflict:
			v.fail("%s: %s (request %s): another process wrote what its locks guard", e.Worker, e.Err, e.Req)
		}
	}
	for req, rs := range ri.results {
		if _, ok := ri.intents[req]; !ok {
			v.fail("%s: result %q of request %s that it never announced", rs[0].Worker, rs[0].Op, req)
		}
		if len(rs) > 1 {
			v.fail("request %s has %d results in its worker's record", req, len(rs))
		}
	}
	return ri
}

// CheckRooms: every room sold at most once (by the records and by the
// store), counts never negative, sold + free = inventory, every booking in
// the store made by a worker that meant it, and fencing tokens that never go
// back in log order (two holders never interleaved).
func CheckRooms(entries []Entry, st Store) Verdict {
	var v Verdict
	var cfg RoomsConfig
	if r, ok := st[roomsConfigKey]; !ok || json.Unmarshal(r.Value, &cfg) != nil {
		v.fail("no hotel in the store (%s)", roomsConfigKey)
		return v
	}
	ri := indexRecords(entries, &v)

	// The workers' own records: a room appears in at most one booking, and
	// each booking is in the store as the worker recorded it.
	byRoom := map[string]Entry{}
	perType := map[string][]Entry{}
	booked := 0
	for _, e := range entries {
		if e.Op != OpBook {
			continue
		}
		booked++
		if prev, dup := byRoom[e.Room]; dup {
			v.fail("room %s sold twice: to %s (%s, index %d) and to %s (%s, index %d)", e.Room, prev.Req, prev.Worker, prev.Index, e.Req, e.Worker, e.Index)
		}
		byRoom[e.Room] = e
		perType[e.Type] = append(perType[e.Type], e)
		r, ok := st[roomsBookKey+e.Type+"/"+e.Room]
		var b booking
		switch {
		case !ok:
			v.fail("%s recorded booking %s (request %s, index %d) but the store has no booking for it", e.Worker, e.Room, e.Req, e.Index)
		case json.Unmarshal(r.Value, &b) != nil || b.Req != e.Req:
			v.fail("%s recorded booking %s (request %s) but the store says %q", e.Worker, e.Room, e.Req, r.Value)
		case r.Index != e.Index:
			v.fail("%s recorded booking %s at index %d, the store has it at %d", e.Worker, e.Room, e.Index, r.Index)
		}
	}
	// Fencing: in log order, a type's bookings carry non-decreasing tokens.
	for typ, es := range perType {
		sort.Slice(es, func(i, j int) bool { return es[i].Index < es[j].Index })
		for i := 1; i < len(es); i++ {
			if es[i].Token < es[i-1].Token {
				v.fail("%s: booking at index %d under token %d follows one at index %d under token %d: two holders at once",
					typ, es[i].Index, es[i].Token, es[i-1].Index, es[i-1].Token)
			}
		}
	}

	// The store: counts, and every booking explained by a worker's intent.
	sold, freeTotal := 0, 0
	for _, typ := range cfg.Types {
		fr, ok := st[roomsFreeKey+typ]
		free, err := strconv.Atoi(string(fr.Value))
		if !ok || err != nil {
			v.fail("%s: free count %q unreadable", typ, fr.Value)
			continue
		}
		if free < 0 {
			v.fail("%s: free count is %d", typ, free)
		}
		n := 0
		prefix := roomsBookKey + typ + "/"
		for key, r := range st {
			if !strings.HasPrefix(key, prefix) {
				continue
			}
			n++
			room := key[len(prefix):]
			num, err := strconv.Atoi(strings.TrimPrefix(room, typ+"-"))
			if err != nil || num < 1 || num > cfg.Rooms {
				v.fail("booking of a room the hotel does not have: %s", key)
			}
			var b booking
			if err := json.Unmarshal(r.Value, &b); err != nil {
				v.fail("%s = %q: %v", key, r.Value, err)
				continue
			}
			in, ok := ri.intents[b.Req]
			switch {
			case !ok:
				v.fail("%s booked by request %s, which no worker announced", key, b.Req)
			case in.Room != room:
				v.fail("%s booked by request %s, which was for room %s", key, b.Req, in.Room)
			}
			for _, res := range ri.results[b.Req] {
				if res.Op == OpAborted {
					v.fail("%s booked by request %s, which its worker saw refused (%s)", key, b.Req, res.Err)
				}
			}
		}
		if n+free != cfg.Rooms {
			v.fail("%s: %d booked + %d free != %d rooms", typ, n, free, cfg.Rooms)
		}
		sold += n
		freeTotal += free
	}
	total := cfg.Rooms * len(cfg.Types)
	unrecorded := sold - booked
	v.fact("%d bookings in the workers' records, no room twice; fencing tokens never went back", booked)
	if unrecorded > 0 {
		v.fact("%d more bookings in the store whose worker died or lost the answer before recording them (each announced)", unrecorded)
	}
	if freeTotal == 0 {
		v.fact("sold out: each of the %d rooms sold exactly once, no count negative", total)
	} else {
		v.fact("%d of %d rooms sold, each once; %d still free; no count negative", sold, total, freeTotal)
	}
	return v
}

// CheckBank: the total is what the bank opened with, no balance negative,
// every balance is its opening balance plus its ledger, every ledger entry
// was announced by a worker, and every transfer a worker recorded is in the
// ledger at the index it recorded.
func CheckBank(entries []Entry, st Store) Verdict {
	var v Verdict
	var cfg BankConfig
	if r, ok := st[bankConfigKey]; !ok || json.Unmarshal(r.Value, &cfg) != nil {
		v.fail("no bank in the store (%s)", bankConfigKey)
		return v
	}
	ri := indexRecords(entries, &v)

	expect := map[string]int64{}
	for i := range cfg.Accounts {
		expect[accountName(i)] = cfg.Balance
	}
	ledger := 0
	for key, r := range st {
		if !strings.HasPrefix(key, bankLedgerKey) {
			continue
		}
		ledger++
		req := key[len(bankLedgerKey):]
		var le ledgerEntry
		if err := json.Unmarshal(r.Value, &le); err != nil {
			v.fail("%s = %q: %v", key, r.Value, err)
			continue
		}
		expect[le.From] -= le.Amount
		expect[le.To] += le.Amount
		in, ok := ri.intents[req]
		switch {
		case !ok:
			v.fail("ledger entry %s: no worker announced it", key)
		case in.From != le.From || in.To != le.To || in.Amount != le.Amount:
			v.fail("ledger entry %s: %d %s->%s, announced as %d %s->%s", key, le.Amount, le.From, le.To, in.Amount, in.From, in.To)
		}
		for _, res := range ri.results[req] {
			if res.Op == OpAborted {
				v.fail("ledger entry %s: its worker saw the transfer refused (%s)", key, res.Err)
			}
		}
	}
	recorded, retried := 0, 0
	for _, e := range entries {
		if e.Op != OpTransfer {
			continue
		}
		recorded++
		retried += e.Retry
		r, ok := st[bankLedgerKey+e.Req]
		switch {
		case !ok:
			v.fail("%s recorded transfer %s (%d %s->%s, index %d) but the ledger lacks it", e.Worker, e.Req, e.Amount, e.From, e.To, e.Index)
		case r.Index != e.Index:
			v.fail("%s recorded transfer %s at index %d, the ledger has it at %d", e.Worker, e.Req, e.Index, r.Index)
		}
	}
	var total int64
	for i := range cfg.Accounts {
		name := accountName(i)
		r, ok := st[bankAcctKey+name]
		bal, err := balance(r)
		if !ok || err != nil {
			v.fail("account %s unreadable: %v", name, err)
			continue
		}
		total += bal
		if bal < 0 {
			v.fail("account %s is negative: %d", name, bal)
		}
		if bal != expect[name] {
			v.fail("account %s holds %d, its opening balance and ledger say %d: a transfer applied in part", name, bal, expect[name])
		}
	}
	want := int64(cfg.Accounts) * cfg.Balance
	if total != want {
		v.fail("total is %d, the bank opened with %d", total, want)
	}
	v.fact("total %d = %d accounts x %d, conserved; no balance negative", total, cfg.Accounts, cfg.Balance)
	v.fact("%d transfers in the workers' records, all in the ledger at their index; every balance = opening + ledger", recorded)
	if ledger > recorded {
		v.fact("%d more transfers in the ledger whose worker died or lost the answer before recording them (each announced)", ledger-recorded)
	}
	return v
}

// CheckLiveness adds a problem if, while workers ran, no worker finished an
// operation for longer than limit: a lock that nobody could take, or a
// cluster that never recovered, is a failure too, though no invariant broke.
func (v *Verdict) CheckLiveness(entries []Entry, limit time.Duration) {
	var times []int64
	var begin, end int64
	for _, e := range entries {
		switch e.Op {
		case OpStart:
			if begin == 0 || e.Time < begin {
				begin = e.Time
			}
		case OpStop:
			end = max(end, e.Time)
		case OpBook, OpTransfer, OpAborted, OpUnknown, OpConflict, OpSoldOut:
			times = append(times, e.Time)
		}
	}
	if begin == 0 {
		return
	}
	if end == 0 {
		for _, e := range entries {
			end = max(end, e.Time)
		}
	}
	times = append(times, begin, end)
	slices.Sort(times)
	var worst time.Duration
	var at int64
	for i := 1; i < len(times); i++ {
		if gap := time.Duration(times[i]-times[i-1]) * time.Millisecond; gap > worst && times[i] <= end && times[i-1] >= begin {
			worst, at = gap, times[i-1]
		}
	}
	if worst > limit {
		v.fail("no worker finished an operation for %s (from %s): stuck", worst.Round(100*time.Millisecond), time.UnixMilli(at).Format("15:04:05.000"))
	} else {
		v.fact("no stall: the longest time without a finished operation was %s", worst.Round(10*time.Millisecond))
	}
}
