package main

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"strings"

	"github.com/cxkv/cxkv/api/cxkvpb"
	"github.com/cxkv/cxkv/api/cxkvrpc"
	"github.com/cxkv/cxkv/client"
	"github.com/cxkv/cxkv/raftnode"
	"github.com/spf13/cobra"
	"google.golang.org/genproto/googleapis/rpc/errdetails"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/status"
)

func newMemberCmd(g *globals) *cobra.Command {
	cmd := &cobra.Command{
		Use:   "member",
		Short: "list and change the cluster's members",
		Long: `List the members and change the membership. Changes go to the leader
(the command tries each of --endpoints until the leader answers), apply
once the cluster has committed them, and are refused with the reason when
they would be unsafe: see the README's runbook for growing, shrinking and
replacing members. Addresses are peer addresses: a member's --peer-addr, or
its --addr when peers share the client port.`,
	}
	cmd.AddCommand(newMemberListCmd(g), newMemberAddCmd(g), newMemberRemoveCmd(g),
		newMemberPromoteCmd(g), newMemberUpdateCmd(g))
	return cmd
}

// memberRow is one line of member list (-o json: one object).
type memberRow struct {
	ID      uint64  `json:"id"`
	Addr    string  `json:"addr"`
	Role    string  `json:"role"` // voter or learner
	Leader  bool    `json:"leader"`
	Started bool    `json:"started"`
	Applied *uint64 `json:"applied,omitempty"` // from the member itself, when an endpoint reaches it
	Match   uint64  `json:"match"`             // the leader's view of the member's log
	Lag     uint64  `json:"lag"`               // entries behind the leader's log
}

func newMemberListCmd(g *globals) *cobra.Command {
	return &cobra.Command{
		Use:   "list",
		Short: "list the members: id, address, voter or learner, leader, applied index, lag",
		Long: `List the members as the leader sees them: id, peer address, voter or
learner, which one leads, whether it has started, its applied index (asked
of each member that --endpoints reaches), and how far its log trails the
leader's (match and lag, in entries).`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if err := g.checkFlags(); err != nil {
				return err
			}
			ctx, cancel := context.WithTimeout(cmd.Context(), g.timeout)
			defer cancel()
			list, applied, err := g.memberList(ctx)
			if err != nil {
				return g.transportError(err)
			}
			var rows []memberRow
			for _, m := range list.GetMembers() {
				r := memberRow{ID: m.GetMember().GetId(), Addr: m.GetMember().GetAddr(), Role: "voter", Leader: m.GetLeader(),
					Started: m.GetMember().GetStarted(), Match: m.GetMatchIndex(), Lag: m.GetLag()}
				if m.GetMember().GetLearner() {
					r.Role = "learner"
				}
				if a, ok := applied[r.ID]; ok {
					r.Applied = &a
				}
				rows = append(rows, r)
			}
			if g.json() {
				return printJSON(cmd.OutOrStdout(), map[string]any{"cluster_id": fmt.Sprintf("%x", list.GetClusterId()), "members": rows, "removed": list.GetRemoved()})
			}
			tw := newTable(cmd.OutOrStdout())
			fmt.Fprintf(tw, "cluster %x\n", list.GetClusterId())
			fmt.Fprintln(tw, "ID\tADDR\tROLE\tLEADER\tSTARTED\tAPPLIED\tMATCH\tLAG")
			for _, r := range rows {
				lead, app := "", "-"
				if r.Leader {
					lead = "*"
				}
				if r.Applied != nil {
					app = strconv.FormatUint(*r.Applied, 10)
				}
				fmt.Fprintf(tw, "%d\t%s\t%s\t%s\t%v\t%s\t%d\t%d\n", r.ID, r.Addr, r.Role, lead, r.Started, app, r.Match, r.Lag)
			}
			return tw.Flush()
		},
	}
}

func newMemberAddCmd(g *globals) *cobra.Command {
	var (
		id      uint64
		addr    string
		learner bool
	)
	cmd := &cobra.Command{
		Use:   "add --id N --addr HOST:PORT [--learner]",
		Short: "add a member, and print the flags it starts with",
		Long: `Add member N at peer address HOST:PORT, as a voter or (--learner, the safe
way for a member that has yet to copy the state) a learner, then print the
flags the new member starts with: an empty --data-dir and --join, so it
learns the cluster from its members. Refused if the id exists or was
removed (ids are never reused), if another member has the address, or if
a new voter would leave too few live voters for a quorum.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if err := g.checkFlags(); err != nil {
				return err
			}
			if id == 0 {
				return usageError{errors.New("--id must be positive")}
			}
			if err := raftnode.CheckAddr(addr); err != nil {
				return usageError{fmt.Errorf("--addr %q: %w", addr, err)}
			}
			resp, err := g.memberChange(cmd, func(ctx context.Context, c cxkvrpc.ClusterClient) (*cxkvpb.MemberChangeResponse, error) {
				return c.MemberAdd(ctx, &cxkvpb.MemberAddRequest{Id: id, Addr: addr, Learner: learner})
			})
			if err != nil {
				return err
			}
			join := strings.Join(client.ParseEndpoints(g.endpoints), ",")
			flags := fmt.Sprintf("--id %d --addr %s --join %s --cluster-id %x --data-dir EMPTY-DIR", id, addr, join, resp.GetClusterId())
			if g.json() {
				return printJSON(cmd.OutOrStdout(), map[string]any{"id": id, "addr": addr, "learner": learner,
					"cluster_id": fmt.Sprintf("%x", resp.GetClusterId()), "join": join, "server_flags": flags})
			}
			out := cmd.OutOrStdout()
			fmt.Fprintf(out, "added member %d at %s", id, addr)
			if learner {
				fmt.Fprintf(out, " as a learner (cxkv member promote %d once it has caught up)", id)
			}
			fmt.Fprintf(out, "\nstart it with:\n  cxkv server %s\n", flags)
			fmt.Fprintf(out, "(with a peer port of its own: --peer-addr %s, and its client address as --addr)\n", addr)
			return nil
		},
	}
	cmd.Flags().Uint64Var(&id, "id", 0, "the new member's id (positive, never used in this cluster before)")
	cmd.Flags().StringVar(&addr, "addr", "", "the new member's peer address, host:port")
	cmd.Flags().BoolVar(&learner, "learner", false, "add it as a learner: it copies the log but does not vote until promoted")
	return cmd
}

func newMemberRemoveCmd(g *globals) *cobra.Command {
	return &cobra.Command{
		Use:   "remove N",
		Short: "remove member N (refused if no quorum of live voters would be left)",
		Long: `Remove member N. Refused if N is the last voter, if the voters left would
not have a quorum of live members, or if N leads (move the leadership
first: cxkv move-leader). The removed member stops serving and exits
non-zero saying so; its id is never used again.`,
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			id, err := memberArg(args[0])
			if err != nil {
				return err
			}
			return g.printChange(cmd, fmt.Sprintf("removed member %d", id), func(ctx context.Context, c cxkvrpc.ClusterClient) (*cxkvpb.MemberChangeResponse, error) {
				return c.MemberRemove(ctx, &cxkvpb.MemberRemoveRequest{Id: id})
			})
		},
	}
}

func newMemberPromoteCmd(g *globals) *cobra.Command {
	return &cobra.Command{
		Use:   "promote N",
		Short: "make learner N a voter (refused until it has caught up)",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			id, err := memberArg(args[0])
			if err != nil {
				return err
			}
			return g.printChange(cmd, fmt.Sprintf("promoted member %d to voter", id), func(ctx context.Context, c cxkvrpc.ClusterClient) (*cxkvpb.MemberChangeResponse, error) {
				return c.MemberPromote(ctx, &cxkvpb.MemberPromoteRequest{Id: id})
			})
		},
	}
}

func newMemberUpdateCmd(g *globals) *cobra.Command {
	var addr string
	cmd := &cobra.Command{
		Use:   "update N --addr HOST:PORT",
		Short: "change member N's peer address",
		Long: `Change member N's peer address: the other members dial it there from now
on, so restart N at the new address (its data dir keeps everything else).`,
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			id, err := memberArg(args[0])
			if err != nil {
				return err
			}
			if err := raftnode.CheckAddr(addr); err != nil {
				return usageError{fmt.Errorf("--addr %q: %w", addr, err)}
			}
			return g.printChange(cmd, fmt.Sprintf("member %d is now at %s", id, addr), func(ctx context.Context, c cxkvrpc.ClusterClient) (*cxkvpb.MemberChangeResponse, error) {
				return c.MemberUpdate(ctx, &cxkvpb.MemberUpdateRequest{Id: id, Addr: addr})
			})
		},
	}
	cmd.Flags().StringVar(&addr, "addr", "", "the member's new peer address, host:port")
	return cmd
}

func newMoveLeaderCmd(g *globals) *cobra.Command {
	return &cobra.Command{
		Use:   "move-leader [N]",
		Short: "hand the leadership to voter N (default: the most caught-up voter)",
		Args:  cobra.MaximumNArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			var id uint64
			if len(args) == 1 {
				var err error
				if id, err = memberArg(args[0]); err != nil {
					return err
				}
			}
			if err := g.checkFlags(); err != nil {
				return err
			}
			ctx, cancel := context.WithTimeout(cmd.Context(), g.timeout)
			defer cancel()
			var resp *cxkvpb.MoveLeaderResponse
			err := g.atLeader(ctx, func(ctx context.Context, c cxkvrpc.ClusterClient) error {
				var err error
				resp, err = c.MoveLeader(ctx, &cxkvpb.MoveLeaderRequest{Id: id})
				return err
			})
			if err != nil {
				return g.transportError(err)
			}
			if g.json() {
				return printJSON(cmd.OutOrStdout(), map[string]any{"leader": resp.GetLeaderId()})
			}
			fmt.Fprintf(cmd.OutOrStdout(), "member %d leads\n", resp.GetLeaderId())
			return nil
		},
	}
}

func memberArg(s string) (uint64, error) {
	id, err := strconv.ParseUint(s, 10, 64)
	if err != nil || id == 0 {
		return 0, usageError{fmt.Errorf("member id %q: want a positive number", s)}
	}
	return id, nil
}

func (g *globals) checkFlags() error {
	if g.output != "table" && g.output != "json" {
		return usageError{fmt.Errorf("-o %q: want table or json", g.output)}
	}
	if g.timeout <= 0 {
		return usageError{fmt.Errorf("--timeout %v: must be positive", g.timeout)}
	}
	if len(client.ParseEndpoints(g.endpoints)) == 0 {
		return usageError{fmt.Errorf("--endpoints %q: no endpoint given", g.endpoints)}
	}
	return nil
}

// printChange makes a change at the leader and prints the membership after.
func (g *globals) printChange(cmd *cobra.Command, what string, call func(context.Context, cxkvrpc.ClusterClient) (*cxkvpb.MemberChangeResponse, error)) error {
	resp, err := g.memberChange(cmd, call)
	if err != nil {
		return err
	}
	if g.json() {
		return printJSON(cmd.OutOrStdout(), map[string]any{"cluster_id": fmt.Sprintf("%x", resp.GetClusterId()), "members": resp.GetMembers()})
	}
	fmt.Fprintln(cmd.OutOrStdout(), what)
	return nil
}

func (g *globals) memberChange(cmd *cobra.Command, call func(context.Context, cxkvrpc.ClusterClient) (*cxkvpb.MemberChangeResponse, error)) (*cxkvpb.MemberChangeResponse, error) {
	if err := g.checkFlags(); err != nil {
		return nil, err
	}
	ctx, cancel := context.WithTimeout(cmd.Context(), g.timeout)
	defer cancel()
	var resp *cxkvpb.MemberChangeResponse
	err := g.atLeader(ctx, func(ctx context.Context, c cxkvrpc.ClusterClient) error {
		var err error
		resp, err = call(ctx, c)
		return err
	})
	return resp, g.transportError(err)
}

// atLeader calls each endpoint in turn until one answers other than "not
// the leader" or "unavailable".
func (g *globals) atLeader(ctx context.Context, call func(context.Context, cxkvrpc.ClusterClient) error) error {
	var err error
	for _, ep := range client.ParseEndpoints(g.endpoints) {
		var conn *grpc.ClientConn
		conn, err = grpc.NewClient(ep, grpc.WithTransportCredentials(insecure.NewCredentials()))
		if err != nil {
			return usageError{fmt.Errorf("--endpoints %q: %w", ep, err)}
		}
		err = call(ctx, cxkvrpc.NewClusterClient(conn))
		conn.Close()
		if err == nil || !(notLeader(err) || status.Code(err) == codes.Unavailable) || ctx.Err() != nil {
			return err
		}
	}
	return err
}

// notLeader reports a member's NOT_LEADER refusal.
func notLeader(err error) bool {
	for _, d := range status.Convert(err).Details() {
		if info, ok := d.(*errdetails.ErrorInfo); ok && info.GetDomain() == cxkvpb.ErrorDomain && info.GetReason() == cxkvpb.ReasonNotLeader {
			return true
		}
	}
	return false
}

// memberList asks the endpoints for the membership, preferring the
// leader's answer (only it knows how far each member's log matches), and
// each reachable member for its applied index.
func (g *globals) memberList(ctx context.Context) (*cxkvpb.MemberListResponse, map[uint64]uint64, error) {
	var best *cxkvpb.MemberListResponse
	var err error
	applied := map[uint64]uint64{}
	for _, ep := range client.ParseEndpoints(g.endpoints) {
		conn, cerr := grpc.NewClient(ep, grpc.WithTransportCredentials(insecure.NewCredentials()))
		if cerr != nil {
			return nil, nil, usageError{fmt.Errorf("--endpoints %q: %w", ep, cerr)}
		}
		resp, lerr := cxkvrpc.NewClusterClient(conn).MemberList(ctx, &cxkvpb.MemberListRequest{})
		conn.Close()
		if lerr != nil {
			err = lerr
			continue
		}
		applied[resp.GetHeader().GetMemberId()] = resp.GetHeader().GetAppliedIndex()
		if best == nil || (best.GetRole() != "leader" && resp.GetRole() == "leader") {
			best = resp
		}
	}
	if best == nil {
		return nil, nil, err
	}
	return best, applied, nil
}
