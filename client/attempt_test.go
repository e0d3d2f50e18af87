package client_test

import (
	"context"
	"net"
	"sync"
	"testing"
	"time"

	"github.com/cxkv/cxkv/client"
)

// silentMember accepts connections and never answers, as a paused process
// does; it lets go of them at the end of the test.
func silentMember(t *testing.T) string {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	var mu sync.Mutex
	var conns []net.Conn
	done := make(chan struct{})
	go func() {
		defer close(done)
		for {
			c, err := l.Accept()
			if err != nil {
				return
			}
			mu.Lock()
			conns = append(conns, c)
			mu.Unlock()
		}
	}()
	t.Cleanup(func() {
		l.Close()
		<-done
		mu.Lock()
		defer mu.Unlock()
		for _, c := range conns {
			c.Close()
		}
	})
	return l.Addr().String()
}

// A call under WithAttemptTimeout gives up on a member that does not answer
// after that long and goes on to the next; without it, the silent member
// holds the call for the whole RequestTimeout (here longer than the
// caller's deadline).
func TestAttemptTimeoutMovesOffASilentMember(t *testing.T) {
	cl, _ := start(t)
	endpoints := append([]string{silentMember(t)}, cl.Endpoints()...)
	c, err := client.New(client.Config{Endpoints: endpoints, RequestTimeout: time.Minute, DialTimeout: time.Minute})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()

	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if _, err := c.Put(client.WithAttemptTimeout(ctx, 300*time.Millisecond), "k", []byte("v"), 0); err != nil {
		t.Fatalf("put with a silent first member and 300ms attempts: %v", err)
	}

	c2, err := client.New(client.Config{Endpoints: endpoints, RequestTimeout: time.Minute, DialTimeout: time.Minute})
	if err != nil {
		t.Fatal(err)
	}
	defer c2.Close()
	short, cancel2 := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel2()
	if _, err := c2.Get(short, "k"); err == nil {
		t.Fatal("without an attempt timeout the silent first member should hold the call past its 2 s deadline; is it answering?")
	}
}
