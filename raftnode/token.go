package raftnode

import (
	"crypto/hmac"
	"crypto/sha256"
	"encoding/base64"
	"fmt"
	"strings"
	"time"

	"github.com/cxkv/cxkv/api/cxkvpb"
	"github.com/cxkv/cxkv/cmpxchg"
	"google.golang.org/protobuf/proto"
)

// Tokens: what Authenticate hands out for a password, checkable by every
// member with no call to another: base64url(AuthToken) "." base64url(HMAC-
// SHA256 of it), keyed with the token key in the replicated auth state. The
// key is drawn by the member that proposes an auth change: the first change
// brings it (so a user can log in before auth is enabled), and each "auth
// enable" replaces it, which ends every earlier token. A token names its user's revision (the index of
// the entry that created the user or last set its password), so a new
// password or a deleted user ends it too. Its expiry is the issuing member's
// wall clock plus TokenTTL, judged by the checking member's wall clock: the
// members' clocks must agree to well within TokenTTL.

// TokenTTL is how long a token is valid after it is issued. The SDK
// authenticates again at half of it.
const TokenTTL = 5 * time.Minute

var tokenEncoding = base64.RawURLEncoding

func tokenMAC(key, payload []byte) []byte {
	m := hmac.New(sha256.New, key)
	m.Write(payload)
	return m.Sum(nil)
}

// issueToken signs a token for u that expires TokenTTL after now.
func issueToken(a *cmpxchg.Auth, u *cxkvpb.AuthUser, now time.Time) (string, error) {
	payload, err := proto.Marshal(&cxkvpb.AuthToken{User: u.GetName(), Revision: u.GetRevision(), ExpiresAtUnixMs: now.Add(TokenTTL).UnixMilli()})
	if err != nil {
		return "", err
	}
	return tokenEncoding.EncodeToString(payload) + "." + tokenEncoding.EncodeToString(tokenMAC(a.TokenKey(), payload)), nil
}

// verifyToken returns the user a token names if it is valid at now.
func verifyToken(a *cmpxchg.Auth, tok string, now time.Time) (string, error) {
	p, s, ok := strings.Cut(tok, ".")
	payload, perr := tokenEncoding.DecodeString(p)
	sig, serr := tokenEncoding.DecodeString(s)
	if !ok || perr != nil || serr != nil || len(a.TokenKey()) == 0 || !hmac.Equal(sig, tokenMAC(a.TokenKey(), payload)) {
		return "", fmt.Errorf("%w: the token is not one this cluster issued since auth was last enabled; authenticate again", errUnauthenticated)
	}
	t := &cxkvpb.AuthToken{}
	if err := proto.Unmarshal(payload, t); err != nil {
		return "", fmt.Errorf("%w: malformed token: %v", errUnauthenticated, err)
	}
	if now.UnixMilli() >= t.GetExpiresAtUnixMs() {
		return "", fmt.Errorf("%w: the token of user %q expired at %s; authenticate again", errUnauthenticated, t.GetUser(),
			time.UnixMilli(t.GetExpiresAtUnixMs()).UTC().Format(time.RFC3339))
	}
	if u := a.User(t.GetUser()); u == nil || u.GetRevision() != t.GetRevision() {
		return "", fmt.Errorf("%w: user %q was deleted or its password changed since the token was issued; authenticate again", errUnauthenticated, t.GetUser())
	}
	return t.GetUser(), nil
}
