package demo

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"testing"
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
