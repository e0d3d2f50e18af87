package cmpxchg

import (
	"fmt"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/cxkv/cxkv/api/cxkvpb"
	"github.com/cxkv/cxkv/kv"
)

// MaxKeyBytes is the longest key, in bytes.
const MaxKeyBytes = 1024

// MaxTTL is the longest TTL a key may have: ten years (of 365 days). A TTL
// travels in milliseconds (int64), becomes a time.Duration (int64
// nanoseconds, about 292 years at most) in the leader's expiry queue, and is
// added to the proposer's stamp for the record's expiry time; ten years
// keeps each far from overflow, which once turned a TTL of 2^62 ms into a
// key deleted at once.
const MaxTTL = 10 * 365 * 24 * time.Hour

// Limits bound what one request may carry and what the exactly-once table
// remembers. Every member must run with the same limits on the dedup table,
// because it is replicated state; request-size limits are checked before a
// request is proposed, so they only need to agree in spirit.
type Limits struct {
	MaxValueBytes        int
	MaxTxnOps            int // compares plus operations
	MaxTxnBytes          int // keys plus values of one transaction
	MaxSessions          int
	MaxResultsPerSession int
	SessionTTL           time.Duration
}

// Hard limits: what any member may be configured to accept. A leader checks
// a request against its own Limits before proposing it, but every member
// applies what the leader logged, so the configured limits are refused above
// these (Validate), and Apply judges a logged command by these, whatever the
// member's flags: a command above them is refused as a result on every
// member alike, never a storage error that halts them all.
const (
	// MaxValueBytesLimit bounds a value: a record must fit in one answer.
	MaxValueBytesLimit = 1 << 20
	// MaxRecordBytes is the largest record's answer bytes (key, value and
	// kv's 64 of framing, kv.Record.AnswerBytes).
	MaxRecordBytes = MaxKeyBytes + MaxValueBytesLimit + 64
	// MaxTxnOpsLimit is what the store can hold at one log index: each op
	// leaves at most one event.
	MaxTxnOpsLimit = kv.MaxEventsPerIndex
	// MaxTxnBytesLimit bounds a transaction's keys and values, so the
	// request, with its framing, fits in one message.
	MaxTxnBytesLimit = 8 << 20
)

// hardLimits are the request limits Apply holds a logged command to.
var hardLimits = Limits{MaxValueBytes: MaxValueBytesLimit, MaxTxnOps: MaxTxnOpsLimit, MaxTxnBytes: MaxTxnBytesLimit}

// Validate refuses request limits outside (0, hard limit]; the messages name
// the server flags that set them.
func (l Limits) Validate() error {
	for _, c := range []struct {
		flag     string
		v, limit int
		why      string
	}{
		{"max-value-bytes", l.MaxValueBytes, MaxValueBytesLimit, "a record must fit in one answer"},
		{"max-txn-ops", l.MaxTxnOps, MaxTxnOpsLimit, "one log index holds that many events"},
		{"max-txn-bytes", l.MaxTxnBytes, MaxTxnBytesLimit, "a transaction must fit in one message"},
	} {
		if c.v <= 0 || c.v > c.limit {
			return fmt.Errorf("--%s is %d; it must be 1 to %d (%s)", c.flag, c.v, c.limit, c.why)
		}
	}
	return nil
}

// DefaultLimits are the server defaults.
func DefaultLimits() Limits {
	return Limits{
		MaxValueBytes:        1 << 20,
		MaxTxnOps:            128,
		MaxTxnBytes:          4 << 20,
		MaxSessions:          100000,
		MaxResultsPerSession: cxkvpb.MaxResultsPerSession,
		SessionTTL:           time.Hour,
	}
}

// ValidateKey checks the rules every key obeys.
func ValidateKey(key string) error {
	switch {
	case key == "":
		return invalid("key is empty; a key is 1 to %d bytes", MaxKeyBytes)
	case len(key) > MaxKeyBytes:
		return invalid("key is %d bytes; the limit is %d", len(key), MaxKeyBytes)
	case strings.IndexByte(key, 0) >= 0:
		return invalid("key %q contains a NUL byte", key)
	case !utf8.ValidString(key):
		return invalid("key %q is not valid UTF-8", key)
	}
	return nil
}

func validateValue(key string, value []byte, l Limits) error {
	if len(value) > l.MaxValueBytes {
		return invalid("value of %q is %d bytes; the limit is %d", key, len(value), l.MaxValueBytes)
	}
	return nil
}

func validateTTL(key string, ttlMs int64) error {
	if ttlMs < 0 {
		return invalid("ttl of %q is %dms; a TTL must be 0 (none) or positive", key, ttlMs)
	}
	if ttlMs > MaxTTL.Milliseconds() {
		return invalid("ttl of %q is %dms; the limit is %dms (10 years)", key, ttlMs, MaxTTL.Milliseconds())
	}
	return nil
}

// ValidatePut checks a Put before it is proposed.
func ValidatePut(r *cxkvpb.PutRequest, l Limits) error {
	if err := ValidateKey(r.GetKey()); err != nil {
		return err
	}
	if err := validateValue(r.GetKey(), r.GetValue(), l); err != nil {
		return err
	}
	if err := validateTTL(r.GetKey(), r.GetTtlMs()); err != nil {
		return err
	}
	return validateAttach(r.GetKey(), r.GetSession())
}

// ValidateDelete checks a Delete before it is proposed.
func ValidateDelete(r *cxkvpb.DeleteRequest, _ Limits) error {
	if err := ValidateKey(r.GetKey()); err != nil {
		return err
	}
	if r.GetExpectIndex() == 0 {
		return invalid("delete of %q needs the key's index (expect_index); 0 never matches an existing key", r.GetKey())
	}
	return nil
}

// ValidateList checks a List.
func ValidateList(r *cxkvpb.ListRequest) error { return validatePageLimit(r.GetLimit()) }

// ValidateSessions checks a Sessions listing, a List of session keys.
func ValidateSessions(r *cxkvpb.SessionsRequest) error { return validatePageLimit(r.GetLimit()) }

func validatePageLimit(limit uint32) error {
	if limit > MaxListLimit {
		return invalid("list limit is %d; the maximum is %d", limit, MaxListLimit)
	}
	return nil
}

// List page sizes.
const (
	DefaultListLimit = 100
	MaxListLimit     = 10000
)

// ValidateTxn checks a transaction before it is proposed.
func ValidateTxn(r *cxkvpb.TxnRequest, l Limits) error {
	n := len(r.GetCompares()) + len(r.GetOps())
	if n == 0 {
		return invalid("transaction has no compares and no operations")
	}
	if n > l.MaxTxnOps {
		return invalid("transaction has %d compares and operations; the limit is %d", n, l.MaxTxnOps)
	}
	size := 0
	for i, c := range r.GetCompares() {
		if err := ValidateKey(c.GetKey()); err != nil {
			return invalid("compare %d: %s", i, err)
		}
		switch c.GetOp() {
		case cxkvpb.Compare_INDEX_EQUAL:
			if c.GetIndex() == 0 {
				return invalid("compare %d on %q: INDEX_EQUAL needs an index; use ABSENT for a missing key", i, c.GetKey())
			}
		case cxkvpb.Compare_ABSENT, cxkvpb.Compare_VALUE_EQUAL:
		default:
			return invalid("compare %d on %q: unknown op %d", i, c.GetKey(), c.GetOp())
		}
		size += len(c.GetKey()) + len(c.GetValue())
	}
	for i, op := range r.GetOps() {
		if err := ValidateKey(op.GetKey()); err != nil {
			return invalid("op %d: %s", i, err)
		}
		switch op.GetType() {
		case cxkvpb.TxnOp_PUT:
			if err := validateValue(op.GetKey(), op.GetValue(), l); err != nil {
				return invalid("op %d: %s", i, err)
			}
			if err := validateTTL(op.GetKey(), op.GetTtlMs()); err != nil {
				return invalid("op %d: %s", i, err)
			}
			if err := validateAttach(op.GetKey(), op.GetSession()); err != nil {
				return invalid("op %d: %s", i, err)
			}
		case cxkvpb.TxnOp_DELETE, cxkvpb.TxnOp_GET, cxkvpb.TxnOp_HEAD:
			if op.GetSession() != "" {
				return invalid("op %d on %q: only a put attaches a key to a session", i, op.GetKey())
			}
		default:
			return invalid("op %d on %q: unknown type %d", i, op.GetKey(), op.GetType())
		}
		size += len(op.GetKey()) + len(op.GetValue())
	}
	if size > l.MaxTxnBytes {
		return invalid("transaction carries %d bytes of keys and values; the limit is %d", size, l.MaxTxnBytes)
	}
	return nil
}
