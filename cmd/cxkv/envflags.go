package main

import (
	"fmt"
	"strings"

	"github.com/spf13/pflag"
)

// Every server flag can also come from the environment: --data-dir from
// CXKV_DATA_DIR, --metrics-addr from CXKV_METRICS_ADDR, and so on (CXKV_,
// then the flag's name in upper case with - as _). A flag given on the
// command line wins over the environment, which wins over the default.

func envName(flag string) string {
	return "CXKV_" + strings.ToUpper(strings.ReplaceAll(flag, "-", "_"))
}

// documentEnv adds each flag's variable to its help line.
func documentEnv(fs *pflag.FlagSet) {
	fs.VisitAll(func(f *pflag.Flag) {
		if f.Name != "help" {
			f.Usage += " (env " + envName(f.Name) + ")"
		}
	})
}

// flagsFromEnv sets every flag not given on the command line from its
// variable, if set. A bad value is an error naming the variable.
func flagsFromEnv(fs *pflag.FlagSet, getenv func(string) string) error {
	var err error
	fs.VisitAll(func(f *pflag.Flag) {
		if err != nil || f.Changed || f.Name == "help" {
			return
		}
		v := getenv(envName(f.Name))
		if v == "" {
			return
		}
		if e := fs.Set(f.Name, v); e != nil {
			err = fmt.Errorf("%s=%q (for --%s): %v", envName(f.Name), v, f.Name, e)
		}
	})
	return err
}
