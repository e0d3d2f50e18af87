package raftnode_test

import (
	"context"
	"testing"
	"time"

	"github.com/cxkv/cxkv/api/cxkvpb"
	"github.com/cxkv/cxkv/raftnode"
	"github.com/cxkv/cxkv/raftnode/raftnodetest"
	"google.golang.org/protobuf/proto"
)

// TestClockJumpDoesNotExpireSessions: one member's wall clock runs an hour
// ahead (the session TTL). Writes it proposes must not age the cluster's
// sessions by its clock: a client the rest of the cluster heard from a
// moment ago keeps its session, so its retry is answered with the original
// result.
func TestClockJumpDoesNotExpireSessions(t *testing.T) {
	const skewed = 3 // member id
	c := raftnodetest.Start(t, 3, func(cfg *raftnode.Config) {
		if cfg.ID == skewed {
			cfg.WallClock = func() time.Time { return time.Now().Add(time.Hour + time.Minute) }
		}
	})
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()

	first := &cxkvpb.PutRequest{Key: "a", Value: []byte("1"), WriteId: &cxkvpb.WriteID{ClientId: 11, Seq: 1, NewClient: true}}
	orig, err := c.Client(0).Put(ctx, first)
	if err != nil || !orig.GetSuccessful() {
		t.Fatalf("first write: %v %v", orig, err)
	}
	// Another client writes through the skewed member, which proposes it
	// (a follower or the leader: whoever takes a request stamps it).
	if _, err := c.Client(skewed-1).Put(ctx, &cxkvpb.PutRequest{Key: "b", Value: []byte("1"), WriteId: &cxkvpb.WriteID{ClientId: 12, Seq: 1, NewClient: true}}); err != nil {
		t.Fatal(err)
	}
	retry := proto.Clone(first).(*cxkvpb.PutRequest)
	retry.WriteId.NewClient = false
	got, err := c.Client(1).Put(ctx, retry)
	if err != nil {
		t.Fatalf("retry of a write the cluster heard a moment ago: %v", err)
	}
	if !got.GetSuccessful() || got.GetRecord().GetIndex() != orig.GetRecord().GetIndex() {
		t.Fatalf("retry answered %v, want the original answer %v", got, orig)
	}
}
