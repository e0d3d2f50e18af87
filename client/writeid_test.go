package client

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/cxkv/cxkv/api/cxkvpb"
)

// beginSoon is begin that gives up quickly: a begin that must wait fails.
func beginSoon(t *testing.T, w *writeSeq) error {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Millisecond)
	defer cancel()
	_, err := w.begin(ctx)
	return err
}

// TestWritesInFlightStayInsideTheWindow: seq 1 of an id goes alone (it opens
// the session), and no more than maxWritesInFlight seqs are ever in flight,
// counted from the lowest unsettled one, so the cluster never forgets the
// result of a write still in flight.
func TestWritesInFlightStayInsideTheWindow(t *testing.T) {
	var w writeSeq
	w.init()
	ctx := context.Background()
	first, err := w.begin(ctx)
	if err != nil || first.GetSeq() != 1 || !first.GetNewClient() {
		t.Fatalf("first write id %v %v, want seq 1 opening the session", first, err)
	}
	if err := beginSoon(t, &w); !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("a second write went while seq 1 was unsettled (err %v)", err)
	}
	w.end(first)
	ids := map[uint64]bool{}
	lowest := uint64(0)
	for i := 0; i < maxWritesInFlight; i++ {
		id, err := w.begin(ctx)
		if err != nil {
			t.Fatalf("write %d of %d in flight: %v", i+1, maxWritesInFlight, err)
		}
		if id.GetNewClient() {
			t.Fatalf("seq %d says it opens the session", id.GetSeq())
		}
		if lowest == 0 {
			lowest = id.GetSeq()
		}
		if id.GetAckedSeq() != lowest-1 {
			t.Fatalf("seq %d acks %d with %d still in flight", id.GetSeq(), id.GetAckedSeq(), lowest)
		}
		ids[id.GetSeq()] = true
	}
	if err := beginSoon(t, &w); !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("write %d went in flight (err %v); the window allows %d", maxWritesInFlight+1, err, maxWritesInFlight)
	}
	// Settling any but the lowest does not open the window: the span counts.
	w.end(&cxkvpb.WriteID{ClientId: w.client, Seq: lowest + 5})
	if err := beginSoon(t, &w); !errors.Is(err, context.DeadlineExceeded) {
		t.Fatal("settling a middle seq let a write past the window")
	}
	w.end(&cxkvpb.WriteID{ClientId: w.client, Seq: lowest})
	id, err := w.begin(ctx)
	if err != nil || id.GetSeq() != lowest+maxWritesInFlight || id.GetAckedSeq() != lowest {
		t.Fatalf("after the lowest settled: %v %v", id, err)
	}
	if maxWritesInFlight >= cxkvpb.MaxResultsPerSession {
		t.Fatalf("the window of %d in flight reaches the cluster's %d results", maxWritesInFlight, cxkvpb.MaxResultsPerSession)
	}
}

// TestRotateSpendsTheID: after the cluster refuses a write for want of a
// session, the next write opens a fresh id at seq 1; settling a write of the
// spent id changes nothing.
func TestRotateSpendsTheID(t *testing.T) {
	var w writeSeq
	w.init()
	ctx := context.Background()
	a, _ := w.begin(ctx)
	w.end(a)
	b, _ := w.begin(ctx)
	c, _ := w.begin(ctx)
	w.rotate(b)
	w.rotate(c) // a second refusal of the same id must not spend the new one
	d, err := w.begin(ctx)
	if err != nil || d.GetClientId() == a.GetClientId() || d.GetSeq() != 1 || !d.GetNewClient() {
		t.Fatalf("after rotate: %v %v, want seq 1 of a fresh id", d, err)
	}
	w.end(c)
	if err := beginSoon(t, &w); !errors.Is(err, context.DeadlineExceeded) {
		t.Fatal("settling a spent id's write released the new id's seq 1 gate")
	}
}
