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

// dup — send the previous write again with the same write id, as a retry
// (so without new).
func handleDup(e *env, ctx context.Context, d *datadriven.TestData) (string, error) {
	if e.lastWrite == nil {
		return "", errors.New("dup: no write to repeat")
	}
	if e.lastWID != nil {
		e.lastWID.NewClient = false // a retry never opens a session
	}
	return e.lastWrite(ctx)
}

// stamp ms=N — the stamps of the next commands: the cluster time that ages
// sessions, and the proposer's wall clock.
func handleStamp(e *env, ctx context.Context, d *datadriven.TestData) (string, error) {
	m, ok := e.target.(*MachineTarget)
	if !ok {
		return "", errors.New("stamp needs the machine target")
	}
	ms, err := strconv.ParseInt(args(d)["ms"], 10, 64)
	m.stamp = ms
	return "", err
}
