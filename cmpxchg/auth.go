package cmpxchg

import (
	"bytes"
	"fmt"
	"slices"
	"strings"
	"sync"
	"unicode"
	"unicode/utf8"

	"github.com/cxkv/cxkv/api/cxkvpb"
	"github.com/cxkv/cxkv/kv"
	"google.golang.org/protobuf/proto"
)

// Identities and permissions live in the replicated state, so every member
// enforces the same rules at the same log index. A role grants read, write
// or admin on key prefixes; a user holds roles; an identity is a user's name
// (or a client certificate's common name, which names a user). With auth
// enabled:
//
//   - a read of a key needs read on a prefix of it, a write needs write,
//     and a force-release of a lock needs admin;
//   - changing users, roles or the enabled flag needs admin on "" (every
//     key): the cluster-wide admin;
//   - the state may never be left without a user that is cluster-wide
//     admin, so nobody locks everyone out: enabling refuses until one
//     exists, and a change that would remove the last one is refused.
//
// Apply checks every logged write against the state as of its entry
// (Command.identity is whom the proposing member authenticated), so a grant
// or revoke takes effect at its index on every member. The receiving member
// checks the same rules before proposing, to refuse early.

// CodePermissionDenied: the command's identity lacks a permission it needs.
// Nothing was written.
const CodePermissionDenied Code = 7

// CodeAuthNotFound and CodeAuthExists refuse an auth change naming a user
// or role that is missing, or adding one that already exists.
const (
	CodeAuthNotFound Code = 11
	CodeAuthExists   Code = 6
)

// SessionOpenKey is the key the SDK's session-opening no-op compares (see
// client/retry.go). Every identity may read it: it is how any client starts
// writing, and a client must never write it.
const SessionOpenKey = "cxkv/session-open"

// MaxAuthNameBytes bounds user and role names.
const MaxAuthNameBytes = 128

// Permission is what a grant gives; each covers those below it.
type Permission = cxkvpb.Grant_Permission

const (
	Read  = cxkvpb.Grant_READ
	Write = cxkvpb.Grant_WRITE
	Admin = cxkvpb.Grant_ADMIN
)

// PermissionName is the lower-case name the CLI and the messages use.
func PermissionName(p Permission) string { return strings.ToLower(p.String()) }

// ParsePermission reads read, write or admin.
func ParsePermission(s string) (Permission, error) {
	v, ok := cxkvpb.Grant_Permission_value[strings.ToUpper(s)]
	if !ok || v == 0 {
		return 0, invalid("unknown permission %q: want read, write or admin", s)
	}
	return Permission(v), nil
}

// Auth is a decoded auth state with its lookups. The zero state (nothing
// stored) is auth disabled with no users.
type Auth struct {
	st *cxkvpb.AuthState
}

// DecodeAuth decodes a stored auth state; nil or empty is the zero state.
func DecodeAuth(data []byte) (*Auth, error) {
	st := &cxkvpb.AuthState{}
	if err := proto.Unmarshal(data, st); err != nil {
		return nil, fmt.Errorf("cmpxchg: malformed auth state (%d bytes): %w", len(data), err)
	}
	return &Auth{st: st}, nil
}

// AuthCache decodes auth states and keeps the last one. Every write is
// checked against the auth state, which changes rarely: decoding it for
// each applied command, and for each request a member checks before
// proposing, was four allocations and a protobuf decode per write. It is
// keyed by the bytes themselves, so what it returns is what DecodeAuth
// gives for them (an Auth is never changed once decoded: a change works on
// a clone), and Apply stays a function of its inputs. Safe for concurrent
// use.
type AuthCache struct {
	mu   sync.Mutex
	data []byte
	auth *Auth
}

// Decode returns the decoded auth state of data, which the caller must not
// change afterwards (the store's copy is shared and never changed).
func (c *AuthCache) Decode(data []byte) (*Auth, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.auth != nil && bytes.Equal(c.data, data) {
		return c.auth, nil
	}
	a, err := DecodeAuth(data)
	if err != nil {
		return nil, err
	}
	c.data, c.auth = data, a
	return a, nil
}

// Load reads the auth state as the batch sees it.
func (c *AuthCache) Load(b *kv.Batch) (*Auth, error) {
	data, err := b.AuthState()
	if err != nil {
		return nil, err
	}
	return c.Decode(data)
}

// Enabled reports whether requests are checked.
func (a *Auth) Enabled() bool { return a.st.GetEnabled() }

// TokenKey is the key that signs tokens (empty before the first auth
// change).
func (a *Auth) TokenKey() []byte { return a.st.GetTokenKey() }

// User returns the named user, or nil.
func (a *Auth) User(name string) *cxkvpb.AuthUser {
	i, ok := slices.BinarySearchFunc(a.st.GetUsers(), name, func(u *cxkvpb.AuthUser, n string) int { return strings.Compare(u.GetName(), n) })
	if !ok {
		return nil
	}
	return a.st.Users[i]
}

func (a *Auth) role(name string) *cxkvpb.AuthRole {
	i, ok := slices.BinarySearchFunc(a.st.GetRoles(), name, func(r *cxkvpb.AuthRole, n string) int { return strings.Compare(r.GetName(), n) })
	if !ok {
		return nil
	}
	return a.st.Roles[i]
}

// Public is the state as AuthStatus shows it: password hashes and the token
// key left out.
func (a *Auth) Public() *cxkvpb.AuthStatusResponse {
	out := &cxkvpb.AuthStatusResponse{Enabled: a.Enabled()}
	for _, u := range a.st.GetUsers() {
		out.Users = append(out.Users, &cxkvpb.AuthUser{Name: u.GetName(), Roles: u.GetRoles(), Revision: u.GetRevision()})
	}
	out.Roles = a.st.GetRoles()
	return out
}

// Allowed reports whether identity holds perm on key. With auth disabled
// everything is allowed; with it enabled, an unknown or empty identity holds
// nothing.
func (a *Auth) Allowed(identity string, perm Permission, key string) bool {
	if !a.Enabled() {
		return true
	}
	if perm == Read && key == SessionOpenKey && identity != "" {
		return true
	}
	u := a.User(identity)
	if u == nil {
		return false
	}
	for _, rn := range u.GetRoles() {
		for _, g := range a.role(rn).GetGrants() {
			if g.GetPermission() >= perm && strings.HasPrefix(key, g.GetPrefix()) {
				return true
			}
		}
	}
	return false
}

// ReadablePrefixes returns the smallest set of prefixes under prefix whose
// keys identity may read, in key order and disjoint: [prefix] itself if it
// may read all of it, none if nothing. List and Watch show only keys under
// them.
func (a *Auth) ReadablePrefixes(identity, prefix string) []string {
	if a.Allowed(identity, Read, prefix) {
		return []string{prefix}
	}
	var out []string
	if u := a.User(identity); u != nil {
		for _, rn := range u.GetRoles() {
			for _, g := range a.role(rn).GetGrants() {
				if strings.HasPrefix(g.GetPrefix(), prefix) {
					out = append(out, g.GetPrefix())
				}
			}
		}
	}
	slices.Sort(out)
	out = slices.Compact(out)
	// Drop every prefix a kept one covers: sorted, a covering prefix comes
	// just before those it covers.
	kept := out[:0]
	for _, p := range out {
		if len(kept) > 0 && strings.HasPrefix(p, kept[len(kept)-1]) {
			continue
		}
		kept = append(kept, p)
	}
	return kept
}

// Check refuses, naming identity, op and key, unless identity holds perm on
// key.
func (a *Auth) Check(identity string, perm Permission, op, key string) error {
	if a.Allowed(identity, perm, key) {
		return nil
	}
	return deny(identity, fmt.Sprintf("%s key %q", op, key), PermissionName(perm)+" on a prefix of the key")
}

// CheckAdmin refuses an administrative action (users, roles, auth,
// membership) unless identity holds admin on every key.
func (a *Auth) CheckAdmin(identity, action string) error {
	if a.Allowed(identity, Admin, "") {
		return nil
	}
	return deny(identity, action, `admin on "" (every key)`)
}

// CheckScan refuses a List or Watch of prefix under which identity may read
// nothing.
func (a *Auth) CheckScan(identity, op, prefix string) error {
	if len(a.ReadablePrefixes(identity, prefix)) > 0 {
		return nil
	}
	return deny(identity, fmt.Sprintf("%s keys under %q", op, prefix), "read on a prefix of it, or on a prefix under it")
}

func deny(identity, action, need string) error {
	return refusal(CodePermissionDenied, "permission denied: %s may not %s (needs %s)", identityName(identity), action, need)
}

// identityName is how a refusal names an identity.
func identityName(identity string) string {
	if identity == "" {
		return "an unauthenticated client"
	}
	return identity
}

// CheckCommand refuses a command its identity may not run; every key of a
// transaction is checked.
func (a *Auth) CheckCommand(cmd *cxkvpb.Command) error {
	if !a.Enabled() {
		return nil
	}
	id := cmd.GetIdentity()
	switch op := cmd.GetOp().(type) {
	case *cxkvpb.Command_Put:
		return a.Check(id, Write, "put", op.Put.GetKey())
	case *cxkvpb.Command_Delete:
		if op.Delete.GetForceRelease() {
			return a.Check(id, Admin, "force-release", op.Delete.GetKey())
		}
		return a.Check(id, Write, "delete", op.Delete.GetKey())
	case *cxkvpb.Command_Txn:
		return a.checkTxn(id, op.Txn)
	case *cxkvpb.Command_Auth:
		return a.CheckAdmin(id, "change users, roles or auth")
	}
	return nil // expiry: the leader's own, under no identity
}

func (a *Auth) checkTxn(id string, t *cxkvpb.TxnRequest) error {
	for _, c := range t.GetCompares() {
		if err := a.Check(id, Read, "compare", c.GetKey()); err != nil {
			return err
		}
	}
	for _, op := range t.GetOps() {
		perm, verb := Write, "put"
		switch op.GetType() {
		case cxkvpb.TxnOp_GET:
			perm, verb = Read, "get"
		case cxkvpb.TxnOp_DELETE:
			verb = "delete"
		}
		if err := a.Check(id, perm, verb, op.GetKey()); err != nil {
			return err
		}
	}
	return nil
}

// clusterAdmin reports whether some user holds admin on every key.
func (a *Auth) clusterAdmin() bool {
	on := &Auth{st: &cxkvpb.AuthState{Enabled: true, Users: a.st.Users, Roles: a.st.Roles}}
	for _, u := range a.st.GetUsers() {
		if on.Allowed(u.GetName(), Admin, "") {
			return true
		}
	}
	return false
}

// ValidateAuthName refuses a user or role name the CLI could not carry: 1
// to MaxAuthNameBytes of printable UTF-8 with no space and no ':' (the CLI's
// --user name:password separator).
func ValidateAuthName(kind, name string) error {
	if name == "" || len(name) > MaxAuthNameBytes || !utf8.ValidString(name) {
		return invalid("%s name %q: must be 1 to %d bytes of UTF-8", kind, name, MaxAuthNameBytes)
	}
	for _, r := range name {
		if r == ':' || unicode.IsSpace(r) || !unicode.IsPrint(r) {
			return invalid("%s name %q: no spaces, ':' or control characters", kind, name)
		}
	}
	return nil
}

// ValidateAuthChange checks an auth change's shape (names, prefix,
// permission), before proposing and again in Apply.
func ValidateAuthChange(r *cxkvpb.AuthChangeRequest) error {
	switch r.GetAction() {
	case cxkvpb.AuthChangeRequest_ENABLE, cxkvpb.AuthChangeRequest_DISABLE:
		return nil
	case cxkvpb.AuthChangeRequest_USER_ADD, cxkvpb.AuthChangeRequest_USER_DELETE, cxkvpb.AuthChangeRequest_USER_PASSWORD:
		return ValidateAuthName("user", r.GetUser())
	case cxkvpb.AuthChangeRequest_USER_GRANT, cxkvpb.AuthChangeRequest_USER_REVOKE:
		if err := ValidateAuthName("user", r.GetUser()); err != nil {
			return err
		}
		return ValidateAuthName("role", r.GetRole())
	case cxkvpb.AuthChangeRequest_ROLE_ADD, cxkvpb.AuthChangeRequest_ROLE_DELETE:
		return ValidateAuthName("role", r.GetRole())
	case cxkvpb.AuthChangeRequest_ROLE_GRANT, cxkvpb.AuthChangeRequest_ROLE_REVOKE:
		if err := ValidateAuthName("role", r.GetRole()); err != nil {
			return err
		}
		if p := r.GetPrefix(); p != "" {
			if err := ValidateKey(p); err != nil {
				return invalid("prefix %q: %v", p, err)
			}
		}
		if r.GetPermission() < Read || r.GetPermission() > Admin {
			return invalid("permission %d: want read, write or admin", r.GetPermission())
		}
		return nil
	}
	return invalid("unknown auth change %d", r.GetAction())
}

// applyAuth applies an auth change: pure, like every Apply, since the
// proposer hashed the password and drew the token key.
func (sm *StateMachine) applyAuth(b *kv.Batch, index uint64, cmd *cxkvpb.Command) (*cxkvpb.CommandResult, error) {
	ac := cmd.GetAuth()
	r := ac.GetRequest()
	if err := ValidateAuthChange(r); err != nil {
		return refused(err), nil
	}
	cur, err := sm.auth.Load(b)
	if err != nil {
		return nil, err
	}
	if err := cur.CheckCommand(cmd); err != nil {
		return refused(err), nil
	}
	next := &Auth{st: proto.Clone(cur.st).(*cxkvpb.AuthState)}
	if err := next.change(index, ac); err != nil {
		return refused(err), nil
	}
	if next.Enabled() && !next.clusterAdmin() {
		if r.GetAction() == cxkvpb.AuthChangeRequest_ENABLE {
			return refused(invalid("auth enable: no user holds admin on every key (\"\"), so nobody could manage the cluster once auth is on; " +
				"add one first: cxkv role add root; cxkv role grant root '' admin; cxkv user add NAME:PASSWORD; cxkv user grant NAME root")), nil
		}
		return refused(invalid("auth %s: it would leave no user with admin on every key (\"\"), locking everyone out of managing the cluster",
			strings.ReplaceAll(strings.ToLower(r.GetAction().String()), "_", " "))), nil
	}
	data, err := proto.MarshalOptions{Deterministic: true}.Marshal(next.st)
	if err != nil {
		return nil, err
	}
	if err := b.SetAuthState(data); err != nil {
		return nil, err
	}
	return &cxkvpb.CommandResult{Result: &cxkvpb.CommandResult_Auth{Auth: &cxkvpb.AuthChangeResponse{Index: index}}}, nil
}

// change applies one auth change to a's state (a copy).
func (a *Auth) change(index uint64, ac *cxkvpb.AuthCommand) error {
	r := ac.GetRequest()
	st := a.st
	if len(st.TokenKey) == 0 {
		// The first change brings the key tokens are signed with.
		st.TokenKey = ac.GetTokenKey()
	}
	switch r.GetAction() {
	case cxkvpb.AuthChangeRequest_ENABLE:
		if st.Enabled {
			return nil
		}
		if len(ac.GetTokenKey()) < 32 {
			return invalid("auth enable: the proposer sent a token key of %d bytes, want 32 or more", len(ac.GetTokenKey()))
		}
		st.Enabled, st.TokenKey = true, ac.GetTokenKey()
	case cxkvpb.AuthChangeRequest_DISABLE:
		st.Enabled = false
	case cxkvpb.AuthChangeRequest_USER_ADD:
		if a.User(r.GetUser()) != nil {
			return refusal(CodeAuthExists, "user %q already exists", r.GetUser())
		}
		u := &cxkvpb.AuthUser{Name: r.GetUser(), PasswordHash: ac.GetPasswordHash(), Revision: index}
		st.Users = insertSorted(st.Users, u, (*cxkvpb.AuthUser).GetName)
	case cxkvpb.AuthChangeRequest_USER_DELETE:
		if a.User(r.GetUser()) == nil {
			return refusal(CodeAuthNotFound, "no user %q", r.GetUser())
		}
		st.Users = slices.DeleteFunc(st.Users, func(u *cxkvpb.AuthUser) bool { return u.GetName() == r.GetUser() })
	case cxkvpb.AuthChangeRequest_USER_PASSWORD:
		u := a.User(r.GetUser())
		if u == nil {
			return refusal(CodeAuthNotFound, "no user %q", r.GetUser())
		}
		u.PasswordHash, u.Revision = ac.GetPasswordHash(), index
	case cxkvpb.AuthChangeRequest_USER_GRANT, cxkvpb.AuthChangeRequest_USER_REVOKE:
		u := a.User(r.GetUser())
		if u == nil {
			return refusal(CodeAuthNotFound, "no user %q", r.GetUser())
		}
		if a.role(r.GetRole()) == nil {
			return refusal(CodeAuthNotFound, "no role %q", r.GetRole())
		}
		u.Roles = slices.DeleteFunc(u.Roles, func(n string) bool { return n == r.GetRole() })
		if r.GetAction() == cxkvpb.AuthChangeRequest_USER_GRANT {
			u.Roles = append(u.Roles, r.GetRole())
			slices.Sort(u.Roles)
		}
	case cxkvpb.AuthChangeRequest_ROLE_ADD:
		if a.role(r.GetRole()) != nil {
			return refusal(CodeAuthExists, "role %q already exists", r.GetRole())
		}
		st.Roles = insertSorted(st.Roles, &cxkvpb.AuthRole{Name: r.GetRole()}, (*cxkvpb.AuthRole).GetName)
	case cxkvpb.AuthChangeRequest_ROLE_DELETE:
		if a.role(r.GetRole()) == nil {
			return refusal(CodeAuthNotFound, "no role %q", r.GetRole())
		}
		st.Roles = slices.DeleteFunc(st.Roles, func(x *cxkvpb.AuthRole) bool { return x.GetName() == r.GetRole() })
		for _, u := range st.Users {
			u.Roles = slices.DeleteFunc(u.Roles, func(n string) bool { return n == r.GetRole() })
		}
	case cxkvpb.AuthChangeRequest_ROLE_GRANT, cxkvpb.AuthChangeRequest_ROLE_REVOKE:
		role := a.role(r.GetRole())
		if role == nil {
			return refusal(CodeAuthNotFound, "no role %q", r.GetRole())
		}
		same := func(g *cxkvpb.Grant) bool {
			return g.GetPrefix() == r.GetPrefix() && g.GetPermission() == r.GetPermission()
		}
		if r.GetAction() == cxkvpb.AuthChangeRequest_ROLE_REVOKE {
			if !slices.ContainsFunc(role.Grants, same) {
				return refusal(CodeAuthNotFound, "role %q has no %s on %q", r.GetRole(), PermissionName(r.GetPermission()), r.GetPrefix())
			}
			role.Grants = slices.DeleteFunc(role.Grants, same)
			return nil
		}
		if !slices.ContainsFunc(role.Grants, same) {
			role.Grants = append(role.Grants, &cxkvpb.Grant{Prefix: r.GetPrefix(), Permission: r.GetPermission()})
			slices.SortFunc(role.Grants, func(x, y *cxkvpb.Grant) int {
				if c := strings.Compare(x.GetPrefix(), y.GetPrefix()); c != 0 {
					return c
				}
				return int(x.GetPermission()) - int(y.GetPermission())
			})
		}
	}
	return nil
}

func insertSorted[T any](s []T, v T, name func(T) string) []T {
	i, _ := slices.BinarySearchFunc(s, name(v), func(x T, n string) int { return strings.Compare(name(x), n) })
	return slices.Insert(s, i, v)
}
