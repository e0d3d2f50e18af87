package demo

import (
	"encoding/json"
	"strings"
	"testing"
	"time"

	"github.com/cxkv/cxkv/client"
)

// A consistent rooms run: two types of 2 rooms, three bookings, one of
// them made by a worker killed before it recorded the result.
func goodRooms() ([]Entry, Store) {
	st := Store{}
	put := func(k, v string, idx uint64) { st[k] = client.Record{Key: k, Value: []byte(v), Index: idx} }
	cfg, _ := json.Marshal(RoomsConfig{Types: []string{"a", "b"}, Rooms: 2})
	put(roomsConfigKey, string(cfg), 1)
	put(roomsFreeKey+"a", "0", 20)
	put(roomsFreeKey+"b", "1", 30)
	book := func(typ, room, req string, token, idx uint64) {
		b, _ := json.Marshal(booking{Req: req, Worker: strings.Split(req, "/")[0], Token: token})
		put(roomsBookKey+typ+"/"+room, string(b), idx)
	}
	book("a", "a-001", "w1/1", 5, 10)
	book("a", "a-002", "w2/1", 15, 20)
	book("b", "b-001", "w1/2", 25, 30)
	es := []Entry{
		{Op: OpStart, Worker: "w1"}, {Op: OpStart, Worker: "w2"},
		{Op: OpIntent, Worker: "w1", Req: "w1/1", Type: "a", Room: "a-001", Token: 5},
		{Op: OpBook, Worker: "w1", Req: "w1/1", Type: "a", Room: "a-001", Token: 5, Index: 10},
		{Op: OpIntent, Worker: "w2", Req: "w2/1", Type: "a", Room: "a-002", Token: 15},
		{Op: OpBook, Worker: "w2", Req: "w2/1", Type: "a", Room: "a-002", Token: 15, Index: 20},
		{Op: OpIntent, Worker: "w1", Req: "w1/2", Type: "b", Room: "b-001", Token: 25}, // killed here
	}
	return es, st
}

func goodBank() ([]Entry, Store) {
	st := Store{}
	put := func(k, v string, idx uint64) { st[k] = client.Record{Key: k, Value: []byte(v), Index: idx} }
	cfg, _ := json.Marshal(BankConfig{Accounts: 2, Balance: 100})
	put(bankConfigKey, string(cfg), 1)
	put(bankAcctKey+accountName(0), "70", 20)
	put(bankAcctKey+accountName(1), "130", 20)
	led := func(req, from, to string, amount int64, idx uint64) {
		b, _ := json.Marshal(ledgerEntry{From: from, To: to, Amount: amount})
		put(bankLedgerKey+req, string(b), idx)
	}
	led("w1/1", accountName(0), accountName(1), 50, 10)
	led("w2/1", accountName(1), accountName(0), 20, 20)
	es := []Entry{
		{Op: OpIntent, Worker: "w1", Req: "w1/1", From: accountName(0), To: accountName(1), Amount: 50},
		{Op: OpTransfer, Worker: "w1", Req: "w1/1", From: accountName(0), To: accountName(1), Amount: 50, Index: 10},
		{Op: OpIntent, Worker: "w2", Req: "w2/1", From: accountName(1), To: accountName(0), Amount: 20}, // killed here
	}
	return es, st
}

func TestVerdictAcceptsConsistentRecords(t *testing.T) {
	es, st := goodRooms()
	if v := CheckRooms(es, st); !v.OK() {
		t.Errorf("rooms: %v", v.Problems)
	}
	es, st = goodBank()
	if v := CheckBank(es, st); !v.OK() {
		t.Errorf("bank: %v", v.Problems)
	}
}

// Each broken record set must fail the verdict, naming the problem.
func TestVerdictCatchesBrokenRecords(t *testing.T) {
	cases := []struct {
		name, scenario, want string
		breakIt              func([]Entry, Store) []Entry
	}{
		{"room sold twice in the records", ScenarioRooms, "sold twice", func(es []Entry, st Store) []Entry {
			return append(es, Entry{Op: OpIntent, Worker: "w3", Req: "w3/1", Room: "a-001"},
				Entry{Op: OpBook, Worker: "w3", Req: "w3/1", Type: "a", Room: "a-001", Token: 16, Index: 21})
		}},
		{"recorded booking missing from the store", ScenarioRooms, "no booking for it", func(es []Entry, st Store) []Entry {
			delete(st, roomsBookKey+"a/a-002")
			st[roomsFreeKey+"a"] = client.Record{Value: []byte("1")}
			return es
		}},
		{"booking nobody announced", ScenarioRooms, "no worker announced", func(es []Entry, st Store) []Entry {
			return es[:len(es)-1]
		}},
		{"negative count", ScenarioRooms, "free count is -1", func(es []Entry, st Store) []Entry {
			st[roomsFreeKey+"b"] = client.Record{Value: []byte("-1")}
			return es
		}},
		{"token went back", ScenarioRooms, "two holders at once", func(es []Entry, st Store) []Entry {
			es[5].Token = 4
			return es
		}},
		{"write under a lock conflicted", ScenarioRooms, "another process wrote", func(es []Entry, st Store) []Entry {
			return append(es, Entry{Op: OpConflict, Worker: "w2", Req: "w2/9", Err: "compare 0 failed under the lock"})
		}},
		{"refused booking in the store", ScenarioRooms, "saw refused", func(es []Entry, st Store) []Entry {
			return append(es, Entry{Op: OpAborted, Worker: "w1", Req: "w1/2", Err: "lock lost"})
		}},
		{"total not conserved", ScenarioBank, "total is 210", func(es []Entry, st Store) []Entry {
			st[bankAcctKey+accountName(1)] = client.Record{Value: []byte("140")}
			return es
		}},
		{"transfer applied in part", ScenarioBank, "applied in part", func(es []Entry, st Store) []Entry {
			delete(st, bankLedgerKey+"w2/1")
			return es
		}},
		{"recorded transfer not in the ledger", ScenarioBank, "ledger lacks it", func(es []Entry, st Store) []Entry {
			return append(es, Entry{Op: OpIntent, Worker: "w3", Req: "w3/1", From: accountName(0), To: accountName(1), Amount: 1},
				Entry{Op: OpTransfer, Worker: "w3", Req: "w3/1", From: accountName(0), To: accountName(1), Amount: 1, Index: 40})
		}},
		{"recorded at another index", ScenarioBank, "the ledger has it at 10", func(es []Entry, st Store) []Entry {
			es[1].Index = 11
			return es
		}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			var es []Entry
			var st Store
			if tc.scenario == ScenarioRooms {
				es, st = goodRooms()
			} else {
				es, st = goodBank()
			}
			v := Check(tc.scenario, tc.breakIt(es, st), st)
			if v.OK() {
				t.Fatal("verdict OK on a broken record set")
			}
			if !strings.Contains(strings.Join(v.Problems, "\n"), tc.want) {
				t.Errorf("problems %q do not mention %q", v.Problems, tc.want)
			}
		})
	}
}

func TestLivenessCatchesAStall(t *testing.T) {
	at := func(s int) int64 { return time.Unix(1000+int64(s), 0).UnixMilli() }
	es := []Entry{{Op: OpStart, Time: at(0)}}
	for i := 1; i <= 3; i++ {
		es = append(es, Entry{Op: OpBook, Time: at(i)})
	}
	es = append(es, Entry{Op: OpStop, Time: at(20)}) // 17s with nothing done
	var v Verdict
	v.CheckLiveness(es, 5*time.Second)
	if v.OK() {
		t.Fatal("a 17s stall passed")
	}
	es[len(es)-1].Time = at(6)
	v = Verdict{}
	v.CheckLiveness(es, 5*time.Second)
	if !v.OK() {
		t.Fatal(v.Problems)
	}
}

func TestSummarize(t *testing.T) {
	es := []Entry{
		{Op: OpAcquire, WaitUS: 1000}, {Op: OpAcquire, WaitUS: 3000, Waited: true}, {Op: OpAcquire, WaitUS: 2000, Waited: true},
		{Op: OpIntent, Req: "w/1"}, {Op: OpTransfer, Req: "w/1", Retry: 2},
		{Op: OpIntent, Req: "w/2"}, // killed
	}
	s := Summarize(es)
	if s.Operations != 1 || s.Conflicts != 2 || s.LockWaits != 2 || s.Acquires != 3 || s.Unfinished != 1 ||
		s.AcquireP50 != 2*time.Millisecond || s.AcquireP99 != 3*time.Millisecond {
		t.Errorf("%+v", s)
	}
}
