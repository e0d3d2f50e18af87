package main

import (
	"github.com/spf13/cobra"
)

const rootHelp = `cxkv is a compare-exchange key-value store replicated with Raft.

Every key has an index: the log index of the write that last changed it.
put creates a key with --index 0 (only if absent) or replaces it with the
key's current index; delete needs the current index. A failed compare is
reported with the current holder and exit code 3.

Exit codes:
  0  success
  1  other error
  2  usage error (bad flags, arguments or input)
  3  a compare failed (put/delete did not hold)
  4  cluster unreachable or without quorum (or timed out)`

func newRootCmd() *cobra.Command {
	root := &cobra.Command{
		Use:           "cxkv",
		Short:         "compare-exchange key-value store replicated with Raft",
		Long:          rootHelp,
		SilenceUsage:  true,
		SilenceErrors: true,
	}
	root.SetFlagErrorFunc(func(c *cobra.Command, err error) error { return usageError{err} })
	g := &globals{}
	root.PersistentFlags().StringVar(&g.endpoints, "endpoints", envOr("CXKV_ENDPOINTS", "127.0.0.1:7001"), "comma-separated member addresses (env CXKV_ENDPOINTS)")
	root.PersistentFlags().DurationVar(&g.timeout, "timeout", defaultTimeout, "per-request timeout")
	root.PersistentFlags().StringVarP(&g.output, "output", "o", "table", "output format of read commands: table or json")
	root.AddCommand(newDemoCmd(g))
	root.AddCommand(newServerCmd(), newGetCmd(g), newPutCmd(g), newDeleteCmd(g), newListCmd(g), newStatusCmd(g), newWatchCmd(g))
	return root
}
