// Command cxkv is the cxkv server and its operator's command line.
package main

import (
	"errors"
	"fmt"
	"os"
	"strings"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
)

// Exit codes, documented in the root command's help. exitCode is the one
// place errors become them.
const (
	exitOK          = 0
	exitError       = 1
	exitUsage       = 2
	exitCompareFail = 3
	exitUnavailable = 4
)

// errCompareFailed reports a put or delete whose compare did not hold.
var errCompareFailed = errors.New("compare failed")

type usageError struct{ error }

func exitCode(err error) int {
	switch {
	case err == nil:
		return exitOK
	case errors.Is(err, errCompareFailed):
		return exitCompareFail
	case errors.As(err, new(usageError)), isCobraUsage(err):
		return exitUsage
	}
	if s, ok := status.FromError(err); ok {
		switch s.Code() {
		case codes.Unavailable, codes.DeadlineExceeded:
			return exitUnavailable
		case codes.InvalidArgument:
			return exitUsage
		}
	}
	return exitError
}

func main() {
	os.Exit(run(os.Args[1:], os.Stdout, os.Stderr))
}

func run(args []string, stdout, stderr *os.File) int {
	cmd := newRootCmd()
	cmd.SetArgs(args)
	cmd.SetOut(stdout)
	cmd.SetErr(stderr)
	err := cmd.Execute()
	if err != nil && !errors.Is(err, errCompareFailed) {
		if s, ok := status.FromError(err); ok {
			fmt.Fprintf(stderr, "cxkv: %s: %s\n", s.Code(), s.Message())
		} else {
			fmt.Fprintf(stderr, "cxkv: %v\n", err)
		}
	}
	return exitCode(err)
}

// isCobraUsage recognises the usage errors cobra makes itself (unknown
// command or flag, missing required flag), which carry no type of their own.
func isCobraUsage(err error) bool {
	msg := err.Error()
	for _, p := range []string{"unknown command", "unknown flag", "unknown shorthand", "required flag", "flag needs an argument", "invalid argument"} {
		if strings.HasPrefix(msg, p) {
			return true
		}
	}
	return false
}
