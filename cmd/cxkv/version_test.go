package main

import (
	"bytes"
	"context"
	"encoding/json"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"testing"

	"github.com/cxkv/cxkv/raftnode"
)

// runQuiet runs the CLI in-process with no environment and returns its exit
// code, stdout and stderr.
func runQuiet(args ...string) (int, string, string) {
	var stdout, stderr bytes.Buffer
	code := run(context.Background(), args, env{stdin: strings.NewReader(""), stdout: &stdout, stderr: &stderr, getenv: func(string) string { return "" }})
	return code, stdout.String(), stderr.String()
}

func TestVersionCommand(t *testing.T) {
	code, out, errOut := runQuiet("version", "-o", "json")
	if code != 0 {
		t.Fatalf("cxkv version -o json: exit %d, stderr %q", code, errOut)
	}
	var b raftnode.BuildInfo
	if err := json.Unmarshal([]byte(out), &b); err != nil {
		t.Fatalf("cxkv version -o json printed %q: %v", out, err)
	}
	if b.GoVersion != runtime.Version() || b.Version == "" {
		t.Fatalf("cxkv version -o json = %+v, want go_version %s and a version", b, runtime.Version())
	}
	code, out, _ = runQuiet("version")
	if code != 0 || !strings.HasPrefix(out, "cxkv "+b.Version+"\n") || !strings.Contains(out, "go "+runtime.Version()) {
		t.Fatalf("cxkv version: exit %d, printed %q", code, out)
	}
	code, out, _ = runQuiet("--version")
	if code != 0 || !strings.HasPrefix(out, "cxkv "+b.Version) || !strings.Contains(out, runtime.Version()) {
		t.Fatalf("cxkv --version: exit %d, printed %q", code, out)
	}
}

// TestReleaseStamp builds the binary the way make release does (static,
// version and revision given to the linker) and checks that it reports them.
func TestReleaseStamp(t *testing.T) {
	if testing.Short() {
		t.Skip("builds a binary")
	}
	out := filepath.Join(t.TempDir(), "cxkv")
	ldflags := "-X github.com/cxkv/cxkv/raftnode.version=v9.8.7-test -X github.com/cxkv/cxkv/raftnode.revision=0123456789abcdef"
	build := exec.Command("go", "build", "-trimpath", "-ldflags", ldflags, "-o", out, ".")
	build.Env = append(os.Environ(), "CGO_ENABLED=0")
	if msg, err := build.CombinedOutput(); err != nil {
		t.Fatalf("static build: %v\n%s", err, msg)
	}
	got, err := exec.Command(out, "version", "-o", "json").Output()
	if err != nil {
		t.Fatalf("%s version: %v", out, err)
	}
	var b raftnode.BuildInfo
	if err := json.Unmarshal(got, &b); err != nil {
		t.Fatalf("version -o json printed %q: %v", got, err)
	}
	if b.Version != "v9.8.7-test" || b.Revision != "0123456789abcdef" || b.GoVersion != runtime.Version() {
		t.Fatalf("stamped binary reports %+v", b)
	}
	got, err = exec.Command(out, "--version").Output()
	if err != nil || string(got) != "cxkv v9.8.7-test (rev 0123456789ab, "+runtime.Version()+")\n" {
		t.Fatalf("--version printed %q (%v)", got, err)
	}
}
