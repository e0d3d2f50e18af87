package cmpxchg

import (
	"strings"

	"github.com/cxkv/cxkv/api/cxkvpb"
	"github.com/cxkv/cxkv/kv"
)

// Sessions: a session is the key cxkvpb.SessionKey(id), an ordinary key
// with a TTL; a put may attach its key to it, and removing the session's key
// removes every attached key in the same entry (plan.remove). These bounds
// make that one entry always possible: the session's end is never refused,
// since an expiry that could not apply would leave its keys forever.
const (
	// MaxSessionKeys is the most keys attached to one session: with the
	// session's own key, the events one log index can hold.
	MaxSessionKeys = kv.MaxEventsPerIndex - 1
	// MaxSessionBytes bounds the attached keys' AnswerBytes (key + value +
	// 64 each), so that the session's end, its own record included, fits
	// one answer: a watcher receives one index's events in one message.
	MaxSessionBytes = MaxAnswerBytes - MaxRecordBytes
)

// validateAttach checks a put's session: its key must be a valid key, and a
// session's own key attaches to nothing (a session's end removes one level
// of keys, so its cost stays the count of its own keys).
func validateAttach(key, session string) error {
	if session == "" {
		return nil
	}
	if err := ValidateKey(cxkvpb.SessionKey(session)); err != nil {
		return invalid("session id %q of %q does not make a valid session key: %s", session, key, err)
	}
	if strings.HasPrefix(key, cxkvpb.SessionKeyPrefix) {
		return invalid("%q is a session's key (under %q); it cannot be attached to session %q", key, cxkvpb.SessionKeyPrefix, session)
	}
	return nil
}
