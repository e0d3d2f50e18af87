package main

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/cxkv/cxkv/client"
	"github.com/spf13/cobra"
)

// record is the JSON and table form of a key.
type record struct {
	Key         string `json:"key"`
	Value       string `json:"value"`
	Index       uint64 `json:"index"`
	CreateIndex uint64 `json:"create_index,omitempty"`
	TTL         string `json:"ttl,omitempty"`
	ExpiresAt   string `json:"expires_at,omitempty"`
	Session     string `json:"session,omitempty"`
}

func toRecord(r client.Record) record {
	out := record{Key: r.Key, Value: string(r.Value), Index: r.Index, CreateIndex: r.CreateIndex, Session: r.Session}
	if r.TTL > 0 {
		out.TTL = r.TTL.String()
		out.ExpiresAt = r.ExpiresAt.UTC().Format(time.RFC3339)
	}
	return out
}

func printJSON(w io.Writer, v any) error {
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	return enc.Encode(v)
}

// table aligns columns and trims the padding an empty last cell leaves, so
// output lines never end in spaces.
type table struct {
	*tabwriter.Writer
	buf bytes.Buffer
	out io.Writer
}

func newTable(w io.Writer) *table {
	t := &table{out: w}
	t.Writer = tabwriter.NewWriter(&t.buf, 0, 4, 2, ' ', 0)
	return t
}

func (t *table) Flush() error {
	if err := t.Writer.Flush(); err != nil {
		return err
	}
	for line := range strings.Lines(t.buf.String()) {
		if _, err := io.WriteString(t.out, strings.TrimRight(line, " \n")+"\n"); err != nil {
			return err
		}
	}
	t.buf.Reset()
	return nil
}

func printRecords(w io.Writer, recs []record) {
	tw := newTable(w)
	fmt.Fprintln(tw, "KEY\tINDEX\tCREATED\tTTL\tVALUE")
	for _, r := range recs {
		fmt.Fprintf(tw, "%s\t%d\t%d\t%s\t%s\n", r.Key, r.Index, r.CreateIndex, orDash(r.TTL), r.Value)
	}
	tw.Flush()
}

func orDash(s string) string {
	if s == "" {
		return "-"
	}
	return s
}

func indexFlag(cmd *cobra.Command, p *uint64) {
	cmd.Flags().Uint64Var(p, "index", 0, "expected index: 0 = create only if absent (put), else the key's current index (required)")
	cmd.MarkFlagRequired("index")
}

func newGetCmd(g *globals) *cobra.Command {
	var serializable bool
	cmd := &cobra.Command{
		Use:   "get KEY",
		Short: "read a key (index 0: absent)",
		Args:  exactArgs(1),
		RunE: g.clientCmd(false, func(ctx context.Context, cmd *cobra.Command, c *client.Client, args []string) error {
			var opts []client.ReadOption
			if serializable {
				opts = append(opts, client.Serializable())
			}
			rec, err := c.Get(ctx, args[0], opts...)
			if err != nil {
				return err
			}
			w := cmd.OutOrStdout()
			if g.json() {
				return printJSON(w, struct {
					Found  bool   `json:"found"`
					Record record `json:"record"`
				}{rec.Exists(), toRecord(rec)})
			}
			if !rec.Exists() {
				fmt.Fprintf(w, "%s is absent (index 0)\n", args[0])
				return nil
			}
			printRecords(w, []record{toRecord(rec)})
			return nil
		}),
	}
	cmd.Flags().BoolVar(&serializable, "serializable", false, "read the member's local state (faster, may be stale)")
	return cmd
}

func newPutCmd(g *globals) *cobra.Command {
	var (
		index   uint64
		ttl     time.Duration
		session string
	)
	cmd := &cobra.Command{
		Use:   "put KEY VALUE|-",
		Short: "compare-exchange: write KEY if its index is --index (0: only if absent)",
		Long: `Write KEY if its index is --index: 0 creates it only if absent, any other
value replaces it only if that is its current index. VALUE - reads stdin.
A failed compare prints the key's current state and exits 3. --session
attaches the key to a session: it is deleted with the session (see
cxkv sessions); if the session does not exist nothing is written (exit 1).`,
		Args: exactArgs(2),
		RunE: g.clientCmd(false, func(ctx context.Context, cmd *cobra.Command, c *client.Client, args []string) error {
			key, value := args[0], []byte(args[1])
			if args[1] == "-" {
				var err error
				if value, err = io.ReadAll(cmd.InOrStdin()); err != nil {
					return err
				}
			}
			if ttl < 0 {
				return usageError{fmt.Errorf("--ttl %v: must be positive", ttl)}
			}
			var opts []client.PutOption
			if ttl > 0 {
				opts = append(opts, client.WithTTL(ttl))
			}
			if session != "" {
				opts = append(opts, client.InSession(session))
			}
			res, err := c.Put(ctx, key, value, index, opts...)
			if err != nil {
				return writeError(err, "put "+key, fmt.Sprintf("`cxkv get %s` shows your value at a new index if it applied", key))
			}
			return reportWrite(cmd.OutOrStdout(), g, res.Successful, res.Record)
		}),
	}
	indexFlag(cmd, &index)
	cmd.Flags().DurationVar(&ttl, "ttl", 0, "expire the key this long after the write unless renewed (e.g. 10s)")
	cmd.Flags().StringVar(&session, "session", "", "attach the key to this session (its id): deleted with it")
	return cmd
}

// writeOutput is the JSON form of a put's or delete's outcome. Index is a
// delete's own index; the record is the key as written, as removed, or (on
// a failed compare) as it is.
type writeOutput struct {
	Successful bool   `json:"successful"`
	Index      uint64 `json:"index,omitempty"`
	Record     record `json:"record"`
}

// reportWrite prints a put's or a failed delete's outcome; a failed compare
// shows the key's current state and becomes exit code 3.
func reportWrite(w io.Writer, g *globals, ok bool, r client.Record) error {
	if g.json() {
		printJSON(w, writeOutput{Successful: ok, Record: toRecord(r)})
	} else if ok {
		fmt.Fprintf(w, "OK %s index=%d\n", r.Key, r.Index)
	} else {
		fmt.Fprintf(w, "COMPARE FAILED: %s\n", describe(r))
	}
	if !ok {
		return errCompareFailed
	}
	return nil
}

// describe states a key's current state for a failed compare.
func describe(r client.Record) string {
	if !r.Exists() {
		return r.Key + " is absent"
	}
	return fmt.Sprintf("%s has index %d (value %q)", r.Key, r.Index, r.Value)
}

func newDeleteCmd(g *globals) *cobra.Command {
	var index uint64
	cmd := &cobra.Command{
		Use:   "delete KEY --index N",
		Short: "delete KEY if its index is N",
		Args:  exactArgs(1),
		RunE: g.clientCmd(false, func(ctx context.Context, cmd *cobra.Command, c *client.Client, args []string) error {
			key := args[0]
			res, err := c.Delete(ctx, key, index)
			if err != nil {
				return writeError(err, "delete "+key, fmt.Sprintf("`cxkv get %s`: absent or an index other than %d means it applied (or another write came after)", key, index))
			}
			w := cmd.OutOrStdout()
			if !res.Successful {
				if res.Record.Key == "" {
					res.Record.Key = key
				}
				return reportWrite(w, g, false, res.Record)
			}
			if g.json() {
				return printJSON(w, writeOutput{Successful: true, Index: res.Index, Record: toRecord(res.Record)})
			}
			fmt.Fprintf(w, "DELETED %s (was index %d) at index %d\n", key, res.Record.Index, res.Index)
			return nil
		}),
	}
	indexFlag(cmd, &index)
	return cmd
}

func newListCmd(g *globals) *cobra.Command {
	var (
		limit        int
		serializable bool
	)
	cmd := &cobra.Command{
		Use:   "list [PREFIX]",
		Short: "list keys under a prefix, in key order",
		Args:  maxArgs(1),
		RunE: g.clientCmd(false, func(ctx context.Context, cmd *cobra.Command, c *client.Client, args []string) error {
			prefix := ""
			if len(args) == 1 {
				prefix = args[0]
			}
			var opts []client.ReadOption
			if serializable {
				opts = append(opts, client.Serializable())
			}
			recs := []record{}
			for r, err := range c.List(ctx, prefix, opts...) {
				if err != nil {
					return err
				}
				recs = append(recs, toRecord(r))
				if limit > 0 && len(recs) == limit {
					break
				}
			}
			if g.json() {
				return printJSON(cmd.OutOrStdout(), recs)
			}
			printRecords(cmd.OutOrStdout(), recs)
			return nil
		}),
	}
	cmd.Flags().IntVar(&limit, "limit", 0, "at most this many keys (0: all)")
	cmd.Flags().BoolVar(&serializable, "serializable", false, "read the member's local state (faster, may be stale)")
	return cmd
}

func newStatusCmd(g *globals) *cobra.Command {
	return &cobra.Command{
		Use:   "status",
		Short: "each endpoint's view: role, leader, term, indexes, lag, database size, version",
		Long: `Ask every endpoint for its view of the cluster: member id, cluster id,
role, the leader it knows, term, commit and applied index, lag (commit -
applied), database size on disk and the version it runs. -o json prints
an array. Exits 4 if no endpoint answers, or if none of those that answer
knows a leader (the cluster has no quorum, or is electing one).`,
		Args: cobra.NoArgs,
		RunE: g.clientCmd(false, func(ctx context.Context, cmd *cobra.Command, c *client.Client, _ []string) error {
			type row struct {
				Endpoint string `json:"endpoint"`
				ID       uint64 `json:"id,omitempty"`
				Cluster  string `json:"cluster_id,omitempty"`
				Role     string `json:"role,omitempty"`
				Leader   uint64 `json:"leader,omitempty"`
				Term     uint64 `json:"term,omitempty"`
				Commit   uint64 `json:"commit_index,omitempty"`
				Applied  uint64 `json:"applied_index,omitempty"`
				Lag      uint64 `json:"lag"`
				DBSize   uint64 `json:"db_size_bytes,omitempty"`
				Version  string `json:"version,omitempty"`
				Error    string `json:"error,omitempty"`
			}
			sts, err := c.Status(ctx)
			rows := []row{}
			leaders := 0
			for _, st := range sts {
				var lag uint64
				if st.Commit > st.Applied {
					lag = st.Commit - st.Applied
				}
				r := row{st.Endpoint, st.MemberID, fmt.Sprintf("%x", st.ClusterID), st.Role, st.LeaderID, st.Term, st.Commit, st.Applied, lag, st.DBSize, st.Version, ""}
				if st.Unreachable != nil {
					r = row{Endpoint: st.Endpoint, Error: message(st.Unreachable)}
				} else if st.LeaderID != 0 {
					leaders++
				}
				rows = append(rows, r)
			}
			if g.json() {
				printJSON(cmd.OutOrStdout(), rows)
			} else {
				tw := newTable(cmd.OutOrStdout())
				fmt.Fprintln(tw, "ENDPOINT\tID\tCLUSTER\tROLE\tLEADER\tTERM\tCOMMIT\tAPPLIED\tLAG\tDB\tVERSION\tERROR")
				for _, r := range rows {
					if r.Error != "" {
						fmt.Fprintf(tw, "%s\t-\t-\t-\t-\t-\t-\t-\t-\t-\t-\t%s\n", r.Endpoint, r.Error)
						continue
					}
					fmt.Fprintf(tw, "%s\t%d\t%s\t%s\t%d\t%d\t%d\t%d\t%d\t%s\t%s\t-\n", r.Endpoint, r.ID, r.Cluster, r.Role, r.Leader, r.Term, r.Commit, r.Applied, r.Lag, humanBytes(r.DBSize), r.Version)
				}
				tw.Flush()
			}
			if err == nil && leaders == 0 {
				return errNoLeader
			}
			return err
		}),
	}
}

func newWatchCmd(g *globals) *cobra.Command {
	var (
		from  uint64
		limit int
	)
	cmd := &cobra.Command{
		Use:   "watch PREFIX",
		Short: "print every put, delete and expiry under PREFIX until interrupted",
		Long: `Print every put, delete and expiry under PREFIX, in log order, until
interrupted (or --limit events). The watch survives member failures: it
resumes on another member without losing or repeating an event. -o json
prints one JSON object per line.`,
		Args: exactArgs(1),
		RunE: g.clientCmd(true, func(ctx context.Context, cmd *cobra.Command, c *client.Client, args []string) error {
			// The SDK resumes a broken watch for as long as the context
			// lives, so an unreachable cluster would look like a quiet one:
			// one bounded call first makes it exit 4 instead.
			sctx, cancel := context.WithTimeout(ctx, g.timeout)
			_, err := c.Status(sctx)
			cancel()
			if err != nil {
				return err
			}
			w := cmd.OutOrStdout()
			n := 0
			for ev, err := range c.Watch(ctx, args[0], from) {
				if err != nil {
					if cmd.Context().Err() != nil {
						return nil // interrupted: the normal end
					}
					return err
				}
				r := toRecord(ev.Record)
				if g.json() {
					b, err := json.Marshal(struct {
						Type   string `json:"type"`
						Record record `json:"record"`
					}{ev.Type.String(), r})
					if err != nil {
						return err
					}
					fmt.Fprintf(w, "%s\n", b)
				} else {
					fmt.Fprintf(w, "%-6s %s index=%d value=%q\n", ev.Type, r.Key, r.Index, r.Value)
				}
				if n++; limit > 0 && n == limit {
					return nil
				}
			}
			return nil
		}),
	}
	cmd.Flags().Uint64Var(&from, "from", 0, "deliver events after this index (0: from now)")
	cmd.Flags().IntVar(&limit, "limit", 0, "stop after this many events (0: until interrupted)")
	return cmd
}

func exactArgs(n int) cobra.PositionalArgs {
	return func(cmd *cobra.Command, args []string) error {
		if len(args) != n {
			return usageError{fmt.Errorf("%s takes %d argument(s), got %d; see cxkv %s --help", cmd.Name(), n, len(args), cmd.Name())}
		}
		return nil
	}
}

func maxArgs(n int) cobra.PositionalArgs {
	return func(cmd *cobra.Command, args []string) error {
		if len(args) > n {
			return usageError{fmt.Errorf("%s takes at most %d argument(s), got %d; see cxkv %s --help", cmd.Name(), n, len(args), cmd.Name())}
		}
		return nil
	}
}
