// Package cmpxchgtest runs the semantics scripts in testdata/cmpxchg against
// any Target: the bare state machine or a live cluster. The same scripts give
// the same output on both, because they never print raw log indexes: an index
// prints as @N, numbered in order of first appearance, and commands refer to
// indexes the same way. Indexes only grow, so the numbering keeps their order.
package cmpxchgtest

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/cockroachdb/datadriven"
	"github.com/cxkv/cxkv/api/cxkvpb"
	"github.com/cxkv/cxkv/cmpxchg"
	"github.com/cxkv/cxkv/raftnode"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"
)

// Target is what a script drives.
type Target interface {
	Get(context.Context, *cxkvpb.GetRequest) (*cxkvpb.GetResponse, error)
	Put(context.Context, *cxkvpb.PutRequest) (*cxkvpb.PutResponse, error)
	Delete(context.Context, *cxkvpb.DeleteRequest) (*cxkvpb.DeleteResponse, error)
	List(context.Context, *cxkvpb.ListRequest) (*cxkvpb.ListResponse, error)
	Txn(context.Context, *cxkvpb.TxnRequest) (*cxkvpb.TxnResponse, error)
	Sessions(context.Context, *cxkvpb.SessionsRequest) (*cxkvpb.SessionsResponse, error)
}

// RunScripts runs every *.txt file directly in dir, each against a new target.
func RunScripts(t *testing.T, dir string, newTarget func(t *testing.T) Target) {
	files, err := filepath.Glob(filepath.Join(dir, "*.txt"))
	if err != nil || len(files) == 0 {
		t.Fatalf("no scripts in %s (%v)", dir, err)
	}
	sort.Strings(files)
	for _, f := range files {
		t.Run(filepath.Base(f), func(t *testing.T) {
			e := &env{target: newTarget(t)}
			datadriven.RunTest(t, f, e.handle)
		})
	}
}

type env struct {
	target    Target
	indexes   IndexNames
	lastWrite func(context.Context) (string, error) // for the dup verb
	lastWID   *cxkvpb.WriteID                       // its write id
	token     string                                // sent with every request (login)
}

var handlers = map[string]func(*env, context.Context, *datadriven.TestData) (string, error){
	"get":      handleGet,
	"put":      handlePut,
	"delete":   handleDelete,
	"list":     handleList,
	"txn":      handleTxn,
	"sessions": handleSessions,
	"expire":   handleExpire,
	"dup":      handleDup,
	"stamp":    handleStamp,

	"auth-enable":   handleAuthEnable,
	"auth-disable":  handleAuthDisable,
	"auth-status":   handleAuthStatus,
	"user-add":      handleUserAdd,
	"user-delete":   handleUserDelete,
	"user-password": handleUserPassword,
	"user-grant":    handleUserGrant,
	"user-revoke":   handleUserRevoke,
	"role-add":      handleRoleAdd,
	"role-delete":   handleRoleDelete,
	"role-grant":    handleRoleGrant,
	"role-revoke":   handleRoleRevoke,
	"login":         handleLogin,
	"logout":        handleLogout,
}

// WithToken returns ctx carrying token the way a member reads it
// ("authorization: Bearer <token>"); "" leaves ctx as it is.
func WithToken(ctx context.Context, token string) context.Context {
	if token == "" {
		return ctx
	}
	return metadata.AppendToOutgoingContext(ctx, "authorization", "Bearer "+token)
}

func (e *env) handle(t *testing.T, d *datadriven.TestData) string {
	h, ok := handlers[d.Cmd]
	if !ok {
		d.Fatalf(t, "unknown verb %q", d.Cmd)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	out, err := h(e, WithToken(ctx, e.token), d)
	if refusal := (*cmpxchg.Error)(nil); errors.As(err, &refusal) {
		// The state machine's refusal, as a member would report it.
		err = raftnode.StatusOf(err)
	}
	if err != nil {
		if s, ok := status.FromError(err); ok {
			return fmt.Sprintf("error: %s: %s\n", s.Code(), s.Message())
		}
		d.Fatalf(t, "%s: %v", d.Pos, err)
	}
	return out
}

// idx names a log index as @N.
func (e *env) idx(i uint64) string { return e.indexes.Name(i) }

// index reads @N (or 0). An @N not seen yet stands for an index that no key
// has, so scripts can ask for a compare that must fail.
func (e *env) index(s string) (uint64, error) {
	if s == "0" {
		return 0, nil
	}
	n, err := strconv.Atoi(strings.TrimPrefix(s, "@"))
	if !strings.HasPrefix(s, "@") || err != nil {
		return 0, fmt.Errorf("index %q: want 0 or @N", s)
	}
	return e.indexes.Index(n), nil
}

func (e *env) record(r *cxkvpb.Record) string {
	if r.GetIndex() == 0 {
		return r.GetKey() + " absent"
	}
	s := fmt.Sprintf("%s=%s index=%s create=%s", r.GetKey(), r.GetValue(), e.idx(r.GetIndex()), e.idx(r.GetCreateIndex()))
	if r.GetTtlMs() > 0 {
		s += fmt.Sprintf(" ttl=%dms", r.GetTtlMs())
	}
	if r.GetSession() != "" {
		s += " session=" + r.GetSession()
	}
	return s
}

// args parses key=value arguments, keeping their text as written.
func args(d *datadriven.TestData) map[string]string {
	m := map[string]string{}
	for _, a := range d.CmdArgs {
		m[a.Key] = strings.Join(a.Vals, ",")
	}
	return m
}

// writeID is the write id of a write command; dup resends it as a retry.
func (e *env) writeID(a map[string]string) *cxkvpb.WriteID {
	e.lastWID = nil
	if a["client"] == "" {
		return nil
	}
	c, _ := strconv.ParseUint(a["client"], 10, 64)
	s, _ := strconv.ParseUint(a["seq"], 10, 64)
	k, _ := strconv.ParseUint(a["acked"], 10, 64)
	_, fresh := a["new"] // the first attempt of a new client's seq 1
	e.lastWID = &cxkvpb.WriteID{ClientId: c, Seq: s, AckedSeq: k, NewClient: fresh}
	return e.lastWID
}

// value expands repeat=N into a value of N bytes, for the limit scripts.
func value(a map[string]string, name string) []byte {
	if n, err := strconv.Atoi(a[name+"-repeat"]); err == nil {
		return []byte(strings.Repeat("x", n))
	}
	return []byte(a[name])
}

func key(a map[string]string) string {
	if n, err := strconv.Atoi(a["key-repeat"]); err == nil {
		return strings.Repeat("k", n)
	}
	return strings.ReplaceAll(a["key"], `\0`, "\x00")
}

func int64Arg(a map[string]string, name string) int64 {
	v, _ := strconv.ParseInt(a[name], 10, 64)
	return v
}

// Dir is the scripts folder, found from the calling package's directory.
func Dir(rel string) string {
	if _, err := os.Stat(rel); err == nil {
		return rel
	}
	return filepath.Join("..", rel)
}
