package cmpxchgtest

import (
	"context"
	"fmt"
	"strconv"
	"strings"

	"github.com/cockroachdb/datadriven"
	"github.com/cxkv/cxkv/api/cxkvpb"
)

// sessions [prefix=P] [after=ID] [limit=N] — the sessions, each with its
// key's record and the keys attached to it.
func handleSessions(e *env, ctx context.Context, d *datadriven.TestData) (string, error) {
	a := args(d)
	limit, _ := strconv.Atoi(a["limit"])
	r, err := e.target.Sessions(ctx, &cxkvpb.SessionsRequest{Prefix: a["prefix"], After: a["after"], Limit: uint32(limit)})
	if err != nil {
		return "", err
	}
	var b strings.Builder
	for _, s := range r.GetSessions() {
		fmt.Fprintf(&b, "%s: %s attached=%d bytes=%d\n", s.GetId(), e.record(s.GetRecord()), s.GetAttachedKeys(), s.GetAttachedBytes())
	}
	if r.GetMore() {
		b.WriteString("(more)\n")
	}
	if b.Len() == 0 {
		return "(none)\n", nil
	}
	return b.String(), nil
}
