package kv

import "encoding/binary"

// Key layout of the one Pebble database a member owns. The first byte names
// the kind of key; everything after it sorts the way the kind needs.
//
//	'r' key                      record of a user key (value: encodeRecord)
//	't' key                      TTL index: every record with a TTL (empty value)
//	'e' be64(index) be16(n)      n-th event of the entry at index (value: encodeEvent)
//	's' be64(client) be64(seq)   remembered result of a client's write (opaque)
//	'S' be64(client)             a client's session header (opaque)
//	'L' be64(stamp) be64(client) sessions ordered by last use, for eviction (empty)
//	'a' be16(len) session key    a key attached to a session (empty; see attach.go)
//	'A' session                  a session's tally: keys attached and their bytes
//	'm' name                     state meta: applied index, conf state, event floor,
//	                             session floor (no 'L' stamp is below it), counters,
//	                             the auth state (kv/auth.go)
//	'i' name                     member identity, proposal-id mark; never part of a snapshot
//	'l' be64(index)              Raft log entry (a marshalled raftpb.Entry; see RaftLog)
//	'h' name                     Raft HardState, log start, snapshot metadata, an
//	                             unfinished snapshot install
//
// The state is every key under the prefixes in statePrefixes: a snapshot
// carries exactly those, and RestoreState replaces exactly those.
const (
	prefixRecord      = 'r'
	prefixTTL         = 't'
	prefixEvent       = 'e'
	prefixResult      = 's'
	prefixSession     = 'S'
	prefixSessionLRU  = 'L'
	prefixAttached    = 'a'
	prefixTally       = 'A'
	prefixMeta        = 'm'
	prefixIdentity    = 'i'
	prefixRaftEntry   = 'l'
	prefixRaftMeta    = 'h'
	metaApplied       = "applied"
	metaConfState     = "confstate"
	metaEventFloor    = "eventfloor"
	metaSessionFloor  = "sessionfloor"
	identityMemberKey = "member"
	identityIDsKey    = "proposalids"
)

// statePrefixes are the prefixes that make up the replicated state. Events are
// history, not state: a restored member starts its history at the snapshot.
var statePrefixes = []byte{prefixSessionLRU, prefixSession, prefixRecord, prefixResult, prefixTTL, prefixMeta, prefixAttached, prefixTally}

func prefixed(p byte, s string) []byte {
	k := make([]byte, 1+len(s))
	k[0] = p
	copy(k[1:], s)
	return k
}

func recordKey(key string) []byte { return prefixed(prefixRecord, key) }
func ttlKey(key string) []byte    { return prefixed(prefixTTL, key) }
func metaKey(name string) []byte  { return prefixed(prefixMeta, name) }

// attachedPrefix is where the keys attached to session are listed; the
// session's length comes first so one session's keys never run into
// another's whose id extends it.
func attachedPrefix(session string) []byte {
	k := make([]byte, 3, 3+len(session))
	k[0] = prefixAttached
	binary.BigEndian.PutUint16(k[1:], uint16(len(session)))
	return append(k, session...)
}

func attachedKey(session, key string) []byte { return append(attachedPrefix(session), key...) }
func tallyKey(session string) []byte         { return prefixed(prefixTally, session) }

func eventKey(index uint64, n uint16) []byte {
	k := make([]byte, 11)
	k[0] = prefixEvent
	binary.BigEndian.PutUint64(k[1:], index)
	binary.BigEndian.PutUint16(k[9:], n)
	return k
}

func resultKey(client, seq uint64) []byte {
	k := make([]byte, 17)
	k[0] = prefixResult
	binary.BigEndian.PutUint64(k[1:], client)
	binary.BigEndian.PutUint64(k[9:], seq)
	return k
}

func sessionKey(client uint64) []byte {
	k := make([]byte, 9)
	k[0] = prefixSession
	binary.BigEndian.PutUint64(k[1:], client)
	return k
}

func sessionLRUKey(stamp int64, client uint64) []byte {
	k := make([]byte, 17)
	k[0] = prefixSessionLRU
	binary.BigEndian.PutUint64(k[1:], uint64(stamp))
	binary.BigEndian.PutUint64(k[9:], client)
	return k
}

// raftEntryKey is where the log entry at index lives; big-endian so entries
// sort by index.
func raftEntryKey(index uint64) []byte {
	k := make([]byte, 9)
	k[0] = prefixRaftEntry
	binary.BigEndian.PutUint64(k[1:], index)
	return k
}

var (
	raftHardStateKey = prefixed(prefixRaftMeta, "hardstate")
	raftSnapshotKey  = prefixed(prefixRaftMeta, "snapshot")
	raftTruncKey     = prefixed(prefixRaftMeta, "trunc")
	raftInstallKey   = prefixed(prefixRaftMeta, "install")
	identityKey      = prefixed(prefixIdentity, identityMemberKey)
	proposalIDsKey   = prefixed(prefixIdentity, identityIDsKey)
)

// prefixEnd returns the smallest key greater than every key with prefix p.
func prefixEnd(p []byte) []byte {
	end := append([]byte(nil), p...)
	for i := len(end) - 1; i >= 0; i-- {
		if end[i] < 0xff {
			end[i]++
			return end[:i+1]
		}
	}
	return nil
}
