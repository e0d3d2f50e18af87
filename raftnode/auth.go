package raftnode

import (
	"context"
	"crypto/rand"
	"errors"
	"fmt"
	"strings"

	"github.com/cxkv/cxkv/api/cxkvpb"
	"github.com/cxkv/cxkv/api/cxkvrpc"
	"github.com/cxkv/cxkv/cmpxchg"
	"github.com/cxkv/cxkv/kv"
	"golang.org/x/crypto/bcrypt"
	"google.golang.org/grpc"
	"google.golang.org/grpc/metadata"
)

// The member's side of auth: who is asking (identity), and the checks made
// where a request arrives. The rules themselves, and the state they read,
// are the state machine's (cmpxchg/auth.go), so the member that receives a
// request and Apply on every member judge it alike.
//
// Which state a check reads: a read is checked after its ReadIndex wait,
// against the auth state the member has then applied (at least the read's
// index); a write is checked here against the member's applied state to
// refuse early, and again by Apply against the state at the write's own
// entry, which is what decides. A List or Watch is filtered by the state
// at the time of each page or batch.

// errUnauthenticated: the request carried a token that is not valid now
// (malformed, forged, expired, or its user's password changed since).
var errUnauthenticated = errors.New("unauthenticated")

// authMetadataKey is the gRPC metadata that carries a token.
const authMetadataKey = cxkvpb.AuthMetadataKey

// identityKey is the context key of the identity the interceptors resolved.
type identityKey struct{}

// identityOf returns the identity the request was authenticated as ("" for
// none, or with auth disabled).
func identityOf(ctx context.Context) string {
	id, _ := ctx.Value(identityKey{}).(string)
	return id
}

// auth returns the auth state the member has applied. A request pays a
// lookup and a compare, not a decode, while auth does not change (n.authz).
func (n *Node) auth() (*cmpxchg.Auth, error) {
	data, err := n.store.AuthState()
	if err != nil {
		return nil, err
	}
	return n.authz.Decode(data)
}

// authenticate resolves the identity of a client call: a token's user if it
// carries one, else the common name of a verified client certificate, else
// none. A token this member cannot verify may be one it is behind on (a
// user, password or key another member has applied): it catches up to a
// ReadIndex and tries again before refusing it. With auth disabled a token
// that does not verify is ignored: nothing is checked.
func (n *Node) authenticate(ctx context.Context) (string, error) {
	vals := metadata.ValueFromIncomingContext(ctx, authMetadataKey) // no copy of the rest
	if len(vals) == 0 {
		name, _ := ClientCommonName(ctx) // with --client-cert-auth
		return name, nil
	}
	tok, ok := strings.CutPrefix(vals[0], "Bearer ")
	if !ok {
		return "", fmt.Errorf("%w: the %s metadata must be \"Bearer <token>\"", errUnauthenticated, authMetadataKey)
	}
	a, err := n.auth()
	if err != nil {
		return "", err
	}
	user, verr := verifyToken(a, tok, n.cfg.WallClock())
	if verr == nil {
		return user, nil
	}
	rctx, cancel := n.requestContext(ctx)
	defer cancel()
	if err := n.readIndex(rctx); err != nil {
		return "", err
	}
	if a, err = n.auth(); err != nil {
		return "", err
	}
	if user, verr = verifyToken(a, tok, n.cfg.WallClock()); verr == nil {
		return user, nil
	}
	if !a.Enabled() {
		return "", nil
	}
	return "", verr
}

// clientService reports whether a method is of the client API, whose
// handlers check each key themselves. The peer API and health are not
// checked here (peers prove themselves by certificate); every other service
// (membership, say) is administration and needs admin on every key, except
// the member list: members ask each other for it with no identity to offer
// (a bootstrapping member's wiped-disk check, a joining member learning its
// cluster), and it tells no more than Status does (ids, peer addresses,
// roles).
//
// A backup (KV/Snapshot) is administration too: it carries every key and
// the auth state, password hashes and the token key with it.
func clientService(method string) (checked bool, admin bool) {
	switch {
	case method == cxkvrpc.KV_Snapshot_FullMethodName:
		return true, true
	case strings.HasPrefix(method, "/cxkv.v1.KV/"), method == cxkvrpc.Cluster_MemberList_FullMethodName:
		return true, false
	case strings.HasPrefix(method, "/cxkv.v1.Peer/"), strings.HasPrefix(method, "/grpc.health.v1.Health/"):
		return false, false
	}
	return true, true
}

// authUnary resolves the caller's identity into the context.
func (n *Node) authUnary(ctx context.Context, req any, info *grpc.UnaryServerInfo, handler grpc.UnaryHandler) (any, error) {
	ctx, err := n.identify(ctx, info.FullMethod, req)
	if err != nil {
		return nil, toStatus(writeFailure(beforeProposing(err), n.cfg.ID))
	}
	return handler(ctx, req)
}

// authStream is authUnary for streams (Watch).
func (n *Node) authStream(srv any, ss grpc.ServerStream, info *grpc.StreamServerInfo, handler grpc.StreamHandler) error {
	ctx, err := n.identify(ss.Context(), info.FullMethod, nil)
	if err != nil {
		return toStatus(writeFailure(beforeProposing(err), n.cfg.ID))
	}
	return handler(srv, &streamWithContext{ServerStream: ss, ctx: ctx})
}

// identify refuses a call it cannot authenticate, or an administrative
// one its identity may not make, before the handler runs: so a write it
// refuses was never proposed, and says so.
func (n *Node) identify(ctx context.Context, method string, req any) (context.Context, error) {
	checked, admin := clientService(method)
	if !checked {
		return ctx, nil
	}
	id, err := n.authenticate(ctx)
	if err != nil {
		return nil, err
	}
	if admin {
		a, err := n.auth()
		if err != nil {
			return nil, err
		}
		if err := a.CheckAdmin(id, adminAction(method, req)); err != nil {
			return nil, err
		}
	}
	return context.WithValue(ctx, identityKey{}, id), nil
}

// adminAction names an administrative call (req nil for a stream) as its
// user knows it, in the CLI's words, for a refusal.
func adminAction(method string, req any) string {
	switch r := req.(type) {
	case *cxkvpb.MemberAddRequest:
		return fmt.Sprintf("add member %d at %q", r.GetId(), r.GetAddr())
	case *cxkvpb.MemberRemoveRequest:
		return fmt.Sprintf("remove member %d", r.GetId())
	case *cxkvpb.MemberPromoteRequest:
		return fmt.Sprintf("promote member %d", r.GetId())
	case *cxkvpb.MemberUpdateRequest:
		return fmt.Sprintf("update member %d to %q", r.GetId(), r.GetAddr())
	case *cxkvpb.MoveLeaderRequest:
		return fmt.Sprintf("move the leadership to member %d", r.GetId())
	}
	if method == cxkvrpc.KV_Snapshot_FullMethodName {
		return "back up the whole state"
	}
	return "call " + method // a call this list has not named yet
}

// authorize refuses unless identity holds perm on key in the member's
// applied auth state.
func (n *Node) authorize(identity string, perm cmpxchg.Permission, op, key string) error {
	a, err := n.auth()
	if err != nil {
		return err
	}
	return a.Check(identity, perm, op, key)
}

// authorizeWrite refuses a write its identity may not make, before it is
// proposed. A refusal by this member's applied state is confirmed at a
// ReadIndex first: a member behind a grant that was already acknowledged
// must not refuse what the grant allows. (An allowance needs no such care:
// Apply judges the write again at its own entry.)
func (s *kvService) authorizeWrite(ctx context.Context, cmd *cxkvpb.Command) error {
	a, err := s.n.auth()
	if err != nil || a.CheckCommand(cmd) == nil {
		return err
	}
	if err := s.read(ctx, false); err != nil {
		return err
	}
	if a, err = s.n.auth(); err != nil {
		return err
	}
	return a.CheckCommand(cmd)
}

// readable returns the prefixes under prefix the identity may read (see
// cmpxchg.Auth.ReadablePrefixes), refusing a prefix with none.
func (n *Node) readable(identity, op, prefix string) ([]string, error) {
	a, err := n.auth()
	if err != nil {
		return nil, err
	}
	if err := a.CheckScan(identity, op, prefix); err != nil {
		return nil, err
	}
	return a.ReadablePrefixes(identity, prefix), nil
}

// Authenticate exchanges a password for a token.
func (s *kvService) Authenticate(ctx context.Context, r *cxkvpb.AuthenticateRequest) (*cxkvpb.AuthenticateResponse, error) {
	// Linearizable, so a user just added or a password just changed on
	// another member is seen.
	if err := s.read(ctx, false); err != nil {
		return nil, toStatus(err)
	}
	a, err := s.n.auth()
	if err != nil {
		return nil, toStatus(err)
	}
	u := a.User(r.GetName())
	if u == nil || len(u.GetPasswordHash()) == 0 ||
		bcrypt.CompareHashAndPassword(u.GetPasswordHash(), []byte(r.GetPassword())) != nil {
		// One answer for every failure, so the answer does not tell which
		// user names exist.
		return nil, toStatus(fmt.Errorf("%w: wrong user name or password", errUnauthenticated))
	}
	tok, err := issueToken(a, u, s.n.cfg.WallClock())
	if err != nil {
		return nil, toStatus(err)
	}
	return &cxkvpb.AuthenticateResponse{Header: s.header(), Token: tok, TtlMs: TokenTTL.Milliseconds()}, nil
}

// AuthChange proposes a change of users, roles or the enabled flag: the
// password hashed and a fresh token key drawn here, so Apply stays a pure
// function of the entry.
func (s *kvService) AuthChange(ctx context.Context, r *cxkvpb.AuthChangeRequest) (*cxkvpb.AuthChangeResponse, error) {
	invalid := cmpxchg.ValidateAuthChange(r)
	ac := &cxkvpb.AuthCommand{Request: r}
	if invalid == nil {
		ac, invalid = s.authCommand(r)
	}
	cmd := &cxkvpb.Command{Op: &cxkvpb.Command_Auth{Auth: ac}}
	return write(s, ctx, invalid, cmd, (*cxkvpb.CommandResult).GetAuth,
		func(out *cxkvpb.AuthChangeResponse, h *cxkvpb.Header) { out.Header = h })
}

// authCommand makes the logged form of an auth change.
func (s *kvService) authCommand(r *cxkvpb.AuthChangeRequest) (*cxkvpb.AuthCommand, error) {
	logged := &cxkvpb.AuthChangeRequest{
		Action: r.GetAction(), User: r.GetUser(), Role: r.GetRole(),
		Prefix: r.GetPrefix(), Permission: r.GetPermission(), WriteId: r.GetWriteId(),
	}
	ac := &cxkvpb.AuthCommand{Request: logged}
	switch r.GetAction() {
	case cxkvpb.AuthChangeRequest_USER_ADD, cxkvpb.AuthChangeRequest_USER_PASSWORD:
		if r.GetPassword() == "" {
			break // no password: the user can only be a certificate's name
		}
		cost := s.n.cfg.PasswordCost
		if cost == 0 {
			cost = bcrypt.DefaultCost
		}
		h, err := bcrypt.GenerateFromPassword([]byte(r.GetPassword()), cost)
		if err != nil {
			return nil, &cmpxchg.Error{Code: cmpxchg.CodeInvalid, Message: fmt.Sprintf("password of user %q: %v", r.GetUser(), err)}
		}
		ac.PasswordHash = h
	}
	// Every change carries a fresh key: the first one the state sees
	// becomes its token key (so tokens can be issued and checked before
	// auth is enabled), and enabling replaces it.
	ac.TokenKey = make([]byte, 32)
	rand.Read(ac.TokenKey)
	return ac, nil
}

// AuthStatus lists users (without password hashes) and roles.
func (s *kvService) AuthStatus(ctx context.Context, _ *cxkvpb.AuthStatusRequest) (*cxkvpb.AuthStatusResponse, error) {
	if err := s.read(ctx, false); err != nil {
		return nil, toStatus(err)
	}
	a, err := s.n.auth()
	if err != nil {
		return nil, toStatus(err)
	}
	if err := a.CheckAdmin(identityOf(ctx), "list users and roles"); err != nil {
		return nil, toStatus(err)
	}
	out := a.Public()
	out.Header = s.header()
	return out, nil
}

// listRanges lists one page across the readable ranges of a List (disjoint,
// in key order), so a page holds only keys the identity may read and pages
// on by key like any List.
func (n *Node) listRanges(ranges []string, after string, limit int) ([]kv.Record, bool, error) {
	var out []kv.Record
	budget := cmpxchg.MaxAnswerBytes
	for i, p := range ranges {
		recs, more, err := n.store.List(p, after, limit-len(out), budget)
		if err != nil {
			return nil, false, err
		}
		out = append(out, recs...)
		for _, r := range recs {
			budget -= r.AnswerBytes()
		}
		if more {
			return out, true, nil
		}
		if len(out) == limit || budget <= 0 {
			return out, i < len(ranges)-1, nil
		}
	}
	return out, false, nil
}

// readableEvents keeps the events whose keys identity may read, by the auth
// state the member has applied now.
func (n *Node) readableEvents(identity string, evs []kv.Event) ([]kv.Event, error) {
	a, err := n.auth()
	if err != nil {
		return nil, err
	}
	if !a.Enabled() {
		return evs, nil
	}
	kept := evs[:0:0]
	for _, e := range evs {
		if a.Allowed(identity, cmpxchg.Read, e.Record.Key) {
			kept = append(kept, e)
		}
	}
	return kept, nil
}
