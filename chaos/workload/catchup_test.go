package workload

import (
	"context"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/cxkv/cxkv/client"
	"github.com/cxkv/cxkv/raftnode"
	"github.com/cxkv/cxkv/raftnode/raftnodetest"
)

// membersReach must fail while one member is cut off behind the others,
// naming it, and pass once it has caught up: a quorum that went on is not a
// healed cluster.
func TestMembersReachWaitsForEveryMember(t *testing.T) {
	net := raftnodetest.NewNet(1)
	cl := raftnodetest.Start(t, 3, func(cfg *raftnode.Config) { cfg.WrapTransport = net.Wrap(cfg.ID) })
	leader := cl.WaitLeader()
	behind := (leader + 1) % 3
	c, err := client.New(client.Config{Endpoints: cl.Endpoints()})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	var ids []uint64
	for i := range 3 {
		ids = append(ids, cl.Config(i).ID)
	}
	net.Isolate(cl.Config(behind).ID, ids)
	ctx := context.Background()
	index, err := WriteUntil(ctx, c, "k", 10*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	short, cancel := context.WithTimeout(ctx, time.Second)
	err = membersReach(short, c, index)
	cancel()
	if err == nil {
		t.Fatal("membersReach passed with a member cut off behind the others")
	}
	// The report gives each member's applied index: the member cut off
	// must show one below the write's.
	addr := cl.Endpoints()[behind]
	_, entry, ok := strings.Cut(err.Error(), addr+" ")
	entry, _, _ = strings.Cut(entry, ", ")
	var id, applied uint64
	var role string
	if !ok {
		t.Fatalf("the error does not report the member left behind (%s): %v", addr, err)
	}
	if _, serr := fmt.Sscanf(entry, "m%d %s applied %d", &id, &role, &applied); serr != nil || applied >= index {
		t.Fatalf("the member left behind is reported as %q (applied %d, the write at %d): %v", entry, applied, index, err)
	}
	net.Heal()
	long, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	if err := membersReach(long, c, index); err != nil {
		t.Fatalf("after healing: %v", err)
	}
}
