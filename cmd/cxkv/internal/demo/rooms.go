package demo

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"math/rand/v2"
	"strconv"
	"strings"

	"github.com/cxkv/cxkv/client"
	"github.com/cxkv/cxkv/client/lock"
)

// The rooms scenario: a hotel sells the rooms of a few room types. A worker
// books under a lock on the room type: it reads the type's free count and,
// in one lock-guarded transaction, lowers the count and creates the booking
// of the next room. What must hold: every room is sold at most once (exactly
// once when the hotel is sold out), no count goes negative, and sold + free
// is the inventory.

// RoomsConfig is the hotel. The first worker's setup writes it; later
// workers adopt what the store holds.
type RoomsConfig struct {
	Types []string `json:"types"`
	Rooms int      `json:"rooms"` // per type
}

// DefaultRoomsPerType sizes the hotel so that 8 workers sell it out in
// about 10s on a 2-core machine, within the default 20s run.
const DefaultRoomsPerType = 700

func (c RoomsConfig) withDefaults() RoomsConfig {
	if len(c.Types) == 0 {
		c.Types = []string{"standard", "deluxe", "suite"}
	}
	if c.Rooms <= 0 {
		c.Rooms = DefaultRoomsPerType
	}
	return c
}

const (
	roomsConfigKey = dataPrefix + "rooms/config"
	roomsFreeKey   = dataPrefix + "rooms/free/"    // + type: rooms still for sale
	roomsBookKey   = dataPrefix + "rooms/booking/" // + type/room: who bought it
	roomsLock      = lockPrefix + "rooms/"         // + type
)

func roomName(typ string, n int) string { return fmt.Sprintf("%s-%03d", typ, n) }

// booking is the value of a booking key.
type booking struct {
	Req    string `json:"req"`
	Worker string `json:"worker"`
	Token  uint64 `json:"token"`
}

type roomsWorker struct {
	w       *worker
	cfg     RoomsConfig
	soldOut map[string]bool
}

// setup creates the inventory if no worker has: one transaction, so a
// half-made hotel is never seen.
func (r *roomsWorker) setup(ctx context.Context) error {
	r.soldOut = map[string]bool{}
	cfgJSON, _ := json.Marshal(r.cfg)
	ops := []client.Op{client.PutOp(roomsConfigKey, cfgJSON, 0)}
	for _, t := range r.cfg.Types {
		ops = append(ops, client.PutOp(roomsFreeKey+t, []byte(strconv.Itoa(r.cfg.Rooms)), 0))
	}
	res, err := r.w.c.Txn(ctx, []client.Compare{client.Absent(roomsConfigKey)}, ops)
	if err != nil {
		return err
	}
	if res.Successful {
		r.w.say("created the hotel: %d rooms of each of %s", r.cfg.Rooms, strings.Join(r.cfg.Types, ", "))
		return nil
	}
	if err := json.Unmarshal(res.Compared[0].Value, &r.cfg); err != nil {
		return fmt.Errorf("%s: %v", roomsConfigKey, err)
	}
	r.w.say("joined the hotel: %d rooms of each of %s", r.cfg.Rooms, strings.Join(r.cfg.Types, ", "))
	return nil
}

func (r *roomsWorker) step(ctx context.Context) (bool, error) {
	var open []string
	for _, t := range r.cfg.Types {
		if !r.soldOut[t] {
			open = append(open, t)
		}
	}
	if len(open) == 0 {
		r.w.say("the hotel is sold out")
		return true, nil
	}
	typ := open[rand.IntN(len(open))]
	l, err := r.w.acquire(ctx, roomsLock+typ)
	if err != nil {
		return false, err
	}
	defer r.w.release(l)
	return false, r.book(l, typ)
}

// book sells the next room of typ under l.
func (r *roomsWorker) book(l *lock.Lock, typ string) error {
	ctx, cancel := opContext()
	defer cancel()
	inv, err := r.w.c.Get(ctx, roomsFreeKey+typ)
	if err != nil {
		return err
	}
	free, err := strconv.Atoi(string(inv.Value))
	if err != nil {
		return fmt.Errorf("%s = %q: %v", inv.Key, inv.Value, err)
	}
	if free <= 0 {
		r.soldOut[typ] = true
		r.w.rec.Add(Entry{Op: OpSoldOut, Type: typ, Token: l.Token()})
		r.w.say("%s: sold out", typ)
		return nil
	}
	room := roomName(typ, r.cfg.Rooms-free+1)
	bookKey := roomsBookKey + typ + "/" + room
	req := r.w.nextReq()
	val, _ := json.Marshal(booking{Req: req, Worker: r.w.cfg.ID, Token: l.Token()})
	r.w.rec.Add(Entry{Op: OpIntent, Req: req, Type: typ, Room: room, Token: l.Token(), Lock: l.Name()})
	res, err := l.Txn(ctx,
		[]client.Compare{client.IndexIs(inv.Key, inv.Index), client.Absent(bookKey)},
		[]client.Op{client.PutOp(inv.Key, []byte(strconv.Itoa(free-1)), 0), client.PutOp(bookKey, val, 0)})
	switch {
	case errors.Is(err, lock.ErrLost):
		r.w.n.lost.Add(1)
		r.w.rec.Add(Entry{Op: OpAborted, Req: req, Err: "lock lost"})
		return fmt.Errorf("%s: lock lost before booking %s; nothing written", typ, room)
	case err != nil:
		r.w.n.unknown.Add(1)
		r.w.rec.Add(Entry{Op: OpUnknown, Req: req, Err: err.Error()})
		return err
	case !res.Successful:
		// Under a held lock nobody else may have written the type's keys.
		r.w.n.conflicts.Add(1)
		r.w.rec.Add(Entry{Op: OpConflict, Req: req, Type: typ, Room: room, Token: l.Token(),
			Err: fmt.Sprintf("compare %d failed under the lock", res.FailedCompare)})
		return fmt.Errorf("%s: compare failed while holding the lock", typ)
	}
	r.w.n.ops.Add(1)
	r.w.rec.Add(Entry{Op: OpBook, Req: req, Type: typ, Room: room, Token: l.Token(), Index: res.Index, Lock: l.Name()})
	r.w.say("booked %s (lock token %d, index %d, %d left)", room, l.Token(), res.Index, free-1)
	return nil
}
