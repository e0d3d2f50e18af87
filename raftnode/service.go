package raftnode

import (
	"context"
	"fmt"
	"sort"
	"time"

	"github.com/cxkv/cxkv/api/cxkvpb"
	"github.com/cxkv/cxkv/api/cxkvrpc"
	"github.com/cxkv/cxkv/cmpxchg"
	"github.com/cxkv/cxkv/kv"
	"google.golang.org/protobuf/proto"
)

// progressInterval is the least time between two progress notices on one
// watch stream.
const progressInterval = 100 * time.Millisecond

// kvService is the client API. Every member serves all of it: writes are
// proposed here and forwarded to the leader by raft; reads confirm through
// ReadIndex, unless serializable.
type kvService struct {
	cxkvrpc.UnimplementedKVServer
	n *Node
}

func (s *kvService) header() *cxkvpb.Header {
	st := s.n.Status()
	return &cxkvpb.Header{
		MemberId: s.n.cfg.ID, LeaderId: st.Leader, Term: st.Term, AppliedIndex: s.n.applied.get(),
		QuorumContact: st.Leader == s.n.cfg.ID && s.n.inQuorumContact(),
	}
}

func (s *kvService) read(ctx context.Context, serializable bool) error {
	if serializable {
		return nil
	}
	ctx, cancel := s.n.requestContext(ctx)
	defer cancel()
	return s.n.readIndex(ctx)
}

func (s *kvService) Get(ctx context.Context, r *cxkvpb.GetRequest) (*cxkvpb.GetResponse, error) {
	if err := cmpxchg.ValidateKey(r.GetKey()); err != nil {
		return nil, toStatus(err)
	}
	if err := s.read(ctx, r.GetSerializable()); err != nil {
		return nil, toStatus(err)
	}
	if err := s.n.authorize(identityOf(ctx), cmpxchg.Read, "get", r.GetKey()); err != nil {
		return nil, toStatus(err)
	}
	h := s.header()
	rec, found, err := s.n.store.Get(r.GetKey())
	if err != nil {
		return nil, toStatus(err)
	}
	return &cxkvpb.GetResponse{Header: h, Record: cmpxchg.RecordToProto(rec), Found: found}, nil
}

func (s *kvService) List(ctx context.Context, r *cxkvpb.ListRequest) (*cxkvpb.ListResponse, error) {
	if err := cmpxchg.ValidateList(r); err != nil {
		return nil, toStatus(err)
	}
	if err := s.read(ctx, r.GetSerializable()); err != nil {
		return nil, toStatus(err)
	}
	limit := int(r.GetLimit())
	if limit == 0 {
		limit = cmpxchg.DefaultListLimit
	}
	ranges, err := s.n.readable(identityOf(ctx), "list", r.GetPrefix())
	if err != nil {
		return nil, toStatus(err)
	}
	h := s.header()
	recs, more, err := s.n.listRanges(ranges, r.GetAfter(), limit)
	if err != nil {
		return nil, toStatus(err)
	}
	resp := &cxkvpb.ListResponse{Header: h, More: more}
	for _, rec := range recs {
		resp.Records = append(resp.Records, cmpxchg.RecordToProto(rec))
	}
	return resp, nil
}

func (s *kvService) Sessions(ctx context.Context, r *cxkvpb.SessionsRequest) (*cxkvpb.SessionsResponse, error) {
	if err := cmpxchg.ValidateSessions(r); err != nil {
		return nil, toStatus(err)
	}
	if err := s.read(ctx, r.GetSerializable()); err != nil {
		return nil, toStatus(err)
	}
	if err := s.n.authorize(identityOf(ctx), cmpxchg.Read, "list sessions under", cxkvpb.SessionKeyPrefix+r.GetPrefix()); err != nil {
		return nil, toStatus(err)
	}
	limit := int(r.GetLimit())
	if limit == 0 {
		limit = cmpxchg.DefaultListLimit
	}
	h := s.header()
	infos, more, err := s.n.store.ListSessions(r.GetPrefix(), r.GetAfter(), limit, cmpxchg.MaxAnswerBytes)
	if err != nil {
		return nil, toStatus(err)
	}
	resp := &cxkvpb.SessionsResponse{Header: h, More: more}
	for _, in := range infos {
		resp.Sessions = append(resp.Sessions, &cxkvpb.Session{
			Id: in.ID, Record: cmpxchg.RecordToProto(in.Record),
			AttachedKeys: in.Tally.Keys, AttachedBytes: in.Tally.Bytes,
		})
	}
	return resp, nil
}

func (s *kvService) Put(ctx context.Context, r *cxkvpb.PutRequest) (*cxkvpb.PutResponse, error) {
	return write(s, ctx, cmpxchg.ValidatePut(r, s.n.cfg.Limits), &cxkvpb.Command{Op: &cxkvpb.Command_Put{Put: r}},
		(*cxkvpb.CommandResult).GetPut, func(out *cxkvpb.PutResponse, h *cxkvpb.Header) { out.Header = h })
}

func (s *kvService) Delete(ctx context.Context, r *cxkvpb.DeleteRequest) (*cxkvpb.DeleteResponse, error) {
	return write(s, ctx, cmpxchg.ValidateDelete(r, s.n.cfg.Limits), &cxkvpb.Command{Op: &cxkvpb.Command_Delete{Delete: r}},
		(*cxkvpb.CommandResult).GetDelete, func(out *cxkvpb.DeleteResponse, h *cxkvpb.Header) { out.Header = h })
}

func (s *kvService) Txn(ctx context.Context, r *cxkvpb.TxnRequest) (*cxkvpb.TxnResponse, error) {
	return write(s, ctx, cmpxchg.ValidateTxn(r, s.n.cfg.Limits), &cxkvpb.Command{Op: &cxkvpb.Command_Txn{Txn: r}},
		(*cxkvpb.CommandResult).GetTxn, func(out *cxkvpb.TxnResponse, h *cxkvpb.Header) { out.Header = h })
}

// write is every write's path: refuse it if invalid (the result of its
// validation) or if the caller's identity may not make it, else put cmd through the log and answer with the result of
// the kind the caller expects, stamped with this member's header. Every
// failure says how far the write got (writeFailure).
func write[R comparable](s *kvService, ctx context.Context, invalid error, cmd *cxkvpb.Command,
	pick func(*cxkvpb.CommandResult) R, setHeader func(R, *cxkvpb.Header)) (R, error) {
	var none R
	cmd.Identity = identityOf(ctx)
	if invalid == nil {
		invalid = s.authorizeWrite(ctx, cmd)
	}
	if invalid != nil {
		return none, toStatus(writeFailure(beforeProposing(invalid), s.n.cfg.ID))
	}
	res, index, err := s.n.propose(ctx, cmd)
	if err != nil {
		return none, toStatus(writeFailure(err, s.n.cfg.ID))
	}
	out, err := answerOf(res, index, pick)
	if err != nil {
		return none, toStatus(writeFailure(err, s.n.cfg.ID))
	}
	setHeader(out, s.header())
	return out, nil
}

// answerOf picks the result of the kind a write expects. Another kind means
// the waiter was handed another entry's result: refused, never answered.
func answerOf[R comparable](res *cxkvpb.CommandResult, index uint64, pick func(*cxkvpb.CommandResult) R) (R, error) {
	out := pick(res)
	var none R
	if out == none {
		return none, fmt.Errorf("the entry at index %d answered this write with a result of another kind; it may or may not have been applied", index)
	}
	return out, nil
}

func (s *kvService) Status(ctx context.Context, _ *cxkvpb.StatusRequest) (*cxkvpb.StatusResponse, error) {
	st := s.n.Status()
	first, _ := s.n.store.FirstEventIndex()
	resp := &cxkvpb.StatusResponse{
		Header: s.header(), Role: st.Role, CommitIndex: st.Commit,
		FirstIndex: st.FirstIndex, LastIndex: st.LastIndex, Version: Build().Version,
		ClusterId: s.n.clusterID, WatchFromIndex: first - 1,
		DbSizeBytes: s.n.dbSize(),
	}
	for id, addr := range s.n.cfg.Peers {
		resp.Members = append(resp.Members, &cxkvpb.Member{Id: id, Addr: addr})
	}
	sort.Slice(resp.Members, func(i, j int) bool { return resp.Members[i].Id < resp.Members[j].Id })
	return resp, nil
}

// Watch streams the history from the store at the watcher's own pace: a
// slow watcher reads further behind, it never holds up apply or other
// watchers. Between reads it sleeps until the feed rings it (an applied
// event under its prefix, or a reset of the feed) or, for a progress notice
// only, until the feed's progress tick.
//
// A response with no events is a progress notice: there are no events under
// the prefix up to Header.AppliedIndex, so a client whose stream breaks
// resumes from there (from_index = Header.AppliedIndex), or from the index
// of the last event it received if that is larger. The notice's
// AppliedIndex is exactly the index the scan before it covered, never the
// member's applied index at send time, which may have moved past events the
// scan did not see.
func (s *kvService) Watch(r *cxkvpb.WatchRequest, stream cxkvrpc.KV_WatchServer) error {
	from := r.GetFromIndex()
	if from == 0 {
		from = s.n.applied.get()
	}
	first, err := s.n.store.FirstEventIndex()
	if err != nil {
		return toStatus(err)
	}
	if from+1 < first {
		return toStatus(fmt.Errorf("%w before index %d; watch from %d or later, after re-reading the keys", errCompacted, first, first-1))
	}
	ctx := stream.Context()
	identity := identityOf(ctx)
	if _, err := s.n.readable(identity, "watch", r.GetPrefix()); err != nil {
		return toStatus(err)
	}
	// The head is of the whole prefix, so it needs read on all of it.
	if h := r.GetHeadOf(); h != "" {
		if err := s.n.authorize(identity, cmpxchg.Read, "watch the head of", h); err != nil {
			return toStatus(err)
		}
	}
	// A head rides in the events' message: their page leaves room for the
	// largest record.
	eventBytes := cmpxchg.MaxAnswerBytes
	if r.GetHeadOf() != "" {
		eventBytes -= cmpxchg.MaxRecordBytes
	}
	defer s.n.metrics.watchOpened()()
	// Registered before the first scan: an event appended before this is
	// found by the scan, one appended after rings.
	w := s.n.feed.watch(r.GetPrefix())
	defer s.n.feed.unwatch(w)
	var lastSent time.Time
	scan := true
	for {
		applied := s.n.applied.get()
		if !scan {
			// Woken by the progress tick. No pending ring means no event
			// under the prefix was appended since the last scan found
			// nothing: every event up to applied was appended, and would
			// have rung, before applied was published. So the notice may
			// claim applied without a scan.
			select {
			case <-w.ring:
				scan = true
			default:
			}
		}
		if scan {
			evs, err := s.events(r.GetPrefix(), from, eventBytes)
			if err != nil {
				return err
			}
			if len(evs) > 0 {
				last := evs[len(evs)-1].Record.Index
				if evs, err = s.n.readableEvents(identity, evs); err != nil {
					return toStatus(err)
				}
				if len(evs) == 0 {
					// Nothing here the identity may read: move past it as
					// if the prefix had had no events.
					from = last
					continue
				}
			}
			if len(evs) > 0 {
				resp := &cxkvpb.WatchResponse{Header: s.header()}
				for _, e := range evs {
					resp.Events = append(resp.Events, cmpxchg.EventToProto(e))
				}
				if h := r.GetHeadOf(); h != "" {
					// Judged again by the auth state applied now, as the
					// events are (readableEvents): a read revoked since
					// the watch began ends it as a new one is refused.
					if err := s.n.authorize(identity, cmpxchg.Read, "watch the head of", h); err != nil {
						return toStatus(err)
					}
					// Read after the events were applied (apply commits a
					// batch before the feed has its events), so the head
					// reflects at least the last of them.
					head, _, err := s.n.store.Head(h)
					if err != nil {
						return toStatus(err)
					}
					if head.Key == "" {
						head.Key = h
					}
					resp.Head = cmpxchg.RecordToProto(head)
					if proto.Size(resp) > cxkvpb.MaxMessageBytes {
						// One index's events fill the message alone (a
						// page never splits an index): they go without
						// a head, which the client takes as not told,
						// as from a member older than head_of.
						resp.Head = nil
					}
				}
				if err := stream.Send(resp); err != nil {
					return err
				}
				s.n.metrics.watchEvents.Add(float64(len(resp.Events)))
				lastSent = s.n.cfg.Clock.Now()
				from = evs[len(evs)-1].Record.Index
				continue
			}
		}
		if applied > from {
			// Nothing under the prefix up to applied: say so, so a client
			// resuming elsewhere need not re-read that stretch. applied was
			// read before the scan (or the ring check), so it covered
			// everything up to it; entries applied since may hold events it
			// did not see, so the notice must not claim more.
			// Notices are at most one per progressInterval: with many
			// watchers, a message per watcher per apply cost more than the
			// writes.
			from = applied
			if s.n.cfg.Clock.Since(lastSent) >= progressInterval {
				h := s.header()
				h.AppliedIndex = applied
				if err := stream.Send(&cxkvpb.WatchResponse{Header: h}); err != nil {
					return err
				}
				lastSent = s.n.cfg.Clock.Now()
			}
		}
		select {
		case <-w.ring:
			s.n.metrics.watchWakeups.Inc()
			scan = true
		case <-s.n.feed.ticked():
			scan = false
		case <-ctx.Done():
			// Stop ends ctx too (the interceptor ties it to the member's
			// life), and select picks either of two ready cases: a stop
			// must still end the watch as one, not as the watcher's
			// cancel, or the watcher learns neither where to resume nor
			// which member leads.
			select {
			case <-s.n.stopc:
				return s.stopping(from)
			default:
				return nil
			}
		case <-s.n.stopc:
			return s.stopping(from)
		}
	}
}

// stopping is how a watch on a stopping member ends: Unavailable, naming
// the leader (toStatus) and the index to resume from.
func (s *kvService) stopping(from uint64) error {
	return toStatus(fmt.Errorf("%w; resume the watch on another member from index %d", errStopping, from))
}

// events returns the next events under prefix after from: from the
// in-memory feed when it reaches back that far, else from the store.
func (s *kvService) events(prefix string, from uint64, maxBytes int) ([]kv.Event, error) {
	const page = 1000
	if evs, ok := s.n.feed.since(prefix, from, page, maxBytes); ok {
		return evs, nil
	}
	evs, err := s.n.store.Events(prefix, from, page, maxBytes)
	if err != nil {
		return nil, toStatus(err)
	}
	// Compaction or a snapshot restore may have removed history the
	// watcher has not seen yet; the scan would then skip it silently.
	if first, err := s.n.store.FirstEventIndex(); err != nil {
		return nil, toStatus(err)
	} else if from+1 < first {
		return nil, toStatus(fmt.Errorf("%w after index %d while watching; re-read the keys and watch from %d or later", errCompacted, from, first-1))
	}
	return evs, nil
}
