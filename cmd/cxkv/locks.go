package main

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"strings"
	"time"

	"github.com/cxkv/cxkv/client"
	"github.com/cxkv/cxkv/client/lock"
	"github.com/spf13/cobra"
)

// lockOutput is the JSON form of a lock.
type lockOutput struct {
	Name       string       `json:"name"`
	Key        string       `json:"key"`
	Mode       string       `json:"mode"`
	Holder     lock.Owner   `json:"holder"`
	Token      uint64       `json:"token"`
	Index      uint64       `json:"index"`
	TTL        string       `json:"ttl,omitempty"`
	ExpiresAt  string       `json:"expires_at,omitempty"`
	TimeLeftMS int64        `json:"time_left_ms"`
	Waiters    []lock.Owner `json:"waiters"`
}

func toLockOutput(l lock.Info, now time.Time) lockOutput {
	out := lockOutput{Name: l.Name, Key: l.Key, Mode: l.Mode.String(), Holder: l.Owner, Token: l.Token, Index: l.Index,
		TimeLeftMS: timeLeft(l, now).Milliseconds(), Waiters: l.Waiters}
	if l.TTL > 0 {
		out.TTL = l.TTL.String()
	}
	if !l.ExpiresAt.IsZero() {
		out.ExpiresAt = l.ExpiresAt.UTC().Format(time.RFC3339Nano)
	}
	if out.Waiters == nil {
		out.Waiters = []lock.Owner{}
	}
	return out
}

// timeLeft is the lease left before the cluster expires the lock unless its
// holder renews it. ExpiresAt is the accepting leader's wall clock, so this
// is an estimate: expiry comes late, never early.
func timeLeft(l lock.Info, now time.Time) time.Duration {
	if l.ExpiresAt.IsZero() {
		return 0
	}
	return max(0, l.ExpiresAt.Sub(now))
}

// ownerName is how a table shows a holder or waiter.
func ownerName(o lock.Owner) string {
	if o.Name != "" {
		return o.Name
	}
	return fmt.Sprintf("%s:%d", o.Host, o.PID)
}

func since(o lock.Owner) string {
	t := o.AcquiredAt
	if t.IsZero() {
		t = o.QueuedAt
	}
	if t.IsZero() {
		return "-"
	}
	return t.UTC().Format(time.RFC3339)
}

func printLocks(w io.Writer, locks []lock.Info, now time.Time) {
	tw := newTable(w)
	fmt.Fprintln(tw, "NAME\tMODE\tHOLDER\tHOST\tPID\tTOKEN\tSINCE\tLEFT\tWAITERS")
	for _, l := range locks {
		waiters := "-"
		if len(l.Waiters) > 0 {
			var names []string
			for _, o := range l.Waiters {
				names = append(names, ownerName(o))
			}
			waiters = fmt.Sprintf("%d: %s", len(names), strings.Join(names, ","))
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%d\t%d\t%s\t%s\t%s\n", l.Name, l.Mode, ownerName(l.Owner), l.Owner.Host, l.Owner.PID,
			l.Token, since(l.Owner), timeLeft(l, now).Round(100*time.Millisecond), waiters)
	}
	tw.Flush()
}

func newLocksCmd(g *globals) *cobra.Command {
	return &cobra.Command{
		Use:   "locks [PREFIX]",
		Short: "who holds which lock, since when, its token, time left and waiters",
		Long: `List the locks whose names start with PREFIX (all if absent): holder (its
name, host and pid), fencing token, when it was acquired, the lease left
before the cluster expires it unless renewed, and queued waiters, next first.
Keys under PREFIX that are not locks are skipped.`,
		Args: maxArgs(1),
		RunE: g.clientCmd(false, func(ctx context.Context, cmd *cobra.Command, c *client.Client, args []string) error {
			prefix := ""
			if len(args) == 1 {
				prefix = args[0]
			}
			locks, err := lock.List(ctx, c, prefix)
			if err != nil {
				return err
			}
			now := time.Now()
			if g.json() {
				out := []lockOutput{}
				for _, l := range locks {
					out = append(out, toLockOutput(l, now))
				}
				return printJSON(cmd.OutOrStdout(), out)
			}
			printLocks(cmd.OutOrStdout(), locks, now)
			return nil
		}),
	}
}

func newForceReleaseCmd(g *globals, e env) *cobra.Command {
	var yes bool
	cmd := &cobra.Command{
		Use:   "force-release NAME [--yes]",
		Short: "remove a lock whoever holds it",
		Long: `Remove the lock NAME whoever holds it, and say who held it. The holder's
next renewal or guarded write fails and it sees the lock lost; with a queue
lock the next waiter takes it. Without --yes it asks for confirmation on
the terminal, and refuses (exit 2) when stdin is not a terminal.
Answering no exits 1 with nothing released.`,
		Args: exactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			if !yes && !e.stdinTTY {
				return usageError{errors.New("force-release: stdin is not a terminal to confirm on; pass --yes")}
			}
			c, err := g.connect()
			if err != nil {
				return err
			}
			defer c.Close()
			name := args[0]
			var confirmed *lock.Info
			if !yes {
				// The prompt waits for a person, so --timeout bounds the
				// calls on each side of it, not the whole command.
				if confirmed, err = confirmRelease(cmd, g, c, name); err != nil {
					return g.transportError(err)
				}
			}
			ctx, cancel := context.WithTimeout(cmd.Context(), g.timeout)
			defer cancel()
			held, err := lock.ForceRelease(ctx, c, name)
			if err != nil {
				return g.transportError(writeError(err, "force-release "+name, fmt.Sprintf("`cxkv locks %s` no longer lists this holder if it applied", name)))
			}
			w := cmd.OutOrStdout()
			if confirmed != nil && (confirmed.Owner.ID != held.Owner.ID || confirmed.Token != held.Token) {
				fmt.Fprintf(cmd.ErrOrStderr(), "cxkv: warning: the holder changed after you confirmed; released token %d, not %d\n", held.Token, confirmed.Token)
			}
			if g.json() {
				return printJSON(w, toLockOutput(held, time.Now()))
			}
			fmt.Fprintf(w, "RELEASED %s: was held by %s (host %s, pid %d) with token %d since %s\n",
				name, ownerName(held.Owner), held.Owner.Host, held.Owner.PID, held.Token, since(held.Owner))
			return nil
		},
	}
	cmd.Flags().BoolVarP(&yes, "yes", "y", false, "do not ask for confirmation")
	return cmd
}

// errDeclined ends a force-release the operator did not confirm.
var errDeclined = errors.New("force-release: not confirmed; nothing released")

// confirmRelease shows who holds name and asks whether to release it; it
// returns the holder the operator agreed to remove.
func confirmRelease(cmd *cobra.Command, g *globals, c *client.Client, name string) (*lock.Info, error) {
	ctx, cancel := context.WithTimeout(cmd.Context(), g.timeout)
	locks, err := lock.List(ctx, c, name)
	cancel()
	if err != nil {
		return nil, err
	}
	var held *lock.Info
	for i := range locks {
		if locks[i].Name == name {
			held = &locks[i]
		}
	}
	if held == nil {
		return nil, fmt.Errorf("%w: %q", lock.ErrNotLocked, name)
	}
	fmt.Fprintf(cmd.ErrOrStderr(), "force-release %s, held by %s (host %s, pid %d) with token %d since %s? [y/N] ",
		name, ownerName(held.Owner), held.Owner.Host, held.Owner.PID, held.Token, since(held.Owner))
	answer, _ := bufio.NewReader(cmd.InOrStdin()).ReadString('\n')
	switch strings.ToLower(strings.TrimSpace(answer)) {
	case "y", "yes":
		return held, nil
	}
	return nil, errDeclined
}
