package client_test

import (
	"context"
	"errors"
	"fmt"
	"log"
	"time"

	"github.com/cxkv/cxkv/client"
)

// The documented way to hold a lock: take it, defer Unlock, use the fencing
// token, and write through the lock so a holder that lost it cannot write.
func ExampleProcessMonitor() {
	c, err := client.New(client.Config{Endpoints: []string{"127.0.0.1:7001", "127.0.0.1:7002", "127.0.0.1:7003"}})
	if err != nil {
		log.Fatal(err)
	}
	defer c.Close()
	mon := client.NewProcessMonitor(c, client.LockOptions{TTL: 10 * time.Second})
	defer mon.Close()

	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	lock, err := mon.Lock(ctx, "rooms/deluxe")
	if err != nil {
		log.Fatal(err)
	}
	defer lock.Unlock()

	// Work under the lock's context: it ends if the lock is lost.
	work := lock.Context()
	rec, err := c.Get(work, "rooms/deluxe/free")
	if err != nil {
		log.Fatal(err)
	}
	// A guarded write applies only while this lock is held.
	if _, err := lock.Put(work, "rooms/deluxe/free", decrement(rec.Value)); errors.Is(err, client.ErrLockLost) {
		log.Print("lost the lock; nothing was written")
		return
	}
	fmt.Println("booked with fencing token", lock.Token())
}

// TryLock does not wait: it fails with ErrLocked if someone holds the lock.
func ExampleProcessMonitor_TryLock() {
	c, err := client.New(client.Config{Endpoints: []string{"127.0.0.1:7001"}})
	if err != nil {
		log.Fatal(err)
	}
	defer c.Close()
	mon := client.NewProcessMonitor(c, client.LockOptions{})
	lock, err := mon.TryLock(context.Background(), "jobs/nightly-report")
	if errors.Is(err, client.ErrLocked) {
		fmt.Println("another worker runs the report")
		return
	}
	if err != nil {
		log.Fatal(err)
	}
	defer lock.Unlock()
	select {
	case <-lock.Lost():
		log.Print("lock lost: stop the report")
	case <-time.After(time.Second): // the report
	}
}

// Compare-exchange without a lock: read, then write only if nobody wrote in
// between; on a failed compare the result carries the current record, so
// the retry needs no extra read.
func ExampleClient_Put() {
	c, err := client.New(client.Config{Endpoints: []string{"127.0.0.1:7001"}})
	if err != nil {
		log.Fatal(err)
	}
	defer c.Close()
	ctx := context.Background()
	rec, err := c.Get(ctx, "inventory/widgets")
	if err != nil {
		log.Fatal(err)
	}
	for {
		res, err := c.Put(ctx, "inventory/widgets", decrement(rec.Value), rec.Index)
		if err != nil {
			log.Fatal(err)
		}
		if res.Successful {
			break
		}
		rec = res.Record
	}
}

// Watch follows changes in log order from an index, across member failures.
func ExampleClient_Watch() {
	c, err := client.New(client.Config{Endpoints: []string{"127.0.0.1:7001"}})
	if err != nil {
		log.Fatal(err)
	}
	defer c.Close()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	for ev, err := range c.Watch(ctx, "rooms/", 0) {
		if err != nil {
			log.Print(err)
			return
		}
		fmt.Println(ev.Type, ev.Record.Key, ev.Record.Index)
	}
}

func decrement(v []byte) []byte {
	var n int
	fmt.Sscan(string(v), &n)
	return []byte(fmt.Sprint(n - 1))
}
