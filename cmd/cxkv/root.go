package main

import (
	"github.com/cxkv/cxkv/raftnode"
	"github.com/spf13/cobra"
)

const rootHelp = `cxkv is a compare-exchange key-value store replicated with Raft.

Every key has an index: the log index of the write that last changed it.
put creates a key with --index 0 (only if absent) or replaces it with the
key's current index; delete needs the current index. A failed compare is
reported with the current holder and exit code 3.

Client commands take --endpoints (or CXKV_ENDPOINTS), and --cacert, --cert
and --key for members serving TLS (or CXKV_CACERT, CXKV_CERT, CXKV_KEY);
--user name[:password] (or CXKV_USER, CXKV_PASSWORD) runs a command as a
user when auth is enabled (cxkv auth --help); --timeout bounds the
whole command, retries and failover across the endpoints included. Read
commands print tables, or JSON with -o json.

Exit codes:
  0  success
  1  other error, including a write whose outcome is unknown (the answer
     was lost: read the key to see whether it applied)
  2  usage error (bad flags, arguments or input)
  3  a compare failed (put/delete/txn did not hold)
  4  cluster unreachable or without quorum (or timed out)`

func newRootCmd(e env) *cobra.Command {
	root := &cobra.Command{
		Use:           "cxkv",
		Short:         "compare-exchange key-value store replicated with Raft",
		Long:          rootHelp,
		SilenceUsage:  true,
		SilenceErrors: true,
		Version:       raftnode.Build().String(),
	}
	root.SetVersionTemplate("cxkv {{.Version}}\n")
	root.SetFlagErrorFunc(func(c *cobra.Command, err error) error { return usageError{err} })
	g := &globals{}
	endpoints := defaultEndpoints
	if v := e.getenv("CXKV_ENDPOINTS"); v != "" {
		endpoints = v
	}
	root.PersistentFlags().StringVar(&g.endpoints, "endpoints", endpoints, "comma-separated member addresses (env CXKV_ENDPOINTS)")
	root.PersistentFlags().DurationVar(&g.timeout, "timeout", defaultTimeout, "bound on the whole command, retries and failover included")
	root.PersistentFlags().StringVarP(&g.output, "output", "o", "table", "output format of read commands: table or json")
	g.tls.register(root.PersistentFlags(), e.getenv)
	addUserFlag(root, g, e)
	root.AddCommand(newAuthCmd(g), newUserCmd(g), newRoleCmd(g))
	root.AddCommand(newDemoCmd(g))
	root.AddCommand(newServerCmd(e), newGetCmd(g), newPutCmd(g), newDeleteCmd(g), newListCmd(g), newStatusCmd(g), newWatchCmd(g))
	root.AddCommand(newTxnCmd(g), newLocksCmd(g), newForceReleaseCmd(g, e), newVersionCmd(g), newEndpointCmd(g))
	root.AddCommand(newSessionsCmd(g), newSessionCmd(g), newSnapshotCmd(g))
	root.AddCommand(newMemberCmd(g), newMoveLeaderCmd(g))
	return root
}
