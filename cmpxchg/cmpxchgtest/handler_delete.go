package cmpxchgtest

import (
	"context"

	"github.com/cockroachdb/datadriven"
	"github.com/cxkv/cxkv/api/cxkvpb"
)

// delete key=K expect=@N [client=C seq=S acked=A]
func handleDelete(e *env, ctx context.Context, d *datadriven.TestData) (string, error) {
	a := args(d)
	expect, err := e.index(orZero(a["expect"]))
	if err != nil {
		return "", err
	}
	req := &cxkvpb.DeleteRequest{Key: key(a), ExpectIndex: expect, WriteId: e.writeID(a)}
	e.lastWrite = func(ctx context.Context) (string, error) {
		r, err := e.target.Delete(ctx, req)
		if err != nil {
			return "", err
		}
		if r.GetSuccessful() {
			return "ok: deleted " + e.record(r.GetRecord()) + " at " + e.idx(r.GetIndex()) + "\n", nil
		}
		return "failed: " + e.record(r.GetRecord()) + "\n", nil
	}
	return e.lastWrite(ctx)
}
