package lock

import (
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"os"
	"time"
)

// Owner is the value a lock's key holds: who holds (or waits for) the lock.
// ID is unique per acquisition, so a process whose write outcome was lost
// recognises its own entry when it reads the key back. The value is
// written once, when the key is created, and never changes while the key
// lives: renewals and guarded writes compare it, and a compare on a value
// that no renewal changes cannot go stale when a renewal lands late. When
// the key expires is the key's own TTL (client.Record.ExpiresAt).
type Owner struct {
	ID         string    `json:"owner"`
	Name       string    `json:"name,omitempty"`
	Host       string    `json:"host"`
	PID        int       `json:"pid"`
	QueuedAt   time.Time `json:"queued_at,omitzero"`   // Queue: when the entry was created
	AcquiredAt time.Time `json:"acquired_at,omitzero"` // Plain: when the key was created
	// Session is the id of the monitor's session the key is attached to:
	// the key lives as long as that session does.
	Session string `json:"session,omitempty"`
}

// monitorSession is the value of a monitor's session key. Its first field
// is not "owner", so neither List nor the members' lock census takes a
// session for a lock.
type monitorSession struct {
	Monitor  string    `json:"monitor"`
	Host     string    `json:"host"`
	PID      int       `json:"pid"`
	OpenedAt time.Time `json:"opened_at"`
}

func (o Owner) encode() []byte {
	b, err := json.Marshal(o)
	if err != nil {
		panic(err) // a struct of strings, ints and times always marshals
	}
	return b
}

// decodeOwner parses a lock key's value; ok is false for values that are not
// owners (a key that merely shares the prefix).
func decodeOwner(b []byte) (o Owner, ok bool) {
	if err := json.Unmarshal(b, &o); err != nil || o.ID == "" {
		return Owner{}, false
	}
	return o, true
}

func randomID() string {
	var b [8]byte
	rand.Read(b[:])
	return hex.EncodeToString(b[:])
}

// queueEntryID names a queue entry created at created: the time in ns as
// 16 hex digits, then 16 random ones. Entries then sort by creation, so
// the entries a queue has deleted sort below its live ones, where the
// members' scans of the queue (HEAD at every acquisition, a waiter's List)
// start above them (kv's floors) instead of stepping over each deleted
// entry until a memtable flush drops it. Nothing relies on this order for
// correctness: the queue is ordered by create index, not by key, so clocks
// that differ between processes, or one that steps back, only leave some
// deleted entries above live ones, costing the scans that step over them.
// The random half keeps ids unique among entries created in the same ns
// (a collision is refused by put-if-absent and drawn again).
func queueEntryID(created time.Time) string {
	return fmt.Sprintf("%016x", uint64(created.UnixNano())) + randomID()
}

func defaultOwnerName() string {
	host, _ := os.Hostname()
	return fmt.Sprintf("%s:%d", host, os.Getpid())
}
