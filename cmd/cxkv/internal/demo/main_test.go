package demo

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"testing"
	"time"

	"github.com/cxkv/cxkv/client"
)

// testBin is the cxkv binary the process tests run, built once by TestMain
// (or $CXKV_BIN).
var testBin string

func TestMain(m *testing.M) {
	os.Exit(func() int {
		if b := os.Getenv("CXKV_BIN"); b != "" {
			testBin = b
			return m.Run()
		}
		dir, err := os.MkdirTemp("", "cxkv-demo-bin-")
		if err != nil {
			fmt.Fprintln(os.Stderr, err)
			return 1
		}
		defer os.RemoveAll(dir)
		testBin = filepath.Join(dir, "cxkv")
		if out, err := exec.Command("go", "build", "-o", testBin, "github.com/cxkv/cxkv/cmd/cxkv").CombinedOutput(); err != nil {
			fmt.Fprintf(os.Stderr, "go build: %v\n%s", err, out)
			return 1
		}
		return m.Run()
	}())
}

// startCluster starts the demo's 3-process cluster with data in dir and a
// client on it, and waits for a leader; everything stops with the test.
func startCluster(t *testing.T, dir string) (*Cluster, *client.Client, context.Context) {
	t.Helper()
	cl, err := StartCluster(ClusterConfig{Bin: testBin, Dir: dir})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cl.Stop() })
	c, err := client.New(client.Config{Endpoints: cl.Endpoints()})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	t.Cleanup(cancel)
	if _, err := cl.WaitLeader(ctx, c); err != nil {
		t.Fatal(err)
	}
	return cl, c, ctx
}
