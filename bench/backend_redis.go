package bench

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	mrand "math/rand/v2"
	"strconv"
	"time"

	"github.com/redis/go-redis/v9"
)

// Redis is a single Redis node driven through go-redis, the way users run
// it for locks and compare-and-set: one node, no replica, durable only as
// far as its append-only file (the harness starts it with appendfsync
// always, so an acknowledged write is on its disk like cxkv's and etcd's).
//
// Redis has no revisions, so each key is a hash {v, rev} and every write
// takes its rev from one counter (redisRevKey), as etcd's store revision
// does: a revision is never reused, so a compare never matches a key that
// was deleted and written again. Each operation is one Lua script, one
// round trip, atomic on the server.
//
// Locks are the recipe most Redis users run (Redlock on one node, as
// go-redsync and Redisson's simple lock do): SET name token NX PX ttl, polled
// with a short random backoff while someone else holds it, released by a
// script that deletes the key only if it still holds this holder's token.
// There is no queue and no fencing; the hold is far shorter than the TTL
// here, so a lock is never lost to expiry during a run.
type Redis struct {
	Addr string
}

// redisRevKey is the counter every write's revision comes from.
const redisRevKey = "bench:rev"

// Name implements Backend.
func (Redis) Name() string { return "redis" }

// Connect implements Backend. go-redis pools connections (Redis answers
// one request per connection at a time), so one Conn here may hold several.
func (r Redis) Connect(ctx context.Context) (Conn, error) {
	c := redis.NewClient(&redis.Options{Addr: r.Addr, MaxRetries: -1})
	if err := c.Ping(ctx).Err(); err != nil {
		c.Close()
		return nil, err
	}
	return &redisConn{c: c}, nil
}

type redisConn struct{ c *redis.Client }

var (
	// ARGV: value, expected rev (0: only if absent). Returns the new rev,
	// or 0 when the compare failed.
	redisCAS = redis.NewScript(`
local cur = tonumber(redis.call('HGET', KEYS[1], 'rev') or '0')
if cur ~= tonumber(ARGV[2]) then return 0 end
local rev = redis.call('INCR', KEYS[2])
redis.call('HSET', KEYS[1], 'v', ARGV[1], 'rev', rev)
return rev`)
	// ARGV: value. Returns the new rev.
	redisSet = redis.NewScript(`
local rev = redis.call('INCR', KEYS[2])
redis.call('HSET', KEYS[1], 'v', ARGV[1], 'rev', rev)
return rev`)
	// ARGV: expected rev. Returns 1 if deleted.
	redisDeleteIf = redis.NewScript(`
local cur = tonumber(redis.call('HGET', KEYS[1], 'rev') or '0')
if cur == 0 or cur ~= tonumber(ARGV[1]) then return 0 end
return redis.call('DEL', KEYS[1])`)
	// ARGV: token. Returns 1 if this holder's lock was released.
	redisUnlock = redis.NewScript(`
if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('DEL', KEYS[1]) end
return 0`)
)

func (c *redisConn) Get(ctx context.Context, key string) ([]byte, uint64, error) {
	vs, err := c.c.HMGet(ctx, key, "v", "rev").Result()
	if err != nil {
		return nil, 0, err
	}
	if vs[0] == nil || vs[1] == nil {
		return nil, 0, nil
	}
	v, _ := vs[0].(string)
	s, _ := vs[1].(string)
	rev, err := strconv.ParseUint(s, 10, 64)
	if err != nil {
		return nil, 0, fmt.Errorf("redis: %s holds revision %v: %w", key, vs[1], err)
	}
	return []byte(v), rev, nil
}

func (c *redisConn) CAS(ctx context.Context, key string, value []byte, expect uint64) (bool, uint64, error) {
	rev, err := redisCAS.Run(ctx, c.c, []string{key, redisRevKey}, value, expect).Uint64()
	if err != nil {
		return false, 0, err
	}
	return rev != 0, rev, nil
}

func (c *redisConn) DeleteIf(ctx context.Context, key string, expect uint64) (bool, error) {
	n, err := redisDeleteIf.Run(ctx, c.c, []string{key}, expect).Int()
	return n == 1, err
}

func (c *redisConn) Set(ctx context.Context, key string, value []byte) error {
	return redisSet.Run(ctx, c.c, []string{key, redisRevKey}, value).Err()
}

func (c *redisConn) Session(_ context.Context, ttl time.Duration) (LockSession, error) {
	return &redisSession{c: c.c, ttl: ttl}, nil
}

func (c *redisConn) Close() error { return c.c.Close() }

type redisSession struct {
	c   *redis.Client
	ttl time.Duration
}

// Redis lock polling: a waiter retries after a random 1-4 ms, short enough
// that a handoff is not dominated by the backoff (go-redsync's default of
// 50-250 ms would make Redis look far slower than it is).
const (
	redisPollMin = time.Millisecond
	redisPollMax = 4 * time.Millisecond
)

func (s *redisSession) Lock(ctx context.Context, name string) (Held, error) {
	var b [16]byte
	rand.Read(b[:])
	token := hex.EncodeToString(b[:])
	for {
		ok, err := s.c.SetNX(ctx, name, token, s.ttl).Result()
		if err != nil {
			return nil, err
		}
		if ok {
			return redisHeld{c: s.c, name: name, token: token}, nil
		}
		wait := redisPollMin + mrand.N(redisPollMax-redisPollMin)
		select {
		case <-ctx.Done():
			return nil, ctx.Err()
		case <-time.After(wait):
		}
	}
}

func (s *redisSession) Close() error { return nil }

type redisHeld struct {
	c           *redis.Client
	name, token string
}

func (h redisHeld) Unlock(ctx context.Context) error {
	n, err := redisUnlock.Run(ctx, h.c, []string{h.name}, h.token).Int()
	if err != nil {
		return err
	}
	if n != 1 {
		return errors.New("redis: the lock expired before it was released")
	}
	return nil
}
