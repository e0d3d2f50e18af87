package cmpxchgtest

import (
	"context"
	"strconv"
	"strings"

	"github.com/cockroachdb/datadriven"
	"github.com/cxkv/cxkv/api/cxkvpb"
)

// list [prefix=P] [after=K] [limit=N]
func handleList(e *env, ctx context.Context, d *datadriven.TestData) (string, error) {
	a := args(d)
	limit, _ := strconv.Atoi(a["limit"])
	r, err := e.target.List(ctx, &cxkvpb.ListRequest{Prefix: a["prefix"], After: a["after"], Limit: uint32(limit)})
	if err != nil {
		return "", err
	}
	var b strings.Builder
	for _, rec := range r.GetRecords() {
		b.WriteString(e.record(rec) + "\n")
	}
	if r.GetMore() {
		b.WriteString("(more)\n")
	}
	if b.Len() == 0 {
		return "(none)\n", nil
	}
	return b.String(), nil
}
