package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"strings"
	"time"

	"github.com/cxkv/cxkv/client"
	"github.com/spf13/cobra"
)

const txnHelp = `Apply a transaction read as JSON from FILE, or from stdin if FILE is - or
absent. If every compare holds, every op applies in one log entry at one
index; otherwise nothing changes, the first failing compare is named with
the key's current state, and cxkv exits 3.

  {"compares": [                       each holds against the state before the txn
     {"key": "acct/a", "index": 12},   acct/a exists at index 12
     {"key": "acct/c", "absent": true},
     {"key": "k", "value": "v"}],      k exists with value v
   "ops": [                            in order, each seeing the ones before
     {"put": "acct/a", "value": "70", "ttl": "10s"},   ttl is optional
     {"delete": "acct/b"},             deleting an absent key does nothing
     {"get": "acct/c"}]}

A compare has "key" and exactly one of "index" (a number above 0),
"absent" (true) or "value" (a string). An op has exactly one of "put"
(with "value", optional "ttl" as a Go duration), "delete" or "get".
Unknown fields and malformed entries are usage errors (exit 2).
The table shows each op's key afterwards (a delete: the key it removed);
-o json prints successful, index, failed_compare, compares (each with the
key's state it was checked against) and results (one per op).

  echo '{"compares":[{"key":"acct/a","index":12}],"ops":[{"put":"acct/a","value":"70"}]}' | cxkv txn`

// txnFile is the JSON form of a transaction. Entries are kept raw so that an
// error can name the entry it is in.
type txnFile struct {
	Compares []json.RawMessage `json:"compares"`
	Ops      []json.RawMessage `json:"ops"`
}

type txnCompare struct {
	Key    *string `json:"key"`
	Index  *uint64 `json:"index"`
	Absent *bool   `json:"absent"`
	Value  *string `json:"value"`
}

type txnOp struct {
	Put    *string `json:"put"`
	Delete *string `json:"delete"`
	Get    *string `json:"get"`
	Value  *string `json:"value"`
	TTL    *string `json:"ttl"`
}

// parsedTxn is a transaction ready to send, with what the output needs to
// name its parts.
type parsedTxn struct {
	compares []client.Compare
	cmpKey   []string
	cmpText  []string // "acct/a index=12", per compare
	ops      []client.Op
	opKind   []string // put, delete, get
	opKey    []string
}

// parseTxn reads the JSON form strictly: a typo must not turn a guarded
// write into an unguarded one.
func parseTxn(data []byte) (*parsedTxn, error) {
	var f txnFile
	if err := strictDecode(data, &f); err != nil {
		return nil, err
	}
	if len(f.Compares) == 0 && len(f.Ops) == 0 {
		return nil, errors.New(`no "compares" and no "ops"`)
	}
	t := &parsedTxn{}
	for i, raw := range f.Compares {
		where := fmt.Sprintf("compares[%d]", i)
		var c txnCompare
		if err := strictDecode(raw, &c); err != nil {
			return nil, fmt.Errorf("%s: %v", where, err)
		}
		if c.Key == nil || *c.Key == "" {
			return nil, fmt.Errorf(`%s: needs "key"`, where)
		}
		k := *c.Key
		t.cmpKey = append(t.cmpKey, k)
		switch {
		case count(c.Index != nil, c.Absent != nil, c.Value != nil) != 1:
			return nil, fmt.Errorf(`%s (%s): needs exactly one of "index", "absent", "value"`, where, k)
		case c.Index != nil:
			if *c.Index == 0 {
				return nil, fmt.Errorf(`%s (%s): "index": 0 never holds; use "absent": true`, where, k)
			}
			t.compares = append(t.compares, client.IndexIs(k, *c.Index))
			t.cmpText = append(t.cmpText, fmt.Sprintf("%s index=%d", k, *c.Index))
		case c.Absent != nil:
			if !*c.Absent {
				return nil, fmt.Errorf(`%s (%s): "absent" can only be true`, where, k)
			}
			t.compares = append(t.compares, client.Absent(k))
			t.cmpText = append(t.cmpText, k+" absent")
		default:
			t.compares = append(t.compares, client.ValueIs(k, []byte(*c.Value)))
			t.cmpText = append(t.cmpText, fmt.Sprintf("%s value=%q", k, *c.Value))
		}
	}
	for i, raw := range f.Ops {
		where := fmt.Sprintf("ops[%d]", i)
		var o txnOp
		if err := strictDecode(raw, &o); err != nil {
			return nil, fmt.Errorf("%s: %v", where, err)
		}
		if count(o.Put != nil, o.Delete != nil, o.Get != nil) != 1 {
			return nil, fmt.Errorf(`%s: needs exactly one of "put", "delete", "get"`, where)
		}
		kind, key := "put", o.Put
		if o.Delete != nil {
			kind, key = "delete", o.Delete
		} else if o.Get != nil {
			kind, key = "get", o.Get
		}
		if *key == "" {
			return nil, fmt.Errorf(`%s: %q needs a key`, where, kind)
		}
		if kind != "put" && (o.Value != nil || o.TTL != nil) {
			return nil, fmt.Errorf(`%s (%s %s): "value" and "ttl" belong to a put`, where, kind, *key)
		}
		switch kind {
		case "put":
			if o.Value == nil {
				return nil, fmt.Errorf(`%s (put %s): needs "value"`, where, *key)
			}
			var ttl time.Duration
			if o.TTL != nil {
				d, err := time.ParseDuration(*o.TTL)
				if err != nil || d <= 0 {
					return nil, fmt.Errorf(`%s (put %s): "ttl": %q is not a positive duration like "10s"`, where, *key, *o.TTL)
				}
				ttl = d
			}
			t.ops = append(t.ops, client.PutOp(*key, []byte(*o.Value), ttl))
		case "delete":
			t.ops = append(t.ops, client.DeleteOp(*key))
		case "get":
			t.ops = append(t.ops, client.GetOp(*key))
		}
		t.opKind = append(t.opKind, kind)
		t.opKey = append(t.opKey, *key)
	}
	return t, nil
}

// strictDecode decodes one JSON value, refusing unknown fields and trailing
// data, and says where a syntax error is.
func strictDecode(data []byte, v any) error {
	dec := json.NewDecoder(bytes.NewReader(data))
	dec.DisallowUnknownFields()
	err := dec.Decode(v)
	if err == nil {
		if _, terr := dec.Token(); terr != io.EOF {
			return errors.New("unexpected data after the JSON object")
		}
		return nil
	}
	var (
		syn *json.SyntaxError
		typ *json.UnmarshalTypeError
	)
	switch {
	case errors.As(err, &syn):
		line, col := position(data, syn.Offset)
		return fmt.Errorf("invalid JSON at line %d, column %d: %v", line, col, syn)
	case errors.As(err, &typ):
		return fmt.Errorf("%q: want %s, got JSON %s", typ.Field, jsonKind(typ.Type.String()), typ.Value)
	case errors.Is(err, io.EOF):
		return errors.New("empty input: want a JSON object")
	case errors.Is(err, io.ErrUnexpectedEOF):
		return errors.New("invalid JSON: input ends inside the object")
	}
	return errors.New(strings.TrimPrefix(err.Error(), "json: "))
}

func jsonKind(goType string) string {
	switch {
	case strings.Contains(goType, "uint"):
		return "a non-negative integer"
	case strings.Contains(goType, "bool"):
		return "true or false"
	case strings.Contains(goType, "string"):
		return "a string"
	case strings.Contains(goType, "[]"):
		return "an array"
	}
	return "an object"
}

func position(data []byte, offset int64) (line, col int) {
	line, col = 1, 1
	for _, b := range data[:min(int(offset), len(data))] {
		if b == '\n' {
			line, col = line+1, 1
		} else {
			col++
		}
	}
	return line, col
}

func count(bs ...bool) int {
	n := 0
	for _, b := range bs {
		if b {
			n++
		}
	}
	return n
}

// txnOutput is the JSON form of a transaction's outcome.
type txnOutput struct {
	Successful    bool           `json:"successful"`
	Index         uint64         `json:"index,omitempty"`
	FailedCompare *int           `json:"failed_compare,omitempty"`
	Compares      []txnCmpOutput `json:"compares"`
	Results       []txnOpOutput  `json:"results"`
}

type txnCmpOutput struct {
	Compare string `json:"compare"`
	Current record `json:"current"`
}

type txnOpOutput struct {
	Op     string `json:"op"`
	Key    string `json:"key"`
	Record record `json:"record"`
}

func newTxnCmd(g *globals) *cobra.Command {
	return &cobra.Command{
		Use:   "txn [FILE|-]",
		Short: "apply compares and ops from JSON as one all-or-nothing transaction",
		Long:  txnHelp,
		Args:  maxArgs(1),
		RunE: g.clientCmd(false, func(ctx context.Context, cmd *cobra.Command, c *client.Client, args []string) error {
			var (
				data []byte
				err  error
			)
			if len(args) == 0 || args[0] == "-" {
				data, err = io.ReadAll(cmd.InOrStdin())
			} else {
				data, err = os.ReadFile(args[0])
				if err != nil {
					return usageError{err}
				}
			}
			if err != nil {
				return err
			}
			t, err := parseTxn(data)
			if err != nil {
				return usageError{fmt.Errorf("txn: %v", err)}
			}
			res, err := c.Txn(ctx, t.compares, t.ops)
			if err != nil {
				return writeError(err, "txn", txnCheck(t))
			}
			return reportTxn(cmd.OutOrStdout(), g, t, res)
		}),
	}
}

// txnCheck tells how to see whether a txn of unknown outcome applied: its
// writes either all show or none does.
func txnCheck(t *parsedTxn) string {
	for i, kind := range t.opKind {
		if kind == "put" {
			return fmt.Sprintf("`cxkv get %s` shows the txn's value if it applied (all its ops apply or none)", t.opKey[i])
		}
	}
	for i, kind := range t.opKind {
		if kind == "delete" {
			return fmt.Sprintf("`cxkv get %s` shows it absent if the txn applied (all its ops apply or none)", t.opKey[i])
		}
	}
	return "the txn writes nothing; run it again"
}

func reportTxn(w io.Writer, g *globals, t *parsedTxn, res client.TxnResult) error {
	if g.json() {
		out := txnOutput{Successful: res.Successful, Compares: []txnCmpOutput{}, Results: []txnOpOutput{}}
		if res.Successful {
			out.Index = res.Index
		} else {
			out.FailedCompare = &res.FailedCompare
		}
		for i, r := range res.Compared {
			out.Compares = append(out.Compares, txnCmpOutput{Compare: t.cmpText[i], Current: toRecord(r)})
		}
		for i, r := range res.Results {
			out.Results = append(out.Results, txnOpOutput{Op: t.opKind[i], Key: t.opKey[i], Record: toRecord(r)})
		}
		if err := printJSON(w, out); err != nil {
			return err
		}
	} else if res.Successful {
		fmt.Fprintf(w, "OK txn index=%d\n", res.Index)
		tw := newTable(w)
		fmt.Fprintln(tw, "OP\tKEY\tINDEX\tTTL\tVALUE")
		for i, r := range res.Results {
			kind := t.opKind[i]
			switch {
			case kind == "delete" && r.Exists():
				kind = "deleted"
			case kind == "delete":
				kind = "delete (absent)"
			case kind == "get" && !r.Exists():
				kind = "get (absent)"
			}
			fmt.Fprintf(tw, "%s\t%s\t%d\t%s\t%s\n", kind, t.opKey[i], r.Index, orDash(ttlText(r)), r.Value)
		}
		tw.Flush()
	} else {
		i := res.FailedCompare
		if i >= 0 && i < len(t.cmpText) {
			cur := client.Record{Key: t.cmpKey[i]}
			if i < len(res.Compared) {
				cur = res.Compared[i]
			}
			fmt.Fprintf(w, "COMPARE FAILED: compares[%d] (%s): %s\n", i, t.cmpText[i], describe(cur))
		} else {
			fmt.Fprintf(w, "COMPARE FAILED: compares[%d]\n", i)
		}
	}
	if !res.Successful {
		return errCompareFailed
	}
	return nil
}

func ttlText(r client.Record) string {
	if r.TTL > 0 {
		return r.TTL.String()
	}
	return ""
}
