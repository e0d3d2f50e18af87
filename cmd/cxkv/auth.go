package main

import (
	"context"
	"fmt"
	"strings"

	"github.com/cxkv/cxkv/client"
	"github.com/spf13/cobra"
)

// The CLI's side of auth: --user (who the command runs as) and the auth,
// user and role commands, each one call of the SDK.

// addUserFlag adds --user, defaulting to CXKV_USER; the password comes
// after a ':' or from CXKV_PASSWORD.
func addUserFlag(root *cobra.Command, g *globals, e env) {
	root.PersistentFlags().StringVar(&g.user, "user", e.getenv("CXKV_USER"),
		"run as this user, name[:password] (env CXKV_USER; the password may come from CXKV_PASSWORD)")
	g.password = e.getenv("CXKV_PASSWORD")
}

// credentials returns the user and password --user names.
func (g *globals) credentials() (string, string, error) {
	if g.user == "" {
		return "", "", nil
	}
	name, password, ok := strings.Cut(g.user, ":")
	if !ok {
		password = g.password
	}
	if name == "" {
		return "", "", usageError{fmt.Errorf("--user %q: no user name", g.user)}
	}
	if password == "" {
		return "", "", usageError{fmt.Errorf("--user %s: no password: give --user %s:PASSWORD or set CXKV_PASSWORD", name, name)}
	}
	return name, password, nil
}

func newAuthCmd(g *globals) *cobra.Command {
	cmd := &cobra.Command{
		Use:   "auth",
		Short: "turn permission checks on or off, or show whether they are on",
		Long: `With auth enabled, every request needs an identity (--user, or a client
certificate's common name) holding a permission on the keys it touches:
read, write or admin on a key prefix, given by roles. Enabling is refused
until some user holds admin on "" (every key), so nobody is locked out:

  cxkv user add root:PASSWORD
  cxkv role add root
  cxkv role grant root '' admin
  cxkv user grant root root
  cxkv auth enable --user root:PASSWORD`,
	}
	change := func(use, short string, f func(*client.Client, context.Context) error) *cobra.Command {
		return &cobra.Command{
			Use: use, Short: short, Args: cobra.NoArgs,
			RunE: g.clientCmd(false, func(ctx context.Context, cmd *cobra.Command, c *client.Client, _ []string) error {
				if err := f(c, ctx); err != nil {
					return err
				}
				return g.printDone(cmd, "auth "+use, nil)
			}),
		}
	}
	cmd.AddCommand(
		change("enable", "check every request from now on (needs a user with admin on every key)", (*client.Client).AuthEnable),
		change("disable", "stop checking requests", (*client.Client).AuthDisable),
		&cobra.Command{
			Use: "status", Short: "whether auth is enabled", Args: cobra.NoArgs,
			RunE: g.clientCmd(false, func(ctx context.Context, cmd *cobra.Command, c *client.Client, _ []string) error {
				info, err := c.AuthStatus(ctx)
				if err != nil {
					return err
				}
				if g.json() {
					return printJSON(cmd.OutOrStdout(), map[string]bool{"enabled": info.Enabled})
				}
				fmt.Fprintf(cmd.OutOrStdout(), "auth enabled: %t\n", info.Enabled)
				return nil
			}),
		})
	return cmd
}

// printDone reports a change: "OK what" or, with -o json, an object.
func (g *globals) printDone(cmd *cobra.Command, what string, fields map[string]string) error {
	if g.json() {
		out := map[string]string{"done": what}
		for k, v := range fields {
			out[k] = v
		}
		return printJSON(cmd.OutOrStdout(), out)
	}
	fmt.Fprintln(cmd.OutOrStdout(), "OK", what)
	return nil
}

func newUserCmd(g *globals) *cobra.Command {
	cmd := &cobra.Command{Use: "user", Short: "add, delete, list users and give them roles"}
	cmd.AddCommand(
		&cobra.Command{
			Use:   "add NAME[:PASSWORD]",
			Short: "add a user; without a password only a client certificate with that common name is the user",
			Args:  cobra.ExactArgs(1),
			RunE: g.clientCmd(false, func(ctx context.Context, cmd *cobra.Command, c *client.Client, args []string) error {
				name, password, _ := strings.Cut(args[0], ":")
				if err := c.UserAdd(ctx, name, password); err != nil {
					return err
				}
				return g.printDone(cmd, "user add "+name, map[string]string{"user": name})
			}),
		},
		&cobra.Command{
			Use:   "password NAME[:PASSWORD]",
			Short: "set a user's password (none: certificate only); the user's tokens end",
			Args:  cobra.ExactArgs(1),
			RunE: g.clientCmd(false, func(ctx context.Context, cmd *cobra.Command, c *client.Client, args []string) error {
				name, password, _ := strings.Cut(args[0], ":")
				if err := c.UserPassword(ctx, name, password); err != nil {
					return err
				}
				return g.printDone(cmd, "user password "+name, map[string]string{"user": name})
			}),
		},
		&cobra.Command{
			Use: "delete NAME", Short: "delete a user", Args: cobra.ExactArgs(1),
			RunE: g.clientCmd(false, func(ctx context.Context, cmd *cobra.Command, c *client.Client, args []string) error {
				if err := c.UserDelete(ctx, args[0]); err != nil {
					return err
				}
				return g.printDone(cmd, "user delete "+args[0], map[string]string{"user": args[0]})
			}),
		},
		&cobra.Command{
			Use: "grant USER ROLE", Short: "give a user a role", Args: cobra.ExactArgs(2),
			RunE: g.clientCmd(false, func(ctx context.Context, cmd *cobra.Command, c *client.Client, args []string) error {
				if err := c.UserGrant(ctx, args[0], args[1]); err != nil {
					return err
				}
				return g.printDone(cmd, "user grant "+args[0]+" "+args[1], map[string]string{"user": args[0], "role": args[1]})
			}),
		},
		&cobra.Command{
			Use: "revoke USER ROLE", Short: "take a role from a user", Args: cobra.ExactArgs(2),
			RunE: g.clientCmd(false, func(ctx context.Context, cmd *cobra.Command, c *client.Client, args []string) error {
				if err := c.UserRevoke(ctx, args[0], args[1]); err != nil {
					return err
				}
				return g.printDone(cmd, "user revoke "+args[0]+" "+args[1], map[string]string{"user": args[0], "role": args[1]})
			}),
		},
		&cobra.Command{
			Use: "list", Short: "every user and its roles", Args: cobra.NoArgs,
			RunE: g.clientCmd(false, func(ctx context.Context, cmd *cobra.Command, c *client.Client, _ []string) error {
				info, err := c.AuthStatus(ctx)
				if err != nil {
					return err
				}
				if g.json() {
					return printJSON(cmd.OutOrStdout(), info.Users)
				}
				tw := newTable(cmd.OutOrStdout())
				fmt.Fprintln(tw, "USER\tROLES")
				for _, u := range info.Users {
					fmt.Fprintf(tw, "%s\t%s\n", u.Name, strings.Join(u.Roles, ","))
				}
				return tw.Flush()
			}),
		})
	return cmd
}

func newRoleCmd(g *globals) *cobra.Command {
	cmd := &cobra.Command{Use: "role", Short: "add, delete, list roles and grant them permissions on key prefixes"}
	grant := func(use, short string, f func(*client.Client, context.Context, string, string, client.Permission) error) *cobra.Command {
		return &cobra.Command{
			Use: use + " ROLE PREFIX read|write|admin", Short: short, Args: cobra.ExactArgs(3),
			RunE: g.clientCmd(false, func(ctx context.Context, cmd *cobra.Command, c *client.Client, args []string) error {
				perm, err := client.ParsePermission(args[2])
				if err != nil {
					return usageError{err}
				}
				if err := f(c, ctx, args[0], args[1], perm); err != nil {
					return err
				}
				return g.printDone(cmd, fmt.Sprintf("role %s %s %s on %q", use, args[0], perm, args[1]),
					map[string]string{"role": args[0], "prefix": args[1], "permission": perm.String()})
			}),
		}
	}
	cmd.AddCommand(
		&cobra.Command{
			Use: "add NAME", Short: "add a role with no permissions", Args: cobra.ExactArgs(1),
			RunE: g.clientCmd(false, func(ctx context.Context, cmd *cobra.Command, c *client.Client, args []string) error {
				if err := c.RoleAdd(ctx, args[0]); err != nil {
					return err
				}
				return g.printDone(cmd, "role add "+args[0], map[string]string{"role": args[0]})
			}),
		},
		&cobra.Command{
			Use: "delete NAME", Short: "delete a role and take it from every user", Args: cobra.ExactArgs(1),
			RunE: g.clientCmd(false, func(ctx context.Context, cmd *cobra.Command, c *client.Client, args []string) error {
				if err := c.RoleDelete(ctx, args[0]); err != nil {
					return err
				}
				return g.printDone(cmd, "role delete "+args[0], map[string]string{"role": args[0]})
			}),
		},
		grant("grant", `give a role a permission on every key under PREFIX ('' for every key); admin covers write, write covers read`, (*client.Client).RoleGrant),
		grant("revoke", "take back a permission granted to a role", (*client.Client).RoleRevoke),
		&cobra.Command{
			Use: "list", Short: "every role and its grants", Args: cobra.NoArgs,
			RunE: g.clientCmd(false, func(ctx context.Context, cmd *cobra.Command, c *client.Client, _ []string) error {
				info, err := c.AuthStatus(ctx)
				if err != nil {
					return err
				}
				if g.json() {
					return printJSON(cmd.OutOrStdout(), info.Roles)
				}
				tw := newTable(cmd.OutOrStdout())
				fmt.Fprintln(tw, "ROLE\tPERMISSION\tPREFIX")
				for _, r := range info.Roles {
					if len(r.Grants) == 0 {
						fmt.Fprintf(tw, "%s\t-\t-\n", r.Name)
					}
					for _, gr := range r.Grants {
						fmt.Fprintf(tw, "%s\t%s\t%q\n", r.Name, gr.Permission, gr.Prefix)
					}
				}
				return tw.Flush()
			}),
		})
	return cmd
}
