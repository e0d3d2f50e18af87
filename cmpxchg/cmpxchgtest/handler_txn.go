package cmpxchgtest

import (
	"context"
	"fmt"
	"strconv"
	"strings"

	"github.com/cockroachdb/datadriven"
	"github.com/cxkv/cxkv/api/cxkvpb"
)

// txn [client=C seq=S acked=A]
// compare index KEY @N | compare absent KEY | compare value KEY V
// put KEY V [ttl=MS] [session=ID] | delete KEY | get KEY | head PREFIX
// (any op takes the options, so scripts can show a misplaced one refused)
func handleTxn(e *env, ctx context.Context, d *datadriven.TestData) (string, error) {
	req := &cxkvpb.TxnRequest{WriteId: e.writeID(args(d))}
	for _, line := range strings.Split(strings.TrimSpace(d.Input), "\n") {
		f := strings.Fields(line)
		if len(f) == 0 {
			continue
		}
		if err := e.txnLine(req, f); err != nil {
			return "", fmt.Errorf("txn line %q: %w", line, err)
		}
	}
	e.lastWrite = func(ctx context.Context) (string, error) {
		r, err := e.target.Txn(ctx, req)
		if err != nil {
			return "", err
		}
		return e.txnResult(r), nil
	}
	return e.lastWrite(ctx)
}

func (e *env) txnLine(req *cxkvpb.TxnRequest, f []string) error {
	word := func(i int) string {
		if i < len(f) {
			return f[i]
		}
		return ""
	}
	k := strings.ReplaceAll(word(1), `\0`, "\x00")
	switch f[0] {
	case "compare":
		k = strings.ReplaceAll(word(2), `\0`, "\x00")
		c := &cxkvpb.Compare{Key: k}
		switch word(1) {
		case "index":
			i, err := e.index(word(3))
			if err != nil {
				return err
			}
			c.Op, c.Index = cxkvpb.Compare_INDEX_EQUAL, i
		case "absent":
			c.Op = cxkvpb.Compare_ABSENT
		case "value":
			c.Op, c.Value = cxkvpb.Compare_VALUE_EQUAL, []byte(word(3))
		default:
			return fmt.Errorf("unknown compare %q", word(1))
		}
		req.Compares = append(req.Compares, c)
	case "put":
		return addOp(req, &cxkvpb.TxnOp{Type: cxkvpb.TxnOp_PUT, Key: k, Value: []byte(word(2))}, f[min(3, len(f)):])
	case "delete":
		return addOp(req, &cxkvpb.TxnOp{Type: cxkvpb.TxnOp_DELETE, Key: k}, f[2:])
	case "get":
		return addOp(req, &cxkvpb.TxnOp{Type: cxkvpb.TxnOp_GET, Key: k}, f[2:])
	case "head":
		return addOp(req, &cxkvpb.TxnOp{Type: cxkvpb.TxnOp_HEAD, Key: k}, f[2:])
	case "repeat-compares": // repeat-compares N KEY: N absent-compares, for the limit scripts
		n, _ := strconv.Atoi(word(1))
		for i := 0; i < n; i++ {
			req.Compares = append(req.Compares, &cxkvpb.Compare{Key: word(2), Op: cxkvpb.Compare_ABSENT})
		}
	default:
		return fmt.Errorf("unknown txn line")
	}
	return nil
}

// addOp appends op with its options (ttl=MS, session=ID).
func addOp(req *cxkvpb.TxnRequest, op *cxkvpb.TxnOp, opts []string) error {
	for _, w := range opts {
		switch {
		case strings.HasPrefix(w, "ttl="):
			op.TtlMs, _ = strconv.ParseInt(strings.TrimPrefix(w, "ttl="), 10, 64)
		case strings.HasPrefix(w, "session="):
			op.Session = strings.TrimPrefix(w, "session=")
		default:
			return fmt.Errorf("unknown op option %q", w)
		}
	}
	req.Ops = append(req.Ops, op)
	return nil
}

func (e *env) txnResult(r *cxkvpb.TxnResponse) string {
	var b strings.Builder
	if r.GetSuccessful() {
		fmt.Fprintf(&b, "ok at %s\n", e.idx(r.GetIndex()))
	} else {
		fmt.Fprintf(&b, "failed: compare %d\n", r.GetFailedCompare())
	}
	for i, c := range r.GetCompared() {
		fmt.Fprintf(&b, "compared %d: %s\n", i, e.record(c))
	}
	for i, res := range r.GetResults() {
		if res.GetFound() || res.GetRecord().GetIndex() != 0 {
			fmt.Fprintf(&b, "op %d: %s\n", i, e.record(res.GetRecord()))
		} else {
			fmt.Fprintf(&b, "op %d: %s absent\n", i, res.GetRecord().GetKey())
		}
	}
	return b.String()
}
