package cmpxchgtest

import (
	"context"
	"errors"
	"strconv"

	"github.com/cockroachdb/datadriven"
	"github.com/cxkv/cxkv/api/cxkvpb"
)

// Verbs only the bare state machine has: they reach below the API.

// expire key=K index=@N — what the leader proposes when a TTL runs out.
func handleExpire(e *env, ctx context.Context, d *datadriven.TestData) (string, error) {
	m, ok := e.target.(*MachineTarget)
	if !ok {
		return "", errors.New("expire needs the machine target")
	}
	a := args(d)
	i, err := e.index(a["index"])
	if err != nil {
		return "", err
	}
	at, err := m.apply(&cxkvpb.Command{Op: &cxkvpb.Command_Expire{Expire: &cxkvpb.ExpireCommand{Key: key(a), Index: i}}})
	if err != nil {
		return "", err
	}
	return "applied at " + e.idx(at.index) + "\n", nil
}

// dup — send the previous write again, unchanged (same write id).
func handleDup(e *env, ctx context.Context, d *datadriven.TestData) (string, error) {
	if e.lastWrite == nil {
		return "", errors.New("dup: no write to repeat")
	}
	return e.lastWrite(ctx)
}

// stamp ms=N — the proposer's wall clock for the next commands.
func handleStamp(e *env, ctx context.Context, d *datadriven.TestData) (string, error) {
	m, ok := e.target.(*MachineTarget)
	if !ok {
		return "", errors.New("stamp needs the machine target")
	}
	ms, err := strconv.ParseInt(args(d)["ms"], 10, 64)
	m.stamp = ms
	return "", err
}
