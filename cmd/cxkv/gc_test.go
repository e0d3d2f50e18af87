package main

import (
	"bytes"
	"context"
	"io"
	"strings"
	"testing"
)

// The member's GC target: the flag (or CXKV_GC_PERCENT) when given, else
// the operator's GOGC, else defaultGCPercent; out of range is refused.
func TestGCPercent(t *testing.T) {
	for _, c := range []struct {
		name    string
		given   bool
		flag    int
		gogc    string
		percent int
		set     bool
		bad     bool
	}{
		{name: "default", flag: defaultGCPercent, percent: defaultGCPercent, set: true},
		{name: "GOGC set, flag not given", flag: defaultGCPercent, gogc: "150"},
		{name: "GOGC off, flag not given", flag: defaultGCPercent, gogc: "off"},
		{name: "flag given wins over GOGC", given: true, flag: 200, gogc: "150", percent: 200, set: true},
		{name: "flag given", given: true, flag: 100, percent: 100, set: true},
		{name: "too low", given: true, flag: 5, bad: true},
		{name: "off", given: true, flag: -1, bad: true},
		{name: "too high", given: true, flag: 20000, bad: true},
	} {
		percent, set, err := gcPercentFlag{percent: c.flag}.resolve(c.given, c.gogc)
		if (err != nil) != c.bad || percent != c.percent || set != c.set {
			t.Errorf("%s: got %d, set %v, err %v", c.name, percent, set, err)
		}
	}
	for _, args := range [][]string{{"server", "--gc-percent", "5"}, {"server", "--gc-percent", "lots"}} {
		var stderr bytes.Buffer
		code := run(context.Background(), args, env{stdin: strings.NewReader(""), stdout: io.Discard, stderr: &stderr, getenv: func(string) string { return "" }})
		if code != exitUsage || !strings.Contains(stderr.String(), "--gc-percent") {
			t.Errorf("%v: exit %d, %q", args, code, stderr.String())
		}
	}
}
