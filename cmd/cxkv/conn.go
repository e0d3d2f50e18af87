package main

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/cxkv/cxkv/client"
	"github.com/spf13/cobra"
)

// defaultTimeout bounds a whole command, retries and failovers included; it
// outlasts a leader election with the server's default ticks.
const defaultTimeout = 10 * time.Second

const defaultEndpoints = "127.0.0.1:7001"

// globals are the flags every client command shares.
type globals struct {
	endpoints string
	timeout   time.Duration
	output    string
	tls       clientTLSFlags
	user      string // --user name[:password] (auth.go)
	password  string // CXKV_PASSWORD
}

func (g *globals) json() bool { return g.output == "json" }

// connect checks the shared flags and opens an SDK client. Retries, backoff
// and failover across the endpoints are the SDK's; the CLI only bounds them
// by --timeout.
func (g *globals) connect() (*client.Client, error) {
	if g.output != "table" && g.output != "json" {
		return nil, usageError{fmt.Errorf("-o %q: want table or json", g.output)}
	}
	if g.timeout <= 0 {
		return nil, usageError{fmt.Errorf("--timeout %v: must be positive", g.timeout)}
	}
	eps := client.ParseEndpoints(g.endpoints)
	if len(eps) == 0 {
		return nil, usageError{fmt.Errorf("--endpoints %q: no endpoint given", g.endpoints)}
	}
	tlsCfg, err := g.tls.config()
	if err != nil {
		return nil, usageError{err}
	}
	user, password, err := g.credentials()
	if err != nil {
		return nil, err
	}
	c, err := client.New(client.Config{
		TLS:            tlsCfg,
		Endpoints:      eps,
		DialTimeout:    min(2*time.Second, g.timeout),
		RequestTimeout: g.timeout,
		RetryTimeout:   g.timeout,
		Username:       user,
		Password:       password,
	})
	if err != nil {
		return nil, usageError{err}
	}
	return c, nil
}

// clientCmd wraps a client command's body: it connects, bounds the body by
// --timeout (unless stream, which runs until interrupted), and turns the
// SDK's transport errors into the CLI's.
func (g *globals) clientCmd(stream bool, body func(ctx context.Context, cmd *cobra.Command, c *client.Client, args []string) error) func(*cobra.Command, []string) error {
	return func(cmd *cobra.Command, args []string) error {
		c, err := g.connect()
		if err != nil {
			return err
		}
		defer c.Close()
		ctx := cmd.Context()
		if !stream {
			var cancel context.CancelFunc
			ctx, cancel = context.WithTimeout(ctx, g.timeout)
			defer cancel()
		}
		return g.transportError(body(ctx, cmd, c, args))
	}
}

// transportError names a cluster that did not answer; other errors pass.
func (g *globals) transportError(err error) error {
	if err == nil || errors.Is(err, client.ErrOutcomeUnknown) || errors.As(err, new(usageError)) {
		return err
	}
	if exitCode(err) == exitUnavailable {
		return &unavailableError{endpoints: strings.Join(client.ParseEndpoints(g.endpoints), ","), timeout: g.timeout.String(), cause: err}
	}
	return err
}

// writeError explains a write whose outcome is unknown: what was sent and
// how to find out whether it applied. Other errors pass.
func writeError(err error, what, check string) error {
	if errors.Is(err, client.ErrOutcomeUnknown) {
		return &outcomeUnknownError{what: what, check: check, cause: err}
	}
	return err
}
