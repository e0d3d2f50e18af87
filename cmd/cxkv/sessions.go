package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"time"

	"github.com/cxkv/cxkv/client"
	"github.com/spf13/cobra"
)

// sessionOutput is the JSON form of a session.
type sessionOutput struct {
	ID            string `json:"id"`
	Key           string `json:"key"`
	Owner         string `json:"owner"`
	Index         uint64 `json:"index"`
	TTL           string `json:"ttl,omitempty"`
	ExpiresAt     string `json:"expires_at,omitempty"`
	TimeLeftMS    int64  `json:"time_left_ms"`
	AttachedKeys  uint64 `json:"attached_keys"`
	AttachedBytes uint64 `json:"attached_bytes"`
}

func toSessionOutput(s client.SessionInfo, now time.Time) sessionOutput {
	out := sessionOutput{ID: s.ID, Key: s.Record.Key, Owner: sessionOwner(s.Record.Value), Index: s.Record.Index,
		TimeLeftMS: recordTimeLeft(s.Record, now).Milliseconds(), AttachedKeys: s.AttachedKeys, AttachedBytes: s.AttachedBytes}
	if s.Record.TTL > 0 {
		out.TTL = s.Record.TTL.String()
		out.ExpiresAt = s.Record.ExpiresAt.UTC().Format(time.RFC3339Nano)
	}
	return out
}

// sessionOwner is how a session's value names its owner: for a value in
// one of the SDK's JSON forms (a lock owner's "name", a process monitor's
// "monitor"), that name, else host:pid; any other value as text.
func sessionOwner(v []byte) string {
	var o struct {
		Name    string `json:"name"`
		Monitor string `json:"monitor"`
		Host    string `json:"host"`
		PID     int    `json:"pid"`
	}
	if json.Unmarshal(v, &o) != nil {
		return string(v)
	}
	switch {
	case o.Name != "":
		return o.Name
	case o.Monitor != "":
		return o.Monitor
	case o.Host != "":
		return fmt.Sprintf("%s:%d", o.Host, o.PID)
	}
	return string(v)
}

// recordTimeLeft is the lease a key has left unless renewed, by the
// accepting leader's wall clock: an estimate, since expiry comes late,
// never early.
func recordTimeLeft(r client.Record, now time.Time) time.Duration {
	if r.ExpiresAt.IsZero() {
		return 0
	}
	return max(0, r.ExpiresAt.Sub(now))
}

func printSessions(w io.Writer, sessions []client.SessionInfo, now time.Time) {
	tw := newTable(w)
	fmt.Fprintln(tw, "ID\tOWNER\tINDEX\tTTL\tLEFT\tKEYS")
	for _, s := range sessions {
		ttl, left := "-", "-"
		if s.Record.TTL > 0 {
			ttl, left = s.Record.TTL.String(), recordTimeLeft(s.Record, now).Round(100*time.Millisecond).String()
		}
		fmt.Fprintf(tw, "%s\t%s\t%d\t%s\t%s\t%d\n", s.ID, sessionOwner(s.Record.Value), s.Record.Index, ttl, left, s.AttachedKeys)
	}
	tw.Flush()
}

func newSessionsCmd(g *globals) *cobra.Command {
	return &cobra.Command{
		Use:   "sessions [PREFIX]",
		Short: "sessions (leases): owner, TTL left and the keys attached to each",
		Long: `List the sessions whose id starts with PREFIX (all if absent): the owner
their key holds, its index, TTL and the lease left before the cluster
expires it unless renewed, and how many keys are attached to it (deleted
with it when it expires or is closed).`,
		Args: maxArgs(1),
		RunE: g.clientCmd(false, func(ctx context.Context, cmd *cobra.Command, c *client.Client, args []string) error {
			prefix := ""
			if len(args) == 1 {
				prefix = args[0]
			}
			var sessions []client.SessionInfo
			for s, err := range c.Sessions(ctx, prefix) {
				if err != nil {
					return err
				}
				sessions = append(sessions, s)
			}
			now := time.Now()
			if g.json() {
				out := []sessionOutput{}
				for _, s := range sessions {
					out = append(out, toSessionOutput(s, now))
				}
				return printJSON(cmd.OutOrStdout(), out)
			}
			printSessions(cmd.OutOrStdout(), sessions, now)
			return nil
		}),
	}
}

func newSessionCmd(g *globals) *cobra.Command {
	cmd := &cobra.Command{
		Use:   "session",
		Short: "act on one session (close)",
		Args:  exactArgs(0),
	}
	cmd.AddCommand(&cobra.Command{
		Use:   "close ID",
		Short: "close a session now: delete it and every key attached to it",
		Long: `Close the session ID whoever holds it: delete its key at the index read
(reading again if its holder renews in between), which deletes every key
attached to it in the same log entry. Its holder's next renewal fails, and
the locks it held through the session pass to their next waiters. Like
delete, it asks for no confirmation. A session that does not exist exits 1.`,
		Args: exactArgs(1),
		RunE: g.clientCmd(false, func(ctx context.Context, cmd *cobra.Command, c *client.Client, args []string) error {
			id := args[0]
			var seen *client.SessionInfo
			for s, err := range c.Sessions(ctx, id) {
				if err != nil {
					return err
				}
				if s.ID == id {
					seen = &s
					break
				}
			}
			closed, err := c.CloseSession(ctx, id)
			if err != nil {
				return writeError(err, "session close "+id, fmt.Sprintf("`cxkv sessions %s` no longer lists it if it applied", id))
			}
			if !closed {
				return fmt.Errorf("%w: %q", errNoSession, id)
			}
			if seen == nil { // opened between the read and the close
				seen = &client.SessionInfo{ID: id, Record: client.Record{Key: client.SessionKey(id)}}
			}
			w := cmd.OutOrStdout()
			if g.json() {
				return printJSON(w, toSessionOutput(*seen, time.Now()))
			}
			fmt.Fprintf(w, "CLOSED %s: owner %s, %d keys attached when read, deleted with it\n", id, sessionOwner(seen.Record.Value), seen.AttachedKeys)
			return nil
		}),
	})
	return cmd
}

var errNoSession = errors.New("session close: no such session")
