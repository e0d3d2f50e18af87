package lock

import (
	"context"
	"fmt"
	"sort"
	"strings"
	"time"

	"github.com/cxkv/cxkv/client"
)

// Info describes a lock as an operator sees it.
type Info struct {
	Name      string
	Key       string // the key whose existence is the lock
	Mode      Mode
	Owner     Owner
	Token     uint64
	Index     uint64        // the key's current index (renewals change it)
	TTL       time.Duration // the key's, or its session's
	ExpiresAt time.Time
	Waiters   []Owner // queued waiters, next first (Queue)
}

// List returns every lock whose name starts with prefix, held or
// waited for, ordered by name. It reads keys whose values are lock owners;
// other keys under prefix are skipped.
func List(ctx context.Context, c *client.Client, prefix string) ([]Info, error) {
	type entry struct {
		rec   client.Record
		owner Owner
	}
	queues := map[string][]entry{}
	var out []Info
	for rec, err := range c.List(ctx, prefix) {
		if err != nil {
			return nil, err
		}
		o, ok := decodeOwner(rec.Value)
		if !ok {
			continue
		}
		if i := strings.LastIndex(rec.Key, queueInfix); i > 0 {
			name := rec.Key[:i]
			queues[name] = append(queues[name], entry{rec, o})
			continue
		}
		out = append(out, lockInfo(rec, o, Plain))
	}
	for name, q := range queues {
		sort.Slice(q, func(i, j int) bool { return q[i].rec.CreateIndex < q[j].rec.CreateIndex })
		info := lockInfo(q[0].rec, q[0].owner, Queue)
		info.Name = name
		for _, e := range q[1:] {
			info.Waiters = append(info.Waiters, e.owner)
		}
		out = append(out, info)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Name < out[j].Name })
	// A lock attached to its monitor's session lives as long as the
	// session: its TTL and expiry are the session's.
	sessions := map[string]client.Record{}
	for i := range out {
		id := out[i].Owner.Session
		if id == "" || out[i].TTL != 0 {
			continue
		}
		rec, ok := sessions[id]
		if !ok {
			var err error
			if rec, err = c.Get(ctx, client.SessionKey(id)); err != nil {
				return nil, err
			}
			sessions[id] = rec
		}
		out[i].TTL, out[i].ExpiresAt = rec.TTL, rec.ExpiresAt
	}
	return out, nil
}

func lockInfo(rec client.Record, o Owner, mode Mode) Info {
	info := Info{Name: rec.Key, Key: rec.Key, Mode: mode, Owner: o, Index: rec.Index, TTL: rec.TTL, ExpiresAt: rec.ExpiresAt}
	// Both modes create the key with the acquiring (or queueing) put, and
	// renewals keep the create index: it is the token.
	info.Token = rec.CreateIndex
	return info
}

// ForceRelease removes the lock called name whoever holds it, and returns
// who held it. The holder's next renewal or guarded write fails and its
// Lost channel closes; with a Queue lock the next waiter takes the lock.
// It returns an error matching ErrNotLocked if nobody holds it.
func ForceRelease(ctx context.Context, c *client.Client, name string) (Info, error) {
	if err := validLockName(name); err != nil {
		return Info{}, err
	}
	for {
		locks, err := List(ctx, c, name)
		if err != nil {
			return Info{}, err
		}
		var held *Info
		for i := range locks {
			if locks[i].Name == name {
				held = &locks[i]
			}
		}
		if held == nil {
			return Info{}, fmt.Errorf("%w: %q", ErrNotLocked, name)
		}
		// Marked as a force-release: with auth on it needs admin on the
		// key, where a holder's own release needs write.
		res, err := c.Delete(ctx, held.Key, held.Index, client.AsForceRelease())
		if err != nil {
			return Info{}, err
		}
		if res.Successful {
			return *held, nil
		}
		// The holder renewed (or released) between the read and the delete:
		// read again.
	}
}
