// Package lock is the lock recipe over the cxkv Go SDK: a ProcessMonitor
// hands out expiring locks with fencing tokens, queued fairly (Queue, the
// default) or raced for (Plain), all attached to one session (lease) per
// monitor, so holding any number of locks costs one renewal write every
// TTL/3. List and ForceRelease are what `cxkv locks` and `cxkv
// force-release` run.
//
// It uses only the exported API of package client (as etcd's
// clientv3/concurrency sits over clientv3): compare-exchange transactions,
// sessions, HeadOp, List pages with their applied index, and Watch.
//
//	mon := lock.NewProcessMonitor(c, lock.Options{TTL: 10 * time.Second})
//	defer mon.Close()
//	l, err := mon.Lock(ctx, "rooms/deluxe")
//	if err != nil { return err }
//	defer l.Unlock()
//	_, err = l.Put(l.Context(), "rooms/deluxe/free", []byte("3")) // only while held
//
// docs/DESIGN.md ("Locks") is the protocol and what each guarantee rests on.
package lock
