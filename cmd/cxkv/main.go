// Command cxkv is the cxkv server and its operator's command line.
package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/signal"
	"strings"
	"syscall"

	"github.com/cxkv/cxkv/client"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
)

// Exit codes, documented in the root command's help and the README.
// exitCode is the one place errors become them.
const (
	exitOK          = 0
	exitError       = 1
	exitUsage       = 2
	exitCompareFail = 3
	exitUnavailable = 4
)

// errCompareFailed reports a write whose compare did not hold. The command
// has already printed the current state, so nothing more is said on stderr.
var errCompareFailed = errors.New("compare failed")

// errNoLeader is a cluster whose reachable members know no leader: no
// quorum, or an election under way. Exit code 4, like an unreachable one.
var errNoLeader = errors.New("no leader: the members that answered know none (no quorum, or an election is under way)")

type usageError struct{ error }

func (e usageError) Unwrap() error { return e.error }

// unavailableError is the cluster not answering within --timeout: every
// endpoint unreachable, no quorum, or too slow.
type unavailableError struct {
	endpoints string
	timeout   string
	cause     error
}

func (e *unavailableError) Error() string {
	return fmt.Sprintf("cluster unavailable: no answer from %s within %s (unreachable, or without quorum)\ncxkv: last error: %v", e.endpoints, e.timeout, e.cause)
}

func (e *unavailableError) Unwrap() error { return e.cause }

// outcomeUnknownError is a write the SDK sent but could not settle. check
// says how the operator finds out whether it applied.
type outcomeUnknownError struct {
	what  string
	check string
	cause error
}

func (e *outcomeUnknownError) Error() string {
	cause := e.cause
	if inner := errors.Unwrap(cause); inner != nil {
		cause = inner // the SDK's error repeats "may or may not"
	}
	return fmt.Sprintf("%s: the write may or may not have applied (its answer was lost: %v)\ncxkv: check before retrying: %s", e.what, cause, e.check)
}

func (e *outcomeUnknownError) Unwrap() error { return e.cause }

func exitCode(err error) int {
	switch {
	case err == nil:
		return exitOK
	case errors.Is(err, errCompareFailed):
		return exitCompareFail
	case errors.Is(err, client.ErrOutcomeUnknown):
		// Before the transport checks: it wraps the Unavailable that lost
		// the answer, but unlike Unavailable the write may have applied.
		return exitError
	case errors.As(err, new(usageError)), isCobraUsage(err):
		return exitUsage
	case errors.As(err, new(*unavailableError)), client.IsUnavailable(err), errors.Is(err, errNoLeader),
		errors.Is(err, context.DeadlineExceeded):
		return exitUnavailable
	}
	switch status.Code(err) {
	case codes.Unavailable, codes.DeadlineExceeded:
		return exitUnavailable
	case codes.InvalidArgument:
		return exitUsage
	}
	return exitError
}

// message is what stderr says about err.
func message(err error) string {
	var (
		u  *unavailableError
		ou *outcomeUnknownError
	)
	if errors.As(err, &u) || errors.As(err, &ou) {
		return err.Error()
	}
	if s, ok := status.FromError(err); ok && s.Code() != codes.Unknown {
		return fmt.Sprintf("%s: %s", s.Code(), s.Message())
	}
	return strings.TrimPrefix(err.Error(), "cxkv: ") // the SDK's errors name it too
}

// env is everything a run reads from and writes to outside its arguments,
// so tests run the CLI in-process.
type env struct {
	stdin  io.Reader
	stdout io.Writer
	stderr io.Writer
	getenv func(string) string
	// stdinTTY says stdin is a terminal a person can answer prompts on.
	stdinTTY bool
}

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	code := run(ctx, os.Args[1:], env{stdin: os.Stdin, stdout: os.Stdout, stderr: os.Stderr, getenv: os.Getenv, stdinTTY: stdinIsTerminal(os.Stdin)})
	stop()
	os.Exit(code)
}

func run(ctx context.Context, args []string, e env) int {
	cmd := newRootCmd(e)
	cmd.SetArgs(args)
	cmd.SetIn(e.stdin)
	cmd.SetOut(e.stdout)
	cmd.SetErr(e.stderr)
	err := cmd.ExecuteContext(ctx)
	if err != nil && !errors.Is(err, errCompareFailed) {
		fmt.Fprintf(e.stderr, "cxkv: %s\n", message(err))
	}
	return exitCode(err)
}

// stdinIsTerminal reports whether f is a terminal. A character device that is
// not /dev/null is taken for one: `cxkv force-release x </dev/null` in a
// script must refuse, not read an empty answer. (Exact detection needs an
// ioctl per OS; this needs no dependency.)
func stdinIsTerminal(f *os.File) bool {
	fi, err := f.Stat()
	if err != nil || fi.Mode()&os.ModeCharDevice == 0 {
		return false
	}
	null, err := os.Stat(os.DevNull)
	return err != nil || !os.SameFile(fi, null)
}

// isCobraUsage recognises the usage errors cobra makes itself (unknown
// command or flag, missing required flag), which carry no type of their own.
func isCobraUsage(err error) bool {
	msg := err.Error()
	for _, p := range []string{"unknown command", "unknown flag", "unknown shorthand", "required flag", "flag needs an argument", "invalid argument", "accepts "} {
		if strings.HasPrefix(msg, p) {
			return true
		}
	}
	return false
}
