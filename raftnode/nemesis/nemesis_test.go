package nemesis_test

import (
	"context"
	"flag"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"text/tabwriter"
	"time"

	"github.com/cxkv/cxkv/chaos/workload"
	"github.com/cxkv/cxkv/client"
	"github.com/cxkv/cxkv/raftnode"
	"github.com/cxkv/cxkv/raftnode/raftnodetest"
)

var (
	schedules = flag.Int("nemesis.schedules", 0, "seeded schedules to run (default 10, about a minute; 1 of 8s with -short)")
	length    = flag.Duration("nemesis.length", 0, "how long each schedule injects faults (default 4s)")
)

// fault kinds, in the order the report lists them
type kind int

const (
	leaderAlone kind = iota
	minority
	oneWay
	drop
	delay
	reorder
	duplicate
	crash
	clockForward
	clockBack
	syncFails
	diskFull
	holderCrash
	numKinds
)

var kindNames = [numKinds]string{
	"partition: leader alone", "partition: a minority (one follower)", "one-way: followers do not hear the leader",
	"message drop", "message delay", "message reorder", "message duplication",
	"crash (unsynced writes lost) + restart", "clock jump forward", "clock jump back",
	"disk: sync/write fails (EIO) + restart", "disk: full (ENOSPC) + restart", "lock holder crash",
}

// totals over every schedule of the run, for the report
var totals struct {
	sync.Mutex
	schedules, failed        int
	faults                   [numKinds]int
	ops, unknown, locks      int
	accesses, refused, watch int
	late, halted             int
	net                      raftnodetest.NetCounts
	anomalies                []string
}

// TestNemesis runs seeded fault schedules against an in-process cluster.
// NEMESIS_SEED=s replays the schedule of seed s (and -nemesis.schedules=n
// runs s, s+1, ...); a failing schedule's history and porcupine's
// visualisation go to its artifact directory (go test -artifacts).
func TestNemesis(t *testing.T) {
	n := *schedules
	if n == 0 {
		n = 10
		if testing.Short() {
			n = 1 // the race run: one longer schedule, so a slowed cluster still takes locks
		}
	}
	d := *length
	if d == 0 {
		d = 4 * time.Second
		if testing.Short() {
			d = 8 * time.Second
		}
	}
	base := uint64(time.Now().UnixNano())
	if s := os.Getenv("NEMESIS_SEED"); s != "" {
		var err error
		if base, err = strconv.ParseUint(s, 10, 64); err != nil {
			t.Fatalf("NEMESIS_SEED: %v", err)
		}
	}
	for i := range n {
		seed := base + uint64(i)
		t.Run(fmt.Sprintf("seed=%d", seed), func(t *testing.T) { runSchedule(t, seed, d) })
	}
	var sb strings.Builder
	printTotals(&sb)
	t.Log("\n" + sb.String())
	if p := os.Getenv("NEMESIS_REPORT"); p != "" {
		os.WriteFile(p, []byte(sb.String()), 0o644)
	}
}

func printTotals(w *strings.Builder) {
	totals.Lock()
	defer totals.Unlock()
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', tabwriter.AlignRight)
	fmt.Fprintf(tw, "schedules run (failed)\t%d (%d)\t\n", totals.schedules, totals.failed)
	fmt.Fprintln(tw, "fault\tinjected\t")
	for k := range numKinds {
		fmt.Fprintf(tw, "%s\t%d\t\n", kindNames[k], totals.faults[k])
	}
	nc := totals.net
	fmt.Fprintf(tw, "messages cut / dropped / delayed / reordered / duplicated\t%d / %d / %d / %d / %d\t\n", nc.Cut, nc.Dropped, nc.Delayed, nc.Reordered, nc.Duplicated)
	fmt.Fprintf(tw, "key-value operations checked (outcome unknown)\t%d (%d)\t\n", totals.ops, totals.unknown)
	fmt.Fprintf(tw, "lock acquisitions checked\t%d\t\n", totals.locks)
	fmt.Fprintf(tw, "fenced accesses (refused by the fence)\t%d (%d)\t\n", totals.accesses, totals.refused)
	fmt.Fprintf(tw, "Lost() closed after the next holder entered, within grace\t%d\t\n", totals.late)
	fmt.Fprintf(tw, "members halted by a failed disk\t%d\t\n", totals.halted)
	fmt.Fprintf(tw, "watch events checked\t%d\t\n", totals.watch)
	fmt.Fprintf(tw, "anomalies\t%d\t\n", len(totals.anomalies))
	tw.Flush()
	for _, a := range totals.anomalies {
		fmt.Fprintf(w, "ANOMALY %s\n", a)
	}
}

// member is what the schedule changes about one member.
type member struct {
	disk  *raftnodetest.Disk
	clock *raftnodetest.JumpClock
	down  bool
	halts atomic.Int32 // "member halted" records: a failed disk was noticed
}

func runSchedule(t *testing.T, seed uint64, d time.Duration) {
	t.Logf("seed %d (replay: NEMESIS_SEED=%d go test -run TestNemesis -nemesis.schedules=1 ./raftnode/nemesis)", seed, seed)
	rng := rand.New(rand.NewPCG(seed, 0x6e656d))
	net := raftnodetest.NewNet(rng.Uint64())
	ms := make([]*member, 3)
	ids := []uint64{1, 2, 3}
	for i := range ms {
		ms[i] = &member{disk: raftnodetest.NewDisk(), clock: raftnodetest.NewJumpClock()}
	}
	c := raftnodetest.Start(t, 3, func(cfg *raftnode.Config) {
		m := ms[cfg.ID-1]
		cfg.FS, cfg.Clock, cfg.WrapTransport = m.disk.FS, m.clock, net.Wrap(cfg.ID)
		cfg.Logger = slog.New(haltCounter{slog.DiscardHandler, &m.halts})
		cfg.TickInterval = 20 * time.Millisecond
		cfg.SnapshotEntries = 200 // snapshots are sent to members that fall behind
	})
	var clients sync.Mutex
	made := 0
	newClient := func() (*client.Client, error) {
		clients.Lock()
		made++
		retry := 3 * time.Second
		if made%2 == 0 {
			retry = 300 * time.Millisecond // gives up after about one round of the members
		}
		clients.Unlock()
		return client.New(client.Config{Endpoints: c.Endpoints(), DialTimeout: 300 * time.Millisecond,
			RequestTimeout: time.Second, RetryTimeout: retry})
	}
	ctx := context.Background()
	wl, err := workload.Start(ctx, workload.Config{NewClient: newClient, Seed: rng.Uint64(),
		KVWorkers: 4, LockWorkers: 4, LockTTL: time.Second, Epoch: 2 * time.Second, OpTimeout: 3 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	var faults [numKinds]int
	leader := func() int {
		for i, m := range c.Members {
			if m != nil && m.Status().Role == "leader" {
				return i
			}
		}
		return rng.IntN(3)
	}
	// crashMember cuts member i off, takes its disk as a power loss leaves
	// it, and stops it; it is revived at the next heal.
	crashMember := func(i int) {
		net.Isolate(ids[i], ids)
		ms[i].disk = ms[i].disk.Crash(rng, rng.IntN(101))
		c.Crash(i, ms[i].disk.FS)
		ms[i].down = true
	}
	heal := func() {
		net.Heal()
		for i, m := range ms {
			if m.down {
				c.Revive(i)
				m.down = false
			}
		}
	}
	end := time.Now().Add(d)
	for time.Now().Before(end) {
		k := kind(rng.IntN(int(numKinds)))
		hold := time.Duration(100+rng.IntN(700)) * time.Millisecond
		i := rng.IntN(3)
		var what string
		switch k {
		case leaderAlone:
			l := leader()
			net.Isolate(ids[l], ids)
			what = fmt.Sprintf("isolate leader %d", l+1)
		case minority:
			f := (leader() + 1 + rng.IntN(2)) % 3
			net.Isolate(ids[f], ids)
			what = fmt.Sprintf("isolate follower %d", f+1)
		case oneWay:
			l := leader()
			for _, o := range ids {
				if o != ids[l] {
					net.Cut(ids[l], o)
				}
			}
			what = fmt.Sprintf("cut leader %d -> followers", l+1)
		case drop:
			p := 0.1 + 0.4*rng.Float64()
			net.SetLoss(raftnodetest.Loss{Drop: p})
			what = fmt.Sprintf("drop %.0f%%", 100*p)
		case delay:
			dl := time.Duration(5+rng.IntN(60)) * time.Millisecond
			net.SetLoss(raftnodetest.Loss{Delay: dl})
			what = fmt.Sprintf("delay %v", dl)
		case reorder:
			net.SetLoss(raftnodetest.Loss{Reorder: 0.3, ReorderBy: time.Duration(10+rng.IntN(50)) * time.Millisecond})
			what = "reorder"
		case duplicate:
			net.SetLoss(raftnodetest.Loss{Duplicate: 0.3})
			what = "duplicate 30%"
		case crash:
			crashMember(i)
			what = fmt.Sprintf("crash member %d", i+1)
		case clockForward:
			// A member's clock that runs ahead by j expires TTLs j early
			// when it leads, so a lease may end before its holder counts
			// it ended: jumps stay below the checker's grace for a late
			// Lost(), and such a handoff is counted as late.
			j := time.Duration(rng.IntN(300)) * time.Millisecond
			ms[i].clock.Jump(j)
			what = fmt.Sprintf("clock of member %d +%v", i+1, j)
		case clockBack:
			j := time.Duration(rng.IntN(3000)) * time.Millisecond
			ms[i].clock.Jump(-j)
			what = fmt.Sprintf("clock of member %d -%v", i+1, j)
		case syncFails, diskFull:
			if os.Getenv("NEMESIS_NODISK") != "" {
				continue
			}
			e := error(syscall.EIO)
			if k == diskFull {
				e = syscall.ENOSPC
			}
			ms[i].disk.Fail(e)
			what = fmt.Sprintf("disk of member %d fails: %v", i+1, e)
		case holderCrash:
			if !wl.CrashHolder(rng.IntN(100)) {
				continue
			}
			what = "crash a lock holder"
		}
		faults[k]++
		t.Logf("%v %s for %v", time.Until(end).Round(time.Millisecond), what, hold)
		time.Sleep(hold)
		if k == syncFails || k == diskFull {
			// A member whose disk failed has halted (or will, at its next
			// write); it restarts on what the disk had synced.
			crashMember(i)
		}
		heal()
		time.Sleep(time.Duration(50+rng.IntN(200)) * time.Millisecond)
	}
	heal()
	res := wl.Finish(ctx, 2*time.Minute)
	nc := net.Counts()
	totals.Lock()
	totals.schedules++
	for k := range numKinds {
		totals.faults[k] += faults[k]
	}
	totals.ops += res.KVOps
	totals.unknown += res.KVUnknown
	totals.locks += res.LockAcquired
	totals.accesses += res.LockAccesses
	totals.refused += res.LockRefused
	totals.late += res.LostLate
	for _, m := range ms {
		totals.halted += int(m.halts.Load())
	}
	totals.watch += res.WatchEvents
	totals.net.Cut += nc.Cut
	totals.net.Dropped += nc.Dropped
	totals.net.Delayed += nc.Delayed
	totals.net.Reordered += nc.Reordered
	totals.net.Duplicated += nc.Duplicated
	for _, a := range res.Anomalies {
		totals.anomalies = append(totals.anomalies, fmt.Sprintf("seed %d: %s", seed, a))
	}
	if len(res.Anomalies) > 0 {
		totals.failed++
	}
	totals.Unlock()
	t.Logf("%d operations (%d unknown), %d lock acquisitions, %d watch events, messages %+v", res.KVOps, res.KVUnknown, res.LockAcquired, res.WatchEvents, nc)
	// The seams must be in the path: a partition that cut no message, or
	// a crash after which nothing was restarted, tested nothing.
	if faults[leaderAlone]+faults[minority]+faults[oneWay]+faults[crash] > 0 && nc.Cut == 0 {
		t.Errorf("partitions were injected but the Net cut no message: is Config.WrapTransport in the member's path?")
	}
	if len(res.Anomalies) > 0 {
		dir := t.ArtifactDir()
		if out := os.Getenv("NEMESIS_OUT"); out != "" {
			dir = filepath.Join(out, fmt.Sprintf("seed-%d", seed))
			os.MkdirAll(dir, 0o755)
		}
		if err := res.Save(dir); err != nil {
			t.Errorf("saving the history: %v", err)
		}
		os.WriteFile(filepath.Join(dir, "seed"), []byte(fmt.Sprintln(seed)), 0o644)
		for _, a := range res.Anomalies {
			t.Errorf("ANOMALY (seed %d): %s", seed, a)
		}
		t.Errorf("history of seed %d saved in %s (NEMESIS_OUT or -artifacts keeps it)", seed, dir)
	}
}
