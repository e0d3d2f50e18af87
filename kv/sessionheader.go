package kv

import (
	"encoding/binary"
	"errors"
	"fmt"
	"math"
	"slices"

	"github.com/cxkv/cxkv/internal/invariants"
)

// A client's header in the exactly-once table, and the results it holds
// inline.
//
// A busy client has a handful of writes in flight, so it keeps a handful of
// results above its acknowledged mark, each a few dozen or a few hundred
// bytes. Held as keys of their own, every write set one result key, deleted
// the result it acknowledged and rewrote the header: three memtable
// insertions per write on every member, besides the write's own. Held
// inside the header, a write rewrites the header alone. A result too large
// to carry in every rewrite, or one that would take the header past its
// budget, still goes to its own 's' key ("spilled"), so a client with many
// writes in flight, or writes with large results (a transaction's reads),
// costs what it did before.
//
// Three formats, each readable by this build:
//
//	first:  uvarint(acked) varint(stamp)
//	second: uvarint(acked) varint(stamp) uvarint(top)
//	third:  uvarint(acked) varint(stamp) uvarint(top) uvarint(spillTop)
//	        { uvarint(seq - acked) uvarint(len) result }...
//
// A first-format header has no top: top and spillTop read as topUnknown. A
// second-format header kept every result in 's' keys: spillTop reads as top.
// This build writes the third format only.
//
// What must hold, besides sessions.go's rules:
//   - every result of the client is either inline or in an 's' key, never
//     both, and its seq is in (acked, top];
//   - an 's' key's seq is at most spillTop: once acked reaches spillTop the
//     client has no 's' keys, and acknowledging deletes none;
//   - inline results are in ascending seq order and total at most
//     maxInlineBytes, each at most maxInlineResult bytes.
type sessionHeader struct {
	acked    uint64
	stamp    int64
	top      uint64
	spillTop uint64
	inline   []inlineResult
	// inlineBytes is the sum of the inline results' lengths.
	inlineBytes int
}

// inlineResult is one result held in its client's header. Its bytes are
// never changed once stored: a Lookup hands them out as they are.
type inlineResult struct {
	seq    uint64
	result []byte
}

const (
	// maxInlineResult is the largest result held inline. A put's result
	// is about 40 bytes, a lock acquisition's about 450 (the queue entry
	// and the head it asked for, each with its owner); a transaction that
	// read values is often over. Holding lock acquisitions inline too
	// (1,024 and 4 KiB against 256 and 2 KiB) gave lock-many +8% by median
	// over five alternated pairs, members' CPU per acquisition 0.95 ms ->
	// 0.86 ms (BENCHMARKS.md, sixteenth round).
	maxInlineResult = 1024
	// maxInlineBytes bounds the inline results of one client, and so the
	// bytes every write of it rewrites: a client with 1,023 writes in
	// flight (the SDK's most) spills all but the first hundred or so.
	maxInlineBytes = 4096
)

var errBadSessionHeader = errors.New("malformed session header")

// findInline returns the inline result of seq, if the header holds one.
func (h *sessionHeader) findInline(seq uint64) ([]byte, bool) {
	i, ok := slices.BinarySearchFunc(h.inline, seq, cmpInlineSeq)
	if !ok {
		return nil, false
	}
	return h.inline[i].result, true
}

// addInline stores the result of seq inline if it fits, and reports
// whether it did. seq must have no result yet.
func (h *sessionHeader) addInline(seq uint64, result []byte) bool {
	if len(result) > maxInlineResult || h.inlineBytes+len(result) > maxInlineBytes {
		return false
	}
	i, _ := slices.BinarySearchFunc(h.inline, seq, cmpInlineSeq)
	h.inline = slices.Insert(h.inline, i, inlineResult{seq: seq, result: result})
	h.inlineBytes += len(result)
	return true
}

// dropInlineThrough forgets the inline results of seq <= acked.
func (h *sessionHeader) dropInlineThrough(acked uint64) {
	n := 0
	for n < len(h.inline) && h.inline[n].seq <= acked {
		h.inlineBytes -= len(h.inline[n].result)
		n++
	}
	if n > 0 {
		h.inline = slices.Delete(h.inline, 0, n)
	}
}

func cmpInlineSeq(r inlineResult, seq uint64) int {
	switch {
	case r.seq < seq:
		return -1
	case r.seq > seq:
		return 1
	}
	return 0
}

// checkInline panics if the inline results break what the header promises
// (the list above). Only in invariants builds, on every header written.
func (h *sessionHeader) checkInline(client uint64) {
	if !invariants.Enabled {
		return
	}
	sum, last := 0, h.acked
	for _, r := range h.inline {
		if r.seq <= last || r.seq > h.top || len(r.result) > maxInlineResult {
			panic(fmt.Sprintf("kv: client %x: inline result of seq %d (%d bytes) after seq %d, acked %d, top %d", client, r.seq, len(r.result), last, h.acked, h.top))
		}
		sum, last = sum+len(r.result), r.seq
	}
	if sum != h.inlineBytes || sum > maxInlineBytes {
		panic(fmt.Sprintf("kv: client %x: inline results hold %d bytes, the header counts %d", client, sum, h.inlineBytes))
	}
}

// appendTo appends the header in the third format.
func (h *sessionHeader) appendTo(b []byte) []byte {
	b = binary.AppendUvarint(b, h.acked)
	b = binary.AppendVarint(b, h.stamp)
	b = binary.AppendUvarint(b, h.top)
	b = binary.AppendUvarint(b, h.spillTop)
	for _, r := range h.inline {
		b = binary.AppendUvarint(b, r.seq-h.acked)
		b = binary.AppendUvarint(b, uint64(len(r.result)))
		b = append(b, r.result...)
	}
	return b
}

// decodeSessionHeader reads a header of any format. The inline results are
// copied out of buf, which the caller may reuse.
func decodeSessionHeader(buf []byte) (sessionHeader, error) {
	var h sessionHeader
	acked, n := binary.Uvarint(buf)
	if n <= 0 {
		return h, errBadSessionHeader
	}
	h.acked = acked
	stamp, m := binary.Varint(buf[n:])
	if m <= 0 {
		return h, errBadSessionHeader
	}
	h.stamp = stamp
	rest := buf[n+m:]
	if len(rest) == 0 { // first format
		h.top, h.spillTop = topUnknown, topUnknown
		return h, nil
	}
	top, k := binary.Uvarint(rest)
	if k <= 0 {
		return h, errBadSessionHeader
	}
	h.top, rest = top, rest[k:]
	if len(rest) == 0 { // second format
		h.spillTop = top
		return h, nil
	}
	spillTop, k := binary.Uvarint(rest)
	if k <= 0 {
		return h, errBadSessionHeader
	}
	h.spillTop, rest = spillTop, rest[k:]
	if len(rest) == 0 {
		return h, nil
	}
	rest = slices.Clone(rest) // one copy that every inline result points into
	last := acked
	for len(rest) > 0 {
		delta, k := binary.Uvarint(rest)
		if k <= 0 || delta == 0 || delta > math.MaxUint64-acked {
			return h, errBadSessionHeader
		}
		seq := acked + delta
		if seq <= last || seq > h.top {
			return h, errBadSessionHeader // out of order, or outside (acked, top]
		}
		size, j := binary.Uvarint(rest[k:])
		if j <= 0 || size > uint64(len(rest)-k-j) {
			return h, errBadSessionHeader
		}
		start := k + j
		h.inline = append(h.inline, inlineResult{seq: seq, result: rest[start : start+int(size) : start+int(size)]})
		h.inlineBytes += int(size)
		rest, last = rest[start+int(size):], seq
	}
	return h, nil
}
