package client_test

import (
	"context"
	"fmt"
	"log"
	"time"

	"github.com/cxkv/cxkv/client"
)

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
