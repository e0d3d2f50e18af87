package main

import (
	"bytes"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/cxkv/cxkv/raftnode/raftnodetest"
)

// snapshot save writes a checked backup that status describes and restore
// turns into data dirs; bad input is refused with the problem named and
// nothing written.
func TestSnapshotSaveStatusRestore(t *testing.T) {
	c := raftnodetest.Start(t, 3)
	eps := c.Endpoints()
	for i := range 30 {
		if code, _, errOut := runWith(eps, "put", fmt.Sprintf("k%02d", i), "v", "--index", "0"); code != 0 {
			t.Fatalf("put: exit %d: %s", code, errOut)
		}
	}
	dir := t.TempDir()
	file := filepath.Join(dir, "backup.cxkv")
	code, out, errOut := runWith(eps, "snapshot", "save", file, "-o", "json")
	if code != 0 {
		t.Fatalf("snapshot save: exit %d: %s", code, errOut)
	}
	var saved backupView
	if err := json.Unmarshal([]byte(out), &saved); err != nil || saved.Keys != 30 || saved.Index == 0 || saved.Member == 0 {
		t.Fatalf("snapshot save printed %q (%v); want 30 keys, an index and the member", out, err)
	}
	if names, _ := os.ReadDir(dir); len(names) != 1 {
		t.Fatalf("save left %d files in its directory, want the backup alone", len(names))
	}
	if code, _, errOut := runWith(eps, "snapshot", "save", file); code != exitUsage || !strings.Contains(errOut, "exists") {
		t.Fatalf("save over an existing file: exit %d, %q; want a usage error saying it exists", code, errOut)
	}
	code, out, errOut = runQuiet("snapshot", "status", file, "-o", "json")
	var st backupView
	if code != 0 || json.Unmarshal([]byte(out), &st) != nil || st != (backupView{File: file, Index: saved.Index, Keys: 30, Size: saved.Size, Checksum: saved.Checksum}) {
		t.Fatalf("snapshot status: exit %d, %q, %s; want what save printed, %+v", code, out, errOut, saved)
	}
	code, out, _ = runQuiet("snapshot", "status", file)
	for _, want := range []string{fmt.Sprintf("index %d", saved.Index), "keys 30", "checksum " + saved.Checksum} {
		if code != 0 || !strings.Contains(squeeze(out), want) {
			t.Fatalf("snapshot status: exit %d, %q; want %q in it", code, out, want)
		}
	}

	data, err := os.ReadFile(file)
	if err != nil {
		t.Fatal(err)
	}
	flipped := bytes.Clone(data)
	flipped[len(data)-2] ^= 0x10 // in the checksum
	bad := map[string][]byte{"cut": data[:len(data)/2], "flipped": flipped}
	cluster := "1=127.0.0.1:7101,2=127.0.0.1:7102,3=127.0.0.1:7103"
	for name, b := range bad {
		f := filepath.Join(dir, name)
		if err := os.WriteFile(f, b, 0o644); err != nil {
			t.Fatal(err)
		}
		code, _, errOut := runQuiet("snapshot", "status", f)
		if code != 1 || !strings.Contains(errOut, map[string]string{"cut": "truncated", "flipped": "checksum mismatch"}[name]) {
			t.Fatalf("status of a %s backup: exit %d, %q", name, code, errOut)
		}
		target := filepath.Join(dir, "data-"+name)
		code, _, errOut = runQuiet("snapshot", "restore", f, "--data-dir", target, "--id", "1", "--cluster", cluster)
		if code == 0 || !strings.Contains(errOut, "refused") {
			t.Fatalf("restore of a %s backup: exit %d, %q", name, code, errOut)
		}
		if _, err := os.Stat(target); !os.IsNotExist(err) {
			t.Fatalf("restore of a %s backup left %s (%v)", name, target, err)
		}
	}
	for id := 1; id <= 3; id++ {
		target := filepath.Join(dir, fmt.Sprint("data-", id))
		code, out, errOut := runQuiet("snapshot", "restore", file, "--data-dir", target, "--id", fmt.Sprint(id), "--cluster", cluster)
		if code != 0 || !strings.Contains(squeeze(out), fmt.Sprintf("index %d", saved.Index)) {
			t.Fatalf("restore member %d: exit %d, %q, %s", id, code, out, errOut)
		}
	}
	code, _, errOut = runQuiet("snapshot", "restore", file, "--data-dir", filepath.Join(dir, "data-1"), "--id", "1", "--cluster", cluster)
	if code == 0 || !strings.Contains(errOut, "not empty") {
		t.Fatalf("restore over a member's data dir: exit %d, %q", code, errOut)
	}
	if code, _, errOut := runQuiet("snapshot", "restore", file, "--data-dir", filepath.Join(dir, "x"), "--id", "4", "--cluster", cluster); code != exitUsage || !strings.Contains(errOut, "does not name") {
		t.Fatalf("restore of a member --cluster does not name: exit %d, %q", code, errOut)
	}
}

// squeeze folds runs of spaces, so a table's column width does not matter.
func squeeze(s string) string {
	var lines []string
	for _, l := range strings.Split(s, "\n") {
		lines = append(lines, strings.Join(strings.Fields(l), " "))
	}
	return strings.Join(lines, "\n")
}
