package cmpxchgtest

import (
	"context"

	"github.com/cockroachdb/datadriven"
	"github.com/cxkv/cxkv/api/cxkvpb"
)

// put key=K value=V [expect=0|@N] [ttl=MS] [session=ID] [client=C seq=S acked=A]
func handlePut(e *env, ctx context.Context, d *datadriven.TestData) (string, error) {
	a := args(d)
	expect, err := e.index(orZero(a["expect"]))
	if err != nil {
		return "", err
	}
	req := &cxkvpb.PutRequest{Key: key(a), Value: value(a, "value"), ExpectIndex: expect, TtlMs: int64Arg(a, "ttl"), Session: a["session"], WriteId: e.writeID(a)}
	e.lastWrite = func(ctx context.Context) (string, error) {
		r, err := e.target.Put(ctx, req)
		if err != nil {
			return "", err
		}
		return e.outcome(r.GetSuccessful(), r.GetRecord()), nil
	}
	return e.lastWrite(ctx)
}

func (e *env) outcome(ok bool, r *cxkvpb.Record) string {
	if ok {
		return "ok: " + e.record(r) + "\n"
	}
	return "failed: " + e.record(r) + "\n"
}

func orZero(s string) string {
	if s == "" {
		return "0"
	}
	return s
}
