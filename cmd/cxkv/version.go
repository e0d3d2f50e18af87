package main

import (
	"fmt"

	"github.com/cxkv/cxkv/raftnode"
	"github.com/spf13/cobra"
)

func newVersionCmd(g *globals) *cobra.Command {
	return &cobra.Command{
		Use:   "version",
		Short: "print this binary's version, VCS revision and Go version",
		Long: `Print this binary's version, the VCS revision it was built from (and
whether the work tree had uncommitted changes) and the Go version. A
running member reports its own version in cxkv status. -o json prints
one object.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if g.output != "table" && g.output != "json" {
				return usageError{fmt.Errorf("-o %q: want table or json", g.output)}
			}
			b := raftnode.Build()
			w := cmd.OutOrStdout()
			if g.json() {
				printJSON(w, b)
				return nil
			}
			fmt.Fprintf(w, "cxkv %s\n", b.Version)
			if b.Revision != "" {
				mod := ""
				if b.Modified {
					mod = " (modified)"
				}
				fmt.Fprintf(w, "revision %s%s\n", b.Revision, mod)
			}
			if b.Time != "" {
				fmt.Fprintf(w, "built from a commit of %s\n", b.Time)
			}
			fmt.Fprintf(w, "go %s\n", b.GoVersion)
			return nil
		},
	}
}
