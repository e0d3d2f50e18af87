// Command lockscale holds many locks across several processes on a real
// 3-member cxkv cluster and stalls the leader with SIGSTOP (issue 17): it
// starts the members, starts -procs holder processes (this binary again)
// that each take -locks locks on one ProcessMonitor, then for
// each of -pauses stops the leader for that long and continues it. While the
// leader is stopped a rival process keeps trying to take random held names;
// at the end every holder counts its locks whose Lost() closed. It
// prints what it measured and exits non-zero if any lock was lost early or
// given to a second holder.
//
//	cd bench && go run ./cmd/lockscale -cxkv ../bin/cxkv -procs 10 -locks 10000
package main

import (
	"bufio"
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"math/rand/v2"
	"os"
	"os/exec"
	"os/signal"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/cxkv/cxkv/bench"
	"github.com/cxkv/cxkv/client"
	"github.com/cxkv/cxkv/client/lock"
)

func main() {
	bench.MaybeRunSlowSyncShim() // first: a process started as the shim becomes a member here
	var (
		cxkvBin = flag.String("cxkv", "../bin/cxkv", "cxkv binary")
		procs   = flag.Int("procs", 10, "holder processes")
		locks   = flag.Int("locks", 10000, "locks each holder process takes")
		ttl     = flag.Duration("ttl", 10*time.Second, "the holders' lock TTL")
		pauses  = flag.String("pauses", "4s,15s", "how long each SIGSTOP of the leader lasts, in order")
		tmp     = flag.String("tmp", "", "directory for the members' data dirs (default: the system temp dir)")
		slow    = flag.String("slow-sync", "", "run the members on an emulated slower disk, as cxkvbench -slow-sync does (e.g. 100us; 0s: the seccomp notification round trip alone); unset: the disk as it is")
	)
	flag.Parse()
	if holderMain() {
		return
	}
	if err := bench.UseSlowDisk(*slow); err != nil {
		fmt.Fprintln(os.Stderr, "lockscale: -slow-sync:", err)
		os.Exit(2)
	}
	if err := run(*cxkvBin, *tmp, *procs, *locks, *ttl, *pauses); err != nil {
		fmt.Fprintln(os.Stderr, "lockscale:", err)
		os.Exit(1)
	}
}

// holderEnv, set in a holder process's environment, carries its number,
// locks, TTL and the cluster's endpoints ("ID LOCKS TTL ENDPOINTS"). The
// holder is this binary run again (or the test binary, in tests).
const holderEnv = "LOCKSCALE_HOLDER"

// holderMain runs the holder and exits if this process is one.
func holderMain() bool {
	spec := os.Getenv(holderEnv)
	if spec == "" {
		return false
	}
	var (
		id, n          int
		ttl, endpoints string
	)
	_, err := fmt.Sscan(spec, &id, &n, &ttl, &endpoints)
	d, derr := time.ParseDuration(ttl)
	if err = cmpOr(err, derr); err != nil || endpoints == "" {
		fmt.Fprintf(os.Stderr, "lockscale holder: %s=%q: want \"ID LOCKS TTL ENDPOINTS\" (%v)\n", holderEnv, spec, err)
		os.Exit(2)
	}
	if err := runHolder(client.ParseEndpoints(endpoints), id, n, d); err != nil {
		fmt.Fprintln(os.Stderr, "lockscale holder:", err)
		os.Exit(1)
	}
	os.Exit(0)
	return true
}

func lockName(proc, i int) string { return fmt.Sprintf("scale/p%d/%d", proc, i) }

// runHolder takes n locks on one monitor, says "held N SECONDS", then
// answers "report" with "lost K [a reason]" and "close" with "closed
// SECONDS [error]".
func runHolder(endpoints []string, id, n int, ttl time.Duration) error {
	c, err := client.New(client.Config{Endpoints: endpoints})
	if err != nil {
		return err
	}
	defer c.Close()
	mon := lock.NewProcessMonitor(c, lock.Options{TTL: ttl, Name: fmt.Sprintf("holder-%d", id)})
	held := make([]*lock.Lock, n)
	began := time.Now()
	var next atomic.Int64
	var wg sync.WaitGroup
	var mu sync.Mutex
	var firstErr error
	for range 64 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				i := int(next.Add(1)) - 1
				if i >= n {
					return
				}
				l, err := mon.Lock(context.Background(), lockName(id, i))
				if err != nil {
					mu.Lock()
					firstErr = cmpOr(firstErr, err)
					mu.Unlock()
					return
				}
				held[i] = l
			}
		}()
	}
	wg.Wait()
	if firstErr != nil {
		return firstErr
	}
	fmt.Printf("held %d %.2f\n", n, time.Since(began).Seconds())
	in := bufio.NewScanner(os.Stdin)
	for in.Scan() {
		var i int
		if _, err := fmt.Sscanf(in.Text(), "check %d", &i); err == nil && i >= 0 && i < n {
			select {
			case <-held[i].Lost():
				fmt.Println("lost")
			default:
				fmt.Println("held")
			}
			continue
		}
		switch in.Text() {
		case "report":
			// Err, not Lost: Lost starts a watch stream per lock, and
			// 100,000 of them at once slowed the renewals past the lease.
			lost, why := 0, ""
			for _, l := range held {
				if err := l.Err(); err != nil {
					lost++
					if why == "" {
						why = err.Error()
					}
				}
			}
			fmt.Printf("lost %d %s\n", lost, why)
		case "close":
			t := time.Now()
			err := mon.Close()
			fmt.Printf("closed %.2f %v\n", time.Since(t).Seconds(), firstLine(err))
			return nil
		}
	}
	return in.Err()
}

func cmpOr(a, b error) error {
	if a != nil {
		return a
	}
	return b
}

func firstLine(err error) string {
	if err == nil {
		return ""
	}
	s, _, _ := strings.Cut(err.Error(), "\n")
	return s
}

type holderProc struct {
	cmd *exec.Cmd
	in  io.WriteCloser
	out *bufio.Scanner
}

func (h *holderProc) ask(what string) (string, error) {
	if what != "" {
		if _, err := fmt.Fprintln(h.in, what); err != nil {
			return "", err
		}
	}
	if !h.out.Scan() {
		return "", fmt.Errorf("holder exited: %v", cmpOr(h.out.Err(), io.ErrUnexpectedEOF))
	}
	return h.out.Text(), nil
}

func run(bin, tmp string, procs, locks int, ttl time.Duration, pauseList string) error {
	var pauses []time.Duration
	for _, p := range strings.Split(pauseList, ",") {
		d, err := time.ParseDuration(strings.TrimSpace(p))
		if err != nil {
			return fmt.Errorf("-pauses: %w", err)
		}
		pauses = append(pauses, d)
	}
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGINT, syscall.SIGTERM)
	defer stop()
	dir, err := os.MkdirTemp(tmp, "cxkv-lockscale-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(dir)
	cl, err := bench.StartCxkv(ctx, bin, dir, bench.CxkvOptions{})
	if err != nil {
		return err
	}
	defer cl.Stop()
	fmt.Printf("cxkv on %s; %d holder processes x %d locks, TTL %v; load average %s%s\n", strings.Join(cl.Endpoints, ","), procs, locks, ttl, loadAvg(), bench.SlowSyncClause(bench.SlowDisk.String()))

	self, err := os.Executable()
	if err != nil {
		return err
	}
	holders := make([]*holderProc, procs)
	defer func() {
		for _, h := range holders {
			if h != nil && h.cmd.ProcessState == nil {
				h.cmd.Process.Kill()
				h.cmd.Wait()
			}
		}
	}()
	began := time.Now()
	for k := range holders {
		cmd := exec.Command(self)
		cmd.Env = append(os.Environ(), fmt.Sprintf("%s=%d %d %s %s", holderEnv, k, locks, ttl, strings.Join(cl.Endpoints, ",")))
		cmd.Stderr = os.Stderr
		in, err := cmd.StdinPipe()
		if err != nil {
			return err
		}
		out, err := cmd.StdoutPipe()
		if err != nil {
			return err
		}
		if err := cmd.Start(); err != nil {
			return err
		}
		holders[k] = &holderProc{cmd: cmd, in: in, out: bufio.NewScanner(out)}
	}
	for k, h := range holders {
		line, err := h.ask("")
		if err != nil {
			return fmt.Errorf("holder %d: %w", k, err)
		}
		fmt.Printf("holder %d: %s\n", k, line)
	}
	fmt.Printf("%d locks acquired in %.1fs (%.0f/s), load average %s\n", procs*locks, time.Since(began).Seconds(), float64(procs*locks)/time.Since(began).Seconds(), loadAvg())
	failed := false
	lostTotal := 0
	report := func(when string) error {
		total := 0
		for k, h := range holders {
			line, err := h.ask("report")
			if err != nil {
				return fmt.Errorf("holder %d: %w", k, err)
			}
			var n int
			fmt.Sscanf(line, "lost %d", &n)
			total += n
			if n > 0 {
				fmt.Printf("  holder %d: %s\n", k, line)
			}
		}
		lostTotal += total
		fmt.Printf("%s: %d of %d locks lost\n", when, total, procs*locks)
		if total > 0 {
			failed = true
		}
		return nil
	}

	rc, err := client.New(client.Config{Endpoints: cl.Endpoints})
	if err != nil {
		return err
	}
	defer rc.Close()
	rival := lock.NewProcessMonitor(rc, lock.Options{TTL: ttl, Name: "rival"})
	defer rival.Close()
	var takenNames [][2]int // (holder, lock) the rival was given
	// tries counts what the rival's attempts on held names came to.
	type tries struct{ tried, refused, taken, other int }
	try := func(c *tries, k, i int) {
		tctx, cancel := context.WithTimeout(ctx, time.Second)
		defer cancel()
		c.tried++
		l, err := rival.TryLock(tctx, lockName(k, i))
		switch {
		case err == nil:
			l.Unlock()
			c.taken++
			takenNames = append(takenNames, [2]int{k, i})
		case errors.Is(err, lock.ErrLocked):
			c.refused++
		default:
			c.other++
		}
	}
	seconds := 0
	for _, pause := range pauses {
		leader, err := cl.Leader(ctx)
		if err != nil {
			return err
		}
		if err := cl.Pause(leader); err != nil {
			return err
		}
		fmt.Printf("SIGSTOP member %d (the leader) for %v\n", leader+1, pause)
		stopped := time.Now()
		var during tries
		for time.Since(stopped) < pause && ctx.Err() == nil {
			try(&during, rand.N(procs), rand.N(locks))
			time.Sleep(100 * time.Millisecond)
		}
		if err := cl.Resume(leader); err != nil {
			return err
		}
		fmt.Printf("SIGCONT member %d after %.1fs; the rival tried %d names meanwhile: %d refused as held, %d timed out or unavailable, %d given to it\n",
			leader+1, time.Since(stopped).Seconds(), during.tried, during.refused, during.other, during.taken)
		// Two renewal intervals: a lock whose renewals did not get through
		// has reached its lease end by now.
		time.Sleep(2 * ttl / 3)
	}
	// Asked once, at the end: asking a lock's Lost starts its watch, and
	// the holders here hold no watch stream per lock (lock-hold's case).
	// A lock lost at any point is still counted: its session's lease timer
	// closes Lost whether or not anyone watches.
	if err := report(fmt.Sprintf("after acquiring and %d leader stops", len(pauses))); err != nil {
		return err
	}
	// Every name is still its holder's, checked on a sample across holders.
	// (A name whose holder knows it lost it may go to the rival: that is
	// a loss, counted above, not a second holder.)
	var end tries
	for j := range min(procs*locks, 1000) {
		try(&end, j%procs, rand.N(locks))
	}
	// A name the rival was given is a second holder if its holder still
	// believes it holds it (its Lost has not closed); otherwise it is a
	// loss, counted above, that the holder knew of.
	for _, t := range takenNames {
		line, err := holders[t[0]].ask(fmt.Sprintf("check %d", t[1]))
		if err != nil {
			return fmt.Errorf("holder %d: %w", t[0], err)
		}
		if line != "lost" {
			seconds++
			fmt.Printf("  SECOND HOLDER: %s was given to the rival while its holder still held it\n", lockName(t[0], t[1]))
		}
	}
	failed = failed || seconds > 0
	fmt.Printf("at the end: of %d sampled names, %d refused to the rival as held, %d given to it, %d timed out; of %d names given to the rival in all, %d to a second holder (its holder's Lost still open)\n", end.tried, end.refused, end.taken, end.other, len(takenNames), seconds)
	for k, h := range holders {
		line, err := h.ask("close")
		if err != nil {
			return fmt.Errorf("holder %d: %w", k, err)
		}
		fmt.Printf("holder %d: %s\n", k, line)
		h.cmd.Wait()
	}
	if failed {
		return errors.New("locks lost early or given to a second holder (above)")
	}
	fmt.Println("zero locks lost early, zero second holders")
	return nil
}

func loadAvg() string {
	b, _ := os.ReadFile("/proc/loadavg")
	f := strings.Fields(string(b))
	return strings.Join(f[:min(3, len(f))], " ")
}
