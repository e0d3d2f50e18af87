package main

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"time"

	"github.com/cxkv/cxkv/api/cxkvrpc"
	"github.com/cxkv/cxkv/client"
	"github.com/spf13/cobra"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
)

func newEndpointCmd(g *globals) *cobra.Command {
	cmd := &cobra.Command{
		Use:   "endpoint",
		Short: "check the endpoints one by one",
	}
	cmd.AddCommand(&cobra.Command{
		Use:   "health",
		Short: "ask every endpoint whether it is ready (grpc.health.v1); exit 1 if any is not",
		Long: `Ask every endpoint, in parallel, on the standard grpc.health.v1 service
whether it serves cxkv.KV: a member is healthy when it knows a leader, has
not halted and has applied close to the commit index (the same test as
/readyz on --metrics-addr). Prints one row per endpoint (-o json: an
array). Exits 1 if any endpoint is unhealthy or unreachable within
--timeout, so it can gate a rolling upgrade.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if g.output != "table" && g.output != "json" {
				return usageError{fmt.Errorf("-o %q: want table or json", g.output)}
			}
			if g.timeout <= 0 {
				return usageError{fmt.Errorf("--timeout %v: must be positive", g.timeout)}
			}
			eps := client.ParseEndpoints(g.endpoints)
			if len(eps) == 0 {
				return usageError{fmt.Errorf("--endpoints %q: no endpoint given", g.endpoints)}
			}
			creds, err := g.tls.creds()
			if err != nil {
				return usageError{err}
			}
			rows := checkEndpoints(cmd.Context(), eps, creds, g.timeout)
			unhealthy := 0
			for _, r := range rows {
				if !r.Healthy {
					unhealthy++
				}
			}
			if g.json() {
				printJSON(cmd.OutOrStdout(), rows)
			} else {
				tw := newTable(cmd.OutOrStdout())
				fmt.Fprintln(tw, "ENDPOINT\tHEALTH\tTOOK\tERROR")
				for _, r := range rows {
					h, e := "healthy", "-"
					if !r.Healthy {
						h, e = "unhealthy", r.Error
					}
					fmt.Fprintf(tw, "%s\t%s\t%s\t%s\n", r.Endpoint, h, time.Duration(r.TookMS*float64(time.Millisecond)).Round(10*time.Microsecond), e)
				}
				tw.Flush()
			}
			if unhealthy > 0 {
				return fmt.Errorf("%d of %d endpoints unhealthy", unhealthy, len(rows))
			}
			return nil
		},
	})
	return cmd
}

type endpointHealth struct {
	Endpoint string  `json:"endpoint"`
	Healthy  bool    `json:"healthy"`
	TookMS   float64 `json:"took_ms"`
	Error    string  `json:"error,omitempty"`
}

// checkEndpoints asks each endpoint's health service about cxkv.KV, all at
// once, each bounded by timeout.
func checkEndpoints(ctx context.Context, eps []string, creds credentials.TransportCredentials, timeout time.Duration) []endpointHealth {
	rows := make([]endpointHealth, len(eps))
	var wg sync.WaitGroup
	for i, ep := range eps {
		wg.Add(1)
		go func() {
			defer wg.Done()
			start := time.Now()
			err := checkEndpoint(ctx, ep, creds, timeout)
			rows[i] = endpointHealth{Endpoint: ep, Healthy: err == nil, TookMS: float64(time.Since(start).Microseconds()) / 1000}
			if err != nil {
				rows[i].Error = message(err)
			}
		}()
	}
	wg.Wait()
	return rows
}

func checkEndpoint(ctx context.Context, ep string, creds credentials.TransportCredentials, timeout time.Duration) error {
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	conn, err := grpc.NewClient(ep, grpc.WithTransportCredentials(creds))
	if err != nil {
		return err
	}
	defer conn.Close()
	resp, err := healthpb.NewHealthClient(conn).Check(ctx, &healthpb.HealthCheckRequest{Service: cxkvrpc.KV_ServiceDesc.ServiceName})
	if err != nil {
		if errors.Is(ctx.Err(), context.DeadlineExceeded) {
			return fmt.Errorf("no answer within %s: %w", timeout, err)
		}
		return err
	}
	if s := resp.GetStatus(); s != healthpb.HealthCheckResponse_SERVING {
		return fmt.Errorf("%s: not ready (no leader, halted, or far behind; its /readyz says which)", s)
	}
	return nil
}

// humanBytes prints a size in binary units: 512 B, 1.5 KiB, 20.0 MiB.
func humanBytes(n uint64) string {
	const unit = 1024
	if n < unit {
		return fmt.Sprintf("%d B", n)
	}
	div, exp := uint64(unit), 0
	for m := n / unit; m >= unit; m /= unit {
		div *= unit
		exp++
	}
	return fmt.Sprintf("%.1f %ciB", float64(n)/float64(div), "KMGTPE"[exp])
}
