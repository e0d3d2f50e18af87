// Package client is the Go SDK for cxkv: a Client for the compare-exchange
// operations (Get, Put, Delete, List, Txn, Watch) and sessions (leases).
// Package client/lock builds expiring, fair distributed locks with fencing
// tokens over it, using only what this package exports.
//
// Every call takes a context. A Client talks to any member of the cluster,
// prefers the leader once it has learned which member leads, fails over to
// the other endpoints when a member is unreachable, and retries Unavailable
// with jittered exponential backoff (retry.go is the one retry policy).
//
// Writes are exactly-once: each carries the client's id and a sequence
// number, and the cluster answers a retried write with the result of its
// first application. A write whose outcome the SDK cannot establish (the
// context ended, or the cluster forgot the write id) returns an error that
// matches ErrOutcomeUnknown; every other error means the write did not apply.
package client
