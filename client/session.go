package client

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"iter"

	"github.com/cxkv/cxkv/api/cxkvpb"
	"github.com/cxkv/cxkv/api/cxkvrpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"
)

// Sessions (leases). A session is the key SessionKey(id), an ordinary key
// with a TTL: it is opened, renewed and closed by compare-exchange like any
// other key, and any number of keys can be attached to it. When the
// session's key is deleted (closed, force-closed) or expires, every key
// attached to it is deleted in the same log entry, with the same event type
// (EventDelete or EventExpire), so a watcher sees them all go at one index.
//
// The contract:
//
//   - Open: Put(ctx, SessionKey(id), owner, 0, WithTTL(ttl)). Renew:
//     Put(ctx, SessionKey(id), owner, index, WithTTL(ttl)) with the index
//     the previous open or renewal returned; one write renews the session
//     whatever the number of keys attached to it. A failed compare means the
//     session is gone (expired or closed) and so are its keys. Close:
//     Delete(ctx, SessionKey(id), index), or CloseSession to force it.
//   - Attach: Put(..., InSession(id)) or PutOp(...).InSession(id). Every
//     put sets the key's session as it sets its TTL: a put without
//     InSession detaches the key. An attached key may also have a TTL of its
//     own; it goes at whichever end comes first. Attaching to a session that
//     does not exist when the write applies writes nothing and fails with an
//     error IsNoSession reports; a refused transaction writes none of its
//     ops. A session's own key cannot be attached (InvalidArgument).
//   - The lease rule holds for the session exactly as for a key with a TTL:
//     the cluster counts a session's TTL from when the leader applied the
//     write that set it (a new leader, from when it took over), so a holder
//     that counts its lease from the moment it sent its latest successful
//     open or renewal, on its own monotonic clock, knows its session (and so
//     every key attached to it) is over no later than the cluster can delete
//     them and let anyone else create them. Renewing every TTL/3 leaves two
//     chances before the end.
//   - Limits: a session holds at most 65534 keys and 14 MiB of them (keys +
//     values + 64 bytes each), so that its end fits one log entry; a put
//     past them fails with FailedPrecondition and writes nothing.
//   - With auth enabled a session belongs to the identity that opened it:
//     renewing, closing or attaching to it by anyone else needs admin on
//     its key, and is refused with PermissionDenied otherwise.
//   - HeadOp(prefix) in the transaction that creates a queue entry answers
//     whether the entry is the queue's oldest, in that one write.
//
// Session ids are any string that makes a valid key with the prefix;
// NewSessionID makes a random one.

// SessionKey is the key of the session with this id.
func SessionKey(id string) string { return cxkvpb.SessionKey(id) }

// NewSessionID returns a random session id (32 hex digits).
func NewSessionID() string {
	var b [16]byte
	if _, err := rand.Read(b[:]); err != nil {
		panic(fmt.Sprintf("cxkv: no randomness for a session id: %v", err))
	}
	return hex.EncodeToString(b[:])
}

// InSession attaches the key to the session id: the key is deleted with the
// session. The session must exist when the write applies.
func InSession(id string) PutOption {
	return func(r *cxkvpb.PutRequest) { r.Session = id }
}

// InSession returns a PutOp that attaches its key to the session id (see the
// PutOption of the same name). Only a put attaches: on any other op the
// transaction is refused.
func (o Op) InSession(id string) Op {
	pb := proto.Clone(o.pb).(*cxkvpb.TxnOp)
	pb.Session = id
	return Op{pb}
}

// HeadOp reads, inside the transaction, the record under prefix with the
// lowest CreateIndex (the oldest: a queue's head) as the state stands after
// the ops before it; its result has Index 0 if there is none. Put a queue
// entry and ask HeadOp of the queue's prefix in one transaction: the entry
// is at the head exactly when the result's Key is the entry's. It costs the
// cluster one pass over the keys under prefix.
func HeadOp(prefix string) Op {
	return Op{&cxkvpb.TxnOp{Type: cxkvpb.TxnOp_HEAD, Key: prefix}}
}

// IsNoSession reports whether err is the refusal of a write that would have
// attached a key to a session that does not exist (it expired or was
// closed). Nothing of that write was applied.
func IsNoSession(err error) bool { return status.Code(err) == codes.NotFound }

// SessionInfo is one session as listed.
type SessionInfo struct {
	ID string
	// Record is the session's key: its value (by the lock recipe's
	// convention, the owner), index and TTL.
	Record Record
	// AttachedKeys and AttachedBytes are what is attached now (bytes as the
	// cluster counts them: key + value + 64 each).
	AttachedKeys  uint64
	AttachedBytes uint64
}

// Sessions iterates over the sessions whose id starts with prefix, in id
// order, a page at a time, each page a read of its own (as List).
func (c *Client) Sessions(ctx context.Context, prefix string, opts ...ReadOption) iter.Seq2[SessionInfo, error] {
	return func(yield func(SessionInfo, error) bool) {
		req := &cxkvpb.SessionsRequest{Prefix: prefix, Limit: uint32(listPageSize), Serializable: readOpts(opts).serializable}
		for {
			var resp *cxkvpb.SessionsResponse
			err := c.do(ctx, nil, func(ctx context.Context, kv cxkvrpc.KVClient) (h *cxkvpb.Header, err error) {
				resp, err = kv.Sessions(ctx, req)
				return resp.GetHeader(), err
			})
			if err != nil {
				yield(SessionInfo{}, err)
				return
			}
			for _, s := range resp.GetSessions() {
				info := SessionInfo{ID: s.GetId(), Record: fromProto(s.GetRecord()), AttachedKeys: s.GetAttachedKeys(), AttachedBytes: s.GetAttachedBytes()}
				if !yield(info, nil) {
					return
				}
			}
			if !resp.GetMore() || len(resp.GetSessions()) == 0 {
				return
			}
			req.After = resp.GetSessions()[len(resp.GetSessions())-1].GetId()
		}
	}
}

// CloseSession force-closes the session id: it deletes the session's key at
// the index it reads, reading again if the holder renewed in between, so
// every key attached to the session is deleted with it. It reports whether
// it closed the session (false: there was none).
func (c *Client) CloseSession(ctx context.Context, id string) (bool, error) {
	key := SessionKey(id)
	for {
		rec, err := c.Get(ctx, key)
		if err != nil || !rec.Exists() {
			return false, err
		}
		res, err := c.Delete(ctx, key, rec.Index)
		if err != nil {
			return false, err
		}
		if res.Successful {
			return true, nil
		}
		if err := ctx.Err(); err != nil {
			return false, err
		}
	}
}
