package cmpxchg_test

import (
	"os/exec"
	"strings"
	"testing"

	"github.com/cxkv/cxkv/api/cxkvpb"
	"github.com/cxkv/cxkv/cmpxchg"
)

// Codes are stored in the results the exactly-once table keeps (replicated
// state, snapshots). These are the numbers results were stored with before
// the state machine had codes of its own; a result stored then must read as
// the same refusal now.
func TestStoredCodesKeepTheirMeaning(t *testing.T) {
	for stored, want := range map[uint32]cmpxchg.Code{3: cmpxchg.CodeInvalid, 9: cmpxchg.CodeForgotten} {
		res := &cxkvpb.CommandResult{Result: &cxkvpb.CommandResult_Error{Error: &cxkvpb.CommandError{Code: stored, Message: "m"}}}
		err, ok := cmpxchg.ResultError(res).(*cmpxchg.Error)
		if !ok || err.Code != want || err.Message != "m" {
			t.Errorf("stored code %d reads as %#v; want %d", stored, cmpxchg.ResultError(res), want)
		}
	}
	if err := cmpxchg.ResultError(&cxkvpb.CommandResult{}); err != nil {
		t.Errorf("an applied command's result reads as refused: %v", err)
	}
}

// The state machine speaks no RPC: gRPC codes are the service's business.
func TestStateMachineDoesNotLinkGRPC(t *testing.T) {
	out, err := exec.Command("go", "list", "-deps", ".").CombinedOutput()
	if err != nil {
		t.Fatalf("go list: %v\n%s", err, out)
	}
	for _, dep := range strings.Fields(string(out)) {
		if strings.HasPrefix(dep, "google.golang.org/grpc") {
			t.Errorf("cmpxchg depends on %s", dep)
		}
	}
}
