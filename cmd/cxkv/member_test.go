package main

import (
	"encoding/json"
	"net"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/cxkv/cxkv/raftnode/raftnodetest"
)

// member list, add, promote, remove and move-leader through the CLI, and the
// refusals an operator meets: an id that exists, a learner that has not
// caught up, the leader's own removal.
func TestMemberCommands(t *testing.T) {
	c := raftnodetest.Start(t, 3)
	eps := c.Endpoints()
	var list struct {
		ClusterID string      `json:"cluster_id"`
		Members   []memberRow `json:"members"`
	}
	raftnodetest.Eventually(t, 10*time.Second, "member list shows three started voters and a leader", func() bool {
		code, out, _ := runWith(eps, "member", "list", "-o", "json")
		if code != 0 || json.Unmarshal([]byte(out), &list) != nil || len(list.Members) != 3 {
			return false
		}
		leaders := 0
		for _, m := range list.Members {
			if !m.Started || m.Role != "voter" || m.Applied == nil {
				return false
			}
			if m.Leader {
				leaders++
			}
		}
		return leaders == 1
	})
	if code, out, errOut := runWith(eps, "member", "list"); code != 0 || !strings.Contains(out, "LAG") || !strings.Contains(out, "cluster "+list.ClusterID) {
		t.Fatalf("member list: exit %d\n%s%s", code, out, errOut)
	}

	code, _, errOut := runWith(eps, "member", "add", "--id", "2", "--addr", "127.0.0.1:1")
	if code == 0 || !strings.Contains(errOut, "member 2 already exists") {
		t.Fatalf("add of an existing id: exit %d, %q", code, errOut)
	}
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := l.Addr().String()
	l.Close()
	code, out, errOut := runWith(eps, "member", "add", "--id", "4", "--addr", addr, "--learner")
	if code != 0 || !strings.Contains(out, "--join "+strings.Join(eps, ",")) || !strings.Contains(out, "--cluster-id "+list.ClusterID) {
		t.Fatalf("member add: exit %d\n%s%s", code, out, errOut)
	}
	code, _, errOut = runWith(eps, "member", "promote", "4")
	if code == 0 || !strings.Contains(errOut, "has not caught up") {
		t.Fatalf("promote of a learner that never ran: exit %d, %q", code, errOut)
	}
	if code, out, errOut := runWith(eps, "member", "remove", "4"); code != 0 || !strings.Contains(out, "removed member 4") {
		t.Fatalf("member remove: exit %d\n%s%s", code, out, errOut)
	}

	lead := c.WaitLeader()
	code, _, errOut = runWith(eps, "member", "remove", strconv.Itoa(lead+1))
	if code == 0 || !strings.Contains(errOut, "move leadership first") {
		t.Fatalf("remove of the leader: exit %d, %q", code, errOut)
	}
	to := (lead + 1) % 3
	if code, out, errOut := runWith(eps, "move-leader", strconv.Itoa(to+1)); code != 0 || !strings.Contains(out, "member "+strconv.Itoa(to+1)+" leads") {
		t.Fatalf("move-leader: exit %d\n%s%s", code, out, errOut)
	}
	if got := c.WaitLeader(); got != to {
		t.Fatalf("after move-leader %d, member %d leads", to+1, got+1)
	}
}
