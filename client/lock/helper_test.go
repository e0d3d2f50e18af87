package lock_test

import (
	"bufio"
	"context"
	"fmt"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"time"

	"github.com/cxkv/cxkv/client"
	"github.com/cxkv/cxkv/client/lock"
)

// Some tests need real processes (to kill -9 one, or to contend from
// several). They re-run this test binary with helperEnv set; TestMain then
// runs runHelper instead of the tests.
const helperEnv = "CXKV_CLIENT_TEST_HELPER"

// helper starts this binary as a helper process in role with the given
// environment.
func helper(role string, env ...string) *exec.Cmd {
	cmd := exec.Command(os.Args[0], "-test.run=^$")
	cmd.Env = append(os.Environ(), append([]string{helperEnv + "=" + role}, env...)...)
	cmd.Stderr = os.Stderr
	return cmd
}

func runHelper(role string) int {
	c, err := client.New(client.Config{Endpoints: client.ParseEndpoints(os.Getenv("ENDPOINTS"))})
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	defer c.Close()
	ttl, _ := time.ParseDuration(os.Getenv("TTL"))
	mode := lock.Queue
	if os.Getenv("MODE") == "plain" {
		mode = lock.Plain
	}
	mon := lock.NewProcessMonitor(c, lock.Options{TTL: ttl, Mode: mode})
	ctx := context.Background()
	switch role {
	case "hold":
		// Take the lock, say so, and hold it until killed.
		held, err := mon.Lock(ctx, os.Getenv("LOCK"))
		if err != nil {
			fmt.Fprintln(os.Stderr, err)
			return 1
		}
		fmt.Printf("locked %d\n", held.Token())
		select {}
	case "pause":
		// Take the lock, say so, then on a line from stdin try a guarded
		// write of the resource and say what happened.
		held, err := mon.Lock(ctx, os.Getenv("LOCK"))
		if err != nil {
			fmt.Fprintln(os.Stderr, err)
			return 1
		}
		fmt.Printf("locked %d\n", held.Token())
		bufio.NewReader(os.Stdin).ReadString('\n')
		if _, err := held.Put(ctx, os.Getenv("RESOURCE"), []byte("first holder")); err != nil {
			fmt.Printf("rejected: %v\n", err)
			return 0
		}
		fmt.Println("written")
		return 0
	case "count":
		// The critical-section workload of TestMutualExclusion; one line per
		// acquisition: "<token> <counter value read>".
		n, _ := strconv.Atoi(os.Getenv("ROUNDS"))
		for range n {
			tok, read, err := increment(ctx, c, mon, os.Getenv("LOCK"), os.Getenv("COUNTER"))
			if err != nil {
				fmt.Fprintln(os.Stderr, err)
				return 1
			}
			fmt.Printf("%d %d\n", tok, read)
		}
		return 0
	}
	fmt.Fprintln(os.Stderr, "unknown helper role", role)
	return 2
}

// increment takes the lock and increments the counter with a plain read and
// an unconditional write: only the lock keeps updates from being lost.
func increment(ctx context.Context, c *client.Client, mon *lock.ProcessMonitor, lockName, counter string) (token, read uint64, err error) {
	held, err := mon.Lock(ctx, lockName)
	if err != nil {
		return 0, 0, err
	}
	defer held.Unlock()
	rec, err := c.Get(ctx, counter)
	if err != nil {
		return 0, 0, err
	}
	if rec.Exists() {
		if read, err = strconv.ParseUint(string(rec.Value), 10, 64); err != nil {
			return 0, 0, err
		}
	}
	next := strconv.FormatUint(read+1, 10)
	if _, err := c.Txn(ctx, nil, []client.Op{client.PutOp(counter, []byte(next), 0)}); err != nil {
		return 0, 0, err
	}
	return held.Token(), read, nil
}

func parseCounts(out string) (pairs [][2]uint64, err error) {
	for _, line := range strings.Split(strings.TrimSpace(out), "\n") {
		if line == "" {
			continue
		}
		var tok, read uint64
		if _, err := fmt.Sscanf(line, "%d %d", &tok, &read); err != nil {
			return nil, fmt.Errorf("helper line %q: %v", line, err)
		}
		pairs = append(pairs, [2]uint64{tok, read})
	}
	return pairs, nil
}
