package cmpxchgtest

import (
	"context"

	"github.com/cockroachdb/datadriven"
	"github.com/cxkv/cxkv/api/cxkvpb"
)

// get key=K [serializable]
func handleGet(e *env, ctx context.Context, d *datadriven.TestData) (string, error) {
	a := args(d)
	_, serial := a["serializable"]
	r, err := e.target.Get(ctx, &cxkvpb.GetRequest{Key: key(a), Serializable: serial})
	if err != nil {
		return "", err
	}
	return e.record(r.GetRecord()) + "\n", nil
}
