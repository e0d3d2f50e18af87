package kv

import (
	"bufio"
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"hash"
	"hash/crc32"
	"io"

	"github.com/cockroachdb/pebble/v2"
	"github.com/cxkv/cxkv/api/cxkvpb"
)

// A state snapshot travels as a stream:
//
//	magic "cxkvsnap" | version byte | frames... | 0 | crc32c (4 bytes, big-endian)
//
// where each frame is uvarint(len key) key uvarint(len value) value, and the
// checksum covers every byte before it. A receiver validates the whole stream
// before it touches its own state.
var snapshotMagic = []byte("cxkvsnap\x01")

var castagnoli = crc32.MakeTable(crc32.Castagnoli)

// StateSnapshot is a consistent view of the state, taken at one point of the
// apply sequence.
type StateSnapshot struct {
	snap *pebble.Snapshot
}

// NewStateSnapshot captures the state as it is now.
func (s *Store) NewStateSnapshot() *StateSnapshot { return &StateSnapshot{snap: s.db.NewSnapshot()} }

// Applied is the applied index of the captured state.
func (ss *StateSnapshot) Applied() (uint64, error) { return getUint64(ss.snap, metaKey(metaApplied)) }

// ConfState is the Raft configuration of the captured state.
func (ss *StateSnapshot) ConfState() ([]byte, error) {
	return getBytes(ss.snap, metaKey(metaConfState))
}

// WriteTo streams the state.
func (ss *StateSnapshot) WriteTo(w io.Writer) (int64, error) {
	crc := crc32.New(castagnoli)
	cw := &countingWriter{w: io.MultiWriter(w, crc)}
	bw := bufio.NewWriterSize(cw, 64<<10)
	bw.Write(snapshotMagic)
	var hdr []byte
	for _, p := range statePrefixes {
		it, err := ss.snap.NewIter(&pebble.IterOptions{LowerBound: []byte{p}, UpperBound: []byte{p + 1}})
		if err != nil {
			return cw.n, err
		}
		for ok := it.First(); ok; ok = it.Next() {
			v, err := it.ValueAndErr()
			if err != nil {
				it.Close()
				return cw.n, err
			}
			hdr = binary.AppendUvarint(hdr[:0], uint64(len(it.Key())))
			bw.Write(hdr)
			bw.Write(it.Key())
			hdr = binary.AppendUvarint(hdr[:0], uint64(len(v)))
			bw.Write(hdr)
			if _, err := bw.Write(v); err != nil {
				it.Close()
				return cw.n, err
			}
		}
		if err := it.Close(); err != nil {
			return cw.n, err
		}
	}
	bw.WriteByte(0)
	if err := bw.Flush(); err != nil {
		return cw.n, err
	}
	n, err := w.Write(binary.BigEndian.AppendUint32(nil, crc.Sum32()))
	return cw.n + int64(n), err
}

// Close releases the captured view.
func (ss *StateSnapshot) Close() error { return ss.snap.Close() }

// RestoreState replaces the whole state with the stream r, atomically and
// durably. The stream is read and checked in full first: a truncated or
// corrupt stream returns an error and leaves the state as it was. The Raft
// log and identity are not touched. The history restarts at the restored
// applied index.
func (s *Store) RestoreState(r io.Reader) error {
	br := &hashingReader{r: bufio.NewReaderSize(r, 64<<10), crc: crc32.New(castagnoli)}
	magic := make([]byte, len(snapshotMagic))
	if _, err := io.ReadFull(br, magic); err != nil || !bytes.Equal(magic, snapshotMagic) {
		return errors.New("kv: restore: stream does not start with a cxkv snapshot header")
	}
	b := s.db.NewBatch()
	defer b.Close()
	for _, p := range statePrefixes {
		if err := b.DeleteRange([]byte{p}, []byte{p + 1}, nil); err != nil {
			return err
		}
	}
	if err := b.DeleteRange([]byte{prefixEvent}, []byte{prefixEvent + 1}, nil); err != nil {
		return err
	}
	var applied uint64
	for {
		klen, err := binary.ReadUvarint(br)
		if err != nil {
			return fmt.Errorf("kv: restore: truncated stream: %w", err)
		}
		if klen == 0 {
			break
		}
		key, err := readN(br, klen)
		if err != nil {
			return err
		}
		if !isStateKey(key) {
			return fmt.Errorf("kv: restore: stream carries key %q outside the state", key)
		}
		vlen, err := binary.ReadUvarint(br)
		if err != nil {
			return fmt.Errorf("kv: restore: truncated stream: %w", err)
		}
		val, err := readN(br, vlen)
		if err != nil {
			return err
		}
		if bytes.Equal(key, metaKey(metaApplied)) && len(val) == 8 {
			applied = binary.BigEndian.Uint64(val)
		}
		if err := b.Set(key, val, nil); err != nil {
			return err
		}
	}
	want := br.crc.Sum32()
	var sum [4]byte
	if _, err := io.ReadFull(br.r, sum[:]); err != nil {
		return fmt.Errorf("kv: restore: stream ends before its checksum: %w", err)
	}
	if got := binary.BigEndian.Uint32(sum[:]); got != want {
		return fmt.Errorf("kv: restore: checksum mismatch (stream says %08x, content hashes to %08x)", got, want)
	}
	if err := b.Set(metaKey(metaEventFloor), binary.BigEndian.AppendUint64(nil, applied), nil); err != nil {
		return err
	}
	return guard(func() error { return b.Commit(pebble.Sync) })
}

// maxSnapshotField bounds one key or value of a snapshot stream, so a
// corrupt length cannot make the receiver allocate without bound before the
// checksum is read. It must be at least anything the state holds: a record
// (a value is at most 1 MiB) or a result kept for a retry, which is an
// answer and so below the message limit.
const maxSnapshotField = cxkvpb.MaxMessageBytes

func readN(r io.Reader, n uint64) ([]byte, error) {
	if n > maxSnapshotField {
		return nil, fmt.Errorf("kv: restore: field of %d bytes exceeds %d", n, maxSnapshotField)
	}
	buf := make([]byte, n)
	if _, err := io.ReadFull(r, buf); err != nil {
		return nil, fmt.Errorf("kv: restore: truncated stream: %w", err)
	}
	return buf, nil
}

func isStateKey(k []byte) bool {
	if len(k) == 0 {
		return false
	}
	return bytes.IndexByte(statePrefixes, k[0]) >= 0
}

type countingWriter struct {
	w io.Writer
	n int64
}

func (c *countingWriter) Write(p []byte) (int, error) {
	n, err := c.w.Write(p)
	c.n += int64(n)
	return n, err
}

// hashingReader hashes exactly the bytes its caller consumed, so the checksum
// at the end of the stream is not hashed into itself by read-ahead.
type hashingReader struct {
	r   *bufio.Reader
	crc hash.Hash32
}

func (h *hashingReader) Read(p []byte) (int, error) {
	n, err := h.r.Read(p)
	h.crc.Write(p[:n])
	return n, err
}

func (h *hashingReader) ReadByte() (byte, error) {
	c, err := h.r.ReadByte()
	if err == nil {
		h.crc.Write([]byte{c})
	}
	return c, err
}
