package client

import (
	"context"
	"strconv"
	"testing"

	"github.com/cxkv/cxkv/api/cxkvpb"
	"github.com/cxkv/cxkv/api/cxkvrpc"
	"google.golang.org/genproto/googleapis/rpc/errdetails"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
)

// fakeMembers is a Client on n endpoints whose member ids it already knows
// (1..n, in order); no attempt reaches them, a test's attempt function
// answers for them.
func fakeMembers(t *testing.T, n int) *Client {
	t.Helper()
	var eps []string
	for i := range n {
		eps = append(eps, "127.0.0.1:"+strconv.Itoa(1+i)) // never dialled
	}
	c, err := New(Config{Endpoints: eps})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	for i, ep := range c.endpoints {
		ep.id.Store(uint64(i + 1))
	}
	return c
}

// unavailable is a member's Unavailable answer naming leader (0: none).
func unavailable(t *testing.T, leader uint64) error {
	t.Helper()
	st := status.New(codes.Unavailable, "no leader")
	if leader == 0 {
		return st.Err()
	}
	st, err := st.WithDetails(&errdetails.ErrorInfo{Domain: cxkvpb.ErrorDomain, Reason: cxkvpb.ReasonUnavailable,
		Metadata: map[string]string{cxkvpb.MetaLeader: strconv.FormatUint(leader, 10)}})
	if err != nil {
		t.Fatal(err)
	}
	return st.Err()
}

// attempts runs a read under the retry policy with answer deciding each
// attempt from the member it went to (1-based), and returns the members in
// the order they were tried.
func attempts(t *testing.T, c *Client, answer func(try, member int) error) []int {
	t.Helper()
	var tried []int
	err := c.do(context.Background(), nil, func(_ context.Context, kv cxkvrpc.KVClient) (*cxkvpb.Header, error) {
		for i, ep := range c.endpoints {
			if ep.kv == kv {
				tried = append(tried, i+1)
				return nil, answer(len(tried), i+1)
			}
		}
		t.Fatal("an attempt on no endpoint")
		return nil, nil
	})
	if err != nil {
		t.Fatalf("the call failed: %v (tried %v)", err, tried)
	}
	return tried
}

// A member that cannot serve a call names the leader it knows; the next
// attempt goes straight there instead of to each member in turn.
func TestRetryGoesStraightToTheNamedLeader(t *testing.T) {
	c := fakeMembers(t, 5)
	tried := attempts(t, c, func(_, member int) error {
		switch member {
		case 4:
			return nil
		case 1:
			return unavailable(t, 4)
		}
		return unavailable(t, 0)
	})
	if len(tried) != 2 || tried[1] != 4 {
		t.Fatalf("tried members %v, want 1 then the named leader 4", tried)
	}
}

// The pause that grew while the cluster had no leader ends once a member
// names one: the named leader is tried at once, whatever the round.
func TestRetryPauseEndsWhenALeaderIsNamed(t *testing.T) {
	c := fakeMembers(t, 3)
	const leaderless = 12 // four rounds: the pause has doubled three times
	tried := attempts(t, c, func(try, member int) error {
		switch {
		case try <= leaderless:
			return unavailable(t, 0)
		case member == 3:
			return nil
		}
		return unavailable(t, 3)
	})
	hinted := tried[leaderless]
	if rest := tried[leaderless+1:]; hinted == 3 || len(rest) != 1 || rest[0] != 3 {
		t.Fatalf("after the leaderless rounds, tried %v; want member %d (naming 3) then 3", tried[leaderless:], hinted)
	}
}
