package demo

import (
	"bytes"
	"context"
	"encoding/json"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"
)

// runDemo runs `cxkv demo run` as a real process tree (cluster, workers) and
// returns its data dir, kept for the test to check.
func runDemo(t *testing.T, args ...string) string {
	t.Helper()
	dir := t.TempDir()
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, testBin, append([]string{"demo", "run", "--data-dir", dir, "--workers", "3"}, args...)...)
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	err := cmd.Run()
	t.Logf("cxkv demo run %s:\n%s", strings.Join(args, " "), out.String())
	if err != nil {
		t.Fatalf("demo run failed: %v", err)
	}
	return dir
}

// keptStore starts the cluster of a finished run again from its data dir and
// reads the demo's keys: the store itself, not the run's summary.
func keptStore(t *testing.T, dir string) Store {
	t.Helper()
	_, c, ctx := startCluster(t, filepath.Join(dir, "cluster"))
	st, err := ReadStore(ctx, c)
	if err != nil {
		t.Fatal(err)
	}
	return st
}

func records(t *testing.T, dir string) []Entry {
	t.Helper()
	es, err := ReadRecords(filepath.Join(dir, "records"))
	if err != nil {
		t.Fatal(err)
	}
	return es
}

func demoDuration() string {
	if testing.Short() {
		return "2s"
	}
	return "4s"
}

// checkRooms asserts the rooms invariants from the workers' records and the
// store, independently of the verdict code.
func checkRooms(t *testing.T, es []Entry, st Store) {
	t.Helper()
	intents := map[string]Entry{}
	sold := map[string]Entry{}
	lastToken := map[string]uint64{}
	for _, e := range es {
		switch e.Op {
		case OpIntent:
			intents[e.Req] = e
		case OpConflict:
			t.Errorf("%s: %s", e.Worker, e.Err)
		case OpBook:
			if prev, ok := sold[e.Room]; ok {
				t.Errorf("room %s booked by %s and by %s", e.Room, prev.Req, e.Req)
			}
			sold[e.Room] = e
			var b booking
			rec := st[roomsBookKey+e.Type+"/"+e.Room]
			if err := json.Unmarshal(rec.Value, &b); err != nil || b.Req != e.Req || rec.Index != e.Index {
				t.Errorf("%s recorded %s at index %d; the store has %q at %d", e.Req, e.Room, e.Index, rec.Value, rec.Index)
			}
		}
	}
	if len(sold) == 0 {
		t.Fatal("no booking recorded")
	}
	// Tokens per type never go back in log order.
	byIndex := map[uint64]Entry{}
	for _, e := range sold {
		byIndex[e.Index] = e
	}
	var idx []uint64
	for i := range byIndex {
		idx = append(idx, i)
	}
	sortUint64(idx)
	for _, i := range idx {
		e := byIndex[i]
		if e.Token < lastToken[e.Type] {
			t.Errorf("%s: token %d at index %d after token %d", e.Type, e.Token, i, lastToken[e.Type])
		}
		lastToken[e.Type] = e.Token
	}
	var cfg RoomsConfig
	if err := json.Unmarshal(st[roomsConfigKey].Value, &cfg); err != nil {
		t.Fatal(err)
	}
	for _, typ := range cfg.Types {
		free, err := strconv.Atoi(string(st[roomsFreeKey+typ].Value))
		if err != nil || free < 0 {
			t.Errorf("%s: free count %q", typ, st[roomsFreeKey+typ].Value)
		}
		booked := 0
		for k, r := range st {
			if !strings.HasPrefix(k, roomsBookKey+typ+"/") {
				continue
			}
			booked++
			var b booking
			json.Unmarshal(r.Value, &b)
			if _, ok := intents[b.Req]; !ok {
				t.Errorf("%s booked by %q, which no worker announced", k, b.Req)
			}
		}
		if booked+free != cfg.Rooms {
			t.Errorf("%s: %d booked + %d free != %d", typ, booked, free, cfg.Rooms)
		}
	}
	t.Logf("%d bookings recorded, each room once", len(sold))
}

// checkBank asserts the bank invariants from the workers' records and the
// store, independently of the verdict code.
func checkBank(t *testing.T, es []Entry, st Store) {
	t.Helper()
	var cfg BankConfig
	if err := json.Unmarshal(st[bankConfigKey].Value, &cfg); err != nil {
		t.Fatal(err)
	}
	var total int64
	for i := range cfg.Accounts {
		b, err := balance(st[bankAcctKey+accountName(i)])
		if err != nil || b < 0 {
			t.Errorf("account %d: %q", i, st[bankAcctKey+accountName(i)].Value)
		}
		total += b
	}
	if want := int64(cfg.Accounts) * cfg.Balance; total != want {
		t.Errorf("total %d, opened with %d", total, want)
	}
	n := 0
	for _, e := range es {
		switch e.Op {
		case OpConflict:
			t.Errorf("%s: %s", e.Worker, e.Err)
		case OpTransfer:
			n++
			rec, ok := st[bankLedgerKey+e.Req]
			var le ledgerEntry
			if !ok || json.Unmarshal(rec.Value, &le) != nil || rec.Index != e.Index || le.Amount != e.Amount || le.From != e.From || le.To != e.To {
				t.Errorf("%s recorded %d %s->%s at %d; ledger has %q at %d", e.Req, e.Amount, e.From, e.To, e.Index, rec.Value, rec.Index)
			}
		}
	}
	if n == 0 {
		t.Fatal("no transfer recorded")
	}
	t.Logf("%d transfers recorded, total %d conserved", n, total)
}

func sortUint64(s []uint64) {
	for i := 1; i < len(s); i++ {
		for j := i; j > 0 && s[j] < s[j-1]; j-- {
			s[j], s[j-1] = s[j-1], s[j]
		}
	}
}

func TestRooms(t *testing.T) {
	for _, chaos := range []bool{false, true} {
		t.Run(map[bool]string{false: "calm", true: "chaos"}[chaos], func(t *testing.T) {
			t.Parallel()
			// Calm: a small hotel, sold out. Chaos: one too big to sell
			// out, so the kills fall in the middle of the bookings.
			args := []string{"--scenario", "rooms", "--duration", demoDuration(), "--rooms", "15", "--lock-ttl", "1s"}
			if chaos {
				args = append(args, "--chaos", "--rooms", "2000")
			}
			dir := runDemo(t, args...)
			checkRooms(t, records(t, dir), keptStore(t, dir))
		})
	}
}

func TestBank(t *testing.T) {
	for _, mode := range []string{ModeLock, ModeOptimistic} {
		for _, chaos := range []bool{false, true} {
			name := mode + map[bool]string{false: "", true: "-chaos"}[chaos]
			t.Run(name, func(t *testing.T) {
				if testing.Short() && !chaos {
					t.Skip("-short: the chaos runs cover the calm ones")
				}
				t.Parallel()
				args := []string{"--scenario", "bank", "--mode", mode, "--duration", demoDuration(), "--accounts", "4", "--lock-ttl", "1s"}
				if chaos {
					args = append(args, "--chaos")
				}
				dir := runDemo(t, args...)
				es := records(t, dir)
				if chaos {
					// The worker kill must have happened for the test to mean
					// anything: a replacement worker w4 recorded its start.
					started := false
					for _, e := range es {
						started = started || (e.Worker == "w4" && e.Op == OpStart)
					}
					if !started {
						t.Error("no replacement worker started: the worker kill did not happen")
					}
				}
				checkBank(t, es, keptStore(t, dir))
			})
		}
	}
}
