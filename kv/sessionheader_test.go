package kv

import (
	"bytes"
	"encoding/binary"
	"hash/crc32"
	"reflect"
	"strings"
	"testing"

	"github.com/cockroachdb/pebble/v2/vfs"
)

func TestSessionHeaderFormats(t *testing.T) {
	first := binary.AppendVarint(binary.AppendUvarint(nil, 4), -7)
	second := binary.AppendUvarint(bytes.Clone(first), 9)
	third := (&sessionHeader{acked: 4, stamp: -7, top: 12, spillTop: 9, inline: []inlineResult{
		{seq: 5, result: []byte("five")}, {seq: 11, result: nil}, {seq: 12, result: []byte("twelve")},
	}}).appendTo(nil)
	for _, c := range []struct {
		name string
		buf  []byte
		want sessionHeader
	}{
		{"first", first, sessionHeader{acked: 4, stamp: -7, top: topUnknown, spillTop: topUnknown}},
		{"second", second, sessionHeader{acked: 4, stamp: -7, top: 9, spillTop: 9}},
		{"third", third, sessionHeader{acked: 4, stamp: -7, top: 12, spillTop: 9, inlineBytes: 10, inline: []inlineResult{
			{seq: 5, result: []byte("five")}, {seq: 11, result: []byte{}}, {seq: 12, result: []byte("twelve")},
		}}},
	} {
		got, err := decodeSessionHeader(c.buf)
		if err != nil || !reflect.DeepEqual(got, c.want) {
			t.Errorf("%s: %+v, %v; want %+v", c.name, got, err, c.want)
		}
	}
	h, _ := decodeSessionHeader(third)
	third[len(third)-1] = 'X'
	if r, _ := h.findInline(12); string(r) != "twelve" {
		t.Errorf("an inline result shares the buffer it was decoded from: %q", r)
	}
	if _, ok := h.findInline(6); ok {
		t.Error("seq 6 found inline")
	}
}

func TestSessionHeaderRefusesMalformed(t *testing.T) {
	base := func() []byte { // acked 4, stamp 0, top 12, spillTop 0
		return []byte{4, 0, 12, 0}
	}
	entry := func(b []byte, delta, size uint64, res string) []byte {
		b = binary.AppendUvarint(b, delta)
		b = binary.AppendUvarint(b, size)
		return append(b, res...)
	}
	for name, buf := range map[string][]byte{
		"empty":           nil,
		"cut stamp":       {4},
		"cut top":         {4, 0, 0x80},
		"cut spill top":   {4, 0, 12, 0x80},
		"seq at acked":    entry(base(), 0, 1, "r"),
		"seq above top":   entry(base(), 9, 1, "r"),
		"seqs not rising": entry(entry(base(), 3, 1, "r"), 2, 1, "r"),
		"repeated seq":    entry(entry(base(), 3, 1, "r"), 3, 1, "r"),
		"cut length":      append(base(), 3, 0x80),
		"length past end": entry(base(), 3, 5, "r"),
		"seq overflows":   entry(base(), 1<<63+(1<<63-2), 1, "r"),
	} {
		if h, err := decodeSessionHeader(buf); err == nil {
			t.Errorf("%s: %x decoded as %+v", name, buf, h)
		}
	}
}

func TestInlineResultsKeepTheirBudget(t *testing.T) {
	var h sessionHeader
	if h.addInline(1, make([]byte, maxInlineResult+1)) {
		t.Fatal("a result over maxInlineResult was held inline")
	}
	res := make([]byte, maxInlineResult)
	n := uint64(0)
	for h.addInline(n+1, res) {
		n++
	}
	if want := uint64(maxInlineBytes / maxInlineResult); n != want {
		t.Fatalf("%d results of %d bytes held inline, want %d", n, len(res), want)
	}
	h.dropInlineThrough(2)
	if len(h.inline) != int(n-2) || h.inline[0].seq != 3 || h.inlineBytes != int(n-2)*maxInlineResult {
		t.Fatalf("after dropping through 2: %d results from seq %d, %d bytes", len(h.inline), h.inline[0].seq, h.inlineBytes)
	}
	if !h.addInline(n+1, res) {
		t.Fatal("dropping results freed no budget")
	}
}

// A busy client's results stay in its header: a write rewrites the header
// and sets no other key of the table; a result too large for the header
// goes to a key of its own, and acknowledging it deletes that key.
func TestRecordHoldsSmallResultsInline(t *testing.T) {
	s := openMem(t, vfs.NewMem())
	defer s.Close()
	record := func(seq, acked uint64, result []byte) {
		t.Helper()
		b := s.NewBatch()
		defer b.Close()
		table, err := b.Sessions(SessionLimits{MaxSessions: 10, MaxResults: 100, TTLMillis: 1000}, 5)
		if err != nil {
			t.Fatal(err)
		}
		w, err := table.Lookup(1, seq, seq == 1)
		if err != nil || w.Outcome != Fresh {
			t.Fatalf("seq %d: %+v, %v", seq, w, err)
		}
		if err := table.Record(&w, acked, result); err != nil {
			t.Fatal(err)
		}
		mustCommit(t, b, false)
	}
	spilled := func() (n int) {
		t.Helper()
		it, err := s.db.NewIter(nil)
		if err != nil {
			t.Fatal(err)
		}
		defer it.Close()
		for it.First(); it.Valid(); it.Next() {
			if it.Key()[0] == prefixResult {
				n++
			}
		}
		return n
	}
	for seq := uint64(1); seq <= 8; seq++ {
		record(seq, seq-min(seq, 4), []byte("small"))
	}
	big := []byte(strings.Repeat("b", maxInlineResult+1))
	record(9, 5, big)
	if n := spilled(); n != 1 {
		t.Fatalf("%d results in keys of their own, want the large one only", n)
	}
	record(10, 9, []byte("small"))
	if n := spilled(); n != 0 {
		t.Fatalf("%d results in keys of their own after the large one was acknowledged", n)
	}
	b := s.NewBatch()
	defer b.Close()
	table, err := b.Sessions(SessionLimits{MaxSessions: 10, MaxResults: 100, TTLMillis: 1000}, 5)
	if err != nil {
		t.Fatal(err)
	}
	for seq, want := range map[uint64]Outcome{9: Forgotten, 10: Answered, 11: Fresh} {
		if w, err := table.Lookup(1, seq, false); err != nil || w.Outcome != want {
			t.Errorf("seq %d: %v, %v; want %v", seq, w.Outcome, err, want)
		}
	}
}

func FuzzDecodeSessionHeader(f *testing.F) {
	f.Add([]byte{4, 0})
	f.Add([]byte{4, 0, 9})
	f.Add((&sessionHeader{acked: 4, top: 12, spillTop: 9, inline: []inlineResult{{seq: 5, result: []byte("r")}}}).appendTo(nil))
	f.Fuzz(func(t *testing.T, buf []byte) {
		h, err := decodeSessionHeader(buf)
		if err != nil {
			return
		}
		// Every format re-encodes as the third, holding the same.
		again, err := decodeSessionHeader(h.appendTo(nil))
		if err != nil || again.acked != h.acked || again.stamp != h.stamp || again.top != h.top ||
			again.spillTop != h.spillTop || again.inlineBytes != h.inlineBytes || len(again.inline) != len(h.inline) {
			t.Fatalf("%+v re-encodes as %+v (%v)", h, again, err)
		}
		for i := range h.inline {
			if again.inline[i].seq != h.inline[i].seq || !bytes.Equal(again.inline[i].result, h.inline[i].result) {
				t.Fatalf("inline result %d: %+v re-encodes as %+v", i, h.inline[i], again.inline[i])
			}
		}
	})
}

// A build of the second table format reads snapshot streams of version 2
// only and would fail on the first header holding results inline, so this
// build writes version 3, still reads 2, and refuses what it does not know
// by naming the versions.
func TestSnapshotVersions(t *testing.T) {
	src := openMem(t, vfs.NewMem())
	defer src.Close()
	b := src.NewBatch()
	b.Put(Record{Key: "k", Value: []byte("v"), Index: 2, CreateIndex: 2})
	b.SetApplied(2)
	mustCommit(t, b, false)
	data := snapshotStream(t, src)
	if !bytes.HasPrefix(data, []byte("cxkvsnap\x03")) {
		t.Fatalf("stream starts %q, want version 3", data[:9])
	}
	// The framing and checksum are the same in both versions: only the
	// byte after the magic differs, and the checksum covers it.
	reversion := func(v byte) []byte {
		out := bytes.Clone(data[:len(data)-4])
		out[8] = v
		return binary.BigEndian.AppendUint32(out, crc32.Checksum(out, castagnoli))
	}
	dst := openMem(t, vfs.NewMem())
	defer dst.Close()
	if err := dst.RestoreState(bytes.NewReader(reversion(2))); err != nil {
		t.Fatalf("version 2 refused: %v", err)
	}
	if r, ok, _ := dst.Get("k"); !ok || string(r.Value) != "v" {
		t.Fatalf("version 2 restored %+v, %v", r, ok)
	}
	err := dst.RestoreState(bytes.NewReader(reversion(4)))
	if err == nil || !strings.Contains(err.Error(), "format version 4") || !strings.Contains(err.Error(), "[2 3]") {
		t.Fatalf("version 4: %v, want a refusal naming it and the versions read", err)
	}
}
