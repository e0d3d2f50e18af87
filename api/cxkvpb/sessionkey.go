package cxkvpb

// SessionKeyPrefix is where sessions live: the session with id ID is the
// key SessionKeyPrefix + ID, an ordinary key with a TTL, created, renewed
// and deleted by compare-exchange like any other. A key attached to a
// session (PutRequest.session, TxnOp.session) is deleted in the same log
// entry that deletes or expires the session's key. Keys under this prefix
// cannot themselves be attached to a session.
const SessionKeyPrefix = "cxkv/sessions/"

// SessionKey is the key of the session with this id.
func SessionKey(id string) string { return SessionKeyPrefix + id }
