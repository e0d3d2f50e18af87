package raftnode_test

import (
	"context"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/cxkv/cxkv/api/cxkvpb"
	"github.com/cxkv/cxkv/cmpxchg/cmpxchgtest"
	"github.com/cxkv/cxkv/raftnode/raftnodetest"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
)

func (t *clusterTarget) Authenticate(ctx context.Context, r *cxkvpb.AuthenticateRequest) (*cxkvpb.AuthenticateResponse, error) {
	return t.kv().Authenticate(ctx, r)
}
func (t *clusterTarget) AuthChange(ctx context.Context, r *cxkvpb.AuthChangeRequest) (*cxkvpb.AuthChangeResponse, error) {
	return t.kv().AuthChange(ctx, r)
}
func (t *clusterTarget) AuthStatus(ctx context.Context, r *cxkvpb.AuthStatusRequest) (*cxkvpb.AuthStatusResponse, error) {
	return t.kv().AuthStatus(ctx, r)
}

// The auth scripts: users, roles, grants and the checks, each request on the
// next member in turn.
func TestAuthScriptsOnLiveCluster(t *testing.T) {
	if testing.Short() {
		t.Skip("the race pass (-short) runs these scripts through the same handlers and interceptors in TestAuthScriptsOverCallsStream; runs without -short")
	}
	cmpxchgtest.RunScripts(t, "../testdata/auth", func(t *testing.T) cmpxchgtest.Target {
		return &clusterTarget{c: raftnodetest.Start(t, 3, patientElections)}
	})
}

// asUser is a target whose every request carries one user's token.
type asUser struct {
	*clusterTarget
	token string
}

func (t *asUser) ctx(ctx context.Context) context.Context { return cmpxchgtest.WithToken(ctx, t.token) }

func (t *asUser) Get(ctx context.Context, r *cxkvpb.GetRequest) (*cxkvpb.GetResponse, error) {
	return t.clusterTarget.Get(t.ctx(ctx), r)
}
func (t *asUser) Put(ctx context.Context, r *cxkvpb.PutRequest) (*cxkvpb.PutResponse, error) {
	return t.clusterTarget.Put(t.ctx(ctx), r)
}
func (t *asUser) Delete(ctx context.Context, r *cxkvpb.DeleteRequest) (*cxkvpb.DeleteResponse, error) {
	return t.clusterTarget.Delete(t.ctx(ctx), r)
}
func (t *asUser) List(ctx context.Context, r *cxkvpb.ListRequest) (*cxkvpb.ListResponse, error) {
	return t.clusterTarget.List(t.ctx(ctx), r)
}
func (t *asUser) Txn(ctx context.Context, r *cxkvpb.TxnRequest) (*cxkvpb.TxnResponse, error) {
	return t.clusterTarget.Txn(t.ctx(ctx), r)
}

// The whole semantics suite gives the same answers with auth enabled, run
// by a user with admin on every key.
func TestScriptsOnLiveClusterWithAuth(t *testing.T) {
	if testing.Short() {
		t.Skip("the race pass (-short) runs token checks per call in TestAuthScriptsOverCallsStream and the suite under auth in TestScriptsOnLiveClusterWithTLSAndAuth; runs without -short")
	}
	cmpxchgtest.RunScripts(t, "../testdata/cmpxchg", func(t *testing.T) cmpxchgtest.Target {
		c := &clusterTarget{c: raftnodetest.Start(t, 3, patientElections)}
		return &asUser{clusterTarget: c, token: enableAuth(t, c)}
	})
}

// And on a cluster with mutual TLS on both ports (client certificates
// required) and auth enabled, run by the identity of the client's
// certificate: its common name, root, the user with admin on every key.
// No request carries a token.
func TestScriptsOnLiveClusterWithTLSAndAuth(t *testing.T) {
	cmpxchgtest.RunScripts(t, "../testdata/cmpxchg", func(t *testing.T) cmpxchgtest.Target {
		pki := raftnodetest.NewPKI(t)
		// In the race pass too: elections as patient as the stream suites'.
		cl := raftnodetest.Start(t, 3, pki.Option(), patientElections)
		cl.UseClientTLS(pki.ClientTLS("root"))
		c := &clusterTarget{c: cl}
		enableAuth(t, c)
		return c
	})
}

// enableAuth makes the user root with admin on every key, enables auth, and
// returns root's token.
func enableAuth(t *testing.T, c *clusterTarget) string {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	var enabled uint64 // the index of the last change, which enables auth
	for _, r := range []*cxkvpb.AuthChangeRequest{
		{Action: cxkvpb.AuthChangeRequest_ROLE_ADD, Role: "root"},
		{Action: cxkvpb.AuthChangeRequest_ROLE_GRANT, Role: "root", Prefix: "", Permission: cxkvpb.Grant_ADMIN},
		{Action: cxkvpb.AuthChangeRequest_USER_ADD, User: "root", Password: "rootpw"},
		{Action: cxkvpb.AuthChangeRequest_USER_GRANT, User: "root", Role: "root"},
		{Action: cxkvpb.AuthChangeRequest_ENABLE},
	} {
		resp, err := c.AuthChange(ctx, r)
		if err != nil {
			t.Fatalf("%v: %v", r, err)
		}
		enabled = resp.GetIndex()
	}
	// Each member checks calls against the auth state it has applied, and
	// a follower learns that the change committed only from the leader's
	// next message: the tests that follow ask every member.
	for i, m := range c.c.Members {
		if m != nil {
			raftnodetest.Eventually(t, 10*time.Second, fmt.Sprintf("member %d applies index %d (auth enabled)", i+1, enabled), func() bool {
				return m.Status().Applied >= enabled
			})
		}
	}
	resp, err := c.Authenticate(ctx, &cxkvpb.AuthenticateRequest{Name: "root", Password: "rootpw"})
	if err != nil {
		t.Fatal(err)
	}
	return resp.GetToken()
}
func (t *asUser) Sessions(ctx context.Context, r *cxkvpb.SessionsRequest) (*cxkvpb.SessionsResponse, error) {
	return t.clusterTarget.Sessions(t.ctx(ctx), r)
}

// A member bootstrapping on an empty data dir asks its peers for their
// member table before it serves (the wiped-member check), and a joining
// member learns the cluster from it; neither has an identity to offer. With
// auth enabled the list must still answer an anonymous caller, or the
// wiped-member check goes blind and a join fails. Changes still need the
// cluster-wide admin.
func TestMemberListAnswersAnonymousCallersWithAuthEnabled(t *testing.T) {
	c := &clusterTarget{c: raftnodetest.Start(t, 3)}
	enableAuth(t, c)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	for i := range c.c.Members {
		resp, err := c.c.ClusterClient(i).MemberList(ctx, &cxkvpb.MemberListRequest{})
		if err != nil {
			t.Fatalf("member %d: anonymous MemberList with auth enabled: %v; want the member table", i+1, err)
		}
		if len(resp.GetMembers()) != 3 {
			t.Fatalf("member %d lists %d members, want 3", i+1, len(resp.GetMembers()))
		}
	}
	_, err := c.c.ClusterClient(0).MemberRemove(ctx, &cxkvpb.MemberRemoveRequest{Id: 3})
	if status.Code(err) != codes.PermissionDenied {
		t.Fatalf("anonymous MemberRemove with auth enabled: %v; want PermissionDenied", err)
	}
}

// A backup is the whole state: every key, and the auth state with its
// password hashes and the key tokens are signed with (with which anyone
// could forge a token for any user). With auth enabled only the
// cluster-wide admin may take one; a refusal of an administrative call
// names the operation as the CLI calls it, not the gRPC method.
func TestBackupAndMembershipNeedTheClusterAdmin(t *testing.T) {
	c := &clusterTarget{c: raftnodetest.Start(t, 3)}
	token := enableAuth(t, c)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	wantDenied := func(what string, err error, words ...string) {
		t.Helper()
		if status.Code(err) != codes.PermissionDenied {
			t.Fatalf("%s: %v, want PermissionDenied", what, err)
		}
		msg := status.Convert(err).Message()
		for _, w := range words {
			if !strings.Contains(msg, w) {
				t.Fatalf("%s: %q does not name %q", what, msg, w)
			}
		}
		if strings.Contains(msg, "/cxkv.v1.") {
			t.Fatalf("%s: %q names a gRPC method", what, msg)
		}
	}
	stream, err := c.c.Client(0).Snapshot(ctx, &cxkvpb.SnapshotRequest{})
	if err == nil {
		_, err = stream.Recv()
	}
	wantDenied("anonymous backup", err, "unauthenticated client", "back up")

	_, err = c.c.ClusterClient(1).MemberRemove(ctx, &cxkvpb.MemberRemoveRequest{Id: 3})
	wantDenied("anonymous member remove", err, "unauthenticated client", "remove member 3")

	// The admin may.
	stream, err = c.c.Client(2).Snapshot(cmpxchgtest.WithToken(ctx, token), &cxkvpb.SnapshotRequest{})
	if err == nil {
		_, err = stream.Recv()
	}
	if err != nil {
		t.Fatalf("root's backup: %v", err)
	}
}
