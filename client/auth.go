package client

import (
	"context"
	"fmt"
	"strings"
	"sync"
	"time"

	"github.com/cxkv/cxkv/api/cxkvpb"
	"github.com/cxkv/cxkv/api/cxkvrpc"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"
)

// With Config.Username set, the SDK exchanges the password for a token
// (Authenticate), sends it with every call, authenticates again when half
// its life is gone, and once more at once when a member refuses it (auth was
// enabled again, the password changed): the caller never handles tokens.
// With client certificates (Config.TLS) the certificate's common name is the
// identity and no Username is needed.

// tokenSource holds the current token of a Client with a Username.
type tokenSource struct {
	c     *Client
	mu    sync.Mutex
	token string
	renew time.Time // on c.cfg.Clock: authenticate again from then on
}

// get returns a token, authenticating over cc if there is none, or if it
// is past renewal or is stale (the one a member just refused).
func (t *tokenSource) get(ctx context.Context, cc grpc.ClientConnInterface, stale string) (string, error) {
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.token != "" && t.token != stale && t.c.cfg.Clock.Now().Before(t.renew) {
		return t.token, nil
	}
	start := t.c.cfg.Clock.Now()
	// A probe of its own: sending Authenticate is not sending the call
	// it authenticates (a write whose token could not be had never left).
	ctx, _ = probeSend(ctx)
	resp, err := cxkvrpc.NewKVClient(cc).Authenticate(ctx, &cxkvpb.AuthenticateRequest{Name: t.c.cfg.Username, Password: t.c.cfg.Password})
	if err != nil {
		return "", err
	}
	t.token = resp.GetToken()
	t.renew = start.Add(time.Duration(resp.GetTtlMs()) * time.Millisecond / 2)
	return t.token, nil
}

func withToken(ctx context.Context, tok string) context.Context {
	return metadata.AppendToOutgoingContext(ctx, cxkvpb.AuthMetadataKey, "Bearer "+tok)
}

const authenticateMethod = "/cxkv.v1.KV/Authenticate"

// unary sends the token with a call, and retries the call once with a new
// token if a member refused the one it carried.
func (t *tokenSource) unary(ctx context.Context, method string, req, reply any, cc *grpc.ClientConn, invoker grpc.UnaryInvoker, opts ...grpc.CallOption) error {
	if method == authenticateMethod {
		return invoker(ctx, method, req, reply, cc, opts...)
	}
	tok, err := t.get(ctx, cc, "")
	if err != nil {
		return err
	}
	err = invoker(withToken(ctx, tok), method, req, reply, cc, opts...)
	if status.Code(err) != codes.Unauthenticated {
		return err
	}
	if tok, err = t.get(ctx, cc, tok); err != nil {
		return err
	}
	return invoker(withToken(ctx, tok), method, req, reply, cc, opts...)
}

// stream sends the token when a stream (Watch) opens; a member checks it
// then, not during the stream.
func (t *tokenSource) stream(ctx context.Context, desc *grpc.StreamDesc, cc *grpc.ClientConn, method string, streamer grpc.Streamer, opts ...grpc.CallOption) (grpc.ClientStream, error) {
	tok, err := t.get(ctx, cc, "")
	if err != nil {
		return nil, err
	}
	return streamer(withToken(ctx, tok), desc, cc, method, opts...)
}

// authDialOptions are the dial options that authenticate as cfg.Username.
func (c *Client) authDialOptions() []grpc.DialOption {
	if c.cfg.Username == "" {
		return nil
	}
	t := &tokenSource{c: c}
	return []grpc.DialOption{grpc.WithChainUnaryInterceptor(t.unary), grpc.WithChainStreamInterceptor(t.stream)}
}

// Permission is what a role grants on a key prefix: read, write (which
// covers read) or admin (which covers write, force-release of locks, and on
// the prefix "" the management of users, roles and auth).
type Permission int32

const (
	PermRead  = Permission(cxkvpb.Grant_READ)
	PermWrite = Permission(cxkvpb.Grant_WRITE)
	PermAdmin = Permission(cxkvpb.Grant_ADMIN)
)

func (p Permission) String() string { return strings.ToLower(cxkvpb.Grant_Permission(p).String()) }

// MarshalText writes the permission's name, as -o json shows it.
func (p Permission) MarshalText() ([]byte, error) { return []byte(p.String()), nil }

// ParsePermission reads "read", "write" or "admin".
func ParsePermission(s string) (Permission, error) {
	v, ok := cxkvpb.Grant_Permission_value[strings.ToUpper(s)]
	if !ok || v == 0 {
		return 0, fmt.Errorf("cxkv: unknown permission %q: want read, write or admin", s)
	}
	return Permission(v), nil
}

// Grant is a permission on every key that starts with Prefix.
type Grant struct {
	Prefix     string     `json:"prefix"`
	Permission Permission `json:"permission"`
}

// User is a user as AuthStatus lists it (never its password).
type User struct {
	Name  string   `json:"name"`
	Roles []string `json:"roles"`
}

// Role is a named set of grants.
type Role struct {
	Name   string  `json:"name"`
	Grants []Grant `json:"grants"`
}

// AuthInfo is the cluster's auth state.
type AuthInfo struct {
	Enabled bool   `json:"enabled"`
	Users   []User `json:"users"`
	Roles   []Role `json:"roles"`
}

// AuthStatus returns whether auth is enabled and every user and role. With
// auth enabled it needs admin on "".
func (c *Client) AuthStatus(ctx context.Context) (AuthInfo, error) {
	var resp *cxkvpb.AuthStatusResponse
	err := c.do(ctx, nil, func(ctx context.Context, kv cxkvrpc.KVClient) (h *cxkvpb.Header, err error) {
		resp, err = kv.AuthStatus(ctx, &cxkvpb.AuthStatusRequest{})
		return resp.GetHeader(), err
	})
	if err != nil {
		return AuthInfo{}, err
	}
	out := AuthInfo{Enabled: resp.GetEnabled(), Users: []User{}, Roles: []Role{}}
	for _, u := range resp.GetUsers() {
		out.Users = append(out.Users, User{Name: u.GetName(), Roles: append([]string{}, u.GetRoles()...)})
	}
	for _, r := range resp.GetRoles() {
		role := Role{Name: r.GetName(), Grants: []Grant{}}
		for _, g := range r.GetGrants() {
			role.Grants = append(role.Grants, Grant{Prefix: g.GetPrefix(), Permission: Permission(g.GetPermission())})
		}
		out.Roles = append(out.Roles, role)
	}
	return out, nil
}

// authChange sends one change through the log, exactly once like any write.
func (c *Client) authChange(ctx context.Context, req *cxkvpb.AuthChangeRequest) error {
	return c.write(ctx, func(id *cxkvpb.WriteID) { req.WriteId = id }, func(ctx context.Context, kv cxkvrpc.KVClient) (*cxkvpb.Header, error) {
		resp, err := kv.AuthChange(ctx, req)
		return resp.GetHeader(), err
	})
}

// AuthEnable turns checking on. It is refused unless some user holds admin
// on "" (every key), so nobody is locked out.
func (c *Client) AuthEnable(ctx context.Context) error {
	return c.authChange(ctx, &cxkvpb.AuthChangeRequest{Action: cxkvpb.AuthChangeRequest_ENABLE})
}

// AuthDisable turns checking off: every client may do anything again.
func (c *Client) AuthDisable(ctx context.Context) error {
	return c.authChange(ctx, &cxkvpb.AuthChangeRequest{Action: cxkvpb.AuthChangeRequest_DISABLE})
}

// UserAdd adds a user. An empty password makes a user that only a client
// certificate with that common name can be.
func (c *Client) UserAdd(ctx context.Context, name, password string) error {
	return c.authChange(ctx, &cxkvpb.AuthChangeRequest{Action: cxkvpb.AuthChangeRequest_USER_ADD, User: name, Password: password})
}

// UserPassword sets a user's password ("" removes it); the user's tokens
// end.
func (c *Client) UserPassword(ctx context.Context, name, password string) error {
	return c.authChange(ctx, &cxkvpb.AuthChangeRequest{Action: cxkvpb.AuthChangeRequest_USER_PASSWORD, User: name, Password: password})
}

// UserDelete deletes a user; its tokens end.
func (c *Client) UserDelete(ctx context.Context, name string) error {
	return c.authChange(ctx, &cxkvpb.AuthChangeRequest{Action: cxkvpb.AuthChangeRequest_USER_DELETE, User: name})
}

// UserGrant gives a user a role.
func (c *Client) UserGrant(ctx context.Context, user, role string) error {
	return c.authChange(ctx, &cxkvpb.AuthChangeRequest{Action: cxkvpb.AuthChangeRequest_USER_GRANT, User: user, Role: role})
}

// UserRevoke takes a role from a user.
func (c *Client) UserRevoke(ctx context.Context, user, role string) error {
	return c.authChange(ctx, &cxkvpb.AuthChangeRequest{Action: cxkvpb.AuthChangeRequest_USER_REVOKE, User: user, Role: role})
}

// RoleAdd adds a role with no grants.
func (c *Client) RoleAdd(ctx context.Context, role string) error {
	return c.authChange(ctx, &cxkvpb.AuthChangeRequest{Action: cxkvpb.AuthChangeRequest_ROLE_ADD, Role: role})
}

// RoleDelete deletes a role and takes it from every user.
func (c *Client) RoleDelete(ctx context.Context, role string) error {
	return c.authChange(ctx, &cxkvpb.AuthChangeRequest{Action: cxkvpb.AuthChangeRequest_ROLE_DELETE, Role: role})
}

// RoleGrant gives a role perm on every key under prefix ("" for all keys).
func (c *Client) RoleGrant(ctx context.Context, role, prefix string, perm Permission) error {
	return c.authChange(ctx, &cxkvpb.AuthChangeRequest{Action: cxkvpb.AuthChangeRequest_ROLE_GRANT, Role: role, Prefix: prefix, Permission: cxkvpb.Grant_Permission(perm)})
}

// RoleRevoke takes back a grant RoleGrant gave.
func (c *Client) RoleRevoke(ctx context.Context, role, prefix string, perm Permission) error {
	return c.authChange(ctx, &cxkvpb.AuthChangeRequest{Action: cxkvpb.AuthChangeRequest_ROLE_REVOKE, Role: role, Prefix: prefix, Permission: cxkvpb.Grant_Permission(perm)})
}
