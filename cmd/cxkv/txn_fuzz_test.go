package main

import (
	"encoding/json"
	"testing"
)

// FuzzParseTxn: `cxkv txn` reads JSON from users and scripts. Any input is
// either refused with a message or parsed into a transaction with something
// in it, where every compare and op has a key and the names the output uses
// line up with what is sent.
func FuzzParseTxn(f *testing.F) {
	f.Fuzz(func(t *testing.T, data []byte) {
		p, err := parseTxn(data)
		if err != nil {
			if err.Error() == "" {
				t.Fatal("refused with an empty message")
			}
			return
		}
		if !json.Valid(data) {
			t.Fatalf("accepted input that is not JSON: %q", data)
		}
		if len(p.compares) == 0 && len(p.ops) == 0 {
			t.Fatalf("accepted an empty transaction: %q", data)
		}
		if len(p.cmpKey) != len(p.compares) || len(p.cmpText) != len(p.compares) {
			t.Fatalf("%d compares but %d keys and %d descriptions", len(p.compares), len(p.cmpKey), len(p.cmpText))
		}
		if len(p.opKind) != len(p.ops) || len(p.opKey) != len(p.ops) {
			t.Fatalf("%d ops but %d kinds and %d keys", len(p.ops), len(p.opKind), len(p.opKey))
		}
		for i, k := range append(append([]string{}, p.cmpKey...), p.opKey...) {
			if k == "" {
				t.Fatalf("entry %d accepted with an empty key: %q", i, data)
			}
		}
		for i, kind := range p.opKind {
			if kind != "put" && kind != "delete" && kind != "get" {
				t.Fatalf("ops[%d] has kind %q", i, kind)
			}
		}
	})
}
