package lock_test

import (
	"context"
	"errors"
	"fmt"
	"log"
	"time"

	"github.com/cxkv/cxkv/client"
	"github.com/cxkv/cxkv/client/lock"
)

// The documented way to hold a lock: take it, defer Unlock, use the fencing
// token, and write through the lock so a holder that lost it cannot write.
func ExampleProcessMonitor() {
	c, err := client.New(client.Config{Endpoints: []string{"127.0.0.1:7001", "127.0.0.1:7002", "127.0.0.1:7003"}})
	if err != nil {
		log.Fatal(err)
	}
	defer c.Close()
	mon := lock.NewProcessMonitor(c, lock.Options{TTL: 10 * time.Second})
	defer mon.Close()

	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	held, err := mon.Lock(ctx, "rooms/deluxe")
	if err != nil {
		log.Fatal(err)
	}
	defer held.Unlock()

	// Work under the lock's context: it ends if the lock is lost.
	work := held.Context()
	rec, err := c.Get(work, "rooms/deluxe/free")
	if err != nil {
		log.Fatal(err)
	}
	// A guarded write applies only while this lock is held.
	if _, err := held.Put(work, "rooms/deluxe/free", decrement(rec.Value)); errors.Is(err, lock.ErrLost) {
		log.Print("lost the lock; nothing was written")
		return
	}
	fmt.Println("booked with fencing token", held.Token())
}

// TryLock does not wait: it fails with ErrLocked if someone holds the lock.
func ExampleProcessMonitor_TryLock() {
	c, err := client.New(client.Config{Endpoints: []string{"127.0.0.1:7001"}})
	if err != nil {
		log.Fatal(err)
	}
	defer c.Close()
	mon := lock.NewProcessMonitor(c, lock.Options{})
	held, err := mon.TryLock(context.Background(), "jobs/nightly-report")
	if errors.Is(err, lock.ErrLocked) {
		fmt.Println("another worker runs the report")
		return
	}
	if err != nil {
		log.Fatal(err)
	}
	defer held.Unlock()
	select {
	case <-held.Lost():
		log.Print("lock lost: stop the report")
	case <-time.After(time.Second): // the report
	}
}

func decrement(v []byte) []byte {
	var n int
	fmt.Sscan(string(v), &n)
	return []byte(fmt.Sprint(n - 1))
}
