package main

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"text/tabwriter"
	"time"

	"github.com/cockroachdb/datadriven"
	"github.com/cxkv/cxkv/api/cxkvpb"
	"github.com/cxkv/cxkv/api/cxkvrpc"
	"github.com/cxkv/cxkv/client"
	"github.com/cxkv/cxkv/client/lock"
	"github.com/cxkv/cxkv/cmpxchg/cmpxchgtest"
	"github.com/cxkv/cxkv/raftnode/raftnodetest"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
)

// TestCLI runs the scripts in testdata/cli: each `cxkv ARGS` line runs the
// command line in-process against a fresh 3-member cluster and expects its
// stdout, its stderr (lines prefixed "stderr: ") and its exit code.
//
// Raft indexes differ from run to run (elections and renewals write to the
// log), so output never shows them raw: an index prints as @N, numbered in
// order of first appearance, and arguments and stdin may say @N for the
// index that printed as @N (an @N not seen yet is an index no key has).
// Times, lease left, pids, owner ids and the status columns that depend on
// elections print as placeholders. $EP1..$EP3 are the members; $DEAD is an address nothing listens on;
// $HANG is a member that takes writes and never answers, so their outcome
// is unknown. $EMPTY is an empty argument (a script line cannot quote one).
//
// Verbs besides cxkv:
//
//	cxkv-tty ARGS             like cxkv, with stdin a terminal (its input the typed lines)
//	lock name=N owner=O [mode=plain] [ttl=D]   take lock N with TryLock
//	lock-wait name=N owner=O  queue for lock N in the background
//	wait-lost name=N          wait until the held lock N is lost
//
// go test ./cmd/cxkv -run TestCLI -rewrite rewrites the expected output.
func TestCLI(t *testing.T) {
	files, err := filepath.Glob("testdata/cli/*.txt")
	if err != nil || len(files) == 0 {
		t.Fatalf("no scripts in testdata/cli (%v)", err)
	}
	for _, f := range files {
		t.Run(filepath.Base(f), func(t *testing.T) {
			t.Parallel()
			s := newScript(t)
			datadriven.RunTest(t, f, s.handle)
		})
	}
}

type script struct {
	t         *testing.T
	cluster   *raftnodetest.Cluster
	endpoints []string
	dead      string
	hang      string
	indexes   cmpxchgtest.IndexNames
	client    *client.Client
	locks     map[string]*lock.Lock
	host      string
}

func newScript(t *testing.T) *script {
	c := raftnodetest.Start(t, 3)
	s := &script{t: t, cluster: c, endpoints: c.Endpoints(), locks: map[string]*lock.Lock{}}
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	s.dead = l.Addr().String()
	l.Close()
	s.host, _ = os.Hostname()
	s.hang = startHangingMember(t)
	s.client, err = client.New(client.Config{Endpoints: s.endpoints})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.client.Close() })
	return s
}

func (s *script) handle(t *testing.T, d *datadriven.TestData) string {
	switch d.Cmd {
	case "cxkv", "cxkv-tty":
		return s.runCLI(t, d, d.Cmd == "cxkv-tty")
	case "lock", "lock-wait":
		return s.lock(t, d, d.Cmd == "lock-wait")
	case "wait-lost":
		name := arg(d, "name")
		l := s.locks[name]
		if l == nil {
			d.Fatalf(t, "no lock %q taken", name)
		}
		select {
		case <-l.Lost():
			return "lost " + name + "\n"
		case <-time.After(10 * time.Second):
			d.Fatalf(t, "lock %q not lost within 10s", name)
		}
	}
	d.Fatalf(t, "unknown verb %q", d.Cmd)
	return ""
}

func arg(d *datadriven.TestData, key string) string {
	for _, a := range d.CmdArgs {
		if a.Key == key {
			return strings.Join(a.Vals, ",")
		}
	}
	return ""
}

func (s *script) monitor(t *testing.T, d *datadriven.TestData) *lock.ProcessMonitor {
	opts := lock.Options{Name: arg(d, "owner"), TTL: 10 * time.Second}
	if v := arg(d, "ttl"); v != "" {
		ttl, err := time.ParseDuration(v)
		if err != nil {
			d.Fatalf(t, "ttl: %v", err)
		}
		opts.TTL = ttl
	}
	if arg(d, "mode") == "plain" {
		opts.Mode = lock.Plain
	}
	m := lock.NewProcessMonitor(s.client, opts)
	t.Cleanup(func() { m.Close() })
	return m
}

// lock takes a lock through the SDK, as a worker process would, so the
// locks commands have something to show.
func (s *script) lock(t *testing.T, d *datadriven.TestData, wait bool) string {
	name, owner := arg(d, "name"), arg(d, "owner")
	m := s.monitor(t, d)
	if !wait {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		l, err := m.TryLock(ctx, name)
		if err != nil {
			return fmt.Sprintf("error: %v\n", err)
		}
		s.locks[name] = l
		return fmt.Sprintf("locked %s token=%s\n", name, s.idx(l.Token()))
	}
	ctx, cancel := context.WithCancel(context.Background())
	t.Cleanup(cancel)
	go m.Lock(ctx, name)
	raftnodetest.Eventually(t, 10*time.Second, owner+" queued for "+name, func() bool {
		locks, err := lock.List(ctx, s.client, name)
		if err != nil {
			return false
		}
		for _, l := range locks {
			for _, w := range l.Waiters {
				if w.Name == owner {
					return true
				}
			}
		}
		return false
	})
	return fmt.Sprintf("%s waits for %s\n", owner, name)
}

var atIndex = regexp.MustCompile(`@(\d+)`)

// deref turns @N back into the index it stands for.
func (s *script) deref(text string) string {
	return atIndex.ReplaceAllStringFunc(text, func(m string) string {
		n, _ := strconv.Atoi(m[1:])
		return strconv.FormatUint(s.indexes.Index(n), 10)
	})
}

func (s *script) runCLI(t *testing.T, d *datadriven.TestData, tty bool) string {
	var args []string
	for _, a := range d.CmdArgs {
		v := s.deref(a.String())
		v = strings.ReplaceAll(v, "$DEAD", s.dead)
		v = strings.ReplaceAll(v, "$HANG", s.hang)
		v = strings.ReplaceAll(v, "$EMPTY", "")
		for i, ep := range s.endpoints {
			v = strings.ReplaceAll(v, fmt.Sprintf("$EP%d", i+1), ep)
		}
		args = append(args, v)
	}
	var stdout, stderr bytes.Buffer
	e := env{
		stdin:  strings.NewReader(s.deref(d.Input)),
		stdout: &stdout,
		stderr: &stderr,
		getenv: func(name string) string {
			if name == "CXKV_ENDPOINTS" {
				return strings.Join(s.endpoints, ",")
			}
			return ""
		},
		stdinTTY: tty,
	}
	if tty && d.Input != "" {
		e.stdin = strings.NewReader(d.Input + "\n")
	}
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	code := run(ctx, args, e)
	var out strings.Builder
	out.WriteString(s.normalise(stdout.String()))
	errText := s.normalise(stderr.String())
	for line := range strings.Lines(errText) {
		out.WriteString("stderr: " + strings.TrimSuffix(line, "\n") + "\n")
	}
	fmt.Fprintf(&out, "exit %d\n", code)
	return out.String()
}

// idx names a log index as @N.
func (s *script) idx(i uint64) string { return s.indexes.Name(i) }

var (
	addrRE    = regexp.MustCompile(`127\.0\.0\.1:\d+`)
	timeRE    = regexp.MustCompile(`\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(\.\d+)?(Z|[+-]\d\d:\d\d)`)
	headerRE  = regexp.MustCompile(`^[A-Z]+( {2,}[A-Z]+)+$`)
	lastErrRE = regexp.MustCompile(`(?m)^(cxkv: last error:) .*$`)
	// A call cut off by its deadline is DeadlineExceeded; the text gRPC
	// gives with it depends on where the cut fell (the context's own
	// error, or the stream reset the cancellation sent), so only the code
	// is the contract.
	deadlineRE = regexp.MustCompile(`(code = DeadlineExceeded desc = )[^)\n]*`)
	hostPidRE  = regexp.MustCompile(`host [^,\s]+, pid \d+`)
	queueRE    = regexp.MustCompile(`/\.lock/[0-9a-f]+`)
	// Index-bearing text: "index=5", "index 5", "token=5", "token 5",
	// JSON "index": 5 and friends. One expression, so that @N numbers in
	// reading order.
	indexRE = regexp.MustCompile(`((?:index|token)[= ]|"(?:index|create_index|token)": ?)(\d+)`)
	// JSON fields whose values depend on timing or the process.
	randomSessionRE = regexp.MustCompile(`("session": ?)"[0-9a-f]{32}"`)
	jsonVaryRE      = regexp.MustCompile(`("(?:term|commit_index|applied_index|leader|pid|time_left_ms|lag|db_size_bytes)": ?)\d+|("(?:owner|host|cluster_id|version)": ?)"[^"]*"|("role": ?)"` + memberRoles + `"`)
	// A member's raft role depends on elections; an auth role's name (cxkv
	// role ...) is the script's own and is kept.
	memberRoles  = `(?:leader|follower|candidate|pre-candidate|removed|halted)`
	memberRoleRE = regexp.MustCompile(`^` + memberRoles + `$`)
)

// columnRule says how a table column is normalised; columns without one
// are kept.
var columnRule = map[string]string{
	"INDEX": "idx", "CREATED": "idx", "TOKEN": "idx",
	"SINCE": "<time>", "LEFT": "<dur>", "PID": "<pid>", "HOST": "<host>",
	"TERM": "<n>", "COMMIT": "<n>", "APPLIED": "<n>", "ROLE": "<role>", "LEADER": "<id>",
	"LAG": "<n>", "DB": "<size>", "CLUSTER": "<id>", "VERSION": "<version>",
}

func (s *script) normalise(out string) string {
	if out == "" {
		return ""
	}
	var b strings.Builder
	lines := strings.Split(strings.TrimSuffix(out, "\n"), "\n")
	for i := 0; i < len(lines); i++ {
		if !headerRE.MatchString(lines[i]) {
			b.WriteString(s.normaliseText(lines[i]) + "\n")
			continue
		}
		j := i + 1
		for j < len(lines) && lines[j] != "" {
			j++
		}
		b.WriteString(s.normaliseTable(lines[i:j]))
		i = j - 1
	}
	return b.String()
}

func (s *script) addrs(text string) string {
	return addrRE.ReplaceAllStringFunc(text, func(a string) string {
		switch a {
		case s.dead:
			return "$DEAD"
		case s.hang:
			return "$HANG"
		}
		for i, ep := range s.endpoints {
			if a == ep {
				return fmt.Sprintf("$EP%d", i+1)
			}
		}
		return "<addr>"
	})
}

func (s *script) normaliseText(line string) string {
	line = s.addrs(line)
	line = lastErrRE.ReplaceAllString(line, "$1 <...>")
	line = deadlineRE.ReplaceAllString(line, "$1<...>")
	line = hostPidRE.ReplaceAllString(line, "host <host>, pid <pid>")
	line = queueRE.ReplaceAllString(line, "/.lock/<id>")
	line = timeRE.ReplaceAllString(line, "<time>")
	// A lock monitor's session id is random (NewSessionID); ids a script
	// chose stay as written.
	line = randomSessionRE.ReplaceAllString(line, `$1"<session>"`)
	line = indexRE.ReplaceAllStringFunc(line, func(m string) string {
		sub := indexRE.FindStringSubmatch(m)
		i, _ := strconv.ParseUint(sub[2], 10, 64)
		return sub[1] + s.idx(i)
	})
	return jsonVaryRE.ReplaceAllStringFunc(line, func(m string) string {
		sub := jsonVaryRE.FindStringSubmatch(m)
		if sub[1] != "" {
			return sub[1] + "<n>"
		}
		return sub[2] + sub[3] + `"<v>"`
	})
}

// normaliseTable cuts rows at the header's column offsets (values may hold
// single spaces), normalises cells by column, and aligns them again.
func (s *script) normaliseTable(lines []string) string {
	header := []rune(lines[0])
	var starts []int
	var names []string
	for i := 0; i < len(header); i++ {
		if header[i] != ' ' && (i == 0 || header[i-1] == ' ') {
			starts = append(starts, i)
			j := i
			for j < len(header) && header[j] != ' ' {
				j++
			}
			names = append(names, string(header[i:j]))
		}
	}
	var buf bytes.Buffer
	tw := tabwriter.NewWriter(&buf, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, strings.Join(names, "\t"))
	for _, line := range lines[1:] {
		row := []rune(line)
		var cells []string
		for k, st := range starts {
			end := len(row)
			if k+1 < len(starts) {
				end = min(starts[k+1], len(row))
			}
			cell := ""
			if st < len(row) {
				cell = strings.TrimSpace(string(row[st:end]))
			}
			switch rule := columnRule[names[k]]; {
			case rule == "idx":
				i, err := strconv.ParseUint(cell, 10, 64)
				if err == nil {
					cell = s.idx(i)
				}
			case rule == "<role>" && !memberRoleRE.MatchString(cell):
			case rule != "" && cell != "-" && cell != "":
				cell = rule
			default:
				cell = s.addrs(cell)
			}
			cells = append(cells, cell)
		}
		fmt.Fprintln(tw, strings.Join(cells, "\t"))
	}
	tw.Flush()
	var b strings.Builder
	for line := range strings.Lines(buf.String()) {
		b.WriteString(strings.TrimRight(line, " \n") + "\n")
	}
	return b.String()
}

// hangingKV accepts writes and never answers them: the client cannot tell
// whether they applied. It does answer the no-op Txn a client opens its
// session with, so the hanging write is the caller's own.
type hangingKV struct{ cxkvrpc.UnimplementedKVServer }

func (hangingKV) Txn(context.Context, *cxkvpb.TxnRequest) (*cxkvpb.TxnResponse, error) {
	return &cxkvpb.TxnResponse{Successful: true}, nil
}

func (hangingKV) Put(ctx context.Context, _ *cxkvpb.PutRequest) (*cxkvpb.PutResponse, error) {
	<-ctx.Done()
	return nil, ctx.Err()
}

func startHangingMember(t *testing.T) string {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	srv := grpc.NewServer()
	cxkvrpc.RegisterKVServer(srv, hangingKV{})
	go srv.Serve(l)
	t.Cleanup(srv.Stop)
	return l.Addr().String()
}

// TestExitCode covers the mapping of errors the scripts cannot provoke on
// demand: a write whose outcome is unknown.
func TestExitCode(t *testing.T) {
	for _, tc := range []struct {
		err  error
		want int
	}{
		{nil, exitOK},
		{errCompareFailed, exitCompareFail},
		{usageError{errors.New("x")}, exitUsage},
		{&outcomeUnknownError{what: "put k", check: "cxkv get k", cause: fmt.Errorf("wrapped: %w", client.ErrOutcomeUnknown)}, exitError},
		{fmt.Errorf("put: %w", client.ErrOutcomeUnknown), exitError},
		// An unknown outcome wraps the transport error that lost the
		// answer; it must not read as "unavailable, nothing applied".
		{fmt.Errorf("%w: %w", client.ErrOutcomeUnknown, status.Error(codes.Unavailable, "stream cut")), exitError},
		{status.Error(codes.Unavailable, "no leader"), exitUnavailable},
		{status.Error(codes.InvalidArgument, "key too long"), exitUsage},
		{context.DeadlineExceeded, exitUnavailable},
		{errors.New("other"), exitError},
	} {
		if got := exitCode(tc.err); got != tc.want {
			t.Errorf("exitCode(%v) = %d, want %d", tc.err, got, tc.want)
		}
	}
}
