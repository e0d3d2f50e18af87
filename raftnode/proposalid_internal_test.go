package raftnode

import (
	"testing"

	"github.com/cxkv/cxkv/api/cxkvpb"
)

// Ids carry the member in the top bits, never repeat within a run, and a
// new run (a restart: a new allocator on the same store) starts above every
// id the earlier run handed out, even one that stopped mid-block.
func TestProposalIDsNeverRepeatAcrossRuns(t *testing.T) {
	var mark uint64 // the store's durable mark
	reserve := func(n uint64) (uint64, error) { first := mark; mark += n; return first, nil }
	seen := map[uint64]bool{}
	for run := 0; run < 3; run++ {
		ids := proposalIDs{member: 5, reserve: reserve}
		for i := 0; i < 6; i++ {
			if i == 3 {
				ids.next = ids.end - 1 // skip to the block's last id: the next crosses
			}
			id, err := ids.id()
			if err != nil {
				t.Fatal(err)
			}
			if id>>proposalSeqBits != 5 || seen[id] {
				t.Fatalf("run %d: id %x repeats or lacks the member", run, id)
			}
			seen[id] = true
		}
	}
}

// A waiter handed a result of another kind refuses it instead of answering
// with (or dereferencing) a nil response.
func TestAnswerOfAnotherKindIsRefused(t *testing.T) {
	res := &cxkvpb.CommandResult{Result: &cxkvpb.CommandResult_Delete{Delete: &cxkvpb.DeleteResponse{}}}
	if out, err := answerOf(res, 9, (*cxkvpb.CommandResult).GetTxn); out != nil || codeOf(err).String() != "Internal" {
		t.Fatalf("a Delete result for a Txn = %v, %v; want Internal", out, err)
	}
	if out, err := answerOf(res, 9, (*cxkvpb.CommandResult).GetDelete); out == nil || err != nil {
		t.Fatalf("a Delete result for a Delete = %v, %v", out, err)
	}
}
