package client

import (
	"context"
	"errors"
	"fmt"
	"io"
	"sort"
	"strings"
	"time"

	"github.com/cxkv/cxkv/api/cxkvpb"
)

// LockInfo describes a lock as an operator sees it.
type LockInfo struct {
	Name      string
	Key       string // the key whose existence is the lock
	Mode      LockMode
	Owner     Owner
	Token     uint64
	Index     uint64        // the key's current index (renewals change it)
	TTL       time.Duration // the key's, or its session's
	ExpiresAt time.Time
	Waiters   []Owner // queued waiters, next first (QueueLock)
}

// ListLocks returns every lock whose name starts with prefix, held or
// waited for, ordered by name. It reads keys whose values are lock owners;
// other keys under prefix are skipped.
func ListLocks(ctx context.Context, c *Client, prefix string) ([]LockInfo, error) {
	type entry struct {
		rec   Record
		owner Owner
	}
	queues := map[string][]entry{}
	var out []LockInfo
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
		out = append(out, lockInfo(rec, o, PlainLock))
	}
	for name, q := range queues {
		sort.Slice(q, func(i, j int) bool { return q[i].rec.CreateIndex < q[j].rec.CreateIndex })
		info := lockInfo(q[0].rec, q[0].owner, QueueLock)
		info.Name = name
		for _, e := range q[1:] {
			info.Waiters = append(info.Waiters, e.owner)
		}
		out = append(out, info)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Name < out[j].Name })
	// A lock attached to its monitor's session lives as long as the
	// session: its TTL and expiry are the session's.
	sessions := map[string]Record{}
	for i := range out {
		id := out[i].Owner.Session
		if id == "" || out[i].TTL != 0 {
			continue
		}
		rec, ok := sessions[id]
		if !ok {
			var err error
			if rec, err = c.Get(ctx, SessionKey(id)); err != nil {
				return nil, err
			}
			sessions[id] = rec
		}
		out[i].TTL, out[i].ExpiresAt = rec.TTL, rec.ExpiresAt
	}
	return out, nil
}

func lockInfo(rec Record, o Owner, mode LockMode) LockInfo {
	info := LockInfo{Name: rec.Key, Key: rec.Key, Mode: mode, Owner: o, Index: rec.Index, TTL: rec.TTL, ExpiresAt: rec.ExpiresAt}
	// Both modes create the key with the acquiring (or queueing) put, and
	// renewals keep the create index: it is the token.
	info.Token = rec.CreateIndex
	return info
}

// ForceRelease removes the lock called name whoever holds it, and returns
// who held it. The holder's next renewal or guarded write fails and its
// Lost channel closes; with a QueueLock the next waiter takes the lock.
// It returns an error matching ErrNotLocked if nobody holds it.
func ForceRelease(ctx context.Context, c *Client, name string) (LockInfo, error) {
	if err := validLockName(name); err != nil {
		return LockInfo{}, err
	}
	for {
		locks, err := ListLocks(ctx, c, name)
		if err != nil {
			return LockInfo{}, err
		}
		var held *LockInfo
		for i := range locks {
			if locks[i].Name == name {
				held = &locks[i]
			}
		}
		if held == nil {
			return LockInfo{}, fmt.Errorf("%w: %q", ErrNotLocked, name)
		}
		// Marked as a force-release: with auth on it needs admin on the
		// key, where a holder's own release needs write.
		res, err := c.delete(ctx, &cxkvpb.DeleteRequest{Key: held.Key, ExpectIndex: held.Index, ForceRelease: true})
		if err != nil {
			return LockInfo{}, err
		}
		if res.Successful {
			return *held, nil
		}
		// The holder renewed (or released) between the read and the delete:
		// read again.
	}
}

// BackupInfo describes a backup the cluster streamed.
type BackupInfo struct {
	Endpoint string // the member that answered
	MemberID uint64
	Index    uint64 // the applied index of the state copied
	Bytes    int64
}

// Backup streams a copy of one member's state, at one applied index, into
// w: the snapshot format `cxkv snapshot status` reads and `cxkv snapshot
// restore` takes. Unless Serializable, the copy holds every write
// acknowledged before the call. The preferred member is asked first; the
// next is tried only if the stream failed before w received anything. There
// is no overall deadline beyond ctx's: each message must arrive within the
// client's RequestTimeout of the previous one, so a large backup takes as
// long as it needs.
func (c *Client) Backup(ctx context.Context, w io.Writer, opts ...ReadOption) (BackupInfo, error) {
	if c.closed.Load() {
		return BackupInfo{}, ErrClosed
	}
	req := &cxkvpb.SnapshotRequest{Serializable: readOpts(opts).serializable}
	var last error
	r := retrier{c: c}
	rctx, cancel := context.WithTimeout(ctx, c.cfg.RetryTimeout)
	defer cancel()
	for {
		i, ep := c.pick()
		info, wrote, err := c.backupFrom(ctx, ep, req, w)
		if err == nil {
			return info, nil
		}
		if wrote || !retryable(rctx, err) {
			return info, err
		}
		last = err
		if werr := r.next(rctx, i); werr != nil {
			if werr == ErrClosed {
				return BackupInfo{}, ErrClosed
			}
			return BackupInfo{}, last
		}
	}
}

func (c *Client) backupFrom(ctx context.Context, ep *endpoint, req *cxkvpb.SnapshotRequest, w io.Writer) (info BackupInfo, wrote bool, err error) {
	ctx, cancel := context.WithCancelCause(ctx)
	defer cancel(nil)
	idle := time.AfterFunc(c.cfg.RequestTimeout, func() {
		cancel(fmt.Errorf("cxkv: backup from %s: no data for %v", ep.addr, c.cfg.RequestTimeout))
	})
	defer idle.Stop()
	defer func() {
		if cause := context.Cause(ctx); err != nil && cause != nil && !errors.Is(cause, context.Canceled) {
			err = fmt.Errorf("%w (%v)", err, cause)
		}
	}()
	s, err := ep.kv.Snapshot(ctx, req)
	if err != nil {
		return info, false, err
	}
	info.Endpoint = ep.addr
	for {
		resp, err := s.Recv()
		if errors.Is(err, io.EOF) {
			if info.MemberID == 0 {
				return info, wrote, fmt.Errorf("cxkv: backup from %s: the stream ended without a header", ep.addr)
			}
			return info, wrote, nil
		}
		if err != nil {
			return info, wrote, err
		}
		idle.Reset(c.cfg.RequestTimeout)
		if h := resp.GetHeader(); h != nil {
			c.observe(ep, h)
			info.MemberID, info.Index = h.GetMemberId(), h.GetAppliedIndex()
		}
		if len(resp.GetData()) == 0 {
			continue
		}
		wrote = true
		n, err := w.Write(resp.GetData())
		info.Bytes += int64(n)
		if err != nil {
			return info, wrote, err
		}
	}
}
