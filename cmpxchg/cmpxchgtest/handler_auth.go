package cmpxchgtest

import (
	"context"
	"fmt"
	"strings"

	"github.com/cockroachdb/datadriven"
	"github.com/cxkv/cxkv/api/cxkvpb"
	"github.com/cxkv/cxkv/cmpxchg"
)

// AuthTarget is a Target that serves auth (a live cluster): the scripts in
// testdata/auth need one. Its requests carry the token of the user the
// script logged in as, in the context (WithToken).
type AuthTarget interface {
	Target
	Authenticate(context.Context, *cxkvpb.AuthenticateRequest) (*cxkvpb.AuthenticateResponse, error)
	AuthChange(context.Context, *cxkvpb.AuthChangeRequest) (*cxkvpb.AuthChangeResponse, error)
	AuthStatus(context.Context, *cxkvpb.AuthStatusRequest) (*cxkvpb.AuthStatusResponse, error)
}

func (e *env) auth(d *datadriven.TestData) (AuthTarget, error) {
	t, ok := e.target.(AuthTarget)
	if !ok {
		return nil, fmt.Errorf("%s: this target serves no auth", d.Cmd)
	}
	return t, nil
}

// change sends one auth change and prints ok.
func (e *env) change(ctx context.Context, d *datadriven.TestData, r *cxkvpb.AuthChangeRequest) (string, error) {
	t, err := e.auth(d)
	if err != nil {
		return "", err
	}
	if _, err := t.AuthChange(ctx, r); err != nil {
		return "", err
	}
	return "ok\n", nil
}

func permission(a map[string]string) cxkvpb.Grant_Permission {
	p, err := cmpxchg.ParsePermission(a["perm"])
	if err != nil {
		return cxkvpb.Grant_UNSPECIFIED // the member refuses it, as the script may want
	}
	return p
}

// auth-enable
func handleAuthEnable(e *env, ctx context.Context, d *datadriven.TestData) (string, error) {
	return e.change(ctx, d, &cxkvpb.AuthChangeRequest{Action: cxkvpb.AuthChangeRequest_ENABLE})
}

// auth-disable
func handleAuthDisable(e *env, ctx context.Context, d *datadriven.TestData) (string, error) {
	return e.change(ctx, d, &cxkvpb.AuthChangeRequest{Action: cxkvpb.AuthChangeRequest_DISABLE})
}

// user-add name=U [password=P]
func handleUserAdd(e *env, ctx context.Context, d *datadriven.TestData) (string, error) {
	a := args(d)
	return e.change(ctx, d, &cxkvpb.AuthChangeRequest{Action: cxkvpb.AuthChangeRequest_USER_ADD, User: a["name"], Password: a["password"]})
}

// user-delete name=U
func handleUserDelete(e *env, ctx context.Context, d *datadriven.TestData) (string, error) {
	return e.change(ctx, d, &cxkvpb.AuthChangeRequest{Action: cxkvpb.AuthChangeRequest_USER_DELETE, User: args(d)["name"]})
}

// user-password name=U [password=P]
func handleUserPassword(e *env, ctx context.Context, d *datadriven.TestData) (string, error) {
	a := args(d)
	return e.change(ctx, d, &cxkvpb.AuthChangeRequest{Action: cxkvpb.AuthChangeRequest_USER_PASSWORD, User: a["name"], Password: a["password"]})
}

// user-grant name=U role=R
func handleUserGrant(e *env, ctx context.Context, d *datadriven.TestData) (string, error) {
	a := args(d)
	return e.change(ctx, d, &cxkvpb.AuthChangeRequest{Action: cxkvpb.AuthChangeRequest_USER_GRANT, User: a["name"], Role: a["role"]})
}

// user-revoke name=U role=R
func handleUserRevoke(e *env, ctx context.Context, d *datadriven.TestData) (string, error) {
	a := args(d)
	return e.change(ctx, d, &cxkvpb.AuthChangeRequest{Action: cxkvpb.AuthChangeRequest_USER_REVOKE, User: a["name"], Role: a["role"]})
}

// role-add name=R
func handleRoleAdd(e *env, ctx context.Context, d *datadriven.TestData) (string, error) {
	return e.change(ctx, d, &cxkvpb.AuthChangeRequest{Action: cxkvpb.AuthChangeRequest_ROLE_ADD, Role: args(d)["name"]})
}

// role-delete name=R
func handleRoleDelete(e *env, ctx context.Context, d *datadriven.TestData) (string, error) {
	return e.change(ctx, d, &cxkvpb.AuthChangeRequest{Action: cxkvpb.AuthChangeRequest_ROLE_DELETE, Role: args(d)["name"]})
}

// role-grant name=R prefix=P perm=read|write|admin
func handleRoleGrant(e *env, ctx context.Context, d *datadriven.TestData) (string, error) {
	a := args(d)
	return e.change(ctx, d, &cxkvpb.AuthChangeRequest{Action: cxkvpb.AuthChangeRequest_ROLE_GRANT, Role: a["name"], Prefix: a["prefix"], Permission: permission(a)})
}

// role-revoke name=R prefix=P perm=read|write|admin
func handleRoleRevoke(e *env, ctx context.Context, d *datadriven.TestData) (string, error) {
	a := args(d)
	return e.change(ctx, d, &cxkvpb.AuthChangeRequest{Action: cxkvpb.AuthChangeRequest_ROLE_REVOKE, Role: a["name"], Prefix: a["prefix"], Permission: permission(a)})
}

// auth-status: the enabled flag, users with their roles, roles with their
// grants.
func handleAuthStatus(e *env, ctx context.Context, d *datadriven.TestData) (string, error) {
	t, err := e.auth(d)
	if err != nil {
		return "", err
	}
	r, err := t.AuthStatus(ctx, &cxkvpb.AuthStatusRequest{})
	if err != nil {
		return "", err
	}
	var b strings.Builder
	fmt.Fprintf(&b, "enabled=%t\n", r.GetEnabled())
	for _, u := range r.GetUsers() {
		fmt.Fprintf(&b, "user %s roles=[%s]\n", u.GetName(), strings.Join(u.GetRoles(), " "))
	}
	for _, role := range r.GetRoles() {
		var gs []string
		for _, g := range role.GetGrants() {
			gs = append(gs, fmt.Sprintf("%s:%q", cmpxchg.PermissionName(g.GetPermission()), g.GetPrefix()))
		}
		fmt.Fprintf(&b, "role %s grants=[%s]\n", role.GetName(), strings.Join(gs, " "))
	}
	return b.String(), nil
}

// login name=U password=P: the requests that follow carry U's token.
func handleLogin(e *env, ctx context.Context, d *datadriven.TestData) (string, error) {
	t, err := e.auth(d)
	if err != nil {
		return "", err
	}
	a := args(d)
	r, err := t.Authenticate(ctx, &cxkvpb.AuthenticateRequest{Name: a["name"], Password: a["password"]})
	if err != nil {
		return "", err
	}
	e.token = r.GetToken()
	return "ok\n", nil
}

// logout: the requests that follow carry no token.
func handleLogout(e *env, _ context.Context, _ *datadriven.TestData) (string, error) {
	e.token = ""
	return "ok\n", nil
}
