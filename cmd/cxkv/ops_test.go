package main

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/cxkv/cxkv/raftnode"
	"github.com/cxkv/cxkv/raftnode/raftnodetest"
)

// runWith runs the CLI in-process against endpoints and returns its exit
// code, stdout and stderr.
func runWith(endpoints []string, args ...string) (int, string, string) {
	return runQuiet(append([]string{"--endpoints", strings.Join(endpoints, ",")}, args...)...)
}

// endpoint health exits non-zero once one member is stopped; status exits
// 0 while a majority has a leader and 4 once two of three are stopped.
func TestEndpointHealthAndStatusWithMembersDown(t *testing.T) {
	c := raftnodetest.Start(t, 3)
	eps := c.Endpoints()
	raftnodetest.Eventually(t, 10*time.Second, "every member ready", func() bool {
		for _, m := range c.Members {
			if m.Ready() != nil {
				return false
			}
		}
		return true
	})
	code, out, errOut := runWith(eps, "endpoint", "health", "-o", "json")
	var rows []endpointHealth
	if err := json.Unmarshal([]byte(out), &rows); err != nil || code != 0 || len(rows) != 3 {
		t.Fatalf("endpoint health with all members up: exit %d, %q %q (%v)", code, out, errOut, err)
	}
	code, out, errOut = runWith(eps, "status")
	if code != 0 || !strings.Contains(out, raftnode.Build().Version) || !strings.Contains(out, "LAG") {
		t.Fatalf("status with all members up: exit %d\n%s%s", code, out, errOut)
	}

	c.Stop(2)
	code, out, _ = runWith(eps, "--timeout", "3s", "endpoint", "health")
	if code == 0 || !strings.Contains(out, eps[2]) || strings.Count(out, "unhealthy") != 1 {
		t.Fatalf("endpoint health with member 3 stopped: exit %d\n%s", code, out)
	}
	c.WaitLeader()
	if code, out, errOut := runWith(eps, "--timeout", "3s", "status"); code != 0 {
		t.Fatalf("status with a majority up: exit %d\n%s%s", code, out, errOut)
	}

	c.Stop(1)
	var lastOut, lastErr string
	raftnodetest.Eventually(t, 15*time.Second, "status exits 4 with two of three members stopped", func() bool {
		code, lastOut, lastErr = runWith(eps, "--timeout", "2s", "status")
		return code == exitUnavailable
	})
	if !strings.Contains(lastErr, "no leader") {
		t.Errorf("status without quorum says %q, want it to name the missing leader\n%s", lastErr, lastOut)
	}
}

// A server configured from the environment, with a flag overriding one
// variable, logs JSON (one object a line, the leader change among them) and
// serves /metrics and /readyz on the address the environment gave.
func TestServerEnvJSONLogsAndMetrics(t *testing.T) {
	bin, err := cxkvBinary()
	if err != nil {
		t.Fatal(err)
	}
	addrs := freeAddrs(t, 2)
	srv := exec.Command(bin, "server", "--log-format", "json")
	srv.Env = append(os.Environ(),
		"CXKV_DATA_DIR="+t.TempDir(),
		"CXKV_ADDR="+addrs[0],
		"CXKV_METRICS_ADDR="+addrs[1],
		"CXKV_LOG_FORMAT=text", // the flag wins
		"CXKV_SLOW_REQUEST=1ns",
	)
	var logs bytes.Buffer
	srv.Stderr = &logs
	if err := srv.Start(); err != nil {
		t.Fatal(err)
	}
	stopped := false
	defer func() {
		if !stopped {
			srv.Process.Kill()
			srv.Wait()
		}
	}()
	get := func(path string) (int, string) {
		resp, err := http.Get("http://" + addrs[1] + path)
		if err != nil {
			return 0, err.Error()
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return resp.StatusCode, string(b)
	}
	raftnodetest.Eventually(t, 20*time.Second, "/readyz 200 on CXKV_METRICS_ADDR", func() bool { code, _ := get("/readyz"); return code == 200 })
	if code, body := get("/metrics"); code != 200 || !strings.Contains(body, "cxkv_build_info{") || !strings.Contains(body, "cxkv_has_leader 1") {
		t.Fatalf("/metrics: %d\n%.2000s", code, body)
	}
	// One slow request (every request is, at 1ns) for the slow-request log.
	if code, out, errOut := runWith([]string{addrs[0]}, "put", "slow/key", "v", "--index", "0"); code != 0 {
		t.Fatalf("put: exit %d %s %s", code, out, errOut)
	}
	srv.Process.Signal(syscall.SIGTERM)
	if err := srv.Wait(); err != nil {
		t.Fatalf("SIGTERM: %v\n%s", err, logs.String())
	}
	stopped = true

	msgs := map[string]map[string]any{}
	sc := bufio.NewScanner(&logs)
	n := 0
	for sc.Scan() {
		n++
		var line map[string]any
		if err := json.Unmarshal(sc.Bytes(), &line); err != nil {
			t.Fatalf("log line %d is not JSON: %q", n, sc.Text())
		}
		if line["level"] == nil || line["msg"] == nil || line["time"] == nil {
			t.Fatalf("log line %d lacks time, level or msg: %q", n, sc.Text())
		}
		msgs[fmt.Sprint(line["msg"])] = line
	}
	for _, want := range []string{"starting", "became leader", "serving metrics and health", "slow request", "shutting down"} {
		if msgs[want] == nil {
			t.Errorf("no %q in the JSON log:\n%s", want, logs.String())
		}
	}
	if slow := msgs["slow request"]; slow != nil && (slow["key"] != "slow/key" || !strings.HasSuffix(fmt.Sprint(slow["method"]), "/Put")) {
		t.Errorf("slow request log names %v %v, want Put of slow/key", slow["method"], slow["key"])
	}
}

// A flag given on the command line wins over its variable, which wins over
// the default; a bad variable is a usage error naming it.
func TestServerFlagsFromEnv(t *testing.T) {
	cmd := newServerCmd(env{getenv: func(k string) string {
		return map[string]string{"CXKV_DATA_DIR": "from-env", "CXKV_TICK": "250ms", "CXKV_SNAPSHOT_ENTRIES": "7"}[k]
	}})
	if err := cmd.Flags().Parse([]string{"--tick", "50ms"}); err != nil {
		t.Fatal(err)
	}
	if err := flagsFromEnv(cmd.Flags(), func(k string) string {
		return map[string]string{"CXKV_DATA_DIR": "from-env", "CXKV_TICK": "250ms"}[k]
	}); err != nil {
		t.Fatal(err)
	}
	for flag, want := range map[string]string{"data-dir": "from-env", "tick": "50ms", "election-ticks": "10"} {
		if got := cmd.Flags().Lookup(flag).Value.String(); got != want {
			t.Errorf("--%s = %q, want %q", flag, got, want)
		}
	}
	code, _, errOut := runQuiet("server", "--tick", "x")
	if code != exitUsage {
		t.Errorf("bad --tick: exit %d", code)
	}
	var stderr bytes.Buffer
	code = run(context.Background(), []string{"server"}, env{stdin: strings.NewReader(""), stdout: io.Discard, stderr: &stderr,
		getenv: func(k string) string {
			if k == "CXKV_ELECTION_TICKS" {
				return "many"
			}
			return ""
		}})
	if code != exitUsage || !strings.Contains(stderr.String(), "CXKV_ELECTION_TICKS") {
		t.Errorf("bad CXKV_ELECTION_TICKS: exit %d, %q (and %q)", code, stderr.String(), errOut)
	}
	if !strings.Contains(cmd.Flags().Lookup("data-dir").Usage, "(env CXKV_DATA_DIR)") {
		t.Error("--data-dir's help does not name CXKV_DATA_DIR")
	}
}
