package kv

import (
	"bufio"
	"bytes"
	"context"
	"crypto/rand"
	"encoding/binary"
	"encoding/hex"
	"errors"
	"fmt"
	"hash"
	"hash/crc32"
	"io"
	"os"
	"path/filepath"
	"slices"
	"strings"

	"github.com/cockroachdb/pebble/v2"
	"github.com/cockroachdb/pebble/v2/objstorage/objstorageprovider"
	"github.com/cockroachdb/pebble/v2/sstable"
	"github.com/cockroachdb/pebble/v2/vfs"
	"github.com/cxkv/cxkv/api/cxkvpb"
)

// A state snapshot travels as a stream, between members and in backup files:
//
//	magic "cxkvsnap" | version byte | frames... | 0 | crc32c (4 bytes, big-endian)
//
// where each frame is uvarint(len key) key uvarint(len value) value, keys in
// strictly increasing byte order, and the checksum covers every byte before
// it. Version 2 added the order, which lets a receiver write the stream
// straight into an sstable instead of holding it in memory. Version 3 is the
// same framing over a state whose session headers may hold results inline
// (sessionheader.go): a build that reads version 2 only would install it and
// then fail on the first such header, so it must refuse the stream instead.
// This build reads both and writes 3.
var snapshotMagic = []byte("cxkvsnap\x03")

// snapshotVersionsRead are the versions this build decodes: version 2's
// state is a state of this build's too (headers of the second format).
var snapshotVersionsRead = []byte{2, 3}

var castagnoli = crc32.MakeTable(crc32.Castagnoli)

// stagingDir, inside the data dir, holds snapshots received but not yet
// installed. Pebble ignores a directory it did not create; Open empties it,
// since nothing staged survives a restart (raft asks for the snapshot again).
const stagingDir = "snapshots-in"

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

// WriteTo streams the state, reading it from the captured view as it goes:
// nothing but a buffer is held in memory.
func (ss *StateSnapshot) WriteTo(w io.Writer) (int64, error) {
	crc := crc32.New(castagnoli)
	cw := &countingWriter{w: io.MultiWriter(w, crc)}
	bw := bufio.NewWriterSize(cw, 64<<10)
	bw.Write(snapshotMagic)
	var hdr []byte
	// Prefix by prefix in byte order, so the keys come out sorted.
	for _, p := range slices.Sorted(slices.Values(statePrefixes)) {
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

// SnapshotInfo describes a checked snapshot stream.
type SnapshotInfo struct {
	Applied   uint64 // the applied index of the state it carries
	Records   uint64 // user keys
	Keys      uint64 // every key of the state: records, TTL index, sessions, meta
	Bytes     int64  // length of the stream
	Checksum  uint32 // its CRC-32C, as it ends with
	ConfState []byte // the Raft configuration stored with the state
}

// InspectSnapshot reads a whole snapshot stream and checks it as a restore
// would (header, framing, key order, every key a state key, checksum),
// writing nothing.
func InspectSnapshot(r io.Reader) (SnapshotInfo, error) {
	d, err := newSnapshotDecoder(r)
	if err != nil {
		return SnapshotInfo{}, err
	}
	for {
		_, _, ok, err := d.next()
		if err != nil {
			return SnapshotInfo{}, err
		}
		if !ok {
			return d.info, nil
		}
	}
}

// StagedState is a snapshot written to the member's disk, checked in full,
// and not yet installed.
type StagedState struct {
	Name string // what InstallStaged and DiscardStaged take
	SnapshotInfo
}

// StageState reads a snapshot stream into an sstable in the data dir,
// checking it as it goes; the state is not touched. Memory use does not grow
// with the stream: frames go to the table writer as they arrive. The table
// replaces the state when installed: it carries range deletions of every
// state prefix and of the history, its keys, and the event floor set to the
// snapshot's applied index (the history restarts there). A non-nil
// confState replaces the Raft configuration stored with the state: a
// backup restored into a new cluster takes that cluster's members.
func (s *Store) StageState(r io.Reader, confState []byte) (StagedState, error) {
	d, err := newSnapshotDecoder(r)
	if err != nil {
		return StagedState{}, err
	}
	if err := s.fs.MkdirAll(s.path(stagingDir), 0o755); err != nil {
		return StagedState{}, fmt.Errorf("kv: stage snapshot: %w", err)
	}
	var id [8]byte
	rand.Read(id[:])
	name := hex.EncodeToString(id[:]) + ".sst"
	path := s.path(stagingDir, name)
	f, err := s.fs.Create(path, vfs.WriteCategoryUnspecified)
	if err != nil {
		return StagedState{}, fmt.Errorf("kv: stage snapshot: %w", err)
	}
	w := sstable.NewWriter(objstorageprovider.NewFileWritable(f), sstable.WriterOptions{TableFormat: s.db.TableFormat()})
	err = writeStaged(w, d, confState)
	if cerr := w.Close(); err == nil && cerr != nil { // Close syncs the table
		err = fmt.Errorf("kv: stage snapshot: %w", cerr)
	}
	if err != nil {
		s.fs.Remove(path)
		return StagedState{}, err
	}
	return StagedState{Name: name, SnapshotInfo: d.info}, nil
}

func writeStaged(w *sstable.Writer, d *snapshotDecoder, confState []byte) error {
	// Range deletions must be added in order and not overlap; in an
	// ingested table they delete older keys, not the table's own.
	cleared := append([]byte{prefixEvent}, statePrefixes...)
	slices.Sort(cleared)
	for _, p := range cleared {
		if err := w.DeleteRange([]byte{p}, []byte{p + 1}); err != nil {
			return fmt.Errorf("kv: stage snapshot: %w", err)
		}
	}
	// Keys the receiver sets itself, in key order, each in place of the
	// stream's (or where it would sort, if the stream has none). The
	// floor's value is the applied index, whose key sorts before it.
	type override struct {
		key   []byte
		value func() []byte
	}
	var overrides []override
	if confState != nil {
		overrides = append(overrides, override{metaKey(metaConfState), func() []byte { return confState }})
	}
	overrides = append(overrides, override{metaKey(metaEventFloor), func() []byte {
		return binary.BigEndian.AppendUint64(nil, d.info.Applied)
	}})
	for {
		key, val, ok, err := d.next()
		if err != nil {
			return err
		}
		for len(overrides) > 0 && (!ok || bytes.Compare(key, overrides[0].key) >= 0) {
			if err := w.Set(overrides[0].key, overrides[0].value()); err != nil {
				return fmt.Errorf("kv: stage snapshot: %w", err)
			}
			if ok && bytes.Equal(key, overrides[0].key) {
				key = nil // replaced
			}
			overrides = overrides[1:]
		}
		if !ok {
			return nil
		}
		if key == nil {
			continue
		}
		if err := w.Set(key, val); err != nil {
			return fmt.Errorf("kv: stage snapshot: %w", err)
		}
	}
}

// InstallStaged replaces the whole state by a staged snapshot, atomically
// and durably: Pebble ingests the table in one synced manifest edit, so
// after a crash the state is the old one or the snapshot's. The staged file
// is consumed. The Raft log and identity are not touched.
func (s *Store) InstallStaged(name string) error {
	if err := checkStagedName(name); err != nil {
		return err
	}
	path := s.path(stagingDir, name)
	// The new state's records were never announced to the floors.
	s.floors.beginInstall()
	defer s.floors.endInstall()
	return s.failed.guard(func() error {
		if err := s.db.Ingest(context.Background(), []string{path}); err != nil {
			return fmt.Errorf("kv: install snapshot %s: %w", name, err)
		}
		s.auth.changed()
		s.table.reset()
		s.cache.reset()
		return nil
	})
}

// DiscardStaged removes a staged snapshot that will not be installed.
func (s *Store) DiscardStaged(name string) error {
	if err := checkStagedName(name); err != nil {
		return err
	}
	if err := s.fs.Remove(s.path(stagingDir, name)); err != nil && !errors.Is(err, os.ErrNotExist) {
		return fmt.Errorf("kv: discard snapshot %s: %w", name, err)
	}
	return nil
}

// checkStagedName keeps a name that came through a raft message inside the
// staging directory.
func checkStagedName(name string) error {
	if name == "" || strings.ContainsAny(name, `/\`) || strings.HasPrefix(name, ".") {
		return fmt.Errorf("kv: %q is not a staged snapshot's name", name)
	}
	return nil
}

// clearStaged removes what a previous run staged and never installed.
func (s *Store) clearStaged() error {
	names, err := s.fs.List(s.path(stagingDir))
	if err != nil {
		if errors.Is(err, os.ErrNotExist) {
			return nil
		}
		return err
	}
	for _, n := range names {
		if err := s.fs.Remove(s.path(stagingDir, n)); err != nil {
			return fmt.Errorf("kv: clearing staged snapshots: %w", err)
		}
	}
	return nil
}

// StagedCount is how many staged snapshots wait in the data dir.
func (s *Store) StagedCount() (int, error) {
	names, err := s.fs.List(s.path(stagingDir))
	if errors.Is(err, os.ErrNotExist) {
		return 0, nil
	}
	return len(names), err
}

func (s *Store) path(elem ...string) string {
	return filepath.Join(append([]string{s.dir}, elem...)...)
}

// RestoreState replaces the whole state with the stream r, atomically and
// durably: it stages the stream, then installs it. A truncated or corrupt
// stream returns an error and leaves the state as it was. The Raft log and
// identity are not touched. The history restarts at the restored applied
// index.
func (s *Store) RestoreState(r io.Reader) error {
	st, err := s.StageState(r, nil)
	if err != nil {
		return err
	}
	return s.InstallStaged(st.Name)
}

// snapshotDecoder reads a snapshot stream frame by frame and checks it:
// framing, field sizes, key order, that every key is a state key, and at the
// end the checksum and that nothing follows it. A caller must not act on
// the frames before next reports the end: only then is the stream known
// whole.
type snapshotDecoder struct {
	br   *hashingReader
	last []byte
	info SnapshotInfo
}

func newSnapshotDecoder(r io.Reader) (*snapshotDecoder, error) {
	d := &snapshotDecoder{br: &hashingReader{r: bufio.NewReaderSize(r, 64<<10), crc: crc32.New(castagnoli)}}
	magic := make([]byte, len(snapshotMagic))
	_, err := io.ReadFull(d.br, magic)
	d.info.Bytes = d.br.n
	if err == nil && bytes.Equal(magic[:len(magic)-1], snapshotMagic[:len(magic)-1]) {
		v := magic[len(magic)-1]
		if bytes.IndexByte(snapshotVersionsRead, v) < 0 {
			return nil, fmt.Errorf("kv: snapshot stream of format version %d; this build reads versions %v", v, snapshotVersionsRead)
		}
		return d, nil
	}
	return nil, errors.New("kv: not a cxkv snapshot: the stream does not start with a cxkv snapshot header")
}

func (d *snapshotDecoder) uvarint() (uint64, error) {
	v, err := binary.ReadUvarint(d.br)
	d.info.Bytes = d.br.n
	if err != nil {
		return 0, fmt.Errorf("kv: snapshot truncated after %d bytes: %w", d.info.Bytes, eofIsUnexpected(err))
	}
	return v, nil
}

func (d *snapshotDecoder) field(n uint64) ([]byte, error) {
	if n > maxSnapshotField {
		return nil, fmt.Errorf("kv: snapshot corrupt at byte %d: field of %d bytes exceeds %d", d.info.Bytes, n, maxSnapshotField)
	}
	buf := make([]byte, n)
	_, err := io.ReadFull(d.br, buf)
	d.info.Bytes = d.br.n
	if err != nil {
		return nil, fmt.Errorf("kv: snapshot truncated after %d bytes: %w", d.info.Bytes, eofIsUnexpected(err))
	}
	return buf, nil
}

// next returns the next frame, or ok false once the stream ended and its
// checksum matched.
func (d *snapshotDecoder) next() (key, val []byte, ok bool, err error) {
	klen, err := d.uvarint()
	if err != nil {
		return nil, nil, false, err
	}
	if klen == 0 {
		return nil, nil, false, d.finish()
	}
	if key, err = d.field(klen); err != nil {
		return nil, nil, false, err
	}
	if !isStateKey(key) {
		return nil, nil, false, fmt.Errorf("kv: snapshot corrupt at byte %d: key %q is outside the state", d.info.Bytes, key)
	}
	if d.last != nil && bytes.Compare(key, d.last) <= 0 {
		return nil, nil, false, fmt.Errorf("kv: snapshot corrupt at byte %d: key %q does not sort after %q", d.info.Bytes, key, d.last)
	}
	vlen, err := d.uvarint()
	if err != nil {
		return nil, nil, false, err
	}
	if val, err = d.field(vlen); err != nil {
		return nil, nil, false, err
	}
	d.last = key
	d.info.Keys++
	switch {
	case key[0] == prefixRecord:
		d.info.Records++
	case bytes.Equal(key, metaKey(metaApplied)) && len(val) == 8:
		d.info.Applied = binary.BigEndian.Uint64(val)
	case bytes.Equal(key, metaKey(metaConfState)):
		d.info.ConfState = val
	}
	return key, val, true, nil
}

func (d *snapshotDecoder) finish() error {
	want := d.br.crc.Sum32()
	var sum [4]byte
	n, err := io.ReadFull(d.br.r, sum[:])
	d.info.Bytes += int64(n)
	if err != nil {
		return fmt.Errorf("kv: snapshot truncated after %d bytes: it ends before its checksum", d.info.Bytes)
	}
	got := binary.BigEndian.Uint32(sum[:])
	if got != want {
		return fmt.Errorf("kv: snapshot corrupt: checksum mismatch (the stream ends with %08x, its content hashes to %08x)", got, want)
	}
	if _, err := d.br.r.ReadByte(); err != io.EOF {
		if err != nil {
			return fmt.Errorf("kv: snapshot: reading past its checksum: %w", err)
		}
		return fmt.Errorf("kv: snapshot corrupt: bytes follow its checksum at byte %d", d.info.Bytes)
	}
	d.info.Checksum = got
	return nil
}

func eofIsUnexpected(err error) error {
	if errors.Is(err, io.EOF) {
		return io.ErrUnexpectedEOF
	}
	return err
}

// maxSnapshotField bounds one key or value of a snapshot stream, so a
// corrupt length cannot make the receiver allocate without bound before the
// checksum is read. It must be at least anything the state holds: a record
// (a value is at most 1 MiB) or a result kept for a retry, which is an
// answer and so below the message limit.
const maxSnapshotField = cxkvpb.MaxMessageBytes

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
	n   int64
}

func (h *hashingReader) Read(p []byte) (int, error) {
	n, err := h.r.Read(p)
	h.crc.Write(p[:n])
	h.n += int64(n)
	return n, err
}

func (h *hashingReader) ReadByte() (byte, error) {
	c, err := h.r.ReadByte()
	if err == nil {
		h.crc.Write([]byte{c})
		h.n++
	}
	return c, err
}
