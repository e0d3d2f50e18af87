package client

import (
	"context"
	"errors"
	"fmt"
	"io"
	"time"

	"github.com/cxkv/cxkv/api/cxkvpb"
)

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
		if werr := r.next(rctx, i, err); werr != nil {
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
