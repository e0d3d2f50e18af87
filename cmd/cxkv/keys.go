package main

import (
	"context"
	"crypto/rand"
	"encoding/binary"
	"encoding/json"
	"fmt"
	"io"
	"text/tabwriter"
	"time"

	"github.com/cxkv/cxkv/api/cxkvpb"
	"github.com/spf13/cobra"
)

// writeID names one CLI invocation's write so that retrying it on another
// member after Unavailable is answered, not applied twice.
func writeID() *cxkvpb.WriteID {
	var b [8]byte
	rand.Read(b[:])
	return &cxkvpb.WriteID{ClientId: binary.BigEndian.Uint64(b[:]) | 1, Seq: 1}
}

// record is the JSON and table form of a key.
type record struct {
	Key         string `json:"key"`
	Value       string `json:"value"`
	Index       uint64 `json:"index"`
	CreateIndex uint64 `json:"create_index,omitempty"`
	TTL         string `json:"ttl,omitempty"`
	ExpiresAt   string `json:"expires_at,omitempty"`
}

func toRecord(r *cxkvpb.Record) record {
	out := record{Key: r.GetKey(), Value: string(r.GetValue()), Index: r.GetIndex(), CreateIndex: r.GetCreateIndex()}
	if r.GetTtlMs() > 0 {
		out.TTL = (time.Duration(r.GetTtlMs()) * time.Millisecond).String()
		out.ExpiresAt = time.UnixMilli(r.GetExpiresAtUnixMs()).UTC().Format(time.RFC3339)
	}
	return out
}

func printJSON(w io.Writer, v any) error {
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	return enc.Encode(v)
}

func printRecords(w io.Writer, recs []record) {
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "KEY\tINDEX\tCREATED\tTTL\tVALUE")
	for _, r := range recs {
		ttl := r.TTL
		if ttl == "" {
			ttl = "-"
		}
		fmt.Fprintf(tw, "%s\t%d\t%d\t%s\t%s\n", r.Key, r.Index, r.CreateIndex, ttl, r.Value)
	}
	tw.Flush()
}

func indexFlag(cmd *cobra.Command, p *uint64, required bool) {
	cmd.Flags().Uint64Var(p, "index", 0, "expected index: 0 = create only if absent (put), else the key's current index")
	if required {
		cmd.MarkFlagRequired("index")
	}
}

func newGetCmd(g *globals) *cobra.Command {
	var serializable bool
	cmd := &cobra.Command{
		Use:   "get KEY",
		Short: "read a key (index 0: absent)",
		Args:  exactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			var resp *cxkvpb.GetResponse
			err := g.call(cmd.Context(), func(ctx context.Context, kv cxkvpb.KVClient) (err error) {
				resp, err = kv.Get(ctx, &cxkvpb.GetRequest{Key: args[0], Serializable: serializable})
				return err
			})
			if err != nil {
				return err
			}
			r := toRecord(resp.GetRecord())
			if g.output == "json" {
				return printJSON(cmd.OutOrStdout(), map[string]any{"found": resp.GetFound(), "record": r})
			}
			if !resp.GetFound() {
				fmt.Fprintf(cmd.OutOrStdout(), "%s is absent (index 0)\n", args[0])
				return nil
			}
			printRecords(cmd.OutOrStdout(), []record{r})
			return nil
		},
	}
	cmd.Flags().BoolVar(&serializable, "serializable", false, "read the member's local state (faster, may be stale)")
	return cmd
}

func newPutCmd(g *globals) *cobra.Command {
	var (
		index uint64
		ttl   time.Duration
	)
	cmd := &cobra.Command{
		Use:   "put KEY VALUE|-",
		Short: "compare-exchange: write KEY if its index is --index (0: only if absent)",
		Args:  exactArgs(2),
		RunE: func(cmd *cobra.Command, args []string) error {
			value := []byte(args[1])
			if args[1] == "-" {
				var err error
				if value, err = io.ReadAll(cmd.InOrStdin()); err != nil {
					return err
				}
			}
			if ttl < 0 {
				return usageError{fmt.Errorf("--ttl %v: must be positive", ttl)}
			}
			req := &cxkvpb.PutRequest{Key: args[0], Value: value, ExpectIndex: index, TtlMs: ttl.Milliseconds(), WriteId: writeID()}
			var resp *cxkvpb.PutResponse
			err := g.call(cmd.Context(), func(ctx context.Context, kv cxkvpb.KVClient) (err error) {
				resp, err = kv.Put(ctx, req)
				return err
			})
			if err != nil {
				return err
			}
			return reportWrite(cmd, g, resp.GetSuccessful(), resp.GetRecord())
		},
	}
	indexFlag(cmd, &index, true)
	cmd.Flags().DurationVar(&ttl, "ttl", 0, "expire the key this long after the write unless renewed (e.g. 10s)")
	return cmd
}

func reportWrite(cmd *cobra.Command, g *globals, ok bool, r *cxkvpb.Record) error {
	w := cmd.OutOrStdout()
	if g.output == "json" {
		printJSON(w, map[string]any{"successful": ok, "record": toRecord(r)})
	} else if ok {
		fmt.Fprintf(w, "OK %s index=%d\n", r.GetKey(), r.GetIndex())
	} else if r.GetIndex() == 0 {
		fmt.Fprintf(w, "COMPARE FAILED: %s is absent\n", r.GetKey())
	} else {
		fmt.Fprintf(w, "COMPARE FAILED: %s has index %d (value %q)\n", r.GetKey(), r.GetIndex(), r.GetValue())
	}
	if !ok {
		return errCompareFailed
	}
	return nil
}

func newDeleteCmd(g *globals) *cobra.Command {
	var index uint64
	cmd := &cobra.Command{
		Use:   "delete KEY --index N",
		Short: "delete KEY if its index is N",
		Args:  exactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			req := &cxkvpb.DeleteRequest{Key: args[0], ExpectIndex: index, WriteId: writeID()}
			var resp *cxkvpb.DeleteResponse
			err := g.call(cmd.Context(), func(ctx context.Context, kv cxkvpb.KVClient) (err error) {
				resp, err = kv.Delete(ctx, req)
				return err
			})
			if err != nil {
				return err
			}
			if resp.GetSuccessful() && g.output != "json" {
				fmt.Fprintf(cmd.OutOrStdout(), "DELETED %s (was index %d) at index %d\n", args[0], resp.GetRecord().GetIndex(), resp.GetIndex())
				return nil
			}
			return reportWrite(cmd, g, resp.GetSuccessful(), resp.GetRecord())
		},
	}
	indexFlag(cmd, &index, true)
	return cmd
}

func newListCmd(g *globals) *cobra.Command {
	var limit int
	cmd := &cobra.Command{
		Use:   "list [PREFIX]",
		Short: "list keys under a prefix, in key order",
		Args:  cobra.MaximumNArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			prefix := ""
			if len(args) == 1 {
				prefix = args[0]
			}
			var recs []record
			after := ""
			for limit <= 0 || len(recs) < limit {
				var resp *cxkvpb.ListResponse
				err := g.call(cmd.Context(), func(ctx context.Context, kv cxkvpb.KVClient) (err error) {
					resp, err = kv.List(ctx, &cxkvpb.ListRequest{Prefix: prefix, After: after, Limit: 1000})
					return err
				})
				if err != nil {
					return err
				}
				for _, r := range resp.GetRecords() {
					recs = append(recs, toRecord(r))
				}
				if !resp.GetMore() || len(resp.GetRecords()) == 0 {
					break
				}
				after = resp.GetRecords()[len(resp.GetRecords())-1].GetKey()
			}
			if limit > 0 && len(recs) > limit {
				recs = recs[:limit]
			}
			if g.output == "json" {
				if recs == nil {
					recs = []record{}
				}
				return printJSON(cmd.OutOrStdout(), recs)
			}
			printRecords(cmd.OutOrStdout(), recs)
			return nil
		},
	}
	cmd.Flags().IntVar(&limit, "limit", 0, "at most this many keys (0: all)")
	return cmd
}

func newStatusCmd(g *globals) *cobra.Command {
	return &cobra.Command{
		Use:   "status",
		Short: "each endpoint's view: role, leader, term, indexes",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			type row struct {
				Endpoint string `json:"endpoint"`
				ID       uint64 `json:"id,omitempty"`
				Role     string `json:"role,omitempty"`
				Leader   uint64 `json:"leader,omitempty"`
				Term     uint64 `json:"term,omitempty"`
				Commit   uint64 `json:"commit_index,omitempty"`
				Applied  uint64 `json:"applied_index,omitempty"`
				Error    string `json:"error,omitempty"`
			}
			var rows []row
			reached := 0
			for _, ep := range splitEndpoints(g.endpoints) {
				one := *g
				one.endpoints = ep
				var st *cxkvpb.StatusResponse
				err := one.call(cmd.Context(), func(ctx context.Context, kv cxkvpb.KVClient) (err error) {
					st, err = kv.Status(ctx, &cxkvpb.StatusRequest{})
					return err
				})
				if err != nil {
					if _, usage := err.(usageError); usage {
						return err
					}
					rows = append(rows, row{Endpoint: ep, Error: err.Error()})
					continue
				}
				reached++
				h := st.GetHeader()
				rows = append(rows, row{ep, h.GetMemberId(), st.GetRole(), h.GetLeaderId(), h.GetTerm(), st.GetCommitIndex(), h.GetAppliedIndex(), ""})
			}
			if g.output == "json" {
				printJSON(cmd.OutOrStdout(), rows)
			} else {
				tw := tabwriter.NewWriter(cmd.OutOrStdout(), 0, 4, 2, ' ', 0)
				fmt.Fprintln(tw, "ENDPOINT\tID\tROLE\tLEADER\tTERM\tCOMMIT\tAPPLIED\tERROR")
				for _, r := range rows {
					fmt.Fprintf(tw, "%s\t%d\t%s\t%d\t%d\t%d\t%d\t%s\n", r.Endpoint, r.ID, r.Role, r.Leader, r.Term, r.Commit, r.Applied, r.Error)
				}
				tw.Flush()
			}
			if reached == 0 {
				return unavailableErr("no endpoint answered")
			}
			return nil
		},
	}
}

func newWatchCmd(g *globals) *cobra.Command {
	var from uint64
	cmd := &cobra.Command{
		Use:   "watch PREFIX",
		Short: "print every put, delete and expiry under PREFIX until interrupted",
		Args:  exactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			ep := splitEndpoints(g.endpoints)[0]
			conn, err := dial(ep)
			if err != nil {
				return err
			}
			defer conn.Close()
			stream, err := cxkvpb.NewKVClient(conn).Watch(cmd.Context(), &cxkvpb.WatchRequest{Prefix: args[0], FromIndex: from})
			if err != nil {
				return err
			}
			for {
				resp, err := stream.Recv()
				if err != nil {
					if cmd.Context().Err() != nil {
						return nil
					}
					return err
				}
				for _, e := range resp.GetEvents() {
					r := toRecord(e.GetRecord())
					if g.output == "json" {
						printJSON(cmd.OutOrStdout(), map[string]any{"type": e.GetType().String(), "record": r})
					} else {
						fmt.Fprintf(cmd.OutOrStdout(), "%-6s %s index=%d value=%q\n", e.GetType(), r.Key, r.Index, r.Value)
					}
				}
			}
		},
	}
	cmd.Flags().Uint64Var(&from, "from", 0, "deliver events after this index (0: from now)")
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
