package client_test

import (
	"context"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/cxkv/cxkv/client"
	"github.com/cxkv/cxkv/client/lock"
	"github.com/cxkv/cxkv/raftnode/raftnodetest"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
)

func dialAs(t *testing.T, endpoints []string, user, password string) *client.Client {
	t.Helper()
	c, err := client.New(client.Config{Endpoints: endpoints, RequestTimeout: 2 * time.Second, Username: user, Password: password})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return c
}

func must(t *testing.T, what string, err error) {
	t.Helper()
	if err != nil {
		t.Fatalf("%s: %v", what, err)
	}
}

// wantDenied checks err is PermissionDenied and its message names every
// word in words (identity, operation, key).
func wantDenied(t *testing.T, what string, err error, words ...string) {
	t.Helper()
	if status.Code(err) != codes.PermissionDenied {
		t.Fatalf("%s: got %v, want PermissionDenied", what, err)
	}
	for _, w := range words {
		if !strings.Contains(status.Convert(err).Message(), w) {
			t.Fatalf("%s: %q does not name %q", what, status.Convert(err).Message(), w)
		}
	}
}

// setUpAuth makes, through c (no user: auth is off), the root user (admin
// on every key) and alice (read on rooms/ through the role rooms), and
// enables auth as root; it returns root's client.
func setUpAuth(t *testing.T, ctx context.Context, cl *raftnodetest.Cluster, c *client.Client) *client.Client {
	t.Helper()
	must(t, "user add", c.UserAdd(ctx, "root", "rootpw"))
	root := dialAs(t, cl.Endpoints(), "root", "rootpw")
	must(t, "role add", root.RoleAdd(ctx, "root"))
	must(t, "role grant", root.RoleGrant(ctx, "root", "", client.PermAdmin))
	must(t, "user grant", root.UserGrant(ctx, "root", "root"))
	must(t, "role add rooms", root.RoleAdd(ctx, "rooms"))
	must(t, "role grant rooms", root.RoleGrant(ctx, "rooms", "rooms/", client.PermRead))
	must(t, "user add alice", root.UserAdd(ctx, "alice", "alicepw"))
	must(t, "user grant alice", root.UserGrant(ctx, "alice", "rooms"))
	// root's token was issued before auth was on; the SDK takes a new one
	// when a member refuses it.
	must(t, "auth enable", root.AuthEnable(ctx))
	return root
}

// An identity with read on rooms/ reads there and nowhere else, writes
// nowhere, sees only rooms/ in List and Watch, and cannot force-release a
// lock under bank/; a grant of write, and its revocation, hold on every
// member as soon as they are acknowledged.
func TestAuthReadOnPrefix(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	cl, anon := start(t)
	_, err := anon.Put(ctx, "rooms/1", []byte("a"), 0)
	must(t, "seed rooms/1", err)
	_, err = anon.Put(ctx, "bank/a", []byte("100"), 0)
	must(t, "seed bank/a", err)
	root := setUpAuth(t, ctx, cl, anon)

	_, err = anon.Get(ctx, "rooms/1")
	wantDenied(t, "unauthenticated get", err, "unauthenticated", "get", "rooms/1")

	mon := lock.NewProcessMonitor(root, lock.Options{TTL: 10 * time.Second})
	defer mon.Close()
	held, err := mon.Lock(ctx, "bank/vault")
	must(t, "root locks bank/vault", err)
	defer held.Unlock()

	// One client per member, so every member's checks are seen.
	var alices []*client.Client
	for _, ep := range cl.Endpoints() {
		alices = append(alices, dialAs(t, []string{ep}, "alice", "alicepw"))
	}
	for i, alice := range alices {
		if rec, err := alice.Get(ctx, "rooms/1"); err != nil || string(rec.Value) != "a" {
			t.Fatalf("member %d: alice get rooms/1: %v %q", i+1, err, rec.Value)
		}
		_, err := alice.Put(ctx, "rooms/1", []byte("b"), 0)
		wantDenied(t, "alice put rooms/1", err, "alice", "put", "rooms/1")
		_, err = alice.Get(ctx, "bank/a")
		wantDenied(t, "alice get bank/a", err, "alice", "get", "bank/a")
		var keys []string
		for rec, err := range alice.List(ctx, "") {
			must(t, "alice list", err)
			keys = append(keys, rec.Key)
		}
		if len(keys) != 1 || keys[0] != "rooms/1" {
			t.Fatalf("member %d: alice lists %q, want only rooms/1", i+1, keys)
		}
		for _, err := range alice.List(ctx, "bank/") {
			wantDenied(t, "alice list bank/", err, "alice", "list", "bank/")
			break
		}
		_, err = lock.ForceRelease(ctx, alice, "bank/vault")
		wantDenied(t, "alice force-release bank/vault", err, "alice")
	}

	// Watch everything as alice: only rooms/ events arrive.
	st, err := root.Status(ctx)
	must(t, "status", err)
	from := st[0].Applied
	_, err = root.Put(ctx, "bank/b", []byte("1"), 0)
	must(t, "root put bank/b", err)
	_, err = root.Put(ctx, "rooms/2", []byte("x"), 0)
	must(t, "root put rooms/2", err)
	wctx, wcancel := context.WithTimeout(ctx, 10*time.Second)
	for ev, err := range alices[1].Watch(wctx, "", from) {
		must(t, "alice watch", err)
		if !strings.HasPrefix(ev.Record.Key, "rooms/") {
			t.Fatalf("alice's watch delivered %s", ev.Record.Key)
		}
		if ev.Record.Key == "rooms/2" {
			break
		}
	}
	wcancel()
	// The head of a prefix is of every key under it: a watch asking it of
	// a prefix alice may not read all of is refused, and one of rooms/
	// carries it.
	for _, err := range alices[1].Watch(ctx, "rooms/", from, client.WatchHead("r")) {
		wantDenied(t, "alice watch with the head of r", err, "alice", "head")
		break
	}
	wctx, wcancel = context.WithTimeout(ctx, 10*time.Second)
	for ev, err := range alices[1].Watch(wctx, "rooms/", from, client.WatchHead("rooms/")) {
		must(t, "alice watch with the head of rooms/", err)
		if ev.Head == nil || ev.Head.Key != "rooms/1" {
			t.Fatalf("alice's watch of rooms/ with its head: event %s came with head %+v; want rooms/1, the oldest", ev.Record.Key, ev.Head)
		}
		break
	}
	wcancel()

	// A grant holds on every member as soon as it is acknowledged.
	must(t, "grant write", root.RoleGrant(ctx, "rooms", "rooms/", client.PermWrite))
	for i, alice := range alices {
		if _, err := alice.Put(ctx, "rooms/w", []byte{byte('0' + i)}, 0); err != nil && status.Code(err) != codes.OK {
			t.Fatalf("member %d: alice put after the grant: %v", i+1, err)
		}
		rec, err := alice.Get(ctx, "rooms/w")
		must(t, "get rooms/w", err)
		_, err = alice.Delete(ctx, "rooms/w", rec.Index)
		must(t, "alice delete rooms/w", err)
	}
	// Write on bank/ is not admin: force-release still refused.
	must(t, "role add bank", root.RoleAdd(ctx, "bank"))
	must(t, "role grant bank", root.RoleGrant(ctx, "bank", "bank/", client.PermWrite))
	must(t, "user grant alice bank", root.UserGrant(ctx, "alice", "bank"))
	_, err = lock.ForceRelease(ctx, alices[0], "bank/vault")
	wantDenied(t, "alice (write on bank/) force-release bank/vault", err, "alice")

	// So does a revocation.
	must(t, "revoke write", root.RoleRevoke(ctx, "rooms", "rooms/", client.PermWrite))
	for i, alice := range alices {
		_, err := alice.Put(ctx, "rooms/r", []byte("x"), 0)
		wantDenied(t, "alice put after the revocation", err, "alice", "put", "rooms/r")
		_ = i
	}
	if _, err := root.Get(ctx, "rooms/r"); err != nil {
		t.Fatal(err)
	} else if rec, _ := root.Get(ctx, "rooms/r"); rec.Index != 0 {
		t.Fatalf("a refused put wrote rooms/r: %+v", rec)
	}
	select {
	case <-held.Lost():
		t.Fatal("root's lock was lost")
	default:
	}
	if errors.Is(ctx.Err(), context.DeadlineExceeded) {
		t.Fatal("test ran out of time")
	}
}

// A watch's head_of is judged by the auth state the member has applied
// when it answers, as its events are: once alice's read on q/ is revoked,
// her watch of rooms/ asking the head of q/ no longer carries q/'s oldest
// record (its value included); it ends PermissionDenied, as a new watch
// asking the same would.
func TestWatchHeadOfRevokedReadEndsTheWatch(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	cl, anon := start(t)
	_, err := anon.Put(ctx, "q/1", []byte("secret"), 0)
	must(t, "seed q/1", err)
	root := setUpAuth(t, ctx, cl, anon)
	must(t, "role add queue", root.RoleAdd(ctx, "queue"))
	must(t, "role grant queue", root.RoleGrant(ctx, "queue", "q/", client.PermRead))
	must(t, "user grant alice queue", root.UserGrant(ctx, "alice", "queue"))
	alice := dialAs(t, cl.Endpoints()[1:2], "alice", "alicepw")

	st, err := root.Status(ctx)
	must(t, "status", err)
	from := st[0].Applied
	_, err = root.Put(ctx, "rooms/a", []byte("x"), 0)
	must(t, "root put rooms/a", err)
	revoked := false
	wctx, wcancel := context.WithTimeout(ctx, 20*time.Second)
	defer wcancel()
	for ev, err := range alice.Watch(wctx, "rooms/", from, client.WatchHead("q/")) {
		if revoked {
			if err == nil {
				t.Fatalf("after the revocation of read on q/, alice's watch delivered %s with head %+v; want PermissionDenied", ev.Record.Key, ev.Head)
			}
			wantDenied(t, "alice's watch with the head of q/ after the revocation", err, "alice", "q/")
			return
		}
		must(t, "alice watch with the head of q/", err)
		if ev.Head == nil || string(ev.Head.Value) != "secret" {
			t.Fatalf("before the revocation: event %s with head %+v; want q/1", ev.Record.Key, ev.Head)
		}
		must(t, "revoke read on q/", root.RoleRevoke(ctx, "queue", "q/", client.PermRead))
		revoked = true
		_, err = root.Put(ctx, "rooms/b", []byte("y"), 0)
		must(t, "root put rooms/b", err)
	}
	t.Fatal("the watch ended with no error after the revocation")
}

// Enabling auth with no user holding admin on every key is refused, with a
// message that says what to do; nothing changes.
func TestAuthEnableNeedsAnAdmin(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	_, c := start(t)
	must(t, "user add", c.UserAdd(ctx, "bob", "pw"))
	err := c.AuthEnable(ctx)
	if status.Code(err) != codes.InvalidArgument || !strings.Contains(err.Error(), "admin on every key") {
		t.Fatalf("enable without an admin: %v, want InvalidArgument naming the missing admin", err)
	}
	info, err := c.AuthStatus(ctx)
	must(t, "auth status", err)
	if info.Enabled {
		t.Fatal("auth enabled without an admin")
	}
}

// A refusal names what the caller asked for. The SDK opens its exactly-once
// session with a no-op of its own before a client's first write; an
// unauthenticated client's refusal must still name the caller's operation
// and key, not that no-op's.
func TestAuthRefusalNamesTheCallersWrite(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	cl, anon := start(t)
	root := setUpAuth(t, ctx, cl, anon)
	_, err := root.Put(ctx, "rooms/1", []byte("a"), 0)
	must(t, "root put rooms/1", err)

	// Each a fresh client, so each write is its client's first.
	_, err = dial(t, cl.Endpoints()).Put(ctx, "rooms/2", []byte("x"), 0)
	wantDenied(t, "unauthenticated first put", err, "unauthenticated client", "put", `"rooms/2"`)
	_, err = dial(t, cl.Endpoints()).Delete(ctx, "rooms/1", 1)
	wantDenied(t, "unauthenticated first delete", err, "unauthenticated client", "delete", `"rooms/1"`)
	_, err = dial(t, cl.Endpoints()).Txn(ctx, nil, []client.Op{client.PutOp("rooms/3", []byte("x"), 0)})
	wantDenied(t, "unauthenticated first txn", err, "unauthenticated client", "put", `"rooms/3"`)

	// The same client again, and once auth is off, its writes go through
	// with exactly-once intact.
	c := dial(t, cl.Endpoints())
	for range 2 {
		_, err = c.Put(ctx, "rooms/4", []byte("x"), 0)
		wantDenied(t, "unauthenticated put, again", err, "unauthenticated client", "put", `"rooms/4"`)
	}
	must(t, "auth disable", root.AuthDisable(ctx))
	res, err := c.Put(ctx, "rooms/4", []byte("x"), 0)
	if err != nil || !res.Successful {
		t.Fatalf("put once auth is off: %+v %v", res, err)
	}
}
