package demo

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"math/rand/v2"
	"strconv"

	"github.com/cxkv/cxkv/client"
	"github.com/cxkv/cxkv/client/lock"
)

// The bank scenario: accounts with balances; a worker moves money between
// two of them. Each transfer writes both balances and a ledger entry in one
// transaction, either under the locks of both accounts (mode lock) or
// guarded only by the indexes it read (mode optimistic, retried on a failed
// compare). What must hold: the total never changes, no balance goes
// negative, and every balance is its opening balance plus the ledger's
// transfers in and out, even when a worker is killed mid-transfer.

// BankConfig is the bank. The first worker's setup writes it.
type BankConfig struct {
	Accounts int   `json:"accounts"`
	Balance  int64 `json:"balance"` // opening balance of each account
}

func (c BankConfig) withDefaults() BankConfig {
	if c.Accounts < 2 {
		c.Accounts = 10
	}
	if c.Balance <= 0 {
		c.Balance = 1000
	}
	return c
}

const (
	bankConfigKey = dataPrefix + "bank/config"
	bankAcctKey   = dataPrefix + "bank/acct/"   // + account
	bankLedgerKey = dataPrefix + "bank/ledger/" // + req
	bankLock      = lockPrefix + "bank/"        // + account
	maxTransfer   = 100
	maxRetries    = 50
)

func accountName(i int) string { return fmt.Sprintf("acct-%02d", i) }

// ledgerEntry is the value of a ledger key.
type ledgerEntry struct {
	From   string `json:"from"`
	To     string `json:"to"`
	Amount int64  `json:"amount"`
	Worker string `json:"worker"`
	Mode   string `json:"mode"`
}

type bankWorker struct {
	w   *worker
	cfg BankConfig
}

func (b *bankWorker) setup(ctx context.Context) error {
	cfgJSON, _ := json.Marshal(b.cfg)
	ops := []client.Op{client.PutOp(bankConfigKey, cfgJSON, 0)}
	for i := range b.cfg.Accounts {
		ops = append(ops, client.PutOp(bankAcctKey+accountName(i), []byte(strconv.FormatInt(b.cfg.Balance, 10)), 0))
	}
	res, err := b.w.c.Txn(ctx, []client.Compare{client.Absent(bankConfigKey)}, ops)
	if err != nil {
		return err
	}
	if res.Successful {
		b.w.say("opened the bank: %d accounts of %d", b.cfg.Accounts, b.cfg.Balance)
		return nil
	}
	if err := json.Unmarshal(res.Compared[0].Value, &b.cfg); err != nil {
		return fmt.Errorf("%s: %v", bankConfigKey, err)
	}
	b.w.say("joined the bank: %d accounts of %d", b.cfg.Accounts, b.cfg.Balance)
	return nil
}

func (b *bankWorker) step(ctx context.Context) (bool, error) {
	i := rand.IntN(b.cfg.Accounts)
	j := rand.IntN(b.cfg.Accounts - 1)
	if j >= i {
		j++
	}
	from, to := accountName(i), accountName(j)
	if b.w.cfg.Mode == ModeOptimistic {
		return false, b.optimistic(from, to)
	}
	// A fixed order (by name) over both locks: two workers moving money
	// between the same accounts in opposite directions cannot deadlock.
	first, second := min(from, to), max(from, to)
	l1, err := b.w.acquire(ctx, bankLock+first)
	if err != nil {
		return false, err
	}
	defer b.w.release(l1)
	l2, err := b.w.acquire(ctx, bankLock+second)
	if err != nil {
		return false, err
	}
	defer b.w.release(l2)
	return false, b.locked(l1, l2, from, to)
}

func balance(r client.Record) (int64, error) {
	v, err := strconv.ParseInt(string(r.Value), 10, 64)
	if err != nil {
		return 0, fmt.Errorf("%s = %q: %v", r.Key, r.Value, err)
	}
	return v, nil
}

// transferTxn is the transfer as one transaction: both balances exactly as
// read, the ledger entry new; then both puts and the entry.
func (b *bankWorker) transferTxn(req string, src, dst client.Record, amount int64) ([]client.Compare, []client.Op, error) {
	sb, err := balance(src)
	if err != nil {
		return nil, nil, err
	}
	db, err := balance(dst)
	if err != nil {
		return nil, nil, err
	}
	led, _ := json.Marshal(ledgerEntry{From: src.Key[len(bankAcctKey):], To: dst.Key[len(bankAcctKey):], Amount: amount, Worker: b.w.cfg.ID, Mode: b.w.cfg.Mode})
	return []client.Compare{client.IndexIs(src.Key, src.Index), client.IndexIs(dst.Key, dst.Index), client.Absent(bankLedgerKey + req)},
		[]client.Op{
			client.PutOp(src.Key, []byte(strconv.FormatInt(sb-amount, 10)), 0),
			client.PutOp(dst.Key, []byte(strconv.FormatInt(db+amount, 10)), 0),
			client.PutOp(bankLedgerKey+req, led, 0),
		}, nil
}

// failedCompare says which compare of transferTxn failed and what the key
// held then, so that a conflict under both locks names the write that came
// between (its index is in the ledger) or shows the read was stale.
func failedCompare(res client.TxnResult, src, dst client.Record) string {
	// Compare 0 is the first lock's IsOwner; transferTxn's follow.
	read := []client.Record{{}, src, dst}
	i := res.FailedCompare
	if i < 1 || i >= len(read) {
		return fmt.Sprintf("compare %d (the ledger entry) failed", i)
	}
	var now client.Record
	if i < len(res.Compared) {
		now = res.Compared[i]
	}
	return fmt.Sprintf("compare %d failed: %s read at index %d, held index %d (value %q)", i, read[i].Key, read[i].Index, now.Index, now.Value)
}

// read returns both accounts and an amount the source can afford (0: none).
func (b *bankWorker) read(ctx context.Context, from, to string) (src, dst client.Record, amount int64, err error) {
	if src, err = b.w.c.Get(ctx, bankAcctKey+from); err != nil {
		return
	}
	if dst, err = b.w.c.Get(ctx, bankAcctKey+to); err != nil {
		return
	}
	sb, err := balance(src)
	if err != nil || sb <= 0 {
		return src, dst, 0, err
	}
	return src, dst, 1 + rand.Int64N(min(sb, maxTransfer)), nil
}

func (b *bankWorker) locked(l1, l2 *lock.Lock, from, to string) error {
	ctx, cancel := opContext()
	defer cancel()
	src, dst, amount, err := b.read(ctx, from, to)
	if err != nil || amount == 0 {
		return err
	}
	req := b.w.nextReq()
	b.w.rec.Add(Entry{Op: OpIntent, Req: req, Mode: ModeLock, From: from, To: to, Amount: amount, Token: l2.Token(), Lock: l2.Name()})
	cmps, ops, err := b.transferTxn(req, src, dst, amount)
	if err != nil {
		return err
	}
	// Through the second lock, carrying the first's IsOwner: the compares
	// on the balances alone do not cover a first lock lost before they
	// were read (its session expired during a failover, and another
	// worker took it and is about to write that account).
	res, err := l2.Txn(ctx, append([]client.Compare{l1.IsOwner()}, cmps...), ops)
	switch {
	case errors.Is(err, lock.ErrLost):
		b.w.n.lost.Add(1)
		b.w.rec.Add(Entry{Op: OpAborted, Req: req, Err: "lock lost"})
		return fmt.Errorf("lock on %s lost before the transfer; nothing written", to)
	case err != nil:
		b.w.n.unknown.Add(1)
		b.w.rec.Add(Entry{Op: OpUnknown, Req: req, Err: err.Error()})
		return err
	case !res.Successful && res.FailedCompare == 0:
		b.w.n.lost.Add(1)
		b.w.rec.Add(Entry{Op: OpAborted, Req: req, Err: "lock lost"})
		return fmt.Errorf("lock %s lost before the transfer; nothing written", l1.Name())
	case !res.Successful:
		b.w.n.conflicts.Add(1)
		b.w.rec.Add(Entry{Op: OpConflict, Req: req, From: from, To: to, Err: "under both locks, " + failedCompare(res, src, dst)})
		return fmt.Errorf("compare failed while holding both locks")
	}
	b.w.n.ops.Add(1)
	b.w.rec.Add(Entry{Op: OpTransfer, Req: req, Mode: ModeLock, From: from, To: to, Amount: amount, Index: res.Index, Token: l2.Token()})
	b.w.say("moved %3d %s -> %s at index %d (locks %d, %d)", amount, from, to, res.Index, l1.Token(), l2.Token())
	return nil
}

// optimistic transfers with no lock: read, transaction on the indexes read,
// and on a failed compare again from the state the failure reported.
func (b *bankWorker) optimistic(from, to string) error {
	ctx, cancel := opContext()
	defer cancel()
	src, dst, amount, err := b.read(ctx, from, to)
	if err != nil || amount == 0 {
		return err
	}
	req := b.w.nextReq()
	b.w.rec.Add(Entry{Op: OpIntent, Req: req, Mode: ModeOptimistic, From: from, To: to, Amount: amount})
	for retry := 0; ; retry++ {
		cmps, ops, err := b.transferTxn(req, src, dst, amount)
		if err != nil {
			return err
		}
		res, err := b.w.c.Txn(ctx, cmps, ops)
		if err != nil {
			b.w.n.unknown.Add(1)
			b.w.rec.Add(Entry{Op: OpUnknown, Req: req, Err: err.Error()})
			return err
		}
		if res.Successful {
			b.w.n.ops.Add(1)
			b.w.rec.Add(Entry{Op: OpTransfer, Req: req, Mode: ModeOptimistic, From: from, To: to, Amount: amount, Index: res.Index, Retry: retry})
			b.w.say("moved %3d %s -> %s at index %d (%d retries)", amount, from, to, res.Index, retry)
			return nil
		}
		if res.FailedCompare == 2 {
			// Only this request writes its ledger key.
			b.w.rec.Add(Entry{Op: OpConflict, Req: req, Err: "ledger entry already present"})
			return fmt.Errorf("ledger entry %s already present", req)
		}
		b.w.n.conflicts.Add(1)
		src, dst = res.Compared[0], res.Compared[1]
		if sb, err := balance(src); err != nil || sb < amount || retry >= maxRetries {
			b.w.rec.Add(Entry{Op: OpAborted, Req: req, Retry: retry + 1, Err: "insufficient funds or too many conflicts"})
			return err
		}
	}
}
